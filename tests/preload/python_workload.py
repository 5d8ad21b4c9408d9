"""Allocation-heavy, deterministic Python workload for the preload tests.

Run with PYTHONMALLOC=malloc so that every Python object goes through the C
malloc family. Prints digests of everything it computed; the output must be
byte-identical with and without libstrata.so preloaded.

  PYTHONMALLOC=malloc python3 python_workload.py

If PRELOAD_TEST_EXPECT_MAPPED=LIBPATH is set (the preload tests set it in the
preloaded run only), exit 3 unless LIBPATH is mapped into this process (read
from /proc/self/maps), proving the preload is in effect. Nothing is printed
about it on stdout, so the output stays comparable with the native run.
"""

import hashlib
import json
import os
import random
import sys
import threading


def check_mapped(path):
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        maps = f.read()
    if real not in maps:
        sys.stderr.write("python_workload: %s is not mapped into this process\n" % real)
        sys.exit(3)
    # Python objects must go through malloc, not pymalloc's arenas (note that
    # -I and -E make Python ignore PYTHONMALLOC).
    try:
        import _testcapi
        allocator = _testcapi.pymem_getallocatorsname()
    except (ImportError, AttributeError, RuntimeError):
        allocator = os.environ.get("PYTHONMALLOC")
    if allocator != "malloc":
        sys.stderr.write("python_workload: Python's allocator is %r, not 'malloc' "
                         "(run with PYTHONMALLOC=malloc, without -I/-E)\n" % allocator)
        sys.exit(3)


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def strings(rng):
    # Strings from a few bytes to several MiB, built and sliced.
    out = []
    for i in range(400):
        n = rng.choice([1, 7, 15, 16, 17, 100, 255, 1000, 4095, 4096, 70000])
        out.append(("%05d" % i) * (n // 5 + 1))
    big = "".join(out)                                  # ~ several MiB
    parts = [big[i:i + 65536] for i in range(0, len(big), 65536)]
    huge = "|".join(parts) * 3                           # ~ 3x bigger
    words = huge.split("0")
    return [len(big), len(huge), len(words), digest(sorted(set(words))[:50]),
            hashlib.sha256(huge.encode()).hexdigest()[:16]]


def containers(rng):
    # Many small dicts/lists/tuples/sets, mutated and freed.
    table = {}
    for i in range(120000):
        k = rng.randrange(30000)
        if k in table and rng.random() < 0.3:
            del table[k]
        else:
            table.setdefault(k, []).append((i, str(i) * (i % 7), {"v": i}))
    nested = [{"id": k, "n": len(v), "s": sum(t[0] for t in v)} for k, v in table.items()]
    nested.sort(key=lambda d: (-d["n"], d["id"]))
    sets = [frozenset(range(i % 50, i % 50 + i % 13)) for i in range(20000)]
    return [len(table), digest(nested[:200]), len(set(sets))]


def json_roundtrip(rng):
    doc = {
        "rows": [
            {"id": i, "name": "row-%d" % i, "tags": ["t%d" % (i % j) for j in range(1, 8)],
             "vals": [rng.random() for _ in range(i % 20)], "nested": {"a": {"b": [i] * (i % 5)}}}
            for i in range(30000)
        ]
    }
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    again = json.dumps(back, sort_keys=True)
    assert text == again
    pretty = json.dumps(back, indent=2, sort_keys=True)
    return [len(text), len(pretty), hashlib.sha256(again.encode()).hexdigest()[:16]]


def sorting(rng):
    nums = [rng.randrange(10**9) for _ in range(300000)]
    strs = ["%x-%d" % (n, n % 977) for n in nums]
    nums.sort()
    strs.sort(key=lambda s: (len(s), s))
    return [digest(nums[::1000]), digest(strs[::1000])]


def bytearrays(rng):
    # Grown incrementally: exercises realloc from tiny to many MiB.
    results = []
    for step in (1, 13, 4096, 65537):
        buf = bytearray()
        h = hashlib.sha256()
        total = 0
        target = min(12 * 1024 * 1024, step * 40000)
        while total < target:
            chunk = bytes((total + j) & 0xFF for j in range(min(step, 256))) * max(1, step // 256)
            buf += chunk
            total += len(chunk)
            if len(buf) > 3 * 1024 * 1024:          # shrink again sometimes
                h.update(buf)
                del buf[: len(buf) // 2]
        h.update(buf)
        results.append((step, total, len(buf), h.hexdigest()[:16]))
    b = bytearray(8 * 1024 * 1024)
    for i in range(0, len(b), 4093):
        b[i] = i & 0xFF
    results.append(hashlib.sha256(b).hexdigest()[:16])
    return results


def threaded():
    # Several threads allocating at once; results collected by index.
    out = [None] * 6

    def work(idx):
        rng = random.Random(1000 + idx)
        items = []
        for i in range(40000):
            items.append({"k": rng.randrange(1000), "s": "x" * rng.randrange(1, 300)})
            if len(items) > 5000:
                items = items[len(items) // 3:]
        blob = bytearray()
        for i in range(2000):
            blob += bytes([i & 0xFF]) * rng.randrange(1, 2000)
        out[idx] = (len(items), sum(len(d["s"]) for d in items), len(blob),
                    hashlib.sha256(bytes(blob)).hexdigest()[:16])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(out))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main():
    if sys.argv[1:]:
        sys.stderr.write("usage: python_workload.py (no arguments)\n")
        sys.exit(2)
    expect = os.environ.get("PRELOAD_TEST_EXPECT_MAPPED")
    if expect:
        check_mapped(expect)

    rng = random.Random(20240607)
    total = hashlib.sha256()
    for name, fn in [("strings", lambda: strings(rng)), ("containers", lambda: containers(rng)),
                     ("json", lambda: json_roundtrip(rng)), ("sorting", lambda: sorting(rng)),
                     ("bytearrays", lambda: bytearrays(rng)), ("threads", threaded)]:
        res = fn()
        line = "%s %s" % (name, res)
        total.update(line.encode())
        print(line)
    print("digest", total.hexdigest())


if __name__ == "__main__":
    main()
