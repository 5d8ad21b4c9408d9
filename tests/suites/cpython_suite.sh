#!/usr/bin/env bash
# Part of CPython's own regression suite (Debian's libpython3.X-testsuite),
# run natively and with every Python object allocated by strata
# (PYTHONMALLOC=malloc under LD_PRELOAD). Whatever passes natively must pass
# under strata; a test that fails natively is left out of the comparison.
set -uo pipefail
lib=$1
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
if ! "$py" -c "import test.libregrtest" 2>/dev/null; then
  echo "SKIP: CPython's test suite is not installed (apt-get install libpython3-testsuite)"
  exit 77
fi
tests=(test_dict test_list test_set test_unicode test_bytes test_json test_re
       test_collections test_itertools test_threading test_sort test_struct
       test_weakref test_heapq test_deque test_array test_memoryview)
# Which of them pass natively?
passing=()
for t in "${tests[@]}"; do
  if "$py" -m test -q "$t" > /dev/null 2>&1; then passing+=("$t"); fi
done
[ ${#passing[@]} -gt 0 ] || { echo "SKIP: no test passes natively"; exit 77; }
# Prove the preload takes effect before trusting a green run.
PYTHONMALLOC=malloc LD_PRELOAD=$lib "$py" -c \
  "import sys; sys.exit(0 if 'libstrata' in open('/proc/self/maps').read() else 1)" ||
  { echo "FAIL: libstrata.so is not loaded in the preloaded interpreter"; exit 1; }
if PYTHONMALLOC=malloc LD_PRELOAD=$lib "$py" -m test -q "${passing[@]}"; then
  echo "PASS: ${#passing[@]} CPython test modules pass under strata"
else
  echo "FAIL: CPython tests that pass natively fail under strata"
  exit 1
fi
