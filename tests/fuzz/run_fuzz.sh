#!/bin/sh
# run_fuzz.sh FUZZER SCRATCH_DIR SEED_CORPUS_DIR [libFuzzer flags...]
# Runs a libFuzzer target on a fresh, empty scratch corpus (where it
# writes new inputs) plus the seed corpus (only read), so a ctest run never
# adds files to the source tree. Crash/leak/timeout artifacts go to the
# scratch directory too. STRATA_FUZZ_RUNS in the environment, when set,
# overrides the -runs given on the command line (libFuzzer takes the last
# one), e.g. for the shorter run of `tools/strata test`.
set -e
fuzzer=$1 scratch=$2 seeds=$3
shift 3
if [ -n "${STRATA_FUZZ_RUNS:-}" ]; then
  set -- "$@" "-runs=$STRATA_FUZZ_RUNS"
fi
rm -rf "$scratch"
mkdir -p "$scratch"
exec "$fuzzer" -artifact_prefix="$scratch/" -print_final_stats=1 "$@" "$scratch" "$seeds"
