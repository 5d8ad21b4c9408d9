#!/bin/sh
# run_fuzz.sh FUZZER SCRATCH_DIR SEED_CORPUS_DIR [libFuzzer flags...]
# Runs a libFuzzer target on a fresh, empty scratch corpus (where it
# writes new inputs) plus the seed corpus (only read), so a ctest run never
# adds files to the source tree. Crash/leak/timeout artifacts go to the
# scratch directory too.
set -e
fuzzer=$1 scratch=$2 seeds=$3
shift 3
rm -rf "$scratch"
mkdir -p "$scratch"
exec "$fuzzer" -artifact_prefix="$scratch/" -print_final_stats=1 "$@" "$scratch" "$seeds"
