#!/usr/bin/env bash
# preload_sort: GNU sort on ~200k generated lines (plain, -n, -u, -k with -t,
# and a multi-threaded external sort through temporary files), natively and
# with libstrata.so preloaded; the output must be byte-identical.
# usage: sort.sh /path/to/libstrata.so
source "$(dirname -- "$0")/common.sh"
preload_init "$@"
SORT=$(find_prog sort)
AWK=$(find_prog awk)

# Deterministic data, generated natively once: numbers, words of varied length,
# duplicates (for -u) and a few long lines.
"$AWK" 'BEGIN {
  x = 12345
  for (i = 0; i < 200000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648
    n = x % 1000003
    w = ""
    len = 1 + (x % 23); if (i % 5000 == 0) len = 3000
    for (j = 0; j < len; j++) w = w sprintf("%c", 97 + (x / (j + 1)) % 26)
    if (i % 7 == 0) printf "%d\n", n % 1000
    else printf "%d %s\t%d\n", n, w, i % 97
  }
}' >"$WORK/input.txt"
[[ $(wc -l <"$WORK/input.txt") -eq 200000 ]] || fatal "could not generate the input"

run_both sort -- "$SORT" "$WORK/input.txt"
run_both sort-n -- "$SORT" -n "$WORK/input.txt"
run_both sort-u -- "$SORT" -u "$WORK/input.txt"
run_both sort-k -- "$SORT" -t "$(printf '\t')" -k2,2n -k1,1r "$WORK/input.txt"
run_both sort-rn-stable -- "$SORT" -s -rn "$WORK/input.txt"
# Small buffer + 2 threads: temporary files, merging, pthreads.
mkdir -p "$WORK/tmp"
run_both sort-external -- "$SORT" --parallel=2 -S 1M -T "$WORK/tmp" "$WORK/input.txt"
RUN_STDIN="$WORK/input.txt" run_both sort-stdin-parallel -- "$SORT" --parallel=4 -n
preload_finish
