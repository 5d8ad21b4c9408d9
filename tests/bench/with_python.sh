#!/bin/sh
# with_python.sh SCRIPT [ARGS...]: run a bench runner test with /usr/bin/python3
# (Debian's, the one tools/strata bench runs; $STRATA_PYTHON overrides it).
# Exits 77, which ctest counts as skipped, when that Python is missing. Unlike
# tests/report's, matplotlib is optional: only the chart test needs it, and it
# skips itself.
PY=${STRATA_PYTHON:-/usr/bin/python3}
if ! [ -x "$PY" ]; then
  echo "SKIP: $PY not found"
  exit 77
fi
exec "$PY" "$@"
