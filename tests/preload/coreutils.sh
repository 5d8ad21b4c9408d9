#!/usr/bin/env bash
# preload_coreutils: assorted coreutils/findutils runs (ls -laR, du, tr,
# uniq -c, find | sort | md5sum, ...), natively and with libstrata.so
# preloaded; exit status and output must be identical.
# usage: coreutils.sh /path/to/libstrata.so
source "$(dirname -- "$0")/common.sh"
preload_init "$@"
for p in ls du tr uniq find sort md5sum awk; do find_prog "$p" >/dev/null; done
INC=/usr/include
[[ -d $INC ]] || skip "$INC is missing"

# Deterministic text: words and numbers with many repeats.
awk 'BEGIN { x = 7; for (i = 0; i < 150000; i++) { x = (x * 69069 + 1) % 4294967296;
  printf "%s %d\n", substr("alpha beta gamma delta epsilon zeta eta theta", 1 + x % 40, 1 + x % 9), x % 50 } }' \
  >"$WORK/words.txt"

run_both ls-laR -- ls -laR "$INC"
run_both du -- du -s /usr/share
run_both du-a -- du -a "$INC"
run_both ls-missing --expect 2 -- ls -la /nonexistent/strata-preload-test  # error path
RUN_STDIN="$WORK/words.txt" run_both tr-stdin -- tr -s 'a-z ' 'A-Z_'
RUN_STDIN="$WORK/words.txt" run_both tr-delete -- tr -d '0-9'
run_both sort-uniq-c -- bash -c 'sort "$1" | uniq -c | sort -k1,1nr -k2' _ "$WORK/words.txt"
run_both find-md5 -- bash -c 'find "$1" -name "*.h" | sort | md5sum' _ "$INC"
run_both find-printf -- find "$INC" -type f -printf '%s %p\n'
run_both wc -- bash -c 'find "$1" -name "*.h" -print0 | sort -z | xargs -0 wc -l | tail -n 5' _ "$INC"
preload_finish
