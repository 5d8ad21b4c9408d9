#!/usr/bin/env bash
# expect_abort.sh LIB MISUSE CASE [ENV=VALUE...]: runs `MISUSE CASE` with
# LIB preloaded and expects death by SIGABRT with a message that starts
# with "strata: " and names the address the program misused.
set -uo pipefail
lib=$1 prog=$2 case=$3
shift 3
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
env "$@" LD_PRELOAD="$lib" "$prog" "$case" > "$out" 2> "$err"
status=$?
addr=$(head -n 1 "$out")
msg=$(grep -m 1 '^strata: ' "$err" || true)
echo "case $case ($*): exit status $status; message: ${msg:-<none>}"
if [ "$status" -ne 134 ]; then
  echo "FAIL: expected death by SIGABRT (status 134)"
  cat "$err"
  exit 1
fi
if [ -z "$msg" ]; then
  echo "FAIL: no 'strata: ' message on stderr"
  cat "$err"
  exit 1
fi
if [[ "$msg" != *"$addr"* ]]; then
  echo "FAIL: the message does not name the address $addr"
  exit 1
fi
echo PASS
