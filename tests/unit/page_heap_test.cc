// PageHeap (alloc/back/page_heap.h) on a FakeOs: random alloc/free
// sequences with the invariant checker after every operation, out of
// memory, the brk source, and returning idle pages (decay).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "alloc/middle/size_class.h"
#include "tests/unit/fake_heap.h"

namespace strata {
namespace {

using strata_test::FakeHeap;

struct LiveBlock {
  Span* span;
  uintptr_t start;
  unsigned order;
  SpanState state;
  uint8_t cls;
};

// Marks a block's first and last word with values derived from its start,
// so that overlapping blocks or a heap that writes into handed-out pages
// show up when the block is freed.
void Mark(const LiveBlock& b) {
  uint64_t* first = reinterpret_cast<uint64_t*>(b.start);
  uint64_t* last = reinterpret_cast<uint64_t*>(b.start + Order{b.order}.bytes()) - 1;
  *first = b.start ^ 0x5a5a5a5a5a5a5a5aull;
  *last = b.start ^ 0xa5a5a5a5a5a5a5a5ull;
}

::testing::AssertionResult MarkIntact(const LiveBlock& b) {
  const uint64_t* first = reinterpret_cast<const uint64_t*>(b.start);
  const uint64_t* last = reinterpret_cast<const uint64_t*>(b.start + Order{b.order}.bytes()) - 1;
  if (*first != (b.start ^ 0x5a5a5a5a5a5a5a5aull) || *last != (b.start ^ 0xa5a5a5a5a5a5a5a5ull)) {
    return ::testing::AssertionFailure() << "block at " << std::hex << b.start << " was overwritten";
  }
  return ::testing::AssertionSuccess();
}

// What must hold for a block just handed out.
::testing::AssertionResult BlockOk(FakeHeap& h, const LiveBlock& b,
                                   const std::map<uintptr_t, uintptr_t>& live) {
  Span* s = b.span;
  Order o{b.order};
  if (s->start != b.start || s->order != b.order) return ::testing::AssertionFailure() << "span fields";
  if (s->state != b.state || s->cls != b.cls) return ::testing::AssertionFailure() << "state/class";
  if (b.start % o.bytes() != 0) {
    return ::testing::AssertionFailure() << "block of order " << b.order << " at " << std::hex << b.start
                                         << " is not aligned to its size";
  }
  uintptr_t chunk = AlignDown(b.start, kChunkSize);
  if (((b.start - chunk) >> kPageShift) % o.pages().n != 0) return ::testing::AssertionFailure() << "chunk offset";
  if (!h.os.InRegion(reinterpret_cast<void*>(b.start)) && !h.os.InBreak(reinterpret_cast<void*>(b.start))) {
    return ::testing::AssertionFailure() << "block not from the OS";
  }
  for (size_t i = 0; i < o.pages().n; ++i) {
    uintptr_t p = b.start + (i << kPageShift);
    if (h.map->SpanOf(p) != s) return ::testing::AssertionFailure() << "page " << i << " maps elsewhere";
    if (h.map->ClassOf(p + 123) != b.cls) return ::testing::AssertionFailure() << "page " << i << " class";
  }
  auto next = live.lower_bound(b.start);
  if (next != live.end() && next->first < b.start + o.bytes()) {
    return ::testing::AssertionFailure() << "overlaps the block at " << std::hex << next->first;
  }
  if (next != live.begin() && std::prev(next)->second > b.start) {
    return ::testing::AssertionFailure() << "overlaps the block at " << std::hex << std::prev(next)->first;
  }
  return ::testing::AssertionSuccess();
}

unsigned RandomOrder(std::mt19937& rng) {
  unsigned r = rng() % 100;
  if (r < 40) return rng() % 3;          // 0..2
  if (r < 70) return 3 + rng() % 3;      // 3..5
  if (r < 92) return 6 + rng() % 3;      // 6..8
  return 9 + rng() % 2;                  // 9..10
}

::testing::AssertionResult AllFreeAndMerged(FakeHeap& h) {
  PageHeapStats st = h.heap.Stats();
  if (st.used_pages != 0) return ::testing::AssertionFailure() << "used pages " << st.used_pages;
  for (unsigned k = 0; k < kMaxOrder; ++k) {
    if (st.free_blocks[k] != 0) {
      return ::testing::AssertionFailure() << st.free_blocks[k] << " free blocks of order " << k
                                           << " after everything was freed";
    }
  }
  if (st.free_blocks[kMaxOrder] != st.chunks) {
    return ::testing::AssertionFailure() << st.free_blocks[kMaxOrder] << " whole free chunks, " << st.chunks
                                         << " chunks";
  }
  if (st.free_pages != st.chunks << kMaxOrder) return ::testing::AssertionFailure() << "free pages";
  if (st.splits != st.merges) {
    return ::testing::AssertionFailure() << "splits " << st.splits << " != merges " << st.merges;
  }
  return ::testing::AssertionSuccess();
}

// ---- random sequences ----

class PageHeapRandom : public ::testing::TestWithParam<uint32_t> {};

TEST_P(PageHeapRandom, InvariantsHoldAfterEveryOperation) {
  FakeHeap h;
  std::mt19937 rng(GetParam());
  std::vector<LiveBlock> blocks;
  std::map<uintptr_t, uintptr_t> live;  // start -> end
  size_t live_pages = 0;
  const size_t kMaxLivePages = 6 << kMaxOrder;
  uint64_t allocs = 0, frees = 0;
  for (int op = 0; op < 20000; ++op) {
    // Phases that fill and drain the heap, so blocks split and merge a lot.
    unsigned alloc_pct = (op / 2500) % 2 == 0 ? 70 : 30;
    unsigned k = RandomOrder(rng);
    bool alloc = blocks.empty() || rng() % 100 < alloc_pct;
    if (alloc && live_pages + (size_t{1} << k) > kMaxLivePages) alloc = false;
    if (alloc) {
      bool small = rng() % 2 == 0;
      uint8_t cls = small ? uint8_t(1 + rng() % (kNumClasses - 1)) : 0;
      SpanState state = small ? SpanState::kSmall : SpanState::kPageObject;
      Span* s = h.heap.Alloc(Order{k}, state, cls);
      ASSERT_NE(s, nullptr) << "op " << op;
      LiveBlock b{s, s->start, k, state, cls};
      ASSERT_TRUE(BlockOk(h, b, live)) << "op " << op;
      Mark(b);
      live[b.start] = b.start + Order{k}.bytes();
      blocks.push_back(b);
      live_pages += size_t{1} << k;
      ++allocs;
    } else {
      size_t i = rng() % blocks.size();
      LiveBlock b = blocks[i];
      blocks[i] = blocks.back();
      blocks.pop_back();
      ASSERT_TRUE(MarkIntact(b)) << "op " << op;
      ASSERT_EQ(h.map->SpanOf(b.start), b.span);
      h.heap.Free(b.span);
      live.erase(b.start);
      live_pages -= size_t{1} << b.order;
      ++frees;
    }
    ASSERT_TRUE(h.Checked()) << "after op " << op << (alloc ? " (alloc)" : " (free)");
    ASSERT_EQ(h.heap.Stats().used_pages, live_pages) << "op " << op;
  }
  EXPECT_GT(allocs, 5000u);
  EXPECT_GT(frees, 5000u);
  for (const LiveBlock& b : blocks) {
    ASSERT_TRUE(MarkIntact(b));
    h.heap.Free(b.span);
    ASSERT_TRUE(h.Checked());
  }
  PageHeapStats st = h.heap.Stats();
  EXPECT_GT(st.merges, 0u);
  EXPECT_GT(st.splits, 0u);
  EXPECT_TRUE(AllFreeAndMerged(h));
  EXPECT_EQ(st.largest_free_pages, size_t{1} << kMaxOrder);
  EXPECT_EQ(st.mmap_bytes, st.chunks * kChunkSize);
  EXPECT_EQ(h.os.bad_unmaps, 0u);
  EXPECT_EQ(h.os.bad_releases, 0u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, PageHeapRandom, ::testing::Values(1u, 2u, 3u, 42u, 1234u, 99991u));

// ---- deterministic shapes ----

TEST(PageHeap, WithoutGrowingOnlyAFreeBlockServes) {
  FakeHeap h;
  EXPECT_EQ(h.heap.Alloc(Order{7}, SpanState::kPageObject, 0, /*may_grow=*/false), nullptr)
      << "an empty heap has no free block";
  EXPECT_EQ(h.heap.Stats().chunks, 0u);
  Span* small = h.heap.Alloc(Order{0}, SpanState::kPageObject, 0);  // maps a chunk
  ASSERT_NE(small, nullptr);
  Span* big = h.heap.Alloc(Order{kMaxOrder - 1}, SpanState::kPageObject, 0, /*may_grow=*/false);
  ASSERT_NE(big, nullptr) << "the chunk's upper half is free";
  EXPECT_EQ(big->start, small->start + kChunkSize / 2);
  EXPECT_EQ(h.heap.Alloc(Order{kMaxOrder - 1}, SpanState::kPageObject, 0, /*may_grow=*/false), nullptr);
  EXPECT_EQ(h.heap.Stats().chunks, 1u) << "it did not grow";
  EXPECT_TRUE(h.Checked());
  h.heap.Free(big);
  h.heap.Free(small);
  EXPECT_TRUE(h.Checked());
}

TEST(PageHeap, FirstAllocationMapsOneAlignedChunk) {
  FakeHeap h;
  Span* s = h.heap.Alloc(Order{0}, SpanState::kPageObject, 0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->start % kChunkSize, 0u) << "the lowest block of a fresh chunk";
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.chunks, 1u);
  EXPECT_EQ(st.mmap_bytes, kChunkSize);
  EXPECT_EQ(st.splits, kMaxOrder);
  for (unsigned k = 0; k < kMaxOrder; ++k) EXPECT_EQ(st.free_blocks[k], 1u) << k;
  EXPECT_EQ(st.free_blocks[kMaxOrder], 0u);
  EXPECT_EQ(st.used_pages, 1u);
  EXPECT_EQ(st.free_pages, (size_t{1} << kMaxOrder) - 1);
  EXPECT_TRUE(h.Checked());
  h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
  EXPECT_EQ(h.heap.Stats().merges, kMaxOrder);
}

// With THP "always", a small heap's chunks and every page-map leaf would
// be made resident 2 MiB at a time: they are marked MADV_NOHUGEPAGE. The
// chunks of a heap past kSmallHeapChunks keep the system's choice.
TEST(PageHeap, OnlyASmallHeapsChunksAndTheLeavesRefuseHugePages) {
  using Map = PageMap<strata_test::FakeOs>;
  FakeHeap h;
  const size_t small = PageHeap<strata_test::FakeOs>::kSmallHeapChunks;
  auto advised = [&](const void* p, size_t bytes) {
    for (const auto& c : h.os.no_huge) {
      if (c.first == p && c.second == bytes) return true;
    }
    return false;
  };
  std::vector<Span*> chunks;
  for (size_t i = 0; i < small + 2; ++i) {
    Span* s = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
    ASSERT_NE(s, nullptr);
    chunks.push_back(s);
    EXPECT_EQ(advised(reinterpret_cast<void*>(s->start), kChunkSize), i < small) << "chunk " << i;
  }
  // Every leaf (one or two here: the chunks may straddle a GiB), and
  // nothing else.
  size_t leaves = 0;
  for (const auto& c : h.os.no_huge) leaves += c.second == sizeof(Map::Leaf);
  EXPECT_GE(leaves, 1u);
  EXPECT_EQ(leaves * sizeof(Map::Leaf), h.map->leaf_bytes());
  EXPECT_EQ(h.os.no_huge.size(), leaves + small);
  for (Span* s : chunks) h.heap.Free(s);
  EXPECT_TRUE(h.Checked());
}

TEST(PageMap, TheRootRefusesHugePages) {
  strata_test::FakeOs os;
  auto map = std::make_unique<PageMap<strata_test::FakeOs>>(&os);
  map->NoHugeRoot();
  ASSERT_EQ(os.no_huge.size(), 1u);
  // All of the root but the partial pages at its ends.
  EXPECT_GE(os.no_huge[0].second, PageMap<strata_test::FakeOs>::kRootSize * sizeof(void*) - 2 * kPageSize);
  EXPECT_EQ(uintptr_t(os.no_huge[0].first) % kPageSize, 0u);
}

TEST(PageHeap, FillingAChunkWithEachOrderUsesItExactly) {
  for (unsigned k = 0; k <= kMaxOrder; ++k) {
    FakeHeap h;
    std::vector<Span*> spans;
    size_t n = size_t{1} << (kMaxOrder - k);
    for (size_t i = 0; i < n; ++i) {
      Span* s = h.heap.Alloc(Order{k}, SpanState::kSmall, 3);
      ASSERT_NE(s, nullptr);
      spans.push_back(s);
    }
    PageHeapStats st = h.heap.Stats();
    EXPECT_EQ(st.chunks, 1u) << "order " << k;
    EXPECT_EQ(st.free_pages, 0u) << "order " << k;
    ASSERT_TRUE(h.Checked());
    Span* extra = h.heap.Alloc(Order{k}, SpanState::kSmall, 3);
    ASSERT_NE(extra, nullptr);
    EXPECT_EQ(h.heap.Stats().chunks, 2u);
    spans.push_back(extra);
    // Free in an interleaved order so merges happen from both sides.
    for (size_t i = 0; i < spans.size(); i += 2) h.heap.Free(spans[i]);
    ASSERT_TRUE(h.Checked());
    for (size_t i = 1; i < spans.size(); i += 2) h.heap.Free(spans[i]);
    ASSERT_TRUE(h.Checked());
    EXPECT_TRUE(AllFreeAndMerged(h)) << "order " << k;
  }
}

TEST(PageHeap, BuddiesMergeOnlyWithTheirOwnBuddy) {
  FakeHeap h;
  // Four order-0 blocks: 0,1 are buddies, 2,3 are buddies; 1 and 2 are
  // neighbours but not buddies.
  Span* b[4];
  for (Span*& s : b) s = h.heap.Alloc(Order{0}, SpanState::kPageObject, 0);
  for (int i = 1; i < 4; ++i) ASSERT_EQ(b[i]->start, b[0]->start + i * kPageSize);
  uintptr_t base = b[0]->start;
  h.heap.Free(b[1]);
  h.heap.Free(b[2]);
  ASSERT_TRUE(h.Checked());
  EXPECT_EQ(h.heap.Stats().free_blocks[0], 2u) << "1 and 2 are not buddies";
  h.heap.Free(b[0]);
  ASSERT_TRUE(h.Checked());
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_blocks[0], 1u) << "block 2 stays: its buddy 3 is in use";
  EXPECT_EQ(st.free_blocks[1], 1u) << "{0,1} merged, and stops: {2,3} is not free";
  Span* m = h.map->SpanOf(base);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->state, SpanState::kFree);
  EXPECT_EQ(m->order, 1u);
  h.heap.Free(b[3]);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST(PageHeap, AllocTakesTheSmallestFittingBlock) {
  FakeHeap h;
  Span* a = h.heap.Alloc(Order{3}, SpanState::kPageObject, 0);
  ASSERT_NE(a, nullptr);
  // Free lists now hold one block each of orders 3..9; an order-5 request
  // must take the order-5 block, not split a larger one.
  uint64_t splits = h.heap.Stats().splits;
  Span* b = h.heap.Alloc(Order{5}, SpanState::kPageObject, 0);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(h.heap.Stats().splits, splits);
  EXPECT_EQ(b->start, a->start + (uintptr_t{32} << kPageShift));
  h.heap.Free(a);
  h.heap.Free(b);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// Free-list links live in metadata: the pages of free blocks can be made
// inaccessible and the heap still allocates, frees, merges and checks.
TEST(PageHeap, NeverTouchesTheMemoryOfFreeBlocks) {
  FakeHeap h;
  std::vector<Span*> spans;
  for (int i = 0; i < 64; ++i) spans.push_back(h.heap.Alloc(Order{unsigned(i % 5)}, SpanState::kSmall, 2));
  for (Span* s : spans) h.heap.Free(s);
  spans.clear();
  ASSERT_TRUE(AllFreeAndMerged(h));
  PageHeapStats st = h.heap.Stats();
  ASSERT_EQ(st.chunks, 1u);
  Span* chunk = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  uintptr_t base = chunk->start;
  h.heap.Free(chunk);
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(base), kChunkSize, PROT_NONE), 0);
  std::mt19937 rng(7);
  for (int op = 0; op < 3000; ++op) {
    if (spans.empty() || rng() % 2) {
      Span* s = h.heap.Alloc(Order{RandomOrder(rng) % 7}, SpanState::kSmall, 5);
      ASSERT_NE(s, nullptr);
      spans.push_back(s);
    } else {
      size_t i = rng() % spans.size();
      h.heap.Free(spans[i]);
      spans[i] = spans.back();
      spans.pop_back();
    }
    if (op % 16 == 0) {
      ASSERT_TRUE(h.Checked());
    }
  }
  h.os.now_ms += 100000;
  h.heap.ReleaseIdle();
  h.heap.ReleaseAll();
  for (Span* s : spans) h.heap.Free(s);
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(base), kChunkSize, PROT_READ | PROT_WRITE), 0);
  EXPECT_TRUE(h.Checked());
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// ---- out of memory ----

TEST(PageHeapOom, NoChunkMeansNullAndAValidHeap) {
  FakeHeap h;
  h.os.maps_left = 0;
  EXPECT_EQ(h.heap.Alloc(Order{0}, SpanState::kSmall, 1), nullptr);
  EXPECT_TRUE(h.Checked());
  EXPECT_EQ(h.heap.Stats().chunks, 0u);
  h.os.maps_left = -1;
  Span* s = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  ASSERT_NE(s, nullptr);
  h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST(PageHeapOom, FullHeapReturnsNullThenRecovers) {
  FakeHeap h;
  // One chunk, one arena block, one page-map leaf.
  h.os.maps_left = 3;
  std::vector<Span*> spans;
  for (;;) {
    Span* s = h.heap.Alloc(Order{2}, SpanState::kPageObject, 0);
    if (s == nullptr) break;
    spans.push_back(s);
    ASSERT_LE(spans.size(), 256u);
  }
  EXPECT_EQ(spans.size(), 256u) << "the whole chunk, then out of memory";
  EXPECT_TRUE(h.Checked());
  EXPECT_EQ(h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0), nullptr);
  EXPECT_TRUE(h.Checked());
  // Freeing makes room again without the OS.
  h.heap.Free(spans.back());
  spans.pop_back();
  Span* again = h.heap.Alloc(Order{1}, SpanState::kSmall, 4);
  ASSERT_NE(again, nullptr);
  spans.push_back(again);
  EXPECT_TRUE(h.Checked());
  for (Span* s : spans) h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
  EXPECT_EQ(h.os.bad_unmaps, 0u);
}

TEST(PageHeapOom, NoPageMapLeafGivesTheChunkBack) {
  FakeHeap h;
  h.os.maps_left = 2;  // the chunk and the arena block, but no leaf
  EXPECT_EQ(h.heap.Alloc(Order{0}, SpanState::kSmall, 1), nullptr);
  EXPECT_TRUE(h.Checked());
  EXPECT_EQ(h.os.unmaps, 1u) << "the chunk goes back";
  EXPECT_EQ(h.os.last_unmap_bytes, kChunkSize);
  EXPECT_EQ(h.os.bad_unmaps, 0u);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.chunks, 0u);
  EXPECT_EQ(st.mmap_bytes + st.brk_bytes, st.chunks * kChunkSize)
      << "a chunk given back is not counted as mapped";
  h.os.maps_left = -1;
  Span* s = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  ASSERT_NE(s, nullptr);
  h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// Runs the arena dry in the middle of splitting a whole chunk down to one
// page: the split must be undone without leaving two free buddies apart.
void SplitRunsOutOfRecords(size_t records_left) {
  FakeHeap h;
  Span* first = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  Span* second = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  h.heap.Free(second);  // a whole free chunk, no split records yet
  ASSERT_EQ(h.arena.mapped_bytes(), MetaArena<strata_test::FakeOs>::kBlockSize);
  size_t room = h.arena.mapped_bytes() - h.arena.used_bytes();
  size_t record = AlignUp(sizeof(Span), 64);
  ASSERT_GE(room, records_left * record);
  ASSERT_NE(h.arena.Alloc(room - records_left * record), nullptr);
  h.os.maps_left = 0;  // and no new arena block
  Span* s = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  EXPECT_EQ(s, nullptr) << "splitting 10 times needs 10 records, " << records_left << " left";
  EXPECT_TRUE(h.Checked()) << records_left << " records left";
  // Whatever it did, a smaller request that fits the records still works
  // and everything merges back.
  h.heap.Free(first);
  EXPECT_TRUE(h.Checked());
  EXPECT_TRUE(AllFreeAndMerged(h)) << records_left << " records left";
}

TEST(PageHeapOom, SplitFailsAtTheFirstHalving) { SplitRunsOutOfRecords(0); }
TEST(PageHeapOom, SplitFailsAtTheSecondHalving) { SplitRunsOutOfRecords(1); }
TEST(PageHeapOom, SplitFailsHalfWay) { SplitRunsOutOfRecords(5); }
TEST(PageHeapOom, SplitFailsAtTheLastHalving) { SplitRunsOutOfRecords(9); }

// ---- brk ----

TEST(PageHeapBrk, ChunksComeFromTheBreakThenFromMmap) {
  FakeHeap h(size_t{256} << 20, 3 * kChunkSize);
  h.heap.set_use_brk(true);
  std::vector<Span*> spans;
  for (int i = 0; i < 5; ++i) {
    Span* s = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
    ASSERT_NE(s, nullptr) << i;
    EXPECT_EQ(s->start % kChunkSize, 0u) << "break chunks are aligned too";
    if (i < 3) {
      EXPECT_TRUE(h.os.InBreak(reinterpret_cast<void*>(s->start))) << i;
    } else {
      EXPECT_TRUE(h.os.InRegion(reinterpret_cast<void*>(s->start))) << i;
    }
    spans.push_back(s);
  }
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.brk_bytes, 3 * kChunkSize);
  EXPECT_EQ(st.mmap_bytes, 2 * kChunkSize);
  EXPECT_EQ(st.chunks, 5u);
  EXPECT_EQ(h.os.grow_break_calls, 5u) << "the break is tried first every time";
  EXPECT_EQ(h.os.brk_grown_bytes, 3 * kChunkSize);
  EXPECT_TRUE(h.Checked());
  for (Span* s : spans) h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST(PageHeapBrk, SmallBlocksFromBreakChunks) {
  FakeHeap h(size_t{64} << 20, 2 * kChunkSize);
  h.heap.set_use_brk(true);
  std::vector<Span*> spans;
  for (int i = 0; i < 1000; ++i) {  // ~2300 pages: more than the break's two chunks
    Span* s = h.heap.Alloc(Order{unsigned(i % 3)}, SpanState::kSmall, uint8_t(1 + i % 9));
    ASSERT_NE(s, nullptr);
    spans.push_back(s);
  }
  ASSERT_TRUE(h.Checked());
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.brk_bytes, 2 * kChunkSize);
  EXPECT_GE(st.mmap_bytes, kChunkSize);
  for (Span* s : spans) h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// For FakeOs's on_release hooks: false, with a failure, when the page
// heap's lock is held during a madvise (a hook that allocated then would
// spin for ever on it).
bool LockDropped(FakeHeap& h) {
  if (!h.heap.lock().IsLocked()) return true;
  ADD_FAILURE() << "madvise with the page heap's lock held";
  return false;
}

// "When STRATA_SOURCE=brk, the break shrinks when its top is free" (issue
// 8), once the top chunks have been idle for the decay time. Their pages go
// back first, with the lock dropped; then the break shrinks under the lock
// with little left for the kernel to do (a shrink of resident chunks under
// the lock had held it 26 ms for 512 MiB).
TEST(PageHeapBrk, TheBreakShrinksWhenItsTopChunksAreIdleAfterTheirPagesWentBack) {
  FakeHeap h(size_t{64} << 20, 3 * kChunkSize);
  h.heap.set_use_brk(true);
  h.os.now_ms = 10000;
  Span* low = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  Span* mid = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  Span* top = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  ASSERT_TRUE(low != nullptr && mid != nullptr && top != nullptr);
  ASSERT_TRUE(h.os.InBreak(reinterpret_cast<void*>(top->start)));
  const uintptr_t low_start = low->start;
  h.heap.Free(top);
  h.heap.Free(mid);
  size_t shrinks_seen = SIZE_MAX;
  h.os.on_release = [&](void*, size_t) {
    LockDropped(h);
    if (shrinks_seen == SIZE_MAX) shrinks_seen = h.os.shrink_break_calls;
  };
  h.os.now_ms += 999;
  EXPECT_EQ(h.heap.ReleaseIdle(), 0u);
  EXPECT_EQ(h.os.shrink_break_calls, 0u) << "not idle for the decay time yet";
  h.os.now_ms += 1;
  EXPECT_EQ(h.heap.ReleaseIdle(), 2 * kChunkSize);
  h.os.on_release = nullptr;
  EXPECT_EQ(shrinks_seen, 0u) << "the break shrank before the chunks' pages went back";
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.brk_bytes, kChunkSize) << "the two top chunks left the break";
  EXPECT_EQ(st.brk_returned_bytes, 2 * kChunkSize);
  EXPECT_EQ(st.chunks, 1u);
  EXPECT_EQ(st.released_bytes_total, 2 * kChunkSize) << "each page counted once";
  EXPECT_TRUE(h.Checked());
  h.heap.Free(low);  // the last chunk, idle only now: it stays
  EXPECT_EQ(h.heap.ReleaseIdle(), 0u);
  EXPECT_EQ(h.heap.Stats().brk_bytes, kChunkSize);
  h.os.now_ms += 1000;
  EXPECT_EQ(h.heap.ReleaseIdle(), kChunkSize);
  EXPECT_EQ(h.heap.Stats().brk_bytes, 0u);
  EXPECT_EQ(h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0)->start, low_start)
      << "the break grows again from where it was";
}

// With brk and no purger, a free path's release gives back its budget
// with the lock dropped and then shrinks the break only over chunks whose
// pages went back: shrinking resident ones under the lock is the 26 ms
// hold above. The others wait for later calls' budgets.
TEST(PageHeapBrk, AFreePathShrinksOnlyChunksWhosePagesWentBack) {
  FakeHeap h(size_t{64} << 20, 8 * kChunkSize);
  h.heap.set_use_brk(true);
  h.heap.set_decay_ms(1000);
  h.os.now_ms = 10000;
  Span* small = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);  // keeps the lowest chunk
  std::vector<Span*> top;
  for (int i = 0; i < 6; ++i) top.push_back(h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0));
  Span* trigger = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  for (Span* s : top) ASSERT_TRUE(s != nullptr && h.os.InBreak(reinterpret_cast<void*>(s->start)));
  for (Span* s : top) h.heap.Free(s);  // six resident chunks at the top of the break
  h.os.now_ms += 1000;                 // idle for the decay time
  h.heap.Free(trigger);                // the free path: one budget of madvise, then the shrink
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(h.os.released_bytes, kChunkSize) << "the free path's budget (the block that reaches it)";
  EXPECT_EQ(st.brk_returned_bytes, kChunkSize) << "only the chunk whose pages went back";
  EXPECT_EQ(st.released_bytes_total, h.os.released_bytes) << "no resident bytes given back under the lock";
  for (int i = 0; i < 5; ++i) h.heap.Free(h.heap.Alloc(Order{0}, SpanState::kSmall, 1));
  st = h.heap.Stats();
  EXPECT_EQ(st.brk_returned_bytes, 6 * kChunkSize) << "later calls went on, a budget each";
  EXPECT_EQ(st.released_bytes_total, 6 * kChunkSize);
  h.heap.Free(small);
  EXPECT_TRUE(h.Checked());
}

TEST(PageHeapBrk, WithoutBrkTheBreakIsNeverTouched) {
  FakeHeap h(size_t{64} << 20, 2 * kChunkSize);
  Span* s = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(h.os.grow_break_calls, 0u);
  EXPECT_EQ(h.heap.Stats().brk_bytes, 0u);
  h.heap.Free(s);
}

TEST(PageHeapBrk, ALeafFailureDoesNotUnmapBreakMemory) {
  FakeHeap h(size_t{64} << 20, 2 * kChunkSize);
  h.heap.set_use_brk(true);
  h.os.maps_left = 1;  // the arena block; the page-map leaf fails
  EXPECT_EQ(h.heap.Alloc(Order{0}, SpanState::kSmall, 1), nullptr);
  EXPECT_TRUE(h.Checked());
  EXPECT_EQ(h.os.bad_unmaps, 0u) << "memory of the break was passed to Unmap";
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.mmap_bytes + st.brk_bytes, st.chunks * kChunkSize);
}

// ---- returning memory (decay) ----

struct PageHeapDecay : ::testing::Test {
  void SetUp() override {
    h.os.now_ms = 10000;
    h.heap.set_decay_ms(kDecay);
  }
  static constexpr int64_t kDecay = 1000;
  FakeHeap h;
};

TEST_F(PageHeapDecay, FreshChunksAreNotReleasedAgain) {
  Span* s = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  ASSERT_NE(s, nullptr);
  h.os.now_ms += 10 * kDecay;
  EXPECT_EQ(h.heap.ReleaseIdle(), 0u) << "never-used pages are known not resident";
  EXPECT_EQ(h.heap.ReleaseAll(), 0u);
  EXPECT_EQ(h.os.releases, 0u);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages);
  h.heap.Free(s);
}

TEST_F(PageHeapDecay, IdleBlocksAreReleasedAfterTheDecayTimeAndNotBefore) {
  Span* a = h.heap.Alloc(Order{4}, SpanState::kSmall, 2);
  Span* keep = h.heap.Alloc(Order{4}, SpanState::kSmall, 2);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(keep, nullptr);
  EXPECT_FALSE(h.heap.HoldsResidentFree()) << "the rest of the chunk was never touched";
  const uint64_t t = h.os.now_ms;
  h.heap.Free(a);
  EXPECT_EQ(h.os.releases, 0u);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_pages - st.released_pages, 16u) << "the freed block is resident";
  EXPECT_TRUE(h.heap.HoldsResidentFree()) << "work left for the purger";

  h.os.now_ms = t + kDecay - 1;
  EXPECT_EQ(h.heap.ReleaseIdle(), 0u);
  EXPECT_EQ(h.os.releases, 0u);

  h.os.now_ms = t + kDecay;
  EXPECT_EQ(h.heap.ReleaseIdle(), 16 * kPageSize);
  EXPECT_EQ(h.os.releases, 1u);
  EXPECT_FALSE(h.os.lazy_releases);
  st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages);
  EXPECT_EQ(st.released_bytes_total, 16 * kPageSize);
  EXPECT_FALSE(h.heap.HoldsResidentFree()) << "nothing left for the purger";
  EXPECT_EQ(h.heap.ReleaseIdle(), 0u) << "nothing is released twice";
  EXPECT_EQ(h.heap.ReleaseAll(), 0u);
  EXPECT_TRUE(h.Checked());
  h.heap.Free(keep);
  EXPECT_TRUE(h.heap.HoldsResidentFree());
}

TEST_F(PageHeapDecay, FreeReleasesOtherIdleBlocksOnItsWay) {
  Span* a = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  Span* b = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const uint64_t t = h.os.now_ms;
  h.heap.Free(a);
  h.os.now_ms = t + kDecay;
  h.heap.Free(b);  // a separate chunk: no merge with a
  EXPECT_EQ(h.os.releases, 1u);
  EXPECT_EQ(h.os.released_bytes, kChunkSize);
  EXPECT_EQ(h.os.last_unmap, nullptr);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, size_t{1} << kMaxOrder) << "a, not b";
  h.os.now_ms = t + 2 * kDecay;
  EXPECT_EQ(h.heap.ReleaseIdle(), kChunkSize);
  EXPECT_EQ(h.heap.Stats().released_pages, size_t{2} << kMaxOrder);
}

// Free gives back at most kFreePathReleaseBytes of idle blocks per call,
// so that no free() waits for a whole heap's madvise; the next Free goes on
// at once with the rest.
TEST_F(PageHeapDecay, FreeGivesBackABoundedAmountPerCallAndTheNextFreeGoesOn) {
  const Order mib{8};  // 256 pages: 1 MiB
  ASSERT_EQ(mib.bytes(), size_t{1} << 20);
  std::vector<Span*> freed, kept;
  for (int i = 0; i < 5; ++i) {
    freed.push_back(h.heap.Alloc(mib, SpanState::kPageObject, 0));
    kept.push_back(h.heap.Alloc(mib, SpanState::kPageObject, 0));  // so that no two freed ones merge
  }
  Span* small[4];
  for (Span*& s : small) s = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  for (Span* s : freed) h.heap.Free(s);
  ASSERT_EQ(h.os.releases, 0u);
  h.os.now_ms += kDecay;
  const size_t budget = PageHeap<strata_test::FakeOs>::kFreePathReleaseBytes;
  h.heap.Free(small[0]);
  EXPECT_EQ(h.os.released_bytes, budget) << "one free, one budget";
  h.heap.Free(small[1]);  // the same millisecond
  EXPECT_EQ(h.os.released_bytes, 2 * budget) << "the next free goes on";
  Span* extra = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(h.os.released_bytes, 5 * mib.bytes()) << "an allocation goes on too: the last block";
  h.heap.Free(extra);
  h.heap.Free(small[2]);
  EXPECT_EQ(h.os.released_bytes, 5 * mib.bytes()) << "nothing left";
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_pages - st.released_pages, 3u) << "only the small blocks freed just now";
  h.heap.Free(small[3]);
  EXPECT_EQ(h.os.released_bytes, 5 * mib.bytes()) << "nothing left idle: the checks go back to their period";
  EXPECT_TRUE(h.Checked());
  for (Span* s : kept) h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// With a background purger, Free leaves idle blocks to it.
TEST_F(PageHeapDecay, WithAPurgerFreeLeavesIdleBlocksToIt) {
  h.heap.set_purger(true);
  Span* blocks[6];  // a used block after each, so that none merges
  for (Span*& s : blocks) s = h.heap.Alloc(Order{4}, SpanState::kSmall, 1);
  h.heap.Free(blocks[0]);
  h.os.now_ms += 10 * kDecay;
  h.heap.Free(blocks[2]);
  EXPECT_EQ(h.os.releases, 0u);
  EXPECT_EQ(h.heap.ReleaseIdle(), 16 * kPageSize) << "the purger's pass";
  h.heap.set_purger(false);
  h.os.now_ms += 10 * kDecay;
  h.heap.Free(blocks[4]);
  EXPECT_EQ(h.os.releases, 2u) << "without it, the free path gives back";
  for (int i : {1, 3, 5}) h.heap.Free(blocks[i]);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST_F(PageHeapDecay, ReleaseAllReleasesEveryFreePageAtOnce) {
  std::vector<Span*> spans;
  for (int i = 0; i < 40; ++i) spans.push_back(h.heap.Alloc(Order{unsigned(i % 6)}, SpanState::kSmall, 1));
  size_t freed_pages = 0;
  for (size_t i = 0; i < spans.size(); i += 2) {
    freed_pages += spans[i]->pages().n;
    h.heap.Free(spans[i]);
  }
  EXPECT_EQ(h.heap.ReleaseAll(), freed_pages * kPageSize);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages);
  EXPECT_EQ(h.heap.ReleaseAll(), 0u);
  EXPECT_TRUE(h.Checked());
  for (size_t i = 1; i < spans.size(); i += 2) h.heap.Free(spans[i]);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST_F(PageHeapDecay, ReleasedBlocksCanBeAllocatedAgainAndReadZero) {
  Span* a = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);
  ASSERT_NE(a, nullptr);
  uintptr_t start = a->start;
  memset(reinterpret_cast<void*>(start), 0xab, Order{3}.bytes());
  h.heap.Free(a);
  ASSERT_EQ(h.heap.ReleaseAll(), Order{3}.bytes());
  Span* b = h.heap.Alloc(Order{3}, SpanState::kPageObject, 0);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->start, start) << "the same block comes back";
  EXPECT_EQ(b->clean_pages, 0u);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(b->start);
  for (size_t i = 0; i < Order{3}.bytes(); ++i) ASSERT_EQ(p[i], 0) << i;
  memset(reinterpret_cast<void*>(b->start), 0x11, Order{3}.bytes());
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages);
  EXPECT_TRUE(h.Checked());
  h.heap.Free(b);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST_F(PageHeapDecay, NegativeDecayNeverReleasesByItself) {
  h.heap.set_decay_ms(-1);
  Span* a = h.heap.Alloc(Order{2}, SpanState::kSmall, 1);
  Span* b = h.heap.Alloc(Order{2}, SpanState::kSmall, 1);
  h.heap.Free(a);
  h.os.now_ms += 1000000;
  h.heap.Free(b);
  EXPECT_EQ(h.heap.ReleaseIdle(), 0u);
  EXPECT_EQ(h.os.releases, 0u);
  EXPECT_EQ(h.heap.ReleaseAll(), 8 * kPageSize) << "an explicit release still works";
}

TEST_F(PageHeapDecay, LazyReleaseUsesMadvFree) {
  h.heap.set_lazy_release(true);
  Span* a = h.heap.Alloc(Order{1}, SpanState::kSmall, 1);
  h.heap.Free(a);
  EXPECT_EQ(h.heap.ReleaseAll(), 2 * kPageSize);
  EXPECT_EQ(h.os.lazy_releases, 1u);
}

// "0 returns them at once" (alloc/options.h).
TEST_F(PageHeapDecay, ZeroDecayReleasesEveryFreeAtOnce) {
  h.heap.set_decay_ms(0);
  Span* a = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  Span* b = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  h.heap.Free(a);
  h.heap.Free(b);  // same millisecond
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages) << "a free in the same millisecond stayed resident";
}

// ---- pages go back with the lock dropped ("Releasing without the lock") ----

// FakeOs's on_release runs inside each madvise, where another thread would
// run while a purger gives back a large heap.
TEST_F(PageHeapDecay, PagesGoBackWithTheLockDroppedAndTheHeapStaysUsable) {
  std::vector<Span*> spans;
  for (int i = 0; i < 8; ++i) spans.push_back(h.heap.Alloc(Order{4}, SpanState::kSmall, 1));
  for (int i = 0; i < 8; i += 2) h.heap.Free(spans[i]);  // four blocks, no two of them buddies
  const size_t maps = h.os.maps;
  size_t calls = 0;
  std::vector<Span*> taken;
  h.os.on_release = [&](void*, size_t) {
    ++calls;
    if (!LockDropped(h)) return;
    EXPECT_TRUE(h.Checked()) << "between two releases";
    PageHeapStats st = h.heap.Stats();
    // The block under madvise counts as resident until its madvise returns.
    EXPECT_EQ(st.free_pages - st.released_pages, (5 - calls) * 16) << "blocks on their way still count as free";
    EXPECT_EQ(h.heap.HoldsResidentFree(), calls < 4) << "blocks still waiting are work for the purger";
    Span* s = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
    EXPECT_NE(s, nullptr) << "another thread allocates meanwhile";
    if (s != nullptr) taken.push_back(s);
  };
  EXPECT_EQ(h.heap.ReleaseAll(), 4 * 16 * kPageSize);
  h.os.on_release = nullptr;
  EXPECT_EQ(calls, 4u);
  EXPECT_EQ(h.os.maps, maps) << "the heap grew";
  EXPECT_TRUE(h.Checked());
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages);
  for (Span* s : taken) h.heap.Free(s);
  for (int i = 1; i < 8; i += 2) h.heap.Free(spans[i]);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// An allocation that finds no free block takes back the blocks waiting to
// be released instead of mapping a new chunk.
TEST_F(PageHeapDecay, BlocksWaitingForReleaseAreTakenBackRatherThanGrowing) {
  const Order quarter{kMaxOrder - 2};
  Span* q[4];
  for (Span*& s : q) {
    s = h.heap.Alloc(quarter, SpanState::kPageObject, 0);
    ASSERT_NE(s, nullptr);
  }
  ASSERT_EQ(h.heap.Stats().chunks, 1u) << "the four quarters of one chunk";
  const size_t maps = h.os.maps;
  h.heap.Free(q[0]);
  h.heap.Free(q[2]);  // q[0] and q[2] are not buddies: two free blocks, nothing else free
  Span* got = nullptr;
  uintptr_t in_flight = 0;
  h.os.on_release = [&](void* p, size_t) {
    if (got != nullptr) return;
    if (!LockDropped(h)) return;
    in_flight = uintptr_t(p);
    got = h.heap.Alloc(quarter, SpanState::kPageObject, 0);
  };
  EXPECT_EQ(h.heap.ReleaseAll(), quarter.bytes()) << "the other block was taken back before its turn";
  h.os.on_release = nullptr;
  ASSERT_NE(got, nullptr);
  EXPECT_NE(got->start, in_flight);
  EXPECT_TRUE(got->start == q[0]->start || got->start == q[2]->start);
  EXPECT_EQ(h.os.maps, maps) << "the heap grew while a free block waited";
  EXPECT_EQ(h.os.releases, 1u);
  EXPECT_TRUE(h.Checked());
  h.heap.Free(got);
  h.heap.Free(q[1]);
  h.heap.Free(q[3]);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// An allocation that finds nothing free takes back waiting blocks one at a
// time, only until one fits: the rest still go back.
TEST_F(PageHeapDecay, AnAllocationTakesBackOnlyTheWaitingBlocksItNeeds) {
  std::vector<Span*> spans;
  for (size_t i = 0; i < (size_t{1} << kMaxOrder) / 16; ++i) {  // the whole chunk, in blocks of 16 pages
    spans.push_back(h.heap.Alloc(Order{4}, SpanState::kSmall, 1));
  }
  ASSERT_EQ(h.heap.Stats().free_pages, 0u);
  for (int i = 0; i < 8; i += 2) h.heap.Free(spans[i]);  // four blocks, no two of them buddies
  const size_t maps = h.os.maps;
  Span* got = nullptr;
  h.os.on_release = [&](void*, size_t) {
    if (got != nullptr) return;
    if (!LockDropped(h)) return;
    got = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  };
  EXPECT_EQ(h.heap.ReleaseAll(), 3 * 16 * kPageSize) << "three of the four blocks went back";
  h.os.on_release = nullptr;
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(h.os.maps, maps);
  EXPECT_EQ(h.os.releases, 3u);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_pages - st.released_pages, 15u) << "what is left of the block taken back";
  EXPECT_TRUE(h.Checked());
  h.heap.Free(got);
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i >= 8 || i % 2 == 1) h.heap.Free(spans[i]);
  }
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// Threads that give pages back at the same time each give back about what
// they took off the free lists, not the whole shared list: a large malloc
// that releases a few idle blocks (the exchange) while the purger gives
// back 512 MiB must not end up doing the purger's work.
TEST_F(PageHeapDecay, EachReleaserGivesBackItsShareNotTheWholeList) {
  std::vector<Span*> spans;
  for (int i = 0; i < 10; ++i) spans.push_back(h.heap.Alloc(Order{4}, SpanState::kSmall, 1));
  for (int i = 0; i < 8; i += 2) h.heap.Free(spans[i]);  // four idle blocks for the purger
  size_t nested = SIZE_MAX;
  bool inside = false;
  h.os.on_release = [&](void*, size_t) {
    if (inside || nested != SIZE_MAX) return;
    if (!LockDropped(h)) return;
    inside = true;
    h.heap.Free(spans[8]);  // another thread frees a block and releases it
    const size_t before = h.os.releases;
    EXPECT_EQ(h.heap.ReleaseIdleBytes(kPageSize, h.os.now_ms), 16 * kPageSize);
    nested = h.os.releases - before;
    inside = false;
  };
  EXPECT_EQ(h.heap.ReleaseAll(), 4 * 16 * kPageSize) << "the purger's own four blocks";
  h.os.on_release = nullptr;
  EXPECT_EQ(nested, 1u) << "the other thread released its block only";
  EXPECT_EQ(h.os.releases, 5u);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages);
  EXPECT_TRUE(h.Checked());
}

// strata_release() while the purger has a block under madvise (its lock
// dropped): ReleaseAll waits for that block, so that when it returns every
// page free at its call has gone back. Two real threads; the purger's
// madvise takes 20 ms here, the wait gives up only after about a second.
TEST_F(PageHeapDecay, ReleaseAllWaitsForABlockAnotherThreadIsReleasing) {
  std::vector<Span*> spans;
  for (int i = 0; i < 8; ++i) spans.push_back(h.heap.Alloc(Order{4}, SpanState::kSmall, 1));
  h.heap.set_purger(true);  // the frees leave their blocks to it
  for (int i = 0; i < 8; i += 2) h.heap.Free(spans[i]);
  h.os.real_sleeps = true;
  std::atomic<bool> in_flight{false};
  std::atomic<bool> first{true};
  h.os.on_release = [&](void*, size_t) {
    if (!first.exchange(false)) return;
    if (!LockDropped(h)) return;
    in_flight.store(true);
    usleep(20 * 1000);
  };
  std::thread purger([&] { h.heap.ReleaseAll(); });
  while (!in_flight.load()) usleep(100);
  h.heap.ReleaseAll();
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages) << "returned while the purger's block was still in flight";
  purger.join();
  h.os.on_release = nullptr;
  h.os.real_sleeps = false;
  h.heap.set_purger(false);
  EXPECT_EQ(h.os.releases, 4u);
  EXPECT_TRUE(h.Checked());
}

// AwaitOthersReleases (at the end of ReleaseAll) waits for the blocks under
// madvise when it was called, not until no block is: two threads that keep
// releasing (decay 0, each madvise 300 us) kept it waiting to its bound,
// 2.4 s, in every strata_release().
TEST_F(PageHeapDecay, ReleaseAllDoesNotWaitForReleasesThatStartedAfterIt) {
  h.heap.set_decay_ms(0);
  h.os.real_sleeps = true;
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  h.os.on_release = [&](void*, size_t) {
    started.fetch_add(1);
    usleep(300);
  };
  auto releaser = [&] {
    while (!stop.load()) {
      Span* s = h.heap.Alloc(Order{4}, SpanState::kSmall, 1);
      if (s == nullptr) continue;
      *reinterpret_cast<volatile char*>(s->start) = 1;
      h.heap.Free(s);  // decay 0: released at once, the lock dropped
    }
  };
  std::thread a(releaser), b(releaser);
  while (started.load() < 10) usleep(100);
  h.heap.ReleaseAll();
  const size_t sleeps = h.os.sleeps;
  stop.store(true);
  a.join();
  b.join();
  h.os.on_release = nullptr;
  h.os.real_sleeps = false;
  using Heap = PageHeap<strata_test::FakeOs>;
  EXPECT_LT(sleeps, size_t(Heap::kAwaitReleaseTries - Heap::kAwaitReleaseYields))
      << "ReleaseAll waited to its bound for releases that began after it";
  EXPECT_TRUE(h.Checked());
}

// fork() is async-signal-safe: a signal handler that interrupts a thread
// between its madvise and its retaking the lock may fork, and in the child
// ReturnDetachedAfterFork puts the block back on the free lists; the
// thread then goes on there and must leave the block alone.
TEST_F(PageHeapDecay, AReleaseInterruptedByAForkInASignalHandlerLeavesItsBlockToTheChild) {
  std::vector<Span*> spans;
  for (int i = 0; i < 4; ++i) spans.push_back(h.heap.Alloc(Order{4}, SpanState::kSmall, 1));
  h.heap.set_purger(true);
  h.heap.Free(spans[0]);
  h.heap.Free(spans[2]);
  const uint64_t free_pages = h.heap.Stats().free_pages;
  bool forked = false;
  h.os.on_release = [&](void*, size_t) {
    if (forked || !LockDropped(h)) return;
    forked = true;
    h.heap.ReturnDetachedAfterFork();  // what ForkChild does in the child
  };
  h.heap.ReleaseAll();
  h.os.on_release = nullptr;
  EXPECT_TRUE(forked);
  EXPECT_TRUE(h.Checked());
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_pages, free_pages) << "every free block on the free lists, once";
  h.heap.set_purger(false);
  Span* again[2];
  h.os.maps_left = 0;
  for (Span*& s : again) {
    s = h.heap.Alloc(Order{4}, SpanState::kSmall, 1);
    ASSERT_NE(s, nullptr);
  }
  EXPECT_TRUE(h.Checked());
  for (Span* s : again) h.heap.Free(s);
  for (int i : {1, 3}) h.heap.Free(spans[size_t(i)]);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// A whole free chunk waiting to be released still goes when an allocation
// failure asks for address space back (UnmapFreeChunks).
TEST_F(PageHeapDecay, AWholeChunkWaitingForReleaseCanStillBeUnmapped) {
  Span* a = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  Span* b = h.heap.Alloc(Order{kMaxOrder}, SpanState::kPageObject, 0);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  h.heap.Free(a);
  h.heap.Free(b);
  size_t unmapped = SIZE_MAX;
  h.os.on_release = [&](void*, size_t) {
    if (unmapped != SIZE_MAX) return;
    if (!LockDropped(h)) return;
    unmapped = h.heap.UnmapFreeChunks();
  };
  EXPECT_EQ(h.heap.ReleaseAll(), kChunkSize) << "one chunk went back; the other was unmapped meanwhile";
  h.os.on_release = nullptr;
  EXPECT_EQ(unmapped, kChunkSize);
  EXPECT_EQ(h.heap.Stats().chunks, 1u);
  EXPECT_TRUE(h.Checked());
}

// fork() while another thread gives pages back: in the child, that thread
// is gone, and its blocks (the one under madvise, those waiting) must go
// back on the free lists (ForkChild calls ReturnDetachedAfterFork).
TEST_F(PageHeapDecay, AForkedChildGetsBackTheBlocksBeingReleased) {
  std::vector<Span*> spans;
  for (int i = 0; i < 8; ++i) spans.push_back(h.heap.Alloc(Order{kMaxOrder - 3}, SpanState::kSmall, 1));
  for (int i = 0; i < 8; i += 2) h.heap.Free(spans[i]);  // four eighths, apart
  int status = -1;
  h.os.on_release = [&](void*, size_t) {
    if (status != -1) return;
    if (!LockDropped(h)) return;
    pid_t pid = fork();
    if (pid == 0) {
      // The child: no gtest here, only an exit code.
      h.heap.ReturnDetachedAfterFork();
      int code = h.Checked() ? 0 : 1;
      PageHeapStats st = h.heap.Stats();
      if (code == 0 && st.free_pages != 4 * Order{kMaxOrder - 3}.pages().n) code = 2;
      h.os.maps_left = 0;  // the four blocks must be enough
      for (int i = 0; i < 4 && code == 0; ++i) {
        if (h.heap.Alloc(Order{kMaxOrder - 3}, SpanState::kSmall, 1) == nullptr) code = 3;
      }
      if (code == 0 && !h.Checked()) code = 4;
      _exit(code);
    }
    ASSERT_GT(pid, 0);
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
  };
  EXPECT_EQ(h.heap.ReleaseAll(), 4 * Order{kMaxOrder - 3}.bytes()) << "the parent goes on";
  h.os.on_release = nullptr;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: Check failed, 2: free pages wrong, 3: a block was lost, 4: Check after";
  EXPECT_TRUE(h.Checked());
}

// ---- eager (the purger's growth watch: alloc/stats/growth.h) ----

// Eager is a flag the central lists read: the heap's frees keep their
// blocks as ever (the purger gives back what has been free a while).
TEST_F(PageHeapDecay, EagerFreesKeepTheirBlocks) {
  h.heap.set_purger(true);
  Span* a = h.heap.Alloc(Order{2}, SpanState::kSmall, 1);
  Span* keep = h.heap.Alloc(Order{2}, SpanState::kSmall, 1);
  ASSERT_TRUE(a && keep);
  EXPECT_FALSE(h.heap.eager());
  h.heap.set_eager(true);
  EXPECT_TRUE(h.heap.eager());
  const size_t releases = h.os.releases;
  h.heap.Free(a);
  EXPECT_EQ(h.os.releases, releases);
  h.heap.set_eager(false);
  h.heap.Free(keep);
  h.heap.ReleaseAll();
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// ReleaseFree(cutoff) gives back the blocks free since the cutoff or
// before, and leaves those freed after it.
TEST_F(PageHeapDecay, ReleaseFreeTakesBlocksFreeSinceTheCutoff) {
  std::vector<Span*> s;
  for (int i = 0; i < 4; ++i) s.push_back(h.heap.Alloc(Order{2}, SpanState::kSmall, 1));
  const uint64_t t = h.os.now_ms;
  h.heap.Free(s[0]);  // at t
  h.os.now_ms = t + 10;
  h.heap.Free(s[2]);  // at t + 10 (not s[0]'s buddy)
  EXPECT_EQ(h.heap.ReleaseFree(t + 9), 4 * kPageSize) << "only the block free since t";
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_pages - st.released_pages, 4u);
  EXPECT_EQ(h.heap.ReleaseFree(t + 10), 4 * kPageSize);
  EXPECT_EQ(h.heap.ReleaseFree(UINT64_MAX), 0u) << "nothing is released twice";
  h.heap.Free(s[1]);
  h.heap.Free(s[3]);
  h.heap.ReleaseAll();
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// ReleaseFree gives back every free block's resident pages, however many
// there are (ReleaseIdleBytes looks at no more than kReleaseScanLimit), and
// nothing more.
TEST_F(PageHeapDecay, ReleaseFreeGivesBackEveryBlockWithoutAScanLimit) {
  using Heap = PageHeap<strata_test::FakeOs>;
  const size_t n = Heap::kReleaseScanLimit + 200;
  std::vector<Span*> spans;
  for (size_t i = 0; i < 2 * n; ++i) spans.push_back(h.heap.Alloc(Order{0}, SpanState::kSmall, 1));
  for (size_t i = 0; i < 2 * n; i += 2) h.heap.Free(spans[i]);  // n blocks, no two buddies
  PageHeapStats st = h.heap.Stats();
  ASSERT_EQ(st.free_pages - st.released_pages, n);
  const size_t scanned = h.heap.ReleaseIdleBytes(SIZE_MAX, UINT64_MAX);
  EXPECT_LE(scanned, Heap::kReleaseScanLimit * kPageSize) << "the scan limit";
  EXPECT_EQ(scanned + h.heap.ReleaseFree(UINT64_MAX), n * kPageSize);
  st = h.heap.Stats();
  EXPECT_EQ(st.released_pages, st.free_pages);
  for (size_t i = 1; i < 2 * n; i += 2) h.heap.Free(spans[i]);
  h.heap.ReleaseAll();
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// fresh_bytes counts what the heap hands out from pages that are not
// resident, always (the growth watch reads it), and never goes down.
TEST_F(PageHeapDecay, FreshBytesCountNonResidentPagesHandedOut) {
  EXPECT_EQ(h.heap.fresh_bytes(), 0u);
  Span* a = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);  // from a new chunk
  Span* buddy = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);
  ASSERT_TRUE(a && buddy);
  EXPECT_EQ(h.heap.fresh_bytes(), 16 * kPageSize);
  h.heap.Free(a);
  Span* b = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);  // the same block, still resident
  ASSERT_EQ(b, a);
  EXPECT_EQ(h.heap.fresh_bytes(), 16 * kPageSize);
  h.heap.Free(b);
  ASSERT_EQ(h.heap.ReleaseAll(), 8 * kPageSize);
  Span* c = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(h.heap.fresh_bytes(), 24 * kPageSize) << "released pages fault in again";
  h.heap.Free(c);
  h.heap.Free(buddy);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// ---- the exchange with the large cache (alloc/strata.cc) ----

TEST_F(PageHeapDecay, HandingOutReleasedOrNewPagesCountsThemAsFaulting) {
  h.heap.set_count_faulting(true);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 0u);
  Span* a = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);  // from a new chunk
  Span* buddy = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);  // so that a never merges
  ASSERT_NE(a, nullptr);
  ASSERT_NE(buddy, nullptr);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 16u);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 0u) << "taken once";
  h.heap.Free(a);
  Span* b = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);  // the same block, still resident
  ASSERT_EQ(b, a);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 0u);
  h.heap.Free(b);
  ASSERT_EQ(h.heap.ReleaseAll(), 8 * kPageSize);
  Span* c = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 8u) << "released pages fault in again";
  h.heap.Free(c);
  h.heap.Free(buddy);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST_F(PageHeapDecay, FaultingPagesAreNotCountedUnlessAsked) {
  Span* a = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);  // from a new chunk
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 0u) << "off by default (a threaded process)";
  h.heap.set_count_faulting(true);
  Span* b = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 8u);
  h.heap.set_count_faulting(false);
  Span* c = h.heap.Alloc(Order{3}, SpanState::kSmall, 1);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(h.heap.TakeFaultingPages(), 0u);
  h.heap.Free(a);
  h.heap.Free(b);
  h.heap.Free(c);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

TEST_F(PageHeapDecay, ReleaseIdleBytesTakesIdleBlocksLargestFirstUntilEnough) {
  // Blocks of 1, 2, 4 and 8 pages, each apart (a used block between them).
  std::vector<Span*> freed, used;
  for (unsigned k = 0; k < 4; ++k) {
    freed.push_back(h.heap.Alloc(Order{k}, SpanState::kSmall, 1));
    used.push_back(h.heap.Alloc(Order{k}, SpanState::kSmall, 1));
  }
  const uint64_t t = h.os.now_ms;
  for (Span* s : freed) h.heap.Free(s);
  h.os.now_ms = t + 5;
  Span* young = h.heap.Alloc(Order{5}, SpanState::kSmall, 1);
  h.heap.Free(young);  // 32 pages, but freed after the cutoff below
  h.heap.TakeFaultingPages();

  EXPECT_EQ(h.heap.ReleaseIdleBytes(5 * kPageSize, t), 8 * kPageSize) << "the 8-page block covers it";
  EXPECT_EQ(h.os.releases, 1u);
  EXPECT_EQ(h.heap.ReleaseIdleBytes(5 * kPageSize, t), 6 * kPageSize) << "then 4 and 2 pages";
  EXPECT_EQ(h.heap.ReleaseIdleBytes(100 * kPageSize, t), 1 * kPageSize) << "all that is idle: the last page";
  EXPECT_EQ(h.heap.ReleaseIdleBytes(100 * kPageSize, t), 0u) << "the young block stays";
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_pages - st.released_pages, 32u);
  EXPECT_EQ(h.heap.ReleaseIdleBytes(1, t + 5), 32 * kPageSize);
  EXPECT_TRUE(h.Checked());
  for (Span* s : used) h.heap.Free(s);
  EXPECT_TRUE(AllFreeAndMerged(h));
}

// ---- operations while a block is under madvise ----

// Random allocations, frees, clock steps and releases of every kind, and,
// inside each madvise (the lock dropped, as another thread would find it),
// up to three more operations, nested up to two madvise calls deep. After
// each: Check(), free and used pages adding up to the chunks, and no block
// under madvise handed out, madvised twice, unmapped or shrunk away from
// under it (FakeOs counts a madvise of memory no longer mapped).
struct NestedReleases {
  NestedReleases(uint32_t seed, bool brk) : h(size_t{256} << 20, brk ? 12 * kChunkSize : 0), rng(seed) {
    h.heap.set_use_brk(brk);
    h.os.now_ms = 10000;
    h.heap.set_decay_ms(100);
  }

  void Fail(const std::string& what) {
    if (failure.empty()) failure = what;
  }
  bool UnderMadvise(uintptr_t a, size_t n) const {
    for (const auto& [p, b] : in_flight) {
      if (a < p + b && p < a + n) return true;
    }
    return false;
  }
  void CheckAll(const char* where) {
    const char* why = "";
    if (!h.heap.Check(&why)) Fail(std::string(where) + ": Check: " + why);
    PageHeapStats st = h.heap.Stats();
    if (allocating == 0 && st.used_pages != live_pages) Fail(std::string(where) + ": used pages");
    if (st.free_pages + st.used_pages != st.chunks << kMaxOrder) Fail(std::string(where) + ": free + used pages");
    if (st.released_pages > st.free_pages) Fail(std::string(where) + ": more released than free");
    std::lock_guard<std::mutex> g(h.os.mu);
    for (const auto& [p, b] : in_flight) {
      if (!h.os.LiveLocked(p, b)) Fail(std::string(where) + ": a block under madvise was unmapped");
    }
  }
  void Op() {
    const unsigned r = rng() % 100;
    if (r < 45 || blocks.empty()) {
      const unsigned k = RandomOrder(rng);
      if (live_pages + (size_t{1} << k) > (size_t{8} << kMaxOrder)) return;
      ++allocating;  // its pages count as used before it returns
      Span* s = h.heap.Alloc(Order{k}, SpanState::kPageObject, 0, rng() % 4 != 0);
      --allocating;
      if (s == nullptr) return;
      LiveBlock b{s, s->start, k, SpanState::kPageObject, 0};
      if (!BlockOk(h, b, live)) Fail("alloc: a bad block");
      if (UnderMadvise(b.start, Order{k}.bytes())) Fail("alloc: handed out a block under madvise");
      Mark(b);
      live[b.start] = b.start + Order{k}.bytes();
      blocks.push_back(b);
      live_pages += size_t{1} << k;
    } else if (r < 85) {
      const size_t i = rng() % blocks.size();
      const LiveBlock b = blocks[i];
      blocks[i] = blocks.back();
      blocks.pop_back();
      if (!MarkIntact(b)) Fail("free: the block was overwritten");
      live.erase(b.start);
      live_pages -= size_t{1} << b.order;
      h.heap.Free(b.span);
    } else if (r < 89) {
      h.os.now_ms += rng() % 150;
    } else if (r < 93) {
      h.heap.ReleaseIdle();
    } else if (r < 95) {
      h.heap.ReleaseIdleBytes(size_t(rng() % 64) << kPageShift, h.os.now_ms - rng() % 100);
    } else if (r < 98) {
      if (depth == 0 || rng() % 8 == 0) h.heap.ReleaseAll();
    } else if (depth == 0 || rng() % 8 == 0) {
      h.heap.UnmapFreeChunks();
    }
  }
  void Run(int ops) {
    h.os.on_release = [this](void* p, size_t bytes) {
      if (h.heap.lock().IsLocked()) Fail("madvise with the lock held");
      if (UnderMadvise(uintptr_t(p), bytes)) Fail("one range under two madvise calls");
      auto next = live.lower_bound(uintptr_t(p));
      if ((next != live.end() && next->first < uintptr_t(p) + bytes) ||
          (next != live.begin() && std::prev(next)->second > uintptr_t(p))) {
        Fail("madvise of a live block");
      }
      ++madvised;
      if (depth >= 2) return;
      ++depth;
      nested_deep += depth == 2;
      in_flight.emplace_back(uintptr_t(p), bytes);
      CheckAll("in flight");
      for (int n = int(rng() % 4); n > 0; --n) Op();
      CheckAll("in flight, after operations");
      in_flight.pop_back();
      --depth;
    };
    for (int i = 0; i < ops && failure.empty(); ++i) {
      Op();
      CheckAll("between operations");
    }
    h.os.on_release = nullptr;
    for (const LiveBlock& b : blocks) {
      if (!MarkIntact(b)) Fail("end: a block was overwritten");
      h.heap.Free(b.span);
    }
    live_pages = 0;
    CheckAll("end");
    if (h.os.dead_releases != 0) Fail("a madvise of memory not mapped");
    if (h.os.bad_unmaps != 0) Fail("an unmap of memory not mapped");
  }

  FakeHeap h;
  std::mt19937 rng;
  std::vector<LiveBlock> blocks;
  std::map<uintptr_t, uintptr_t> live;                 // start -> end of each live block
  std::vector<std::pair<uintptr_t, size_t>> in_flight;  // ranges under the outer frames' madvise
  int depth = 0;
  int allocating = 0;
  size_t live_pages = 0, madvised = 0, nested_deep = 0;
  std::string failure;
};

class PageHeapNestedReleases : public ::testing::TestWithParam<std::tuple<uint32_t, bool>> {};

TEST_P(PageHeapNestedReleases, InvariantsHoldWhatEverRunsDuringAMadvise) {
  NestedReleases f(std::get<0>(GetParam()), std::get<1>(GetParam()));
  f.Run(4000);
  EXPECT_EQ(f.failure, "");
  EXPECT_GT(f.madvised, 100u) << "the run must give pages back often";
  EXPECT_GT(f.nested_deep, 0u) << "and nest";
}

INSTANTIATE_TEST_SUITE_P(Seeds, PageHeapNestedReleases,
                         ::testing::Combine(::testing::Values(1u, 2u, 3u, 4u), ::testing::Bool()));

}  // namespace
}  // namespace strata
