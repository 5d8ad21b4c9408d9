#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/ (run from anywhere).

Each seed is a small hand-made operation sequence in the input format that
the fuzz target decodes (see the comment at the top of fuzz_page_heap.cc and
fuzz_allocator.cc); libFuzzer mutates from there. Deterministic: running it
again rewrites the same files.
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


# ---- fuzz_page_heap ----
# header: cfg (bit0 brk, bits1-3 decay index, bit4 lazy), region, brk size
# ops: op%12 in 0..3 alloc(order byte, class byte), 4..6 free(u16),
#      7 idle(u16 ms), 8 release all, 9 fail(u8: <64 -> maps_left = v%4),
#      10 unmap free chunks, 11 inside(u8 n%8): the next n steps run inside
#      madvise calls, each an alloc (odd byte, order byte) or a free (even
#      byte, u16)
def ph_alloc(order_byte, cls_byte):
    return [0, order_byte, cls_byte]


def ph_free(i):
    return [4] + list(struct.pack("<H", i))


def ph_idle(ms):
    return [7] + list(struct.pack("<H", ms))


PH_RELEASE_ALL = [8]


def ph_fail(v):
    return [9, v]


def page_heap_seeds():
    rng = random.Random(1)
    # Mixed orders, then free half, wait, free the rest.
    ops = []
    for _ in range(40):
        ops += ph_alloc(rng.randrange(256), rng.randrange(256))
    for _ in range(20):
        ops += ph_free(rng.randrange(1000))
    ops += ph_idle(1500)
    for _ in range(20):
        ops += ph_free(0)
    write("fuzz_page_heap", "mixed_decay1000", [4 << 1, 7, 0] + ops)

    # brk source with immediate decay: chunks come and go from the break.
    ops = []
    for _ in range(3):
        ops += ph_alloc(230, 1) * 6  # whole-chunk-ish orders
        ops += ph_free(0) * 6
        ops += ph_idle(100)
    write("fuzz_page_heap", "brk_decay0", [1 | (0 << 1), 3, 2] + ops)

    # Map failures during growth and splits (out of metadata).
    ops = ph_alloc(10, 0) + ph_fail(0) + ph_alloc(1, 0) * 8 + ph_alloc(240, 1) * 3
    ops += ph_fail(2) + ph_alloc(0, 2) * 16 + ph_fail(200) + ph_alloc(0, 2) * 4
    ops += ph_free(3) * 10
    write("fuzz_page_heap", "map_failures", [2 << 1, 1, 0] + ops)

    # Lazy release and release-all between frees; small region runs out.
    ops = []
    for i in range(30):
        ops += ph_alloc(160 + i % 60, i)
        if i % 5 == 4:
            ops += ph_free(i * 7) + PH_RELEASE_ALL
    write("fuzz_page_heap", "lazy_release_all", [(1 << 4) | (3 << 1), 0, 0] + ops)

    # Small pages only, many of them: deep splits and merges.
    ops = []
    for i in range(64):
        ops += ph_alloc(i % 4, 2 * i)
    for i in range(64):
        ops += ph_free(i * 37)
    write("fuzz_page_heap", "small_orders", [5 << 1, 15, 0] + ops)

    # Whole free chunks unmapped between bursts (what an allocation
    # failure does), mmap and brk chunks mixed.
    ops = []
    for i in range(4):
        ops += ph_alloc(240, 1) * 3 + ph_alloc(i, 2 * i) * 5
        ops += ph_free(0) * 4 + [10]
        ops += ph_free(1) * 4 + [10]
    write("fuzz_page_heap", "unmap_free_chunks", [1 | (4 << 1), 2, 1] + ops)

    # Allocs and frees while the heap gives pages back with its lock
    # dropped: some take back blocks still waiting for their madvise.
    ops = []
    for i in range(24):
        ops += ph_alloc(150 + i % 70, 2 * i)
    for i in range(0, 24, 2):
        ops += ph_free(i)
    ops += [11, 6]
    inside = []
    for i in range(6):
        inside += [1, 200 + i] if i % 2 == 0 else [0] + list(struct.pack("<H", i * 3))
    ops += PH_RELEASE_ALL + inside + ph_free(5) * 4 + ph_idle(2000)
    write("fuzz_page_heap", "inside_release", [4 << 1, 4, 0] + ops)


# ---- fuzz_allocator ----
# ops: op%16, slot byte, args. 0..2 malloc(size), 3 calloc(size, n byte),
# 4 calloc overflow(u16), 5..6 realloc(size), 7 realloc 0, 8 aligned(align
# byte, size), 9..11 free, 12 free_sized(u16), 13 usable_size,
# 14 release(byte < 16), 15 stats json(byte < 32)
# size: kind byte (kind%16) then its bytes (see DecodeSize).
def sz_tiny(n):
    return [0, n]


def sz_small(n):
    return [2] + list(struct.pack("<H", n))


def sz_16k(n):
    return [6] + list(struct.pack("<H", n))


def sz_pages(pages, delta):
    return [8, pages - 1, delta + 1]


def sz_threshold(d):
    return [11, d]


def sz_large(n):
    return [12] + list(struct.pack("<I", n)[:3])


def sz_mib(mib, extra):
    return [13, mib] + list(struct.pack("<H", extra))


def sz_pow2(k):
    return [14, k]


def a_malloc(slot, size):
    return [0, slot] + size


def a_calloc(slot, size, n):
    return [3, slot] + size + [n]


def a_calloc_overflow(v):
    return [4, 0] + list(struct.pack("<H", v))


def a_realloc(slot, size):
    return [5, slot] + size


def a_realloc0(slot):
    return [7, slot]


def a_aligned(slot, k, size):
    return [8, slot, k] + size


def a_free(slot):
    return [9, slot]


def a_free_sized(slot, extra):
    return [12, slot] + list(struct.pack("<H", extra))


def a_usable(slot):
    return [13, slot]


def a_release():
    return [14, 0, 0]


def a_stats():
    return [15, 0, 0]


def allocator_seeds():
    ops = []
    for i in range(32):
        ops += a_malloc(i, sz_tiny(i) if i % 2 else sz_small(i * 37))
    for i in range(0, 32, 3):
        ops += a_free(i)
    for i in range(1, 32, 3):
        ops += a_free_sized(i, i)
    write("fuzz_allocator", "small_malloc_free", ops)

    ops = a_malloc(1, sz_tiny(5))
    for s in (sz_small(100), sz_small(1000), sz_16k(9000), sz_pages(16, 1), sz_threshold(63),
              sz_threshold(200), sz_large(400000), sz_mib(2, 5), sz_small(10), sz_mib(1, 0)):
        ops += a_realloc(1, s) + a_usable(1)
    ops += a_realloc0(1) + a_realloc(2, sz_small(50))
    write("fuzz_allocator", "realloc_chain", ops)

    ops = []
    for k in range(21):
        ops += a_aligned(k, k, sz_tiny(k) if k % 3 == 0 else sz_small(k * 100) if k % 3 == 1 else sz_pages(k % 8 + 1, 1))
    for k in range(0, 21, 2):
        ops += a_free(k)
    ops += a_aligned(40, 20, sz_mib(1, 0)) + a_aligned(41, 12, sz_threshold(100)) + a_free(41)
    write("fuzz_allocator", "aligned", ops)

    ops = []
    for i in range(10):
        ops += a_calloc(i, sz_16k(i * 1500), i)
        ops += a_calloc_overflow(i * 4099)
    ops += a_calloc(20, sz_large(100000), 3) + a_free(20) + a_calloc(21, sz_large(100000), 3)
    write("fuzz_allocator", "calloc", ops)

    ops = []
    for i in range(6):
        ops += a_malloc(i, sz_mib(i % 5, i * 1000))
        ops += a_malloc(10 + i, sz_pow2(12 + i))
    ops += a_free(0) + a_free(1) + a_release() + a_stats()
    ops += a_malloc(0, sz_mib(3, 0)) + a_free_sized(0, 100) + a_stats()
    write("fuzz_allocator", "large_release_stats", ops)


if __name__ == "__main__":
    page_heap_seeds()
    allocator_seeds()
