// Size classes: generated at compile time from three rules.
//
//  1. Every class size is a multiple of 16 (malloc's alignment on x86-64).
//  2. Up to 256 bytes, classes are 16 bytes apart; above, there are 4
//     classes per doubling (base * 5/4, 6/4, 7/4, 2), so neighbours are at
//     most 25% apart and the internal waste of a small object is below 20%
//     of its size. From 1 KiB up, each doubling gets a fifth class at
//     base * 9/8: sizes just above a power of two (a 4 KiB page and its
//     header, a 1 KiB buffer and its length) are among the most common
//     requests, and the 5/4 class wastes a fifth of them. sqlite3's page
//     cache asks for 4096 + ~270 bytes: 4608 instead of 5120 cut its peak
//     RSS from 94.3 to 85.2 MiB. Eight classes per doubling instead gave
//     the same there but cost glibc-thread +8% and mleak +19% (more
//     partly used spans, one set per class); one more class per doubling
//     costs mleak ~0.3 MiB and nothing measurable elsewhere.
//     Classes 16 bytes apart go up to 256 (tcmalloc's spacing there), not
//     128: a 200-byte object takes 208 bytes, not 224, which is what lets
//     frag's refill fit into the holes of mixed spans (alloc/middle/
//     mixed.h; peak 348 -> 331 MiB with the pool, glibc 329); python3,
//     sqlite3, g++ and the workloads' RSS and speed did not move.
//  3. Four classes sit just above a power of two, where the regular
//     classes waste most: 1 KiB, 2 KiB and 4 KiB plus 16 bytes (a buffer
//     and its length: sqlite3 asks for 1,032 bytes, which went to 1,152),
//     and 4 KiB plus 288 bytes (a page and its bookkeeping:
//     sqlite3's page cache asks for 4,368 bytes per 4 KiB page, which went
//     to 4,608). Those two sizes are 99% of sqlite3's live bytes at its
//     peak; glibc rounds them by 16 bytes, and every regular spacing
//     (jemalloc, tcmalloc, mimalloc) leaves them 5-12% over.
//  4. Small objects go up to kMaxSmall (64 KiB); larger ones are "large"
//     (alloc/large; up to 1 MiB a free page-heap block when there is one).
//     With classes up to 256 KiB, what their thread caches, transfer
//     caches and spans of several objects held could serve no other size:
//     g++'s peak RSS fell from 320.3 to 318.8 MiB (glibc 314.6) when they
//     went, python3's from 52.5 to 51.3 and realloc-growth's from 263 to
//     260, throughput unchanged (3 interleaved reps).
//
// For each class the generator also picks the span order and the batch
// size moved between thread caches and central lists. The span is the
// smallest buddy block whose tail waste is at most 1/8 and that holds at
// least 8 objects or is at least 64 KiB; from 1 KiB to 16 KiB it must also
// keep the resident waste under 1/64, counting only the pages the objects
// touch (a page past the last object is never written, so costs no RSS).
// That gives 1,040-byte objects 64 KiB spans of 63 (1,040.25 resident
// bytes each; 1,092 in 16 KiB spans of 15, and 1,057 with 1/32) and
// 4,384-byte ones 64 KiB spans whose 16th page stays untouched (4,389
// bytes each). sqlite3's peak: 79.4 MiB with such classes and the 1/8
// rule alone (session 8), 78.5 with 1/32, 78.2 with 1/64 (glibc 78.2).
//
// Size to class is one table lookup: sizes up to 8 KiB index a table in
// steps of 16, larger ones a table in steps of 128 (every class above
// 8 KiB is a multiple of 128). Class 0 is reserved: in the page map it
// means "not a small object".
#pragma once

#include <array>

#include "alloc/base.h"

namespace strata {

inline constexpr size_t kMaxSmall = 64 * 1024;
inline constexpr size_t kMaxSmallStep16 = 8192;
// The most objects moved between a thread cache and a central list at once.
inline constexpr size_t kMaxBatch = 32;
// Free objects of this size and more have the pages inside them given
// back while the purger's growth watch is eager (CentralList::
// ReleaseInsideFreeObjects; thread caches then give objects above 1 KiB
// back to their spans: ThreadCache::CollectIdle).
inline constexpr size_t kReleaseInsideFrom = 8 << 10;

struct ClassInfo {
  uint32_t size;      // object size in bytes
  uint32_t objects;   // objects per span
  uint8_t order;      // span order (span = 2^order pages)
  uint8_t batch;      // objects per transfer between thread cache and central
};

namespace sizeclass_detail {

// Doublings (base, 2 * base] from this base up also get a class at base * 9/8.
inline constexpr size_t kNineEighthsFrom = 1024;
// Classes are 16 bytes apart up to this size.
inline constexpr size_t kStep16Up = 256;
// Doublings from 1 KiB up to this base also get a class at base + 16.
inline constexpr size_t kPlusHeaderUpTo = 4096;
// A 4 KiB page and up to 288 bytes of bookkeeping.
inline constexpr size_t kPageAndHeader = kPageSize + 288;
inline constexpr size_t kMaxPerDoubling = 7;

// The class sizes above kStep16Up in (base, 2 * base], ascending; returns
// how many.
constexpr size_t DoublingSizes(size_t base, size_t (&out)[kMaxPerDoubling]) {
  size_t n = 0;
  if (base >= kNineEighthsFrom && base <= kPlusHeaderUpTo) out[n++] = base + 16;
  if (base < kPageAndHeader && kPageAndHeader <= 2 * base) out[n++] = kPageAndHeader;
  if (base >= kNineEighthsFrom) out[n++] = base + base / 8;
  for (size_t q = 1; q <= 4; ++q) out[n++] = base + base / 4 * q;
  return n;
}

constexpr size_t CountClasses() {
  size_t n = 1;  // class 0
  for (size_t s = 16; s <= kStep16Up; s += 16) ++n;
  for (size_t base = kStep16Up; base < kMaxSmall; base *= 2) {
    size_t sizes[kMaxPerDoubling] = {};
    n += DoublingSizes(base, sizes);
  }
  return n;
}

}  // namespace sizeclass_detail

inline constexpr size_t kNumClasses = sizeclass_detail::CountClasses();

namespace sizeclass_detail {

// Sizes in (1 KiB, 16 KiB] also bound the waste in the pages they touch.
inline constexpr size_t kResidentRuleFrom = 1024;
inline constexpr size_t kResidentRuleUpTo = 16 * 1024;

// True when a span of `span` bytes suits objects of `size` bytes (the span
// rules above).
constexpr bool SpanFits(size_t size, size_t span) {
  if (span < size) return false;
  const size_t objs = span / size;
  const size_t used = objs * size;
  const bool waste_ok = (span - used) * 8 <= span;
  const bool big_enough = objs >= 8 || span >= 64 * 1024;
  if (!waste_ok || !big_enough) return false;
  if (size <= kResidentRuleFrom || size > kResidentRuleUpTo) return true;
  const size_t touched = (used + kPageSize - 1) / kPageSize * kPageSize;
  return (touched - used) * 64 <= touched;
}

constexpr ClassInfo MakeInfo(size_t size) {
  ClassInfo c{};
  c.size = uint32_t(size);
  unsigned k = 0;
  while (k < kMaxOrder && !SpanFits(size, kPageSize << k)) ++k;
  c.order = uint8_t(k);
  c.objects = uint32_t((kPageSize << k) / size);
  size_t batch = (64 * 1024) / size;
  if (batch < 1) batch = 1;
  if (batch > kMaxBatch) batch = kMaxBatch;
  c.batch = uint8_t(batch);
  return c;
}

constexpr std::array<ClassInfo, kNumClasses> MakeClasses() {
  std::array<ClassInfo, kNumClasses> t{};
  size_t i = 1;
  for (size_t s = 16; s <= kStep16Up; s += 16) t[i++] = MakeInfo(s);
  for (size_t base = kStep16Up; base < kMaxSmall; base *= 2) {
    size_t sizes[kMaxPerDoubling] = {};
    const size_t n = DoublingSizes(base, sizes);
    for (size_t k = 0; k < n; ++k) t[i++] = MakeInfo(sizes[k]);
  }
  return t;
}

// inline: one copy in the library (as a plain constexpr, each translation
// unit had its own).
inline constexpr std::array<ClassInfo, kNumClasses> kInfo = MakeClasses();

template <size_t kStep, size_t kMax>
constexpr std::array<uint8_t, kMax / kStep + 1> MakeLookup() {
  std::array<uint8_t, kMax / kStep + 1> t{};
  size_t cls = 1;
  for (size_t i = 0; i < t.size(); ++i) {
    size_t size = i * kStep;  // the largest size that maps to index i
    while (kInfo[cls].size < size) ++cls;
    t[i] = uint8_t(cls);
  }
  return t;
}

}  // namespace sizeclass_detail

inline constexpr auto kSmallLookup = sizeclass_detail::MakeLookup<16, kMaxSmallStep16>();
inline constexpr auto kBigLookup = sizeclass_detail::MakeLookup<128, kMaxSmall>();

STRATA_INLINE const ClassInfo& Info(size_t cls) { return sizeclass_detail::kInfo[cls]; }

// What free() needs to tell an object's start from any other address in a
// span, without a division: spans are buddy blocks aligned to their own
// size, so a pointer's offset in its span is `p & span_mask`, and an offset
// n is a multiple of the class size d exactly when n * c < c for
// c = ceil(2^64 / d) (Lemire's divisibility test; n < 2^32 here).
// An all-zero check passes no pointer.
struct ObjectCheck {
  uint64_t span_mask;
  uint64_t magic;

  STRATA_INLINE bool IsObjectStart(uintptr_t p) const { return (p & span_mask) * magic < magic; }
};

namespace sizeclass_detail {
constexpr std::array<ObjectCheck, kNumClasses> MakeChecks() {
  std::array<ObjectCheck, kNumClasses> t{};
  for (size_t c = 1; c < kNumClasses; ++c) {
    t[c].span_mask = (kPageSize << kInfo[c].order) - 1;
    t[c].magic = UINT64_MAX / kInfo[c].size + 1;
  }
  return t;
}
inline constexpr std::array<ObjectCheck, kNumClasses> kChecks = MakeChecks();
}  // namespace sizeclass_detail

STRATA_INLINE const ObjectCheck& ClassCheck(size_t cls) { return sizeclass_detail::kChecks[cls]; }
// True when `p` (inside a span of class `cls`) is the start of an object.
STRATA_INLINE bool IsObjectStart(uintptr_t p, size_t cls) { return ClassCheck(cls).IsObjectStart(p); }
constexpr const std::array<ClassInfo, kNumClasses>& AllClasses() { return sizeclass_detail::kInfo; }

// The two halves of SizeToClass, for callers that branch on the size
// themselves (the malloc fast path). Size 0 gets the smallest class.
STRATA_INLINE size_t ClassUpTo8K(size_t size) { return kSmallLookup[(size + 15) >> 4]; }  // size <= kMaxSmallStep16
STRATA_INLINE size_t ClassAbove8K(size_t size) { return kBigLookup[(size + 127) >> 7]; }  // size <= kMaxSmall

// Requires size <= kMaxSmall.
STRATA_INLINE size_t SizeToClass(size_t size) {
  return size <= kMaxSmallStep16 ? ClassUpTo8K(size) : ClassAbove8K(size);
}

static_assert(kNumClasses < 256, "class must fit in a byte of the page map");
static_assert(sizeclass_detail::kInfo[kNumClasses - 1].size == kMaxSmall);

}  // namespace strata
