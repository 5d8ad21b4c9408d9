# shellcheck shell=bash
# Shared helpers for the preload tests; sourced by each tests/preload/*.sh.
#
# A test runs real programs twice: natively and with LD_PRELOAD=libstrata.so,
# then compares exit status, stdout and (unless told otherwise) stderr.
# Every preloaded run is also checked to have really used the library: the
# dynamic loader's own log (LD_DEBUG=files,bindings, written to files in the
# scratch directory, so the program's output is untouched) must show, for each
# process started, libc's `malloc` and `free` bound to libstrata.so. A test can
# therefore not pass because the preload silently did not happen (a wrong
# path, a setuid binary, a library that does not export malloc, ...).
#
# Test programs of our own (python_workload.py, mt_stress) also check
# /proc/self/maps from inside: the preloaded run gets
# PRELOAD_TEST_EXPECT_MAPPED=<library path>, and they exit 3 if it is not mapped.
#
# Both runs get PRELOAD_TEST_MODE=native or =preload, so a command can write
# its output files to mode-specific paths.
#
# Exit codes: 0 pass, 1 fail, 77 skip (program not installed).
#
# Environment knobs:
#   PRELOAD_TEST_TIMEOUT   seconds allowed for one run of a program (default 240)
#   PRELOAD_TEST_KEEP=1    keep the scratch directory even when the test passes

set -euo pipefail
export LC_ALL=C
# Allocator statistics at exit would make stderr differ from the native run.
unset STRATA_STATS STRATA_STATS_FILE

TEST_NAME=$(basename -- "$0" .sh)
# shellcheck disable=SC2034 # used by the scripts that source this file
TEST_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
FAILURES=0     # checks that failed
CHECKS=0       # checks run
CHECK_FAILED=0 # set by fail() within the current check

pass() { printf 'PASS: %s: %s\n' "$TEST_NAME" "$*"; }
fail() { printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*"; CHECK_FAILED=1; }
skip() { printf 'SKIP: %s: %s\n' "$TEST_NAME" "$*" >&2; exit 77; } # stderr: also seen from $(find_prog)
fatal() { printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*"; exit 1; }

# check_begin / check_end: bracket one check made of several fail() calls.
check_begin() { CHECKS=$((CHECKS + 1)); CHECK_FAILED=0; }
check_end() { ((CHECK_FAILED == 0)) || FAILURES=$((FAILURES + 1)); CHECK_FAILED=0; }

# preload_init LIB: check the library argument, create the scratch directory.
preload_init() {
  [[ $# -ge 1 && -n $1 ]] || fatal "usage: $0 /path/to/libstrata.so"
  [[ -f $1 ]] || fatal "library not found: $1"
  LIB=$(readlink -f -- "$1")
  # The loader must accept it: a quick preloaded `true` must succeed.
  if ! LD_PRELOAD=$LIB /bin/true 2>"${TMPDIR:-/tmp}/.preload-probe.$$"; then
    local msg
    msg=$(cat "${TMPDIR:-/tmp}/.preload-probe.$$")
    rm -f "${TMPDIR:-/tmp}/.preload-probe.$$"
    fatal "LD_PRELOAD=$LIB /bin/true failed: $msg"
  fi
  rm -f "${TMPDIR:-/tmp}/.preload-probe.$$"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-preload-$TEST_NAME.XXXXXX")
  trap preload_cleanup EXIT
  unset LD_PRELOAD # native runs must be native
}

preload_cleanup() {
  local rc=$?
  if [[ $rc -ne 0 && $rc -ne 77 ]] || [[ ${PRELOAD_TEST_KEEP:-0} == 1 ]]; then
    [[ -n ${KEPT_NOTED:-} ]] || printf '%s: scratch files kept in %s\n' "$TEST_NAME" "$WORK"
  else
    rm -rf -- "$WORK"
  fi
}

# find_prog NAME...: print the first of the given programs that is installed,
# or skip the test (exit 77) when none is.
find_prog() {
  local p
  for p in "$@"; do
    if [[ $p == /* ]]; then
      [[ -x $p ]] && { printf '%s\n' "$p"; return 0; }
    elif command -v -- "$p" >/dev/null 2>&1; then
      command -v -- "$p"
      return 0
    fi
  done
  skip "not installed: $*"
}

# _run MODE NAME CMD...: run CMD (stdin from $RUN_STDIN or /dev/null) with a
# timeout; stdout/stderr/exit status go to $WORK/NAME.MODE.{out,err,rc}.
_run() {
  local mode=$1 name=$2
  shift 2
  local base="$WORK/$name.$mode" rc=0
  # PRELOAD_TEST_MODE lets a command write mode-specific output files.
  local -a env_args=(PRELOAD_TEST_MODE="$mode")
  if [[ $mode == preload ]]; then
    rm -rf -- "$WORK/ld.$name"
    mkdir -p -- "$WORK/ld.$name"
    # shellcheck disable=SC2054 # the comma is part of LD_DEBUG's value
    env_args+=(LD_PRELOAD="$LIB" LD_DEBUG=files,bindings LD_DEBUG_OUTPUT="$WORK/ld.$name/pid"
      PRELOAD_TEST_EXPECT_MAPPED="$LIB")
  fi
  # `timeout` and `env` run natively; env execs the program in place, so only
  # the program (and its children) are preloaded and logged by the loader.
  # The loader log starts only after env's exec, because the variables are not
  # in env's own environment at its start.
  timeout -k 10 "${PRELOAD_TEST_TIMEOUT:-240}" \
    env "${env_args[@]}" "$@" <"${RUN_STDIN:-/dev/null}" >"$base.out" 2>"$base.err" || rc=$?
  printf '%s\n' "$rc" >"$base.rc"
}

# _preload_proof NAME: true if every process of the preloaded run NAME bound
# malloc and free to $LIB. Reports what is wrong otherwise.
_preload_proof() {
  local name=$1
  local dir="$WORK/ld.$name" f n=0 bad=0 sym
  for f in "$dir"/pid.*; do
    [[ -e $f ]] || continue
    n=$((n + 1))
    for sym in malloc free; do
      # (no grep -q in a pipeline: with pipefail its early exit looks like a failure)
      if [[ $(grep -F -- "normal symbol \`$sym'" "$f" | grep -cF -- " to $LIB [") == 0 ]]; then
        echo "  process ${f##*.}: \`$sym' is not bound to $LIB (loader log: $f)"
        bad=1
      fi
    done
  done
  if ((n == 0)); then
    echo "  no dynamic-loader log was written: the program did not run dynamically linked with the preload"
    return 1
  fi
  return "$bad"
}

# run_both NAME [--no-stderr] [--expect RC] -- CMD...: run CMD natively and
# preloaded and compare. --no-stderr: do not compare stderr (only report it).
# --expect RC: the exit status both runs must have (default 0).
run_both() {
  local name=$1 cmp_err=1 expect=0
  shift
  while (($#)); do
    case $1 in
      --no-stderr) cmp_err=0; shift ;;
      --expect) expect=$2; shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  check_begin
  _run native "$name" "$@"
  _run preload "$name" "$@"
  local nrc prc ok=1 proof
  nrc=$(<"$WORK/$name.native.rc")
  prc=$(<"$WORK/$name.preload.rc")
  if [[ $nrc != "$expect" ]]; then
    fail "$name: the native run exited $nrc, expected $expect (not an allocator problem?): $*"
    sed 's/^/  native stderr: /' "$WORK/$name.native.err" | head -n 20
    check_end
    return 0
  fi
  if [[ $prc != "$nrc" ]]; then
    ok=0
    if ((prc == 124 || prc == 137)); then
      fail "$name: preloaded run timed out after ${PRELOAD_TEST_TIMEOUT:-240}s (hang or deadlock?): $*"
    elif ((prc > 128)); then
      fail "$name: preloaded run crashed with signal $((prc - 128)) ($(kill -l $((prc - 128)) 2>/dev/null || echo '?')): $*"
    else
      fail "$name: exit status $prc preloaded vs $nrc native: $*"
    fi
    sed 's/^/  preloaded stderr: /' "$WORK/$name.preload.err" | head -n 20
  fi
  if ! cmp -s "$WORK/$name.native.out" "$WORK/$name.preload.out"; then
    ok=0
    fail "$name: stdout differs ($(wc -c <"$WORK/$name.native.out") bytes native, $(wc -c <"$WORK/$name.preload.out") preloaded)"
    diff "$WORK/$name.native.out" "$WORK/$name.preload.out" | head -n 20 | sed 's/^/  /' || true
  fi
  if ((cmp_err)) && ! cmp -s "$WORK/$name.native.err" "$WORK/$name.preload.err"; then
    ok=0
    fail "$name: stderr differs"
    diff "$WORK/$name.native.err" "$WORK/$name.preload.err" | head -n 20 | sed 's/^/  /' || true
  fi
  if ! proof=$(_preload_proof "$name"); then
    ok=0
    fail "$name: the preload was not in effect"
    printf '%s\n' "$proof"
  fi
  ((ok)) && pass "$name: same exit status ($nrc) and output ($(wc -c <"$WORK/$name.native.out") bytes on stdout)"
  check_end
  return 0
}

# preload_finish: print the summary line and exit 0 / 1.
preload_finish() {
  if ((FAILURES)) || [[ ${PRELOAD_TEST_KEEP:-0} == 1 ]]; then
    printf '%s: scratch files kept in %s\n' "$TEST_NAME" "$WORK"
    KEPT_NOTED=1
  fi
  if ((FAILURES)); then
    printf 'FAIL: %s: %d of %d checks failed (library %s)\n' "$TEST_NAME" "$FAILURES" "$CHECKS" "$LIB"
    exit 1
  fi
  printf 'PASS: %s: all %d checks passed (library %s)\n' "$TEST_NAME" "$CHECKS" "$LIB"
  exit 0
}
