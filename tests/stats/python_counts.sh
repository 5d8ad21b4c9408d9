#!/usr/bin/env bash
# The scenario of the statistics issue: python3 with 100,000 small objects
# and a dozen 8 MiB buffers under STRATA_STATS=json. The report must parse,
# every class must have live = allocs - frees, and the counts must cover
# what the program did. Also checks the text report and malloc_stats().
set -euo pipefail
lib=$1
probe=$2
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/work.py" <<'PY'
objs = [("s%d" % i) * 2 for i in range(100000)]
bufs = [bytearray(8 << 20) for _ in range(12)]
print(len(objs), len(bufs))
PY
STRATA_STATS=json STRATA_STATS_FILE="$tmp/stats.json" PYTHONMALLOC=malloc LD_PRELOAD=$lib \
  "$py" "$tmp/work.py" > "$tmp/out.txt"
"$py" - "$tmp/stats.json" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 1, "one exit report expected, got %d lines" % len(lines)
d = json.loads(lines[-1])
for key in ["version", "totals", "size_classes", "thread_cache", "central", "page_heap", "large", "fragmentation"]:
    assert key in d, key
for key in ["allocated_bytes", "mapped_bytes", "resident_bytes", "released_bytes", "peak_allocated_bytes", "metadata_bytes"]:
    assert key in d["totals"], key
allocs = 0
for c in d["size_classes"]:
    assert c["live"] == c["allocs"] - c["frees"], c
    allocs += c["allocs"]
assert allocs >= 100000, allocs
assert d["large"]["allocs"] >= 12, d["large"]
assert d["totals"]["peak_allocated_bytes"] >= 12 * (8 << 20), d["totals"]
assert len(d["page_heap"]["free_blocks_by_order"]) == 11
for k in ["internal", "external"]:
    assert 0.0 <= d["fragmentation"][k] <= 1.0, d["fragmentation"]
assert d["thread_cache"]["hits"] + d["thread_cache"]["misses"] > 0
print("json report ok: %d small allocations, %d large" % (allocs, d["large"]["allocs"]))
PY

# Text report on stderr, readable.
STRATA_STATS=1 PYTHONMALLOC=malloc LD_PRELOAD=$lib "$py" "$tmp/work.py" 2> "$tmp/text.txt" > /dev/null
grep -q "strata statistics" "$tmp/text.txt"
grep -q "size classes" "$tmp/text.txt"
grep -q "large objects: allocs" "$tmp/text.txt"
# malloc_stats() prints the same report on demand.
LD_PRELOAD=$lib "$py" -c "import ctypes; ctypes.CDLL(None).malloc_stats()" 2> "$tmp/ms.txt"
grep -q "strata statistics" "$tmp/ms.txt"
# strata_stats_json() from C gives valid JSON.
LD_PRELOAD=$lib "$probe" > "$tmp/probe.json" 2> "$tmp/mallinfo.json"
"$py" - "$tmp/probe.json" "$tmp/mallinfo.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
mi = json.load(open(sys.argv[2]))
assert d['version'] == 1
# mallinfo2 agrees with the JSON report taken right after it.
assert mi['uordblks'] + mi['hblkhd'] == d['totals']['allocated_bytes'], (mi, d['totals'])
assert mi['hblkhd'] == d['large']['live_bytes'], (mi, d['large'])
assert mi['hblks'] == d['large']['live'] >= 1, (mi, d['large'])
assert mi['arena'] == d['page_heap']['mmap_bytes'] + d['page_heap']['brk_bytes']
PY
# Interval lines: several JSON documents, one per line.
STRATA_STATS=json STRATA_STATS_FILE="$tmp/tl.json" STRATA_STATS_INTERVAL_MS=20 LD_PRELOAD=$lib \
  "$py" -c "import time; time.sleep(0.3)"
"$py" -c "
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(lines) >= 3, len(lines)
assert lines[0]['time_ms'] <= lines[-1]['time_ms']
" "$tmp/tl.json"
echo "PASS: statistics reports"
