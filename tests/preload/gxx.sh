#!/usr/bin/env bash
# preload_gxx: g++ (cc1plus, as, collect2, ld: all preloaded) compiles
# gxx_sample.cpp (STL containers, templates, iostream, exceptions) with -O2 -g,
# natively and with libstrata.so preloaded. The object files must be
# byte-identical (when the native compiler is deterministic, checked by
# compiling twice natively), and so must the linked programs' output; the
# programs also run preloaded (operator new/delete, exceptions).
# usage: gxx.sh /path/to/libstrata.so
source "$(dirname -- "$0")/common.sh"
preload_init "$@"
GXX=$(find_prog g++ c++)
SRC="$TEST_DIR/gxx_sample.cpp"
FLAGS=(-std=c++17 -O2 -g -Wall -frandom-seed=strata-preload)

# 1. Compile natively and preloaded (each run writes obj.<mode>.o).
run_both compile -- bash -c 'exec "$0" "${@:3}" -c "$1" -o "$2.$PRELOAD_TEST_MODE.o"' \
  "$GXX" "$SRC" "$WORK/obj" "${FLAGS[@]}"
[[ -s $WORK/obj.native.o ]] || preload_finish

check_begin
"$GXX" "${FLAGS[@]}" -c "$SRC" -o "$WORK/obj.native2.o"
if cmp -s "$WORK/obj.native.o" "$WORK/obj.native2.o"; then
  if cmp -s "$WORK/obj.native.o" "$WORK/obj.preload.o"; then
    pass "object file ($(wc -c <"$WORK/obj.native.o") bytes) identical native and preloaded"
  elif [[ -s $WORK/obj.preload.o ]]; then
    fail "object file differs when g++ runs preloaded (it is identical across native runs)"
    cmp "$WORK/obj.native.o" "$WORK/obj.preload.o" | sed 's/^/  /' || true
  else
    fail "preloaded g++ wrote no object file"
  fi
else
  echo "NOTE: $TEST_NAME: g++ output differs between two native runs; comparing program output only"
fi
check_end

# 2. Link each object natively and preloaded.
for obj in native preload; do
  [[ -s $WORK/obj.$obj.o ]] || continue
  run_both "link-$obj" -- bash -c 'exec "$0" "$1" -o "$2.$PRELOAD_TEST_MODE"' \
    "$GXX" "$WORK/obj.$obj.o" "$WORK/exe-$obj"
done

# 3. Run the programs natively and preloaded: all four outputs must agree.
# (exe-<compiled>.<linked>: e.g. exe-preload.native = compiled preloaded,
# linked natively)
for exe in "$WORK"/exe-*.*; do
  [[ -x $exe ]] || continue
  run_both "run-$(basename -- "$exe")" -- "$exe"
done
check_begin
ref=""
for out in "$WORK"/run-exe-*.*.*.out; do
  [[ -e $out ]] || continue
  if [[ -z $ref ]]; then
    ref=$out
  elif ! cmp -s "$ref" "$out"; then
    fail "program output differs: $(basename -- "$ref") vs $(basename -- "$out")"
  fi
done
[[ -n $ref ]] || fail "no program was built and run"
((CHECK_FAILED)) || pass "all builds of the program print the same $(wc -c <"$ref") bytes"
check_end
preload_finish
