// MixedPool (alloc/middle/mixed.h) and its use by the central lists, on a
// FakeOs: the granule map, free runs, spans handed over by a class that has
// room to spare, objects of other classes carved from their holes, and the
// spans going back to the page heap once every granule is free.
#include <gtest/gtest.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "alloc/middle/central.h"
#include "alloc/middle/mixed.h"
#include "tests/unit/abort.h"
#include "tests/unit/fake_heap.h"

namespace strata {
namespace {

using strata_test::FakeHeap;
using strata_test::FakeOs;
using Central = CentralList<FakeOs>;
using Pool = MixedPool<FakeOs>;

// ---- the granule map ----

TEST(MixedMap, MarkedObjectsReadBackWithTheirLengths) {
  MixedMap m{};
  m.Mark(0, 4, true);
  m.Mark(4, 13, true);   // crosses no word: granules 4-16
  m.Mark(30, 5, true);   // crosses from word 0 into word 1
  m.Mark(255, 1, true);  // the last granule
  EXPECT_EQ(m.LengthAt(0), 4u);
  EXPECT_EQ(m.LengthAt(4), 13u);
  EXPECT_EQ(m.LengthAt(30), 5u);
  EXPECT_EQ(m.LengthAt(255), 1u);
  EXPECT_EQ(m.LengthAt(1), 0u) << "inside an object";
  EXPECT_EQ(m.LengthAt(17), 0u) << "a free granule";
  m.Mark(4, 13, false);
  EXPECT_EQ(m.LengthAt(4), 0u);
  EXPECT_EQ(m.LengthAt(0), 4u) << "a neighbour freed does not change an object";
  EXPECT_EQ(m.LengthAt(30), 5u);
}

TEST(MixedMap, FreeMaskHasABitPerFreeGranule) {
  MixedMap m{};
  m.Mark(3, 70, true);
  uint64_t mask[MixedMap::kGranules / 64];
  m.FreeMask(mask);
  for (size_t g = 0; g < MixedMap::kGranules; ++g) {
    const bool free = (mask[g / 64] >> (g % 64)) & 1;
    EXPECT_EQ(free, g < 3 || g >= 73) << g;
  }
}

TEST(MixedFreeRuns, FindsTheFirstAlignedRunLongEnough) {
  FreeRuns r{};
  // Free: [5, 12), [20, 40), [100, 256).
  for (size_t g = 5; g < 12; ++g) r.mask[g / 64] |= uint64_t{1} << (g % 64);
  for (size_t g = 20; g < 40; ++g) r.mask[g / 64] |= uint64_t{1} << (g % 64);
  for (size_t g = 100; g < 256; ++g) r.mask[g / 64] |= uint64_t{1} << (g % 64);
  EXPECT_EQ(r.Find(0, 7, 1), 5u);
  EXPECT_EQ(r.Find(0, 8, 1), 20u);
  EXPECT_EQ(r.Find(0, 7, 2), 20u) << "[6, 12) is too short once aligned";
  EXPECT_EQ(r.Find(0, 20, 4), 20u) << "[20, 40) starts aligned to 4 and is exactly 20";
  EXPECT_EQ(r.Find(0, 18, 8), 104u) << "[24, 40) is 16 once aligned to 8; 100 aligns to 104";
  EXPECT_EQ(r.Find(0, 157, 1), MixedMap::kGranules);
  EXPECT_EQ(r.Find(0, 156, 1), 100u);
  EXPECT_EQ(r.Find(21, 8, 1), 21u);
  EXPECT_EQ(r.Longest(), 156u);
  r.Take(100, 156);
  EXPECT_EQ(r.Longest(), 20u);
}

// ---- the pool on its own ----

class MixedPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { pool.Bind(h.map.get(), &h.arena), pool.set_enabled(true); }

  // A one-page span of objects of `size` bytes as a central list leaves it:
  // all of them handed out, those in `free_idx` back on its free list.
  Span* SmallSpan(size_t size, const std::vector<size_t>& free_idx) {
    Span* s = h.heap.Alloc(Order{0}, SpanState::kSmall, uint8_t(SizeToClass(size)));
    EXPECT_NE(s, nullptr);
    const size_t n = kPageSize / size;
    s->bump = s->start + n * size;
    s->used = uint32_t(n);
    for (size_t i : free_idx) {
      void* o = reinterpret_cast<void*>(s->start + i * size);
      *static_cast<void**>(o) = s->freelist;
      s->freelist = o;
      --s->used;
    }
    return s;
  }

  ::testing::AssertionResult Checked() {
    const char* why = "";
    if (!pool.Check(&why)) return ::testing::AssertionFailure() << "MixedPool::Check: " << why;
    return h.Checked();
  }

  std::vector<void*> Carve(size_t size, int n) {
    void* head = nullptr;
    void* tail = nullptr;
    const int got = pool.Carve(size, n, &head, &tail);
    std::vector<void*> out;
    for (void* o = got > 0 ? head : nullptr; o != nullptr; o = *static_cast<void**>(o)) out.push_back(o);
    EXPECT_EQ(out.size(), size_t(got));
    if (got > 0) {
      EXPECT_EQ(out.back(), tail);
    }
    return out;
  }

  FakeHeap h;
  Pool pool;
};

TEST_F(MixedPoolTest, AdoptedSpanKeepsItsObjectsAndLosesItsClass) {
  Span* s = SmallSpan(64, {1, 2, 3, 10, 11, 63});
  ASSERT_TRUE(pool.Adopt(s, 64));
  EXPECT_EQ(s->state, SpanState::kMixed);
  EXPECT_EQ(h.map->ClassOf(s->start), 0u) << "its frees leave the fast path";
  EXPECT_EQ(Pool::ObjectBytes(s, s->start), 64u);
  EXPECT_EQ(Pool::ObjectBytes(s, s->start + 64), 0u) << "a free object";
  EXPECT_EQ(Pool::ObjectBytes(s, s->start + 4 * 64), 64u);
  EXPECT_EQ(Pool::ObjectBytes(s, s->start + 16), 0u) << "inside an object";
  EXPECT_EQ(s->bump, 12u) << "longest free run: objects 1-3, 12 granules";
  MixedStats st = pool.Stats();
  EXPECT_EQ(st.spans, 1u);
  EXPECT_EQ(st.used_bytes, 58u * 64);
  EXPECT_EQ(st.free_bytes, 6u * 64);
  EXPECT_TRUE(Checked());
}

TEST_F(MixedPoolTest, CarvedObjectsFitTheHolesAtTheirAlignment) {
  // Objects 0, 8, 16, ... live (one in eight): holes of 7 objects, 448 B.
  std::vector<size_t> free_idx;
  for (size_t i = 0; i < 64; ++i) {
    if (i % 8 != 0) free_idx.push_back(i);
  }
  Span* s = SmallSpan(64, free_idx);
  ASSERT_TRUE(pool.Adopt(s, 64));
  // 208 bytes (13 granules, 16-aligned): two per hole of 448 bytes.
  std::vector<void*> a = Carve(208, 100);
  EXPECT_EQ(a.size(), 16u);
  // What is left of each hole is 32 bytes: no room for 224.
  std::vector<void*> b = Carve(224, 100);
  EXPECT_TRUE(b.empty()) << "no room left for 224 bytes";
  std::vector<void*> c = Carve(16, 1000);
  EXPECT_EQ(c.size(), 8u * (448 - 416) / 16) << "the rest of each hole, in 16-byte objects";
  std::set<uintptr_t> used;
  for (size_t i = 0; i < 64; i += 8) used.insert(s->start + i * 64);
  auto check = [&](const std::vector<void*>& objs, size_t size, size_t align) {
    for (void* o : objs) {
      const uintptr_t p = uintptr_t(o);
      EXPECT_EQ(p % align, 0u) << o;
      EXPECT_GE(p, s->start);
      EXPECT_LE(p + size, s->end());
      EXPECT_EQ(Pool::ObjectBytes(s, p), size) << o;
      for (uintptr_t q = p; q < p + size; q += 16) EXPECT_TRUE(used.insert(q).second) << "overlap at " << q;
    }
  };
  for (size_t i = 0; i < 64; i += 8) {
    for (uintptr_t q = s->start + i * 64 + 16; q < s->start + i * 64 + 64; q += 16) used.insert(q);
  }
  check(a, 208, 16);
  check(c, 16, 16);
  EXPECT_EQ(pool.Stats().free_bytes, 0u);
  EXPECT_EQ(s->bump, 0u);
  EXPECT_TRUE(Checked());
}

TEST_F(MixedPoolTest, BestFitTakesTheSpanWithTheShortestRunThatHolds) {
  std::vector<size_t> wide, narrow;
  for (size_t i = 1; i < 64; ++i) wide.push_back(i);        // 63 free objects: one run of 252 granules
  for (size_t i = 1; i < 64; i += 2) narrow.push_back(i);    // every other: runs of 4 granules
  Span* w = SmallSpan(64, wide);
  Span* n = SmallSpan(64, narrow);
  ASSERT_TRUE(pool.Adopt(w, 64));
  ASSERT_TRUE(pool.Adopt(n, 64));
  std::vector<void*> o = Carve(64, 1);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(h.map->SpanOf(uintptr_t(o[0])), n) << "the narrow holes fit a 64-byte object exactly";
  o = Carve(80, 1);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(h.map->SpanOf(uintptr_t(o[0])), w);
  EXPECT_TRUE(Checked());
}

TEST_F(MixedPoolTest, ASpanWhoseLastGranuleComesBackLeavesThePool) {
  Span* s = SmallSpan(64, {});
  for (size_t i = 0; i < 64; i += 2) {
    // Half the objects come back: the span gets holes of 64 bytes.
    void* o = reinterpret_cast<void*>(s->start + i * 64);
    *static_cast<void**>(o) = s->freelist;
    s->freelist = o;
    --s->used;
  }
  ASSERT_TRUE(pool.Adopt(s, 64));
  std::vector<void*> carved = Carve(48, 100);
  EXPECT_EQ(carved.size(), 32u);
  for (size_t i = 1; i < 64; i += 2) EXPECT_FALSE(pool.Free(s, reinterpret_cast<void*>(s->start + i * 64), 64));
  for (size_t i = 0; i + 1 < carved.size(); ++i) EXPECT_FALSE(pool.Free(s, carved[i], 48));
  EXPECT_TRUE(Checked());
  EXPECT_TRUE(pool.Free(s, carved.back(), 48)) << "the last one empties the span";
  EXPECT_EQ(pool.Stats().spans, 0u);
  EXPECT_EQ(pool.Stats().released, 1u);
  h.heap.Free(s);
  EXPECT_TRUE(Checked());
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
}

using MixedPoolDeathTest = MixedPoolTest;

TEST_F(MixedPoolDeathTest, FreeOfAFreeGranuleIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Span* s = SmallSpan(64, {7});
  ASSERT_TRUE(pool.Adopt(s, 64));
  EXPECT_ABORT(pool.Free(s, reinterpret_cast<void*>(s->start + 7 * 64), 64),
               "^strata: double free of 0x[0-9a-f]+ \\(a 64-byte object in a mixed span\\)\n$");
  EXPECT_ABORT(pool.Free(s, reinterpret_cast<void*>(s->start + 8 * 64), 128), "strata: double free");
}

TEST_F(MixedPoolDeathTest, ASecondCopyOfTheObjectThatEmptiedTheSpanIsFatal) {
  // A chain p, q, p given back by a thread cache, p the span's last object:
  // the first p empties the span (its map is gone), the second must be
  // reported, not followed into a missing map.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<size_t> all_but_one;
  for (size_t i = 1; i < 64; ++i) all_but_one.push_back(i);
  Span* s = SmallSpan(64, all_but_one);
  ASSERT_TRUE(pool.Adopt(s, 64));
  void* p = reinterpret_cast<void*>(s->start);
  ASSERT_TRUE(pool.Free(s, p, 64));
  EXPECT_ABORT(pool.Free(s, p, 64), "^strata: double free of 0x[0-9a-f]+ \\(a 64-byte object in a mixed span\\)\n$");
}

TEST_F(MixedPoolTest, AlignedClassesFindTheRunsThatFitPastOnesThatDoNot) {
  // Twenty spans whose longest run is 5 granules starting at an odd
  // granule (no 64-byte object fits at 64-byte alignment), then one with
  // room: the scan must not stop at the twenty.
  for (int i = 0; i < 20; ++i) {
    Span* s = SmallSpan(16, {});
    // Free granules 1-5 of a span of 16-byte objects.
    for (size_t g = 1; g <= 5; ++g) {
      void* o = reinterpret_cast<void*>(s->start + g * 16);
      *static_cast<void**>(o) = s->freelist;
      s->freelist = o;
      --s->used;
    }
    ASSERT_TRUE(pool.Adopt(s, 16));
  }
  Span* roomy = SmallSpan(64, {1, 2, 3});
  ASSERT_TRUE(pool.Adopt(roomy, 64));
  std::vector<void*> o = Carve(64, 1);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(h.map->SpanOf(uintptr_t(o[0])), roomy);
  EXPECT_EQ(uintptr_t(o[0]) % 64, 0u);
  EXPECT_TRUE(Checked());
}

// ---- the central lists ----

// Two classes on one page heap and one pool, as in the allocator.
class MixedCentralTest : public ::testing::Test {
 protected:
  static constexpr size_t kSmall = 64, kOther = 208;

  void SetUp() override {
    pool.Bind(h.map.get(), &h.arena);
    pool.set_enabled(true);
    for (size_t cls : {SizeToClass(kSmall), SizeToClass(kOther)}) {
      transfer[cls].reset(new void*[Central::TransferPointers(cls)]);
      lists[cls].Init(uint8_t(cls), &h.heap, transfer[cls].get(), nullptr, &pool);
    }
  }
  Central& Of(size_t size) { return lists[SizeToClass(size)]; }

  std::vector<void*> Take(size_t size, size_t n) {
    std::vector<void*> out;
    while (out.size() < n) {
      void* head;
      void* tail;
      const int want = int(std::min<size_t>(n - out.size(), Info(SizeToClass(size)).batch));
      const int got = Of(size).RemoveRange(&head, &tail, want);
      if (got == 0) break;
      for (void* o = head; o != nullptr; o = *static_cast<void**>(o)) out.push_back(o);
    }
    return out;
  }
  void Give(size_t size, void* o) {
    *static_cast<void**>(o) = nullptr;
    Of(size).InsertRange(o, 1);
  }
  // `bytes` of kSmall objects taken, then all but one in `k` given back, in
  // address order; returns how many were taken.
  size_t KeepOneIn(size_t bytes, size_t k) {
    const size_t n = bytes / kSmall;
    std::vector<void*> small = Take(kSmall, n);
    for (size_t i = 0; i < n; ++i) {
      if (i % k != 0) Give(kSmall, small[i]);
    }
    return n;
  }

  ::testing::AssertionResult Checked() {
    const char* why = "";
    if (!pool.Check(&why)) return ::testing::AssertionFailure() << "MixedPool::Check: " << why;
    return h.Checked();
  }

  FakeHeap h;
  Pool pool;
  Central lists[kNumClasses];
  std::unique_ptr<void*[]> transfer[kNumClasses];
};

// Checking mode's free marker names the span's life (FreedMarker in
// alloc/strata.cc): spans of different classes never share one, and a span
// handed to the pool starts a new one.
TEST_F(MixedCentralTest, EveryLifeOfASpanHasItsOwnGeneration) {
  std::set<uint32_t> lives;
  size_t spans = 0;
  for (size_t size : {kSmall, kOther}) {
    std::set<Span*> seen;
    for (void* o : Take(size, 20 * kPageSize / size)) {
      Span* s = h.map->SpanOf(uintptr_t(o));
      if (seen.insert(s).second) lives.insert(s->generation);
    }
    spans += seen.size();
  }
  EXPECT_EQ(lives.size(), spans) << "a generation shared by two spans";
  EXPECT_EQ(lives.count(0u), 0u);

  std::vector<void*> small = Take(kSmall, (size_t{8} << 20) / kSmall);  // over MixedPool::kMinFreeBytes
  std::map<Span*, uint32_t> before;
  for (void* o : small) before.emplace(h.map->SpanOf(uintptr_t(o)), h.map->SpanOf(uintptr_t(o))->generation);
  for (size_t i = 0; i < small.size(); ++i) {
    if (i % 8 != 0) Give(kSmall, small[i]);
  }
  size_t adopted = 0;
  for (const auto& [s, generation] : before) {
    if (s->LoadState() != SpanState::kMixed) continue;
    ++adopted;
    EXPECT_NE(s->generation, generation) << "adopted, the span keeps its old life";
    EXPECT_EQ(lives.count(s->generation), 0u);
  }
  EXPECT_GT(adopted, 0u);
  EXPECT_TRUE(Checked());
}

TEST_F(MixedCentralTest, SparseSpansOfAClassWithRoomServeAnotherSize) {
  // 16 MiB of 64-byte objects, 90% freed at random, then 200-byte objects:
  // frag at a sixteenth.
  const size_t n = (size_t{16} << 20) / kSmall;
  std::vector<void*> small = Take(kSmall, n);
  ASSERT_EQ(small.size(), n);
  auto stamp = [](void* o) { return static_cast<unsigned char>(uintptr_t(o) >> 6); };
  for (void* o : small) memset(o, stamp(o), kSmall);
  std::mt19937 rng(7);
  std::shuffle(small.begin(), small.end(), rng);
  const size_t keep = n / 10;
  for (size_t i = keep; i < n; ++i) Give(kSmall, small[i]);
  small.resize(keep);
  MixedStats st = pool.Stats();
  EXPECT_GT(st.adopted, n / 64 * 9 / 10) << "nearly every span went to the pool";
  EXPECT_EQ(Of(kSmall).Stats().spans_mixed, st.adopted);
  EXPECT_TRUE(Checked());

  const size_t pages_before = h.heap.Stats().used_pages;
  std::vector<void*> other = Take(kOther, n * 9 / 10 * kSmall / 200);
  size_t in_holes = 0;
  for (void* o : other) {
    Span* s = h.map->SpanOf(uintptr_t(o));
    if (s->state == SpanState::kMixed) {
      ++in_holes;
      EXPECT_EQ(Pool::ObjectBytes(s, uintptr_t(o)), kOther);
    }
    memset(o, 0xee, kOther);
  }
  EXPECT_GT(in_holes, other.size() * 3 / 4) << "most of the refill went into the holes";
  const size_t new_pages = h.heap.Stats().used_pages - pages_before;
  EXPECT_LT(new_pages * kPageSize, other.size() * kOther / 4) << "and took few new pages";
  // The 64-byte objects that stayed are intact: nothing was carved over them.
  for (void* o : small) {
    const unsigned char* b = static_cast<unsigned char*>(o);
    EXPECT_EQ(std::count(b, b + kSmall, stamp(o)), long(kSmall)) << o;
  }
  EXPECT_TRUE(Checked());

  for (void* o : small) Give(kSmall, o);
  for (void* o : other) Give(kOther, o);
  Of(kSmall).ReleaseEmpty();
  Of(kOther).ReleaseEmpty();
  EXPECT_EQ(pool.Stats().spans, 0u) << "every mixed span emptied and went back";
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
  EXPECT_EQ(Of(kSmall).Stats().objects_out, 0u);
  EXPECT_EQ(Of(kOther).Stats().objects_out, 0u);
  EXPECT_EQ(Of(kOther).Stats().mixed_objects, 0u);
  EXPECT_EQ(Of(kSmall).Stats().mixed_objects, 0u);
  EXPECT_TRUE(Checked());
}

TEST_F(MixedCentralTest, AClassThatChurnsThroughTheHolesTakesSpansOfItsOwn) {
  KeepOneIn(size_t{8} << 20, 8);
  ASSERT_GT(pool.Stats().adopted, 0u);
  // A batch out, the batch back: a malloc/free loop, as a thread cache
  // that overflows and refills would do it.
  for (int round = 0; round < 200; ++round) {
    std::vector<void*> batch = Take(kOther, Info(SizeToClass(kOther)).batch);
    for (void* o : batch) Give(kOther, o);
  }
  EXPECT_GT(Of(kOther).Stats().spans, 0u) << "it went back to spans of its own";
  const uint64_t carved = pool.Stats().carved;
  for (int round = 0; round < 50; ++round) {
    std::vector<void*> batch = Take(kOther, Info(SizeToClass(kOther)).batch);
    for (void* o : batch) Give(kOther, o);
  }
  EXPECT_EQ(pool.Stats().carved, carved) << "and stays there while it churns";
  EXPECT_TRUE(Checked());
}

// A class whose spans the pool adopted, all of its objects then back in
// them, never carved one: it is not judged to churn, and carves the holes
// another class leaves (it took spans of its own, for the rest of the
// process, before).
TEST_F(MixedCentralTest, AClassWhoseSpansWentToThePoolIsNotJudgedToChurn) {
  const size_t n = (size_t{8} << 20) / kSmall;
  std::vector<void*> small = Take(kSmall, n);
  for (size_t i = 0; i < n; ++i) {
    if (i % 8 != 0) Give(kSmall, small[i]);
  }
  for (size_t i = 0; i < n; i += 8) Give(kSmall, small[i]);
  Of(kSmall).ReleaseEmpty();
  ASSERT_GT(pool.Stats().adopted, 0u);
  ASSERT_EQ(Of(kSmall).Stats().spans, 0u);
  ASSERT_EQ(pool.Stats().carved, 0u);
  // Holes: 208-byte objects, all but one in eight given back.
  const size_t m = (size_t{8} << 20) / kOther;
  std::vector<void*> other = Take(kOther, m);
  for (size_t i = 0; i < m; ++i) {
    if (i % 8 != 0) Give(kOther, other[i]);
  }
  ASSERT_GT(pool.Stats().spans, 0u);
  const uint64_t carved = pool.Stats().carved;
  std::vector<void*> again = Take(kSmall, 100);
  EXPECT_GT(pool.Stats().carved, carved) << "the 64-byte class refused the holes";
  EXPECT_EQ(Of(kSmall).Stats().spans, 0u) << "and took spans of its own";
  for (void* o : again) Give(kSmall, o);
  for (size_t i = 0; i < m; i += 8) Give(kOther, other[i]);
  EXPECT_TRUE(Checked());
}

// The verdict lapses: a class that churned through the holes and then
// grows by a window of objects carves them again.
TEST_F(MixedCentralTest, AChurningClassThatThenGrowsCarvesAgain) {
  KeepOneIn(size_t{8} << 20, 8);
  for (int round = 0; round < 200; ++round) {
    std::vector<void*> batch = Take(kOther, Info(SizeToClass(kOther)).batch);
    for (void* o : batch) Give(kOther, o);
  }
  ASSERT_GT(Of(kOther).Stats().spans, 0u) << "churn seen: spans of its own";
  const uint64_t carved = pool.Stats().carved;
  std::vector<void*> grow = Take(kOther, 100000);
  EXPECT_GT(pool.Stats().carved, carved) << "pool free " << pool.Stats().free_bytes << " bytes; the class took "
                                         << Of(kOther).Stats().spans << " spans of its own";
  for (void* o : grow) Give(kOther, o);
  EXPECT_TRUE(Checked());
}

TEST_F(MixedCentralTest, AClassWithLittleRoomKeepsItsSpans) {
  // 1 MiB of objects, all but a few freed: under kMinFreeBytes free.
  KeepOneIn(size_t{1} << 20, 64);
  EXPECT_EQ(pool.Stats().adopted, 0u);
  EXPECT_EQ(Of(kSmall).Stats().spans_mixed, 0u);
}

TEST_F(MixedCentralTest, StatsCountObjectsInMixedSpansOnce) {
  const size_t n = KeepOneIn(size_t{8} << 20, 8);
  ASSERT_GT(pool.Stats().adopted, 0u);
  CentralStats cs = Of(kSmall).Stats();
  EXPECT_EQ(cs.objects_out, n / 8);
  EXPECT_LE(cs.mixed_objects, n / 8);
  EXPECT_EQ(cs.free_objects, cs.spans * Info(SizeToClass(kSmall)).objects - (cs.objects_out - cs.mixed_objects))
      << "own spans' free objects";
  std::vector<void*> other = Take(kOther, 1000);
  EXPECT_EQ(Of(kOther).Stats().mixed_objects, 1000u);
  EXPECT_EQ(Of(kOther).Stats().spans, 0u) << "the class took no span of its own";
  EXPECT_EQ(Of(kOther).Stats().objects_out, 1000u);
  for (void* o : other) Give(kOther, o);
  EXPECT_EQ(Of(kOther).Stats().mixed_objects, 0u);
  EXPECT_TRUE(Checked());
}

}  // namespace
}  // namespace strata
