#!/bin/sh
# with_python.sh SCRIPT [ARGS...]: run a report test with /usr/bin/python3
# (Debian's, the one python3-matplotlib installs for; $STRATA_PYTHON overrides
# it). Exits 77, which ctest counts as skipped, when that Python or its
# matplotlib is missing.
PY=${STRATA_PYTHON:-/usr/bin/python3}
if ! [ -x "$PY" ]; then
  echo "SKIP: $PY not found"
  exit 77
fi
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  echo "SKIP: matplotlib is not installed for $PY (Debian: apt-get install python3-matplotlib)"
  exit 77
fi
exec "$PY" "$@"
