#!/usr/bin/env bash
# expect_abort.sh [OPTIONS] LIB MISUSE CASE [ENV=VALUE...]: runs `MISUSE CASE`
# with LIB preloaded and expects death by SIGABRT with a message that starts
# with "strata: " and names what the program printed first on stdout (the
# address it misused; nothing to name when it printed nothing).
#
#   --msg REGEX      the message must also match REGEX (grep -E): it names
#                    the problem
#   --preload LIB2   preload LIB2 before LIB (a fake libc function)
#   --status N       expect exit status N instead of 134 (SIGABRT): for
#                    warnings, which do not stop the program
set -uo pipefail
regex='' first='' want=134
while [ $# -gt 0 ]; do
  case $1 in
    --msg) regex=$2; shift 2 ;;
    --preload) first=$2:; shift 2 ;;
    --status) want=$2; shift 2 ;;
    *) break ;;
  esac
done
lib=$1 prog=$2 case=$3
shift 3
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
env "$@" LD_PRELOAD="$first$lib" "$prog" "$case" > "$out" 2> "$err"
status=$?
addr=$(head -n 1 "$out")
msg=$(grep -m 1 '^strata: ' "$err" || true)
echo "case $case ($*): exit status $status; message: ${msg:-<none>}"
if [ "$status" -ne "$want" ]; then
  if [ "$want" -eq 134 ]; then
    echo "FAIL: expected death by SIGABRT (status 134)"
  else
    echo "FAIL: expected exit status $want"
  fi
  cat "$err"
  exit 1
fi
if [ -z "$msg" ]; then
  echo "FAIL: no 'strata: ' message on stderr"
  cat "$err"
  exit 1
fi
if [[ "$msg" != *"$addr"* ]]; then
  echo "FAIL: the message does not name $addr"
  exit 1
fi
if [ -n "$regex" ] && ! grep -Eq -- "$regex" <<< "$msg"; then
  echo "FAIL: the message does not match: $regex"
  exit 1
fi
echo PASS
