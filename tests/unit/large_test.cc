// Large objects: LargeHeap (alloc/large/large.h) on a FakeOs, then the
// same behaviour through the strata_* API on the real OS.
#include <errno.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <memory>
#include <vector>

#include "alloc/large/large.h"
#include "alloc/middle/size_class.h"
#include "alloc/stats/stats.h"
#include "strata/strata.h"
#include "tests/unit/fake_os.h"
#include "tests/unit/pattern.h"

namespace strata {
namespace {

using strata_test::FakeOs;
using strata_test::FirstMismatch;
using strata_test::Fill;
using strata_test::Intact;

constexpr size_t kMiB = size_t{1} << 20;

struct LargeTest : ::testing::Test {
  // Decay 0: freed mappings are unmapped at once (no reuse cache); the
  // cache has its own tests below.
  LargeTest() : os(size_t{1} << 30), map(new PageMap<FakeOs>(&os)), arena(&os) {
    large.Bind(&os, map.get(), &arena);
    large.set_decay_ms(0);
  }
  Span* SpanAt(void* p) { return map->SpanOf(uintptr_t(p)); }
  // For tests that count Maps. The fake OS's region lies at a random
  // address across two GiB leaves of the page map; a mapping that happens
  // to be the first in the second leaf would Map that leaf too (about one
  // run in 300). Every leaf then exists before the test goes on.
  void MakeEveryLeaf() { ASSERT_TRUE(map->Ensure(os.region_begin(), os.region_bytes())); }

  FakeOs os;
  std::unique_ptr<PageMap<FakeOs>> map;
  MetaArena<FakeOs> arena;
  LargeHeap<FakeOs> large;
};

TEST_F(LargeTest, AllocMapsPageRoundedAndRecordsTheFirstPage) {
  const size_t size = kMaxSmall + 1;
  void* p = large.Alloc(size, 1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(uintptr_t(p) % kPageSize, 0u);
  Span* s = SpanAt(p);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->state, SpanState::kLarge);
  EXPECT_EQ(s->start, uintptr_t(p));
  EXPECT_EQ(s->bytes, AlignUp(size, kPageSize));
  EXPECT_EQ(map->ClassOf(uintptr_t(p)), 0u) << "large frees take the slow path";
  EXPECT_EQ(SpanAt(static_cast<char*>(p) + kPageSize), nullptr) << "only the first page is recorded";
  LargeStats st = large.Stats();
  EXPECT_EQ(st.allocs, 1u);
  EXPECT_EQ(st.live, 1u);
  EXPECT_EQ(st.live_bytes, s->bytes);
  large.Free(s, os.now_ms);
}

TEST_F(LargeTest, FreeUnmapsAtOnce) {
  void* p = large.Alloc(3 * kMiB + 5, kPageSize);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 3 * kMiB + 5);
  size_t unmaps = os.unmaps;
  large.Free(SpanAt(p), os.now_ms);
  EXPECT_EQ(os.unmaps, unmaps + 1);
  EXPECT_EQ(os.last_unmap, p);
  EXPECT_EQ(os.last_unmap_bytes, 3 * kMiB + kPageSize);
  EXPECT_EQ(os.bad_unmaps, 0u);
  EXPECT_EQ(SpanAt(p), nullptr) << "a freed large object is no longer recognised";
  LargeStats st = large.Stats();
  EXPECT_EQ(st.frees, 1u);
  EXPECT_EQ(st.live, 0u);
  EXPECT_EQ(st.live_bytes, 0u);
  EXPECT_EQ(st.peak_live_bytes, 3 * kMiB + kPageSize);
}

TEST_F(LargeTest, RecordsAreRecycled) {
  for (int i = 0; i < 100; ++i) {
    void* p = large.Alloc(kMaxSmall + 1000, kPageSize);
    ASSERT_NE(p, nullptr);
    large.Free(SpanAt(p), os.now_ms);
  }
  EXPECT_EQ(arena.used_bytes(), AlignUp(sizeof(Span), 64)) << "one record, reused";
  // The fake OS's range is not aligned to a leaf's GiB: the mappings may
  // have needed two leaves.
  const size_t leaves = map->leaf_bytes() / sizeof(PageMap<FakeOs>::Leaf);
  EXPECT_GE(leaves, 1u);
  EXPECT_EQ(os.live_mappings(), leaves + 1) << "the page-map leaves and the arena block: no object mapping left";
}

class LargeRealloc : public LargeTest, public ::testing::WithParamInterface<bool> {};

TEST_P(LargeRealloc, GrowthFrom1To64MiBKeepsContents) {
  os.remap_moves = GetParam();
  size_t size = kMiB;
  void* p = large.Alloc(size, kPageSize);
  ASSERT_NE(p, nullptr);
  Fill(p, size, 1);
  Span* s = SpanAt(p);
  int moved = 0;
  while (size < 64 * kMiB) {
    size_t next = size * 2 + (size < 32 * kMiB ? 12345 : 0);
    if (next > 64 * kMiB) next = 64 * kMiB;
    void* q = large.Realloc(s, next);
    ASSERT_NE(q, nullptr) << next;
    EXPECT_EQ(SpanAt(q), s);
    EXPECT_EQ(s->start, uintptr_t(q));
    // Growth reserves up to 50% more address space than asked.
    EXPECT_GE(s->bytes, AlignUp(next, kPageSize));
    EXPECT_LE(s->bytes, AlignUp(next, kPageSize) + AlignUp(size, kPageSize) / 2 + kPageSize);
    if (q != p) {
      ++moved;
      EXPECT_EQ(SpanAt(p), nullptr) << "the old address is forgotten";
    }
    ASSERT_EQ(FirstMismatch(q, size, 1), SIZE_MAX) << size << " -> " << next;
    // Extend the pattern over the new part.
    Fill(q, next, 1);
    p = q;
    size = next;
  }
  if (GetParam()) {
    EXPECT_GT(moved, 0);
  }
  EXPECT_EQ(large.Stats().live_bytes, s->bytes);
  EXPECT_GE(s->bytes, 64 * kMiB);
  EXPECT_EQ(os.bad_unmaps, 0u);
  large.Free(s, os.now_ms);
  EXPECT_EQ(large.Stats().live_bytes, 0u);
}

TEST_P(LargeRealloc, ShrinkKeepsContentsAndAddress) {
  os.remap_moves = GetParam();
  size_t size = 64 * kMiB;
  void* p = large.Alloc(size, kPageSize);
  ASSERT_NE(p, nullptr);
  Fill(p, size, 2);
  Span* s = SpanAt(p);
  while (size > kMiB) {
    size_t next = size / 2 - 333;
    void* q = large.Realloc(s, next);
    ASSERT_EQ(q, p) << "shrinking keeps the address";
    EXPECT_EQ(s->bytes, AlignUp(next, kPageSize));
    ASSERT_TRUE(Intact(q, next, 2)) << next;
    size = next;
  }
  // Down to a small size: still a large object, page-rounded.
  void* q = large.Realloc(s, 100);
  ASSERT_EQ(q, p);
  EXPECT_EQ(s->bytes, kPageSize);
  EXPECT_TRUE(Intact(q, 100, 2));
  large.Free(s, os.now_ms);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

INSTANTIATE_TEST_SUITE_P(InPlaceOrMoving, LargeRealloc, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Moving") : std::string("InPlace");
                         });

TEST_F(LargeTest, ReallocToTheSamePagesDoesNotRemap) {
  void* p = large.Alloc(kMiB + 1, kPageSize);
  Span* s = SpanAt(p);
  size_t remaps = os.remaps;
  EXPECT_EQ(large.Realloc(s, kMiB + 100), p);
  EXPECT_EQ(large.Realloc(s, kMiB + kPageSize), p);
  EXPECT_EQ(os.remaps, remaps);
  large.Free(s, os.now_ms);
}

TEST_F(LargeTest, FailedReallocLeavesTheObjectIntact) {
  void* p = large.Alloc(2 * kMiB, kPageSize);
  Span* s = SpanAt(p);
  Fill(p, 2 * kMiB, 3);
  os.remaps_fail = true;
  EXPECT_EQ(large.Realloc(s, 8 * kMiB), nullptr);
  EXPECT_EQ(SpanAt(p), s);
  EXPECT_EQ(s->bytes, 2 * kMiB);
  EXPECT_TRUE(Intact(p, 2 * kMiB, 3));
  EXPECT_EQ(large.Stats().live_bytes, 2 * kMiB);
  EXPECT_EQ(large.Realloc(s, SIZE_MAX - 5), nullptr) << "absurd sizes fail early";
  EXPECT_EQ(s->bytes, 2 * kMiB);
  large.Free(s, os.now_ms);
}

// A mapping that moves: its old address's page-map entry is cleared before
// the mremap frees the range (another thread may map it and record itself
// there at once; clearing afterwards could erase that record), and it is
// restored when the move fails.
TEST_F(LargeTest, AMovingMappingsOldEntryIsClearedBeforeTheRangeIsFreed) {
  void* p = large.Alloc(2 * kMiB, kPageSize);
  Span* s = SpanAt(p);
  Fill(p, 2 * kMiB, 4);
  os.remap_moves = true;
  Span* seen = s;
  os.on_remap = [&](void* old) { seen = SpanAt(old); };
  void* q = large.Realloc(s, 8 * kMiB);
  os.on_remap = nullptr;
  ASSERT_NE(q, nullptr);
  ASSERT_NE(q, p);
  EXPECT_EQ(seen, nullptr) << "the old address still named the span while its range was freed";
  EXPECT_EQ(SpanAt(q), s);
  EXPECT_EQ(SpanAt(p), nullptr);
  EXPECT_TRUE(Intact(q, 2 * kMiB, 4));
  os.remaps_fail = true;
  EXPECT_EQ(large.Realloc(s, 32 * kMiB), nullptr);
  EXPECT_EQ(SpanAt(q), s) << "a failed move leaves it recorded where it is";
  os.remaps_fail = false;
  large.Free(s, os.now_ms);
}

// A shrink the OS refuses keeps the mapping, as a shrink of a small object
// that finds no room does: realloc returns the same block, not ENOMEM.
TEST_F(LargeTest, AShrinkTheOsRefusesKeepsTheMapping) {
  void* p = large.Alloc(8 * kMiB, kPageSize);
  Span* s = SpanAt(p);
  Fill(p, kMiB, 5);
  os.remaps_fail = true;
  EXPECT_EQ(large.Realloc(s, kMiB), p);
  EXPECT_EQ(SpanAt(p), s);
  EXPECT_EQ(s->bytes, 8 * kMiB);
  EXPECT_TRUE(Intact(p, kMiB, 5));
  EXPECT_EQ(large.Stats().live_bytes, 8 * kMiB);
  os.remaps_fail = false;
  large.Free(s, os.now_ms);
}

TEST_F(LargeTest, AbsurdSizesAndOutOfMemoryFail) {
  EXPECT_EQ(large.Alloc(SIZE_MAX - 4095, kPageSize), nullptr);
  EXPECT_EQ(large.Alloc(SIZE_MAX / 2 + 1, kPageSize), nullptr);
  os.maps_left = 0;
  EXPECT_EQ(large.Alloc(kMiB, kPageSize), nullptr);
  LargeStats st = large.Stats();
  EXPECT_EQ(st.allocs, 0u);
  EXPECT_EQ(st.live, 0u);
}

TEST_F(LargeTest, NoPageMapLeafMeansNullAndNoLeak) {
  os.maps_left = 1;  // the object, but no leaf for it
  EXPECT_EQ(large.Alloc(kMiB, kPageSize), nullptr);
  EXPECT_EQ(os.unmaps, 1u) << "the mapping goes back";
  EXPECT_EQ(os.bad_unmaps, 0u);
  EXPECT_EQ(large.Stats().live, 0u);
}

class LargeAligned : public LargeTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(LargeAligned, AlignedAndReallocKeepsContents) {
  const size_t align = GetParam();
  void* p = large.Alloc(3 * kMiB, align);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(uintptr_t(p) % align, 0u);
  Span* s = SpanAt(p);
  EXPECT_EQ(s->order, 1u) << "marked: never mremap'd with MAYMOVE";
  Fill(p, 3 * kMiB, 4);
  // Shrinking stays in place.
  ASSERT_EQ(large.Realloc(s, 2 * kMiB), p);
  EXPECT_TRUE(Intact(p, 2 * kMiB, 4));
  // Growing where the OS cannot grow in place copies.
  os.remap_moves = true;
  size_t remaps = os.remaps;
  void* q = large.Realloc(s, 9 * kMiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(os.remaps, remaps) << "no MAYMOVE remap of an aligned mapping";
  EXPECT_TRUE(Intact(q, 2 * kMiB, 4));
  EXPECT_EQ(SpanAt(q), s);
  if (q != p) {
    EXPECT_EQ(SpanAt(p), nullptr);
    EXPECT_EQ(os.last_unmap, p);
  }
  // After a move it is an ordinary mapping again, and may be remapped.
  os.remap_moves = false;
  void* r = large.Realloc(s, 10 * kMiB);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(Intact(r, 2 * kMiB, 4));
  large.Free(s, os.now_ms);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

TEST_P(LargeAligned, OutOfMemoryWhileCopyingLeavesTheObjectIntact) {
  const size_t align = GetParam();
  void* p = large.Alloc(2 * kMiB, align);
  ASSERT_NE(p, nullptr);
  Span* s = SpanAt(p);
  Fill(p, 2 * kMiB, 5);
  os.remap_moves = true;
  os.maps_left = 0;
  EXPECT_EQ(large.Realloc(s, 6 * kMiB), nullptr);
  EXPECT_EQ(SpanAt(p), s);
  EXPECT_EQ(s->bytes, 2 * kMiB);
  EXPECT_TRUE(Intact(p, 2 * kMiB, 5));
  large.Free(s, os.now_ms);
}

INSTANTIATE_TEST_SUITE_P(Alignments, LargeAligned, ::testing::Values(kMiB, 4 * kMiB, 64 * kMiB),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return std::to_string(i.param >> 20) + "MiB";
                         });

// ---- through the strata_* API, on the real OS ----

bool Mapped(const void* p) {
  // msync fails with ENOMEM on an unmapped range.
  return msync(const_cast<void*>(p), kPageSize, MS_ASYNC) == 0 || errno != ENOMEM;
}

Snapshot SnapshotNow() {
  std::unique_ptr<Snapshot> snap(new Snapshot);
  TakeSnapshot(snap.get());
  return *snap;
}

LargeStats LargeNow() { return SnapshotNow().large; }

// A large object has its own mapping, rounded to pages, or (up to 1 MiB,
// when the page heap has a free block) a whole buddy block.
TEST(LargeApi, UsableSizeIsPageRoundedOrAWholeBlock) {
  for (size_t n : {kMaxSmall + 1, kMaxSmall + 4096, size_t(300000), kMiB, 5 * kMiB + 1}) {
    void* p = strata_malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(uintptr_t(p) % kPageSize, 0u);
    const size_t usable = strata_usable_size(p);
    if (usable != AlignUp(n, kPageSize)) {
      EXPECT_LE(n, kMiB);
      EXPECT_EQ(usable, OrderFor(Pages{AlignUp(n, kPageSize) >> kPageShift}).bytes()) << n;
    }
    memset(p, 0x5a, usable);
    strata_free(p);
  }
}

// Up to 1 MiB, a large malloc takes a free block of the page heap when
// there is one, so that pages freed by small objects serve it (and its
// pages serve them once it is freed); it never grows the heap for it.
TEST(LargeApi, UpTo1MiBALargeObjectTakesAFreePageHeapBlock) {
  // Blocks of 64 pages until the heap has a free block of 128 pages or
  // more (the heap grows for them: a fresh chunk has 512 KiB-2 MiB free).
  auto has_512k_free = [](const Snapshot& s) {
    for (unsigned k = 7; k < kNumOrders; ++k) {
      if (s.pages.free_blocks[k] != 0) return true;
    }
    return false;
  };
  std::vector<void*> anchors;
  while (!has_512k_free(SnapshotNow())) {
    ASSERT_LT(anchors.size(), 64u);
    anchors.push_back(strata_aligned_alloc(kMaxSmall, kMaxSmall));
    ASSERT_NE(anchors.back(), nullptr);
  }
  const Snapshot before = SnapshotNow();
  char* p = static_cast<char*>(strata_malloc(300000));
  ASSERT_NE(p, nullptr);
  Fill(p, 300000, 11);
  const Snapshot mid = SnapshotNow();
  EXPECT_EQ(mid.large.live, before.large.live) << "no mapping of its own";
  EXPECT_EQ(mid.page_objects, before.page_objects + 1);
  EXPECT_EQ(mid.pages.mmap_bytes + mid.pages.brk_bytes, before.pages.mmap_bytes + before.pages.brk_bytes)
      << "the heap did not grow";
  EXPECT_EQ(strata_usable_size(p), size_t{512} << 10);
  // Grown within its block: the same address. Beyond it: moved, intact.
  EXPECT_EQ(strata_realloc(p, 500000), p);
  char* q = static_cast<char*>(strata_realloc(p, 900000));
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(Intact(q, 300000, 11));
  // Shrunk above 64 KiB, it stays where it is, even below half its block:
  // a smaller block would leave it no room.
  const size_t q_usable = strata_usable_size(q);
  EXPECT_EQ(strata_realloc(q, kMaxSmall + 4096), q);
  if (q_usable == kMiB) {
    EXPECT_EQ(strata_usable_size(q), q_usable) << "still its whole block";
  }
  EXPECT_TRUE(Intact(q, kMaxSmall, 11));
  // Shrunk to a small size and half its block or less, it moves into its
  // class.
  char* r = static_cast<char*>(strata_realloc(q, 1000));
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(Intact(r, 1000, 11));
  EXPECT_EQ(strata_usable_size(r), Info(SizeToClass(1000)).size);
  const Snapshot after = SnapshotNow();
  EXPECT_EQ(after.page_object_frees - before.page_object_frees, after.page_objects - before.page_objects)
      << "every block it used went back to the page heap";
  strata_free(r);
  for (void* a : anchors) strata_free(a);
}

// A page object shrunk to more than half its block stays where it is.
TEST(LargeApi, APageObjectShrunkAboveHalfItsBlockStays) {
  void* p = strata_aligned_alloc(8192, 50000);  // a 64 KiB block
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(strata_usable_size(p), kMaxSmall);
  Fill(p, 50000, 12);
  EXPECT_EQ(strata_realloc(p, kMaxSmall / 2 + 4096), p);
  void* q = strata_realloc(p, kMaxSmall / 2);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p) << "at half its block it moves";
  EXPECT_TRUE(Intact(q, kMaxSmall / 2, 12));
  strata_free(q);
}

TEST(LargeApi, FreedMappingsAreCachedThenReleased) {
  LargeStats before = LargeNow();
  void* p = strata_malloc(4 * kMiB);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 4 * kMiB);
  EXPECT_TRUE(Mapped(p));
  LargeStats mid = LargeNow();  // p may have been a cached mapping
  EXPECT_EQ(mid.live, before.live + 1);
  strata_free(p);
  LargeStats after = LargeNow();
  EXPECT_EQ(after.live, before.live);
  EXPECT_EQ(after.frees, before.frees + 1);
  EXPECT_GE(after.cached, 1u);
  EXPECT_TRUE(Mapped(p)) << "kept for reuse until the decay time";
  EXPECT_GT(strata_release(), 0u);
  EXPECT_FALSE(Mapped(p)) << "strata_release() unmaps cached mappings";
  EXPECT_EQ(LargeNow().cached, 0u);
}

TEST(LargeApi, FreeOfAHugeMappingUnmapsAtOnce) {
  const size_t size = 80 * kMiB;  // above the cache's per-mapping limit
  void* p = strata_malloc(size);
  ASSERT_NE(p, nullptr);
  memset(p, 1, kMiB);
  strata_free(p);
  EXPECT_FALSE(Mapped(p)) << "the mapping is gone";
}

TEST(LargeApi, ReallocGrowthAndShrinkKeepContents) {
  size_t size = kMiB;
  char* p = static_cast<char*>(strata_malloc(size));
  ASSERT_NE(p, nullptr);
  Fill(p, size, 7);
  for (size_t next = 2 * kMiB; next <= 64 * kMiB; next += next / 2) {
    char* q = static_cast<char*>(strata_realloc(p, next));
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(Intact(q, size, 7)) << size << " -> " << next;
    EXPECT_GE(strata_usable_size(q), next);
    Fill(q, next, 7);
    p = q;
    size = next;
  }
  while (size > kMiB) {
    size_t next = size / 3;
    char* q = static_cast<char*>(strata_realloc(p, next));
    ASSERT_EQ(q, p) << "a shrink keeps the address";
    ASSERT_TRUE(Intact(q, next, 7)) << next;
    size = next;
  }
  strata_free(p);
}

TEST(LargeApi, ReallocBetweenSmallAndLargeKeepsContents) {
  char* p = static_cast<char*>(strata_malloc(1000));
  Fill(p, 1000, 8);
  char* q = static_cast<char*>(strata_realloc(p, 3 * kMiB));
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(Intact(q, 1000, 8));
  Fill(q, 3 * kMiB, 9);
  char* r = static_cast<char*>(strata_realloc(q, 5000));
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(Intact(r, 5000, 9));
  EXPECT_GE(strata_usable_size(r), 5000u);
  strata_free(r);
}

// Shrunk to a small size, a large object moves into its class and its
// mapping waits in the cache: no mremap (every other core would flush its
// TLB) and no mapping of a few pages left per object.
TEST(LargeApi, ReallocToASmallSizeMovesIntoItsClassAndCachesTheMapping) {
  for (size_t to : {size_t(24), size_t(5000), kMaxSmall}) {
    char* p = static_cast<char*>(strata_malloc(2 * kMiB));
    ASSERT_NE(p, nullptr);
    Fill(p, 2 * kMiB, 10);
    LargeStats before = LargeNow();
    char* q = static_cast<char*>(strata_realloc(p, to));
    ASSERT_NE(q, nullptr) << to;
    EXPECT_NE(q, p) << to;
    EXPECT_TRUE(Intact(q, to, 10)) << to;
    EXPECT_EQ(strata_usable_size(q), Info(SizeToClass(to)).size) << to << ": a small object";
    LargeStats after = LargeNow();
    EXPECT_EQ(after.live, before.live - 1) << to;
    EXPECT_EQ(after.mremaps, before.mremaps) << to;
    EXPECT_EQ(after.frees, before.frees + 1) << to;
    EXPECT_GE(after.cached, 1u) << to;
    EXPECT_TRUE(Mapped(p)) << to << ": the mapping is kept for reuse";
    strata_free(q);
  }
  // Above half the mapping, a shrink stays in place (a mapping of its own:
  // above 1 MiB).
  char* p = static_cast<char*>(strata_malloc(kMiB + kMiB / 2));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(strata_realloc(p, kMiB), p);
  strata_free(p);
}

class LargeApiAligned : public ::testing::TestWithParam<size_t> {};

TEST_P(LargeApiAligned, AlignedAndReallocKeepsContents) {
  const size_t align = GetParam();
  for (size_t size : {size_t(100), align / 2 + 17, align + kPageSize}) {
    void* p = strata_aligned_alloc(align, size);
    ASSERT_NE(p, nullptr) << size;
    EXPECT_EQ(uintptr_t(p) % align, 0u) << size;
    EXPECT_GE(strata_usable_size(p), size);
    Fill(p, size, size);
    void* q = strata_realloc(p, size + size / 2 + kMiB);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(Intact(q, size, size)) << size;
    void* r = strata_realloc(q, size / 2 + 1);
    ASSERT_NE(r, nullptr);
    EXPECT_TRUE(Intact(r, size / 2 + 1, size)) << size;
    strata_free(r);
  }
}

INSTANTIATE_TEST_SUITE_P(Alignments, LargeApiAligned, ::testing::Values(kMiB, 4 * kMiB, 64 * kMiB),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return std::to_string(i.param >> 20) + "MiB";
                         });

// ---- the reuse cache of freed mappings ----

struct LargeCacheTest : LargeTest {
  void SetUp() override {
    large.set_decay_ms(1000);
    MakeEveryLeaf();  // these tests count Maps
  }
};

TEST_F(LargeCacheTest, AFreedMappingIsReusedWithoutSyscalls) {
  void* p = large.Alloc(2 * kMiB, kPageSize);
  ASSERT_NE(p, nullptr);
  Span* s = SpanAt(p);
  size_t maps = os.maps, unmaps = os.unmaps;
  large.Free(s, os.now_ms);
  EXPECT_EQ(os.unmaps, unmaps) << "kept for reuse";
  EXPECT_EQ(SpanAt(p)->state, SpanState::kLargeCached) << "a second free is refused";
  size_t dirty = 0;
  void* q = large.Alloc(2 * kMiB - 5000, kPageSize, &dirty);
  EXPECT_EQ(q, p);
  EXPECT_GE(dirty, 2 * kMiB - 5000) << "calloc must clear reused memory";
  EXPECT_EQ(os.maps, maps);
  EXPECT_EQ(os.remaps, 0u) << "within an eighth: used as it is";
  LargeStats st = large.Stats();
  EXPECT_EQ(st.cache_hits, 1u);
  EXPECT_EQ(st.cached, 0u);
  EXPECT_EQ(SpanAt(q)->state, SpanState::kLarge);
  large.Free(SpanAt(q), os.now_ms);
}

TEST_F(LargeCacheTest, AFreeThatMayNotCacheUnmapsAtOnce) {
  // The growth watch's eager spell: a cached mapping would add to a peak
  // the rest of the process is pushing up.
  void* p = large.Alloc(2 * kMiB, kPageSize);
  ASSERT_NE(p, nullptr);
  const size_t unmaps = os.unmaps;
  large.Free(SpanAt(p), os.now_ms, /*may_cache=*/false);
  EXPECT_EQ(os.unmaps, unmaps + 1);
  LargeStats st = large.Stats();
  EXPECT_EQ(st.cached, 0u);
  EXPECT_EQ(st.cached_bytes, 0u);
  EXPECT_EQ(st.live, 0u);
  EXPECT_EQ(st.frees, 1u);
}

TEST_F(LargeCacheTest, ABiggerMappingIsSplitAndTheRestStaysCached) {
  void* p = large.Alloc(8 * kMiB, kPageSize);
  memset(p, 0x77, 8 * kMiB);
  large.Free(SpanAt(p), os.now_ms);
  size_t maps = os.maps, unmaps = os.unmaps;
  size_t dirty = 0;
  void* q = large.Alloc(kMiB, kPageSize, &dirty);
  EXPECT_EQ(q, p) << "reused in place";
  EXPECT_EQ(dirty, kMiB);
  EXPECT_EQ(os.maps, maps);
  EXPECT_EQ(os.remaps, 0u);
  EXPECT_EQ(SpanAt(q)->bytes, kMiB);
  EXPECT_EQ(large.Stats().live_bytes, kMiB);
  EXPECT_EQ(large.Stats().cache_hits, 1u);
  // The other 7 MiB are a cached mapping of their own, refused by free.
  char* rest = static_cast<char*>(p) + kMiB;
  ASSERT_NE(SpanAt(rest), nullptr);
  EXPECT_EQ(SpanAt(rest)->state, SpanState::kLargeCached);
  EXPECT_EQ(SpanAt(rest)->bytes, 7 * kMiB);
  EXPECT_EQ(large.Stats().cached_bytes, 7 * kMiB);
  // ... and serve the next request, pages and all.
  dirty = 0;
  char* r = static_cast<char*>(large.Alloc(6 * kMiB + kMiB / 2, kPageSize, &dirty));  // within an eighth
  EXPECT_EQ(r, rest);
  EXPECT_EQ(dirty, 6 * kMiB + kMiB / 2);
  EXPECT_EQ(r[6 * kMiB], 0x77);
  EXPECT_EQ(os.maps, maps);
  size_t unmapped = os.unmapped_bytes;
  large.Free(SpanAt(q), os.now_ms);
  large.Free(SpanAt(r), os.now_ms);  // nothing live: the cache keeps r only
  large.Purge(UINT64_MAX);
  EXPECT_EQ(os.unmaps, unmaps + 2);
  EXPECT_EQ(os.unmapped_bytes - unmapped, 8 * kMiB);
  EXPECT_EQ(os.bad_unmaps, 0u);
  EXPECT_EQ(os.bad_splits, 0u);
}

TEST_F(LargeCacheTest, TheSmallestMappingThatHoldsTheRequestIsTaken) {
  void* keep = large.Alloc(64 * kMiB, kPageSize);  // live: room for 18 MiB in the cache
  void* a = large.Alloc(8 * kMiB, kPageSize);
  void* b = large.Alloc(3 * kMiB, kPageSize);
  void* c = large.Alloc(2 * kMiB, kPageSize);
  for (void* x : {a, b, c}) large.Free(SpanAt(x), os.now_ms);
  size_t dirty = 0;
  void* q = large.Alloc(3 * kMiB - kPageSize, kPageSize, &dirty);
  EXPECT_EQ(q, b);
  EXPECT_EQ(os.remaps, 0u);
  EXPECT_EQ(large.Stats().cached, 2u);
  large.Free(SpanAt(q), os.now_ms);
  large.Free(SpanAt(keep), os.now_ms);
  large.Purge(UINT64_MAX);
}

TEST_P(LargeRealloc, ASmallerCachedMappingIsGrownKeepingItsPages) {
  MakeEveryLeaf();  // counts Maps
  large.set_decay_ms(1000);
  os.remap_moves = GetParam();
  void* p = large.Alloc(kMiB, kPageSize);
  memset(p, 0x5A, kMiB);
  large.Free(SpanAt(p), os.now_ms);
  size_t maps = os.maps;
  size_t dirty = 0;
  unsigned char* q = static_cast<unsigned char*>(large.Alloc(4 * kMiB, kPageSize, &dirty));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(dirty, kMiB) << "only the reused part may hold old data";
  EXPECT_EQ(os.maps, maps) << "grown with mremap, not mapped anew";
  EXPECT_EQ(os.remaps, 1u);
  EXPECT_EQ(q[kMiB - 1], 0x5A) << "its pages came along";
  EXPECT_EQ(q[4 * kMiB - 1], 0) << "the new part is zero";
  Span* s = SpanAt(q);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->bytes, 4 * kMiB);
  EXPECT_EQ(s->state, SpanState::kLarge);
  if (q != p) {
    EXPECT_EQ(SpanAt(p), nullptr) << "moved: the old address is forgotten";
  }
  EXPECT_EQ(large.Stats().live_bytes, 4 * kMiB);
  large.Free(s, os.now_ms);
  large.Purge(UINT64_MAX);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

TEST_F(LargeCacheTest, AMappingThatCannotGrowIsDroppedAndANewOneMapped) {
  void* p = large.Alloc(kMiB, kPageSize);
  large.Free(SpanAt(p), os.now_ms);
  os.remaps_fail = true;
  size_t maps = os.maps, unmaps = os.unmaps;
  size_t dirty = 1;
  void* q = large.Alloc(4 * kMiB, kPageSize, &dirty);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(dirty, 0u) << "fresh from the kernel";
  EXPECT_EQ(os.maps, maps + 1);
  EXPECT_EQ(os.unmaps, unmaps + 1) << "the cached mapping is not leaked";
  EXPECT_EQ(large.Stats().cached, 0u);
  EXPECT_EQ(large.Stats().live, 1u);
  os.remaps_fail = false;
  large.Free(SpanAt(q), os.now_ms);
  large.Purge(UINT64_MAX);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

TEST_F(LargeCacheTest, IdleMappingsAreUnmappedAfterTheDecayTime) {
  void* p = large.Alloc(kMiB, kPageSize);
  EXPECT_FALSE(large.HoldsCached());
  large.Free(SpanAt(p), os.now_ms);
  EXPECT_TRUE(large.HoldsCached()) << "work left for the purger";
  size_t unmaps = os.unmaps;
  EXPECT_EQ(large.PurgeIdle(os.now_ms + 999), 0u);
  EXPECT_EQ(os.unmaps, unmaps);
  EXPECT_EQ(large.PurgeIdle(os.now_ms + 1000), kMiB);
  EXPECT_FALSE(large.HoldsCached());
  EXPECT_EQ(os.unmaps, unmaps + 1);
  EXPECT_EQ(SpanAt(p), nullptr) << "forgotten once unmapped";
  EXPECT_EQ(large.Stats().cached_bytes, 0u);
}

TEST_F(LargeCacheTest, TheCacheIsBoundedInCountAndBytes) {
  void* keep = large.Alloc(256 * kMiB, kPageSize);  // live: the byte bound is kMaxCacheBytes
  std::vector<void*> v;
  for (size_t i = 0; i < 2 * LargeHeap<FakeOs>::kMaxCacheSlots; ++i) v.push_back(large.Alloc(kMiB, kPageSize));
  for (void* p : v) large.Free(SpanAt(p), os.now_ms);
  LargeStats st = large.Stats();
  EXPECT_EQ(st.cached, LargeHeap<FakeOs>::kMaxCacheSlots);
  EXPECT_LE(st.cached_bytes, LargeHeap<FakeOs>::kMaxCacheBytes);
  // A mapping above the per-mapping limit is never cached.
  void* huge = large.Alloc(LargeHeap<FakeOs>::kMaxCachedBytes + kPageSize, kPageSize);
  size_t unmaps = os.unmaps;
  large.Free(SpanAt(huge), os.now_ms);
  EXPECT_EQ(os.unmaps, unmaps + 1);
  EXPECT_GT(large.Purge(UINT64_MAX), 0u);
  EXPECT_EQ(large.Stats().cached, 0u);
  large.Free(SpanAt(keep), os.now_ms);
  large.Purge(UINT64_MAX);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

TEST_F(LargeCacheTest, TheCacheFollowsTheLiveLargeBytes) {
  using L = LargeHeap<FakeOs>;
  std::vector<void*> v;
  for (int i = 0; i < 8; ++i) v.push_back(large.Alloc(kMiB, kPageSize));
  for (void* p : v) large.Free(SpanAt(p), os.now_ms);
  LargeStats st = large.Stats();
  EXPECT_EQ(st.live_bytes, 0u);
  EXPECT_LE(st.cached_bytes, L::kCacheFloorBytes) << "nothing live: the floor only";
  EXPECT_GE(st.cached_bytes, kMiB) << "the mapping freed last is kept";
  // A big mapping freed last is kept whatever the bound.
  void* big = large.Alloc(16 * kMiB, kPageSize);
  large.Free(SpanAt(big), os.now_ms);
  EXPECT_EQ(large.Stats().cached_bytes, 16 * kMiB);
  large.Purge(UINT64_MAX);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

// With more than one thread allocating, munmap costs a TLB shootdown on
// the other cores, and the cache keeps a higher floor.
TEST_F(LargeCacheTest, TheFloorIsHigherWhileThreadsAllocate) {
  using L = LargeHeap<FakeOs>;
  static_assert(L::kCacheFloorThreadedBytes >= 8 * kMiB);
  large.set_threaded(true);
  std::vector<void*> v;
  for (int i = 0; i < 8; ++i) v.push_back(large.Alloc(kMiB, kPageSize));
  const size_t unmaps = os.unmaps;
  for (void* p : v) large.Free(SpanAt(p), os.now_ms);
  EXPECT_EQ(os.unmaps, unmaps) << "8 MiB fit under the threaded floor";
  EXPECT_EQ(large.Stats().cached_bytes, 8 * kMiB);
  // One thread again: the next mapping cached brings the cache down to the
  // single-threaded floor.
  large.set_threaded(false);
  void* p = large.Alloc(3 * kMiB, kPageSize);  // takes no cached mapping whole: grows one
  ASSERT_NE(p, nullptr);
  large.Free(SpanAt(p), os.now_ms);
  LargeStats st = large.Stats();
  EXPECT_LE(st.cached_bytes, std::max<size_t>(L::kCacheFloorBytes, 3 * kMiB));
  EXPECT_GT(os.unmaps, unmaps);
  large.Purge(UINT64_MAX);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

// The exchange with the page heap (alloc/strata.cc): what large objects
// map anew is counted, and idle cached mappings go back oldest first.
TEST_F(LargeCacheTest, NewMappingsAndGrowthAreCountedAsFresh) {
  EXPECT_EQ(large.TakeFreshBytes(), 0u);
  void* p = large.Alloc(kMiB, kPageSize);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(large.TakeFreshBytes(), kMiB);
  EXPECT_EQ(large.TakeFreshBytes(), 0u) << "taken once";
  large.Free(SpanAt(p), os.now_ms);
  void* q = large.Alloc(kMiB, kPageSize);
  EXPECT_EQ(q, p);
  EXPECT_EQ(large.TakeFreshBytes(), 0u) << "a cached mapping reused is not fresh";
  void* r = large.Realloc(SpanAt(q), 3 * kMiB);
  ASSERT_NE(r, nullptr);
  EXPECT_GE(large.TakeFreshBytes(), 2 * kMiB) << "growth by mremap";
  large.Free(SpanAt(r), os.now_ms);
  large.Purge(UINT64_MAX);
  EXPECT_GE(large.fresh_bytes_total(), 4 * kMiB)
      << "the running total is never taken, and counts the reused mapping too";
}

TEST_F(LargeCacheTest, PurgeBytesUnmapsIdleMappingsOldestFirst) {
  large.set_threaded(true);  // a floor that keeps all three
  void* a = large.Alloc(kMiB, kPageSize);
  void* b = large.Alloc(2 * kMiB, kPageSize);
  void* c = large.Alloc(kMiB, kPageSize);
  const uint64_t t = os.now_ms;
  large.Free(SpanAt(a), t);
  large.Free(SpanAt(b), t + 1);
  large.Free(SpanAt(c), t + 10);
  ASSERT_EQ(large.Stats().cached, 3u);
  EXPECT_EQ(large.PurgeBytes(kPageSize, t + 5), kMiB) << "the oldest is enough";
  EXPECT_EQ(large.PurgeBytes(10 * kMiB, t + 5), 2 * kMiB) << "c is too young";
  EXPECT_EQ(large.Stats().cached, 1u);
  EXPECT_EQ(large.PurgeBytes(10 * kMiB, t + 10), kMiB);
  EXPECT_EQ(large.Stats().cached, 0u);
  EXPECT_EQ(os.bad_unmaps, 0u);
}

TEST_F(LargeCacheTest, AlignedMappingsAreNotCached) {
  void* p = large.Alloc(kMiB, 4 * kMiB);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(uintptr_t(p) % (4 * kMiB), 0u);
  size_t unmaps = os.unmaps;
  large.Free(SpanAt(p), os.now_ms);
  EXPECT_EQ(os.unmaps, unmaps + 1);
}

TEST(LargeCacheApi, CallocOfAReusedMappingIsZero) {
  for (int round = 0; round < 3; ++round) {
    unsigned char* p = static_cast<unsigned char*>(strata_malloc(3 * kMiB));
    ASSERT_NE(p, nullptr);
    memset(p, 0xAB, 3 * kMiB);
    strata_free(p);
    unsigned char* z = static_cast<unsigned char*>(strata_calloc(1, 3 * kMiB - 100));
    ASSERT_NE(z, nullptr);
    for (size_t i = 0; i < 3 * kMiB - 100; i += 997) ASSERT_EQ(z[i], 0) << i;
    strata_free(z);
  }
}

}  // namespace
}  // namespace strata
