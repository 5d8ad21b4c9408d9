"""An object-heavy Python program, run by `tools/strata bench` as a real-world
workload: /usr/bin/python3 with PYTHONMALLOC=malloc, so every object (not only
the large ones) comes from the allocator under test.

    python3 py_objects.py [SCALE]

It builds and drops many small objects of mixed kinds: dicts, lists, tuples,
strings, instances with __dict__ and with __slots__, and round-trips them
through json; every round frees most of what it made. Prints one line of
key=value pairs, last, like the other workloads. Deterministic (fixed seed).
"""

import json
import random
import sys
import time


class Node:
    def __init__(self, key, value, children=None):
        self.key = key
        self.value = value
        self.children = children or []


class Point:
    __slots__ = ("x", "y", "label")

    def __init__(self, x, y, label):
        self.x = x
        self.y = y
        self.label = label


def make_tree(rng, depth, width):
    if depth == 0:
        return Node(rng.random(), "leaf-%d" % rng.randrange(10**6))
    return Node(rng.random(), str(depth) * (depth + 3),
                [make_tree(rng, depth - 1, width) for _ in range(width)])


def tree_sum(node):
    return node.key + sum(tree_sum(c) for c in node.children)


def one_round(rng, n):
    records = []
    for i in range(n):
        records.append({
            "id": i,
            "name": "user-%06d" % rng.randrange(10**6),
            "tags": [("t%d" % rng.randrange(50)) for _ in range(rng.randrange(1, 6))],
            "pos": (rng.random(), rng.random()),
        })
    index = {}
    for r in records:
        for t in r["tags"]:
            index.setdefault(t, []).append(r["id"])
    text = json.dumps(records)
    back = json.loads(text)
    points = [Point(r["pos"][0], r["pos"][1], r["name"].upper()) for r in back]
    points.sort(key=lambda p: (p.label, p.x))
    words = " ".join(p.label for p in points[: n // 2]).split()
    counts = {}
    for w in words:
        counts[w[:7]] = counts.get(w[:7], 0) + 1
    tree = make_tree(rng, 6, 4)
    checksum = len(text) + len(index) + len(counts) + tree_sum(tree)
    # Keep a little of each round alive, as a long-running program would.
    survivor = records[:: max(1, n // 50)]
    del records, index, text, back, points, words, counts, tree
    return checksum, survivor


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rng = random.Random(12345)
    start = time.perf_counter()
    kept = []
    checksum = 0.0
    for _ in range(scale):
        c, survivor = one_round(rng, 20000)
        checksum += c
        kept.append(survivor)
    elapsed = time.perf_counter() - start
    print("time_s=%.4f rounds=%d kept=%d checksum=%.3f" %
          (elapsed, scale, sum(len(k) for k in kept), checksum))


if __name__ == "__main__":
    main()
