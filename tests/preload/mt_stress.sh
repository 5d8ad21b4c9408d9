#!/usr/bin/env bash
# preload_mt_stress: mt_stress (8 threads x 200k random malloc/calloc/realloc/
# aligned_alloc/free, patterns verified, blocks freed by other threads),
# natively and with libstrata.so preloaded; both must print "ok" and exit 0.
# The preloaded run also checks that the library is in its /proc/self/maps.
# usage: mt_stress.sh /path/to/libstrata.so /path/to/preload_mt_stress [threads [ops]]
source "$(dirname -- "$0")/common.sh"
preload_init "$@"
EXE=${2:-}
[[ -n $EXE && -x $EXE ]] || fatal "usage: $0 /path/to/libstrata.so /path/to/preload_mt_stress [threads [ops]]"
THREADS=${3:-8}
OPS=${4:-200000}

run_both mt_stress -- "$EXE" "$THREADS" "$OPS"
check_begin
[[ $(cat "$WORK/mt_stress.preload.out") == ok ]] || fail "the preloaded run did not print \"ok\""
check_end
# More threads than cores, fewer operations each: more contention on shared
# structures and more thread creation/exit (thread-cache teardown).
run_both mt_stress-32 -- "$EXE" 32 20000
preload_finish
