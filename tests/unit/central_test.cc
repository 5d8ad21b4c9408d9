// CentralList (alloc/middle/central.h) on a PageHeap on a FakeOs: batches
// of objects, span states, spans going back to the page heap, and the
// double-free check.
#include <gtest/gtest.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <set>
#include <vector>

#include "alloc/middle/central.h"
#include "tests/unit/abort.h"
#include "tests/unit/fake_heap.h"

namespace strata {
namespace {

using strata_test::FakeHeap;
using Central = CentralList<strata_test::FakeOs>;

// Takes n objects and returns them as a vector, checking the chain's shape.
std::vector<void*> Take(Central& c, int n, int expect = -1) {
  void* head = reinterpret_cast<void*>(1);
  void* tail = reinterpret_cast<void*>(1);
  int got = c.RemoveRange(&head, &tail, n);
  EXPECT_EQ(got, expect < 0 ? n : expect);
  std::vector<void*> out;
  if (got == 0) {
    EXPECT_EQ(head, nullptr);
    EXPECT_EQ(tail, nullptr);
    return out;
  }
  void* o = head;
  for (int i = 0; i < got; ++i) {
    EXPECT_NE(o, nullptr) << "chain ends after " << i << " of " << got;
    if (o == nullptr) break;
    out.push_back(o);
    if (i == got - 1) {
      EXPECT_EQ(o, tail);
      EXPECT_EQ(*static_cast<void**>(o), nullptr) << "the chain is null-terminated";
    }
    o = *static_cast<void**>(o);
  }
  return out;
}

// RemoveRange with a fresh allowance; the chain as a sorted vector.
std::vector<void*> TakeSorted(Central& c, int n, int fresh) {
  void* head = nullptr;
  void* tail = nullptr;
  int got = c.RemoveRange(&head, &tail, n, fresh);
  std::vector<void*> out;
  for (void* o = got > 0 ? head : nullptr; o != nullptr; o = *static_cast<void**>(o)) out.push_back(o);
  EXPECT_EQ(out.size(), size_t(got));
  if (got > 0) {
    EXPECT_EQ(out.back(), tail);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Links objs, in order, into a null-terminated chain through first words.
void Link(const std::vector<void*>& objs) {
  for (size_t i = 0; i + 1 < objs.size(); ++i) *static_cast<void**>(objs[i]) = objs[i + 1];
  *static_cast<void**>(objs.back()) = nullptr;
}

// Back into their spans.
void Give(Central& c, const std::vector<void*>& objs) {
  if (objs.empty()) return;
  Link(objs);
  c.InsertRange(objs.front(), int(objs.size()));
}

// As a thread cache gives objects back: with the chain's tail, so that a
// whole batch may wait in the transfer cache.
void GiveWithTail(Central& c, const std::vector<void*>& objs) {
  Link(objs);
  c.InsertRange(objs.front(), objs.back(), int(objs.size()));
}

// Every object distinct, 16-aligned, inside a live span of `cls` at an
// object boundary, and no two overlapping.
::testing::AssertionResult ObjectsOk(FakeHeap& h, size_t cls, std::vector<void*> objs) {
  size_t size = Info(cls).size;
  for (void* o : objs) {
    uintptr_t a = uintptr_t(o);
    if (a % kMinAlign != 0) return ::testing::AssertionFailure() << o << " not 16-aligned";
    if (h.map->ClassOf(a) != cls) return ::testing::AssertionFailure() << o << " has class " << h.map->ClassOf(a);
    Span* s = h.map->SpanOf(a);
    if (s == nullptr || s->state != SpanState::kSmall || s->cls != cls) {
      return ::testing::AssertionFailure() << o << " is not in a span of its class";
    }
    if (a < s->start || a + size > s->start + size_t(Info(cls).objects) * size) {
      return ::testing::AssertionFailure() << o << " outside its span's objects";
    }
    if ((a - s->start) % size != 0) return ::testing::AssertionFailure() << o << " not at an object boundary";
    if (h.map->SpanOf(a + size - 1) != s) return ::testing::AssertionFailure() << o << " crosses its span";
  }
  std::sort(objs.begin(), objs.end());
  for (size_t i = 1; i < objs.size(); ++i) {
    if (objs[i] == objs[i - 1]) return ::testing::AssertionFailure() << objs[i] << " handed out twice";
    if (uintptr_t(objs[i - 1]) + size > uintptr_t(objs[i])) {
      return ::testing::AssertionFailure() << objs[i - 1] << " and " << objs[i] << " overlap";
    }
  }
  return ::testing::AssertionSuccess();
}

size_t SpansOf(FakeHeap& h, const std::vector<void*>& objs) {
  std::set<Span*> spans;
  for (void* o : objs) spans.insert(h.map->SpanOf(uintptr_t(o)));
  return spans.size();
}

// A class with at least `min_objects` objects per span.
size_t ClassWithObjects(uint32_t min_objects, uint32_t max_objects) {
  for (size_t c = 1; c < kNumClasses; ++c) {
    if (Info(c).objects >= min_objects && Info(c).objects <= max_objects) return c;
  }
  return 0;
}

// ---- per class ----

class CentralPerClass : public ::testing::TestWithParam<size_t> {};

TEST_P(CentralPerClass, BatchesAreDistinctObjectsOfTheClassAndAllComeBack) {
  const size_t cls = GetParam();
  const ClassInfo& info = Info(cls);
  FakeHeap h;
  Central c;
  std::vector<void*> slots(Central::TransferPointers(cls));
  c.Init(uint8_t(cls), &h.heap, slots.data());
  // Three spans' worth, in batches of the class's batch size.
  const size_t total = 3 * size_t(info.objects);
  std::vector<void*> all;
  while (all.size() < total) {
    int n = int(std::min<size_t>(info.batch, total - all.size()));
    std::vector<void*> got = Take(c, n);
    ASSERT_EQ(got.size(), size_t(n));
    all.insert(all.end(), got.begin(), got.end());
  }
  ASSERT_TRUE(ObjectsOk(h, cls, all));
  EXPECT_EQ(SpansOf(h, all), 3u);
  // Fill every object with its own byte: no overlap survives this.
  for (size_t i = 0; i < all.size(); ++i) memset(all[i], int(i & 0xff), info.size);
  for (size_t i = 0; i < all.size(); ++i) {
    const unsigned char* p = static_cast<const unsigned char*>(all[i]);
    ASSERT_EQ(p[0], i & 0xff);
    ASSERT_EQ(p[info.size - 1], i & 0xff);
  }
  CentralStats st = c.Stats();
  EXPECT_EQ(st.spans, 3u);
  EXPECT_EQ(st.partial_spans, 0u) << "every span is full";
  EXPECT_EQ(st.objects_out, total);
  EXPECT_EQ(st.free_objects, 0u);
  EXPECT_EQ(h.heap.Stats().used_pages, 3 * Order{info.order}.pages().n);
  ASSERT_TRUE(h.Checked());

  // Back in batches, in an order that mixes the spans.
  std::vector<void*> shuffled = all;
  std::reverse(shuffled.begin(), shuffled.end());
  for (size_t i = 0; i < shuffled.size(); i += info.batch) {
    size_t end = std::min(shuffled.size(), i + info.batch);
    Give(c, std::vector<void*>(shuffled.begin() + long(i), shuffled.begin() + long(end)));
  }
  st = c.Stats();
  EXPECT_EQ(st.objects_out, 0u);
  EXPECT_EQ(st.spans, Central::MaxEmptySpans(cls));
  EXPECT_EQ(st.empty_spans, Central::MaxEmptySpans(cls));
  EXPECT_EQ(st.partial_spans, 0u);
  EXPECT_EQ(st.span_allocs, 3u);
  EXPECT_EQ(st.span_frees, 3u - Central::MaxEmptySpans(cls));
  EXPECT_EQ(h.heap.Stats().used_pages, Central::MaxEmptySpans(cls) * Order{info.order}.pages().n);
  c.ReleaseEmpty();
  EXPECT_EQ(c.Stats().spans, 0u);
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
  EXPECT_TRUE(h.Checked());
}

INSTANTIATE_TEST_SUITE_P(AllClasses, CentralPerClass, ::testing::Range<size_t>(1, kNumClasses),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return "class" + std::to_string(i.param) + "_" +
                                  std::to_string(Info(i.param).size);
                         });

// ---- shapes ----

struct CentralTest : ::testing::Test {
  void Use(size_t cls, PeakTracker* peak = nullptr) {
    cls_ = cls;
    slots.assign(Central::TransferPointers(cls), nullptr);
    c.Init(uint8_t(cls), &h.heap, slots.data(), peak);
  }
  size_t objects() const { return Info(cls_).objects; }
  size_t span_pages() const { return Order{Info(cls_).order}.pages().n; }

  FakeHeap h;
  Central c;
  std::vector<void*> slots;
  size_t cls_ = 0;
};

TEST_F(CentralTest, OneBatchCanSpanSeveralSpans) {
  size_t cls = ClassWithObjects(2, 8);
  ASSERT_NE(cls, 0u);
  Use(cls);
  int n = int(3 * objects() + 1);
  std::vector<void*> got = Take(c, n);
  ASSERT_EQ(got.size(), size_t(n));
  EXPECT_TRUE(ObjectsOk(h, cls, got));
  EXPECT_EQ(SpansOf(h, got), 4u);
  CentralStats st = c.Stats();
  EXPECT_EQ(st.spans, 4u);
  EXPECT_EQ(st.partial_spans, 1u);
  EXPECT_EQ(st.free_objects, objects() - 1);
  Give(c, got);
  EXPECT_EQ(c.Stats().objects_out, 0u);
}

TEST_F(CentralTest, SingleObjectSpans) {
  size_t cls = kNumClasses - 1;  // the largest small class: one per span
  Use(cls);
  ASSERT_EQ(objects(), 1u);
  std::vector<void*> got = Take(c, 5);
  EXPECT_TRUE(ObjectsOk(h, cls, got));
  EXPECT_EQ(SpansOf(h, got), 5u);
  EXPECT_EQ(c.Stats().partial_spans, 0u);
  Give(c, got);
  // Its spans are 64 KiB: one is kept empty, the others go back to the page
  // heap, and malloc_trim's ReleaseEmpty gives back the last.
  EXPECT_EQ(c.Stats().spans, 1u);
  EXPECT_EQ(c.Stats().empty_spans, 1u);
  EXPECT_EQ(h.heap.Stats().used_pages, span_pages());
  c.ReleaseEmpty();
  EXPECT_EQ(c.Stats().spans, 0u);
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
}

TEST(CentralEmptySpans, OnlySpansUpTo64KiBAreKeptEmpty) {
  struct Case {
    size_t size;
    size_t span_bytes;
    bool kept;
  };
  const Case cases[] = {
      {64, 4 << 10, true},          {4096, 32 << 10, true},     {20 << 10, 64 << 10, true},
      {24 << 10, 128 << 10, false}, {32 << 10, 64 << 10, true}, {36 << 10, 256 << 10, false},
      {48 << 10, 256 << 10, false}, {kMaxSmall, 64 << 10, true},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.size);
    const size_t cls = SizeToClass(k.size);
    const ClassInfo& info = Info(cls);
    ASSERT_EQ(Order{info.order}.bytes(), k.span_bytes);
    FakeHeap h;
    Central c;
    std::vector<void*> slots(Central::TransferPointers(cls));
    c.Init(uint8_t(cls), &h.heap, slots.data());
    std::vector<void*> got = Take(c, int(info.objects));
    ASSERT_EQ(c.Stats().spans, 1u);
    Give(c, got);
    EXPECT_EQ(c.Stats().transfer_objects, 0u);
    EXPECT_EQ(c.Stats().empty_spans, k.kept ? 1u : 0u);
    EXPECT_EQ(h.heap.Stats().used_pages, k.kept ? Order{info.order}.pages().n : 0u);
    c.ReleaseEmpty();
    EXPECT_EQ(h.heap.Stats().used_pages, 0u);
    EXPECT_TRUE(h.Checked());
  }
}

// While the page heap is eager (the purger's growth watch), a span that
// empties goes back to it, where the purger can give its pages back, even
// where one would be kept.
TEST(CentralEmptySpans, NoneIsKeptWhileThePageHeapIsEager) {
  const size_t cls = SizeToClass(64);
  ASSERT_EQ(Central::MaxEmptySpans(cls), 1u);
  FakeHeap h;
  h.heap.set_decay_ms(1000);
  Central c;
  std::vector<void*> slots(Central::TransferPointers(cls));
  c.Init(uint8_t(cls), &h.heap, slots.data());
  std::vector<void*> got = Take(c, int(Info(cls).objects));
  ASSERT_EQ(c.Stats().spans, 1u);
  for (void*& p : got) memset(p, 1, Info(cls).size);  // resident
  h.heap.set_eager(true);
  Give(c, got);
  EXPECT_EQ(c.Stats().empty_spans, 0u);
  EXPECT_EQ(c.Stats().spans, 0u);
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
  EXPECT_EQ(h.heap.ReleaseFree(UINT64_MAX), Order{Info(cls).order}.bytes()) << "the purger's to give back";
  EXPECT_TRUE(h.Checked());
}

// The growth watch gives back the pages inside free objects of 8 KiB and
// more whose spans still have objects out, once they were free at two
// calls in a row; each free object keeps its first page (its link), live
// objects keep everything, and an object given back once is not given
// back again until it was handed out.
TEST(CentralReleaseInside, FreeObjectsKeepTheirFirstPageAndLiveOnesAllOfIt) {
  const size_t cls = SizeToClass(48 << 10);
  const size_t size = Info(cls).size;
  ASSERT_GE(Info(cls).objects, 3u);
  FakeHeap h;
  Central c;
  std::vector<void*> slots(Central::TransferPointers(cls));
  c.Init(uint8_t(cls), &h.heap, slots.data());
  std::vector<void*> got = Take(c, int(Info(cls).objects));
  for (size_t i = 0; i < got.size(); ++i) memset(got[i], int(0x40 + i), size);
  std::vector<void*> freed(got.begin() + 1, got.end());  // got[0] stays live
  Give(c, freed);
  ASSERT_EQ(c.Stats().partial_spans, 1u);

  size_t expect = 0;
  for (void* o : freed) {
    const uintptr_t lo = AlignUp(uintptr_t(o) + 16, kPageSize), hi = AlignDown(uintptr_t(o) + size, kPageSize);
    expect += hi - lo;
  }
  const size_t releases = h.os.releases;
  EXPECT_EQ(c.ReleaseInsideFreeObjects(), 0u) << "the first call only marks them seen";
  EXPECT_EQ(h.os.releases, releases);
  EXPECT_EQ(c.ReleaseInsideFreeObjects(), expect);
  EXPECT_EQ(h.os.releases, releases + freed.size());
  EXPECT_EQ(c.ReleaseInsideFreeObjects(), 0u) << "marked: not given back twice";
  EXPECT_EQ(h.heap.Stats().released_bytes_total, expect);

  const unsigned char* live = static_cast<const unsigned char*>(got[0]);
  for (size_t i = 0; i < size; ++i) ASSERT_EQ(live[i], 0x40) << "the live object is whole at " << i;
  for (size_t j = 0; j < freed.size(); ++j) {
    const unsigned char* b = static_cast<const unsigned char*>(freed[j]);
    const uintptr_t o = uintptr_t(freed[j]);
    const size_t keep = AlignUp(o + 16, kPageSize) - o;
    const size_t end = AlignDown(o + size, kPageSize) - o;
    for (size_t i = 16; i < keep; ++i) ASSERT_EQ(b[i], 0x41 + j) << "its first page stays, at " << i;
    for (size_t i = keep; i < end; ++i) ASSERT_EQ(b[i], 0) << "its inside pages came back zeroed, at " << i;
    for (size_t i = end; i < size; ++i) ASSERT_EQ(b[i], 0x41 + j) << "a last page it shares stays, at " << i;
  }

  // Handed out again, an object loses its mark: freed again, its inside
  // pages go back again, after two calls. One handed out and freed between
  // the calls (reused at once) is not given back at the second.
  std::vector<void*> again = Take(c, int(freed.size()));
  for (void* o : again) memset(o, 0x7f, size);
  Give(c, again);
  EXPECT_EQ(c.ReleaseInsideFreeObjects(), 0u);
  std::vector<void*> reused = Take(c, 1);
  Give(c, reused);
  const uintptr_t r = uintptr_t(reused[0]);
  EXPECT_EQ(c.ReleaseInsideFreeObjects(), expect - (AlignDown(r + size, kPageSize) - AlignUp(r + 16, kPageSize)));
  EXPECT_EQ(static_cast<const unsigned char*>(reused[0])[size - 1], 0x7f) << "not given back";
  EXPECT_EQ(c.ReleaseInsideFreeObjects(), AlignDown(r + size, kPageSize) - AlignUp(r + 16, kPageSize));

  // Handed out, an object keeps whatever else its second word holds
  // (checking mode's marker lives there).
  std::vector<void*> one = Take(c, 1);
  static_cast<uintptr_t*>(one[0])[1] = 0x1234;
  Give(c, one);
  one = Take(c, 1);
  EXPECT_EQ(static_cast<uintptr_t*>(one[0])[1], 0x1234u);
  Give(c, one);

  // Every object back: the span (256 KiB, over what a list keeps empty)
  // goes back to the page heap.
  ASSERT_EQ(Central::MaxEmptySpans(cls), 0u);
  Give(c, {got[0]});
  EXPECT_EQ(c.Stats().spans, 0u);
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
  EXPECT_TRUE(h.Checked());
}

TEST(CentralReleaseInside, SmallerClassesAreLeftAlone) {
  const size_t cls = SizeToClass(4096);
  FakeHeap h;
  Central c;
  std::vector<void*> slots(Central::TransferPointers(cls));
  c.Init(uint8_t(cls), &h.heap, slots.data());
  std::vector<void*> got = Take(c, 4);
  for (void* o : got) memset(o, 1, Info(cls).size);
  Give(c, std::vector<void*>(got.begin() + 1, got.end()));
  const size_t releases = h.os.releases;
  EXPECT_EQ(c.ReleaseInsideFreeObjects(), 0u);
  EXPECT_EQ(h.os.releases, releases);
  Give(c, {got[0]});
  EXPECT_TRUE(h.Checked());
}

TEST_F(CentralTest, ReturnedObjectsAreReusedBeforeNewOnes) {
  Use(SizeToClass(48));
  std::vector<void*> first = Take(c, 10);
  Give(c, first);
  std::vector<void*> again = Take(c, 10);
  std::sort(first.begin(), first.end());
  std::sort(again.begin(), again.end());
  EXPECT_EQ(first, again);
  EXPECT_EQ(c.Stats().span_allocs, 1u);
  Give(c, again);
}

// `fresh` bounds the objects carved from never-used memory, not the ones
// that came back, whether to their spans or to the transfer cache.
TEST_F(CentralTest, FreshBoundsOnlyNeverUsedObjects) {
  Use(SizeToClass(4096));
  const int batch = Info(cls_).batch;
  ASSERT_GE(batch, 8);
  void* head;
  void* tail;
  EXPECT_EQ(c.RemoveRange(&head, &tail, batch, 1), 1) << "a new list: one fresh object";
  EXPECT_EQ(head, tail);
  std::vector<void*> one{head};
  std::vector<void*> three;
  ASSERT_EQ(c.RemoveRange(&head, &tail, batch, 3), 3);
  for (void* o = head; o != nullptr; o = *static_cast<void**>(o)) three.push_back(o);
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(h.heap.Stats().used_pages, span_pages());
  // Back to the span: taken again with no fresh allowance, and no more.
  Give(c, three);
  std::vector<void*> again = TakeSorted(c, batch, 0);
  std::sort(three.begin(), three.end());
  EXPECT_EQ(three, again);
  EXPECT_EQ(c.RemoveRange(&head, &tail, batch, 0), 0) << "nothing came back, nothing fresh allowed";
  // A whole batch through the transfer cache comes back whole.
  std::vector<void*> full = Take(c, batch);
  GiveWithTail(c, full);
  EXPECT_EQ(c.Stats().transfer_objects, size_t(batch));
  EXPECT_EQ(c.RemoveRange(&head, &tail, batch, 0), batch);
  EXPECT_EQ(head, full.front());
  EXPECT_EQ(tail, full.back());
  EXPECT_EQ(c.Stats().objects_out, size_t(4 + batch));
  EXPECT_TRUE(ObjectsOk(h, cls_, full));
  Give(c, full);
  Give(c, again);
  Give(c, one);
  EXPECT_EQ(c.Stats().objects_out, 0u);
  EXPECT_TRUE(h.Checked());
}

// With one thread, batches have no other thread to go to: the transfer
// cache keeps fewer of them (kTransferBatchesOneThread), and the rest go to
// their spans. With more threads again it keeps its full capacity.
TEST_F(CentralTest, TransferCacheKeepsLessWithOneThread) {
  Use(SizeToClass(64));
  const int batch = Info(cls_).batch;
  const size_t full = Central::TransferCap(cls_);
  const size_t one = Central::kTransferBatchesOneThread;
  ASSERT_LT(one, full);
  ASSERT_GE(one, 1u);
  std::vector<std::vector<void*>> batches;
  for (size_t i = 0; i < full; ++i) batches.push_back(Take(c, batch));
  c.SetThreaded(false);
  for (const auto& b : batches) GiveWithTail(c, b);
  CentralStats st = c.Stats();
  EXPECT_EQ(st.transfer_objects, one * size_t(batch));
  EXPECT_EQ(st.objects_out, 0u);
  EXPECT_EQ(st.free_objects, st.spans * objects() - st.transfer_objects);
  for (auto& b : batches) b = Take(c, batch);
  c.SetThreaded(true);
  for (const auto& b : batches) GiveWithTail(c, b);
  EXPECT_EQ(c.Stats().transfer_objects, full * size_t(batch));
  EXPECT_TRUE(h.Checked());
}

// Whole batches wait in the transfer cache as arrays of addresses, up to
// its capacity; each comes out as the chain that went in, last in first
// out, whatever its objects' first words hold meanwhile. DrainIdle puts
// them back into their spans once the cache went unused for a round.
TEST_F(CentralTest, TransferCacheKeepsBatchesUpToItsCapacityAndDrainsWhenIdle) {
  Use(SizeToClass(4096));
  const int batch = Info(cls_).batch;
  const size_t cap = Central::TransferCap(cls_);
  ASSERT_GE(cap, 2u);
  ASSERT_LT(cap, Central::kTransferSlots) << "bounded by bytes for this class";
  std::vector<std::vector<void*>> batches;
  for (size_t i = 0; i <= cap; ++i) batches.push_back(Take(c, batch));
  for (const auto& b : batches) ASSERT_TRUE(ObjectsOk(h, cls_, b));
  EXPECT_FALSE(c.HoldsTransfer());
  for (const auto& b : batches) GiveWithTail(c, b);
  EXPECT_TRUE(c.HoldsTransfer()) << "work left for the purger";
  CentralStats st = c.Stats();
  EXPECT_EQ(st.transfer_objects, cap * size_t(batch)) << "full: the last batch went to its spans";
  EXPECT_EQ(st.objects_out, 0u);
  EXPECT_EQ(st.free_objects, st.spans * objects() - st.transfer_objects);
  // What the waiting objects hold does not matter: their addresses do.
  for (size_t i = 0; i < cap; ++i) {
    for (void* o : batches[i]) memset(o, 0xA5, sizeof(void*));
  }
  for (size_t i = cap; i-- > 1;) {
    std::vector<void*> got = Take(c, batch);
    EXPECT_EQ(got, batches[i]) << "batch " << i << ": the newest first, in its order";
  }
  EXPECT_EQ(c.Stats().transfer_objects, size_t(batch)) << "one left";
  // Used since the last round: left alone. Idle for a round: drained.
  c.DrainIdle(false);
  EXPECT_EQ(c.Stats().transfer_objects, size_t(batch));
  c.DrainIdle(false);
  EXPECT_FALSE(c.HoldsTransfer());
  st = c.Stats();
  EXPECT_EQ(st.transfer_objects, 0u);
  EXPECT_EQ(st.objects_out, (cap - 1) * size_t(batch));
  EXPECT_EQ(st.free_objects, st.spans * objects() - st.objects_out);
  EXPECT_TRUE(h.Checked());
  for (size_t i = 1; i < cap; ++i) Give(c, batches[i]);
  c.ReleaseEmpty();
  EXPECT_EQ(c.Stats().spans, 0u);
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
}

// With the first batch's storage apart (how the heap lays out every
// class's: Init's `first`), the first batch waits there and the others in
// the rest, each where it belongs, and they come out as they went in.
TEST(CentralTransferStorage, TheFirstBatchWaitsApartFromTheRest) {
  const size_t cls = SizeToClass(4096);
  const int batch = Info(cls).batch;
  const size_t cap = Central::TransferCap(cls);
  ASSERT_GE(cap, 3u);
  FakeHeap h;
  Central c;
  // As in the heap: every class's first batch, then the rest; here with a
  // guard slot after each part. The rest comes first in memory, too: the
  // list keeps a signed distance.
  std::vector<void*> storage(Central::TransferRestPointers(cls) + 1 + kMaxBatch + 1, nullptr);
  void** rest_at = storage.data();
  void** first_at = storage.data() + (Central::TransferRestPointers(cls) + 1);
  c.Init(uint8_t(cls), &h.heap, rest_at, nullptr, nullptr, first_at);
  auto first = [&](size_t i) { return first_at[i]; };
  auto rest = [&](size_t i) { return rest_at[i]; };
  const size_t rest_n = Central::TransferRestPointers(cls);
  std::vector<std::vector<void*>> batches;
  for (size_t i = 0; i < cap; ++i) batches.push_back(Take(c, batch));
  for (const auto& b : batches) GiveWithTail(c, b);
  EXPECT_EQ(c.Stats().transfer_objects, cap * size_t(batch));
  for (int k = 0; k < batch; ++k) EXPECT_EQ(first(size_t(k)), batches[0][size_t(k)]) << "batch 0 in `first`";
  EXPECT_EQ(first(size_t(batch)), nullptr) << "nothing past it";
  for (size_t i = 1; i < cap; ++i) {
    for (int k = 0; k < batch; ++k) {
      EXPECT_EQ(rest((i - 1) * size_t(batch) + size_t(k)), batches[i][size_t(k)]) << "batch " << i << " in the rest";
    }
  }
  EXPECT_EQ(rest(rest_n), nullptr) << "nothing past the rest";
  for (size_t i = cap; i-- > 0;) EXPECT_EQ(Take(c, batch), batches[i]) << "batch " << i;
  EXPECT_FALSE(c.HoldsTransfer());
  for (const auto& b : batches) Give(c, b);
  c.ReleaseEmpty();
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
  EXPECT_TRUE(h.Checked());
}

// Objects back in a span kept empty came back too: no fresh allowance
// needed for them.
TEST_F(CentralTest, AKeptEmptySpanServesWithoutFreshObjects) {
  Use(SizeToClass(4096));
  const int batch = Info(cls_).batch;
  ASSERT_GE(batch, 4);
  std::vector<void*> three = Take(c, 3);
  Give(c, three);
  ASSERT_EQ(c.Stats().empty_spans, 1u);
  std::vector<void*> again = TakeSorted(c, batch, 0);
  std::sort(three.begin(), three.end());
  EXPECT_EQ(three, again);
  EXPECT_EQ(c.Stats().span_allocs, 1u);
  Give(c, again);
  EXPECT_TRUE(h.Checked());
}

TEST_F(CentralTest, SpanStatesFullPartialEmpty) {
  size_t cls = ClassWithObjects(8, 64);
  ASSERT_NE(cls, 0u);
  Use(cls);
  const size_t n = objects();
  std::vector<void*> one = Take(c, int(n));  // exactly one span: full
  CentralStats st = c.Stats();
  EXPECT_EQ(st.spans, 1u);
  EXPECT_EQ(st.partial_spans, 0u);
  EXPECT_EQ(st.empty_spans, 0u);
  EXPECT_EQ(st.objects_out, n);
  EXPECT_EQ(st.free_objects, 0u);

  Give(c, {one.back()});  // full -> partial
  one.pop_back();
  st = c.Stats();
  EXPECT_EQ(st.partial_spans, 1u);
  EXPECT_EQ(st.objects_out, n - 1);
  EXPECT_EQ(st.free_objects, 1u);

  std::vector<void*> back = Take(c, 1);  // partial -> full again
  EXPECT_EQ(c.Stats().partial_spans, 0u);
  one.push_back(back[0]);

  Give(c, one);  // -> empty, kept
  st = c.Stats();
  EXPECT_EQ(st.spans, 1u);
  EXPECT_EQ(st.partial_spans, 0u);
  EXPECT_EQ(st.empty_spans, 1u);
  EXPECT_EQ(st.objects_out, 0u);
  EXPECT_EQ(st.free_objects, n);
  EXPECT_EQ(h.heap.Stats().used_pages, span_pages());

  std::vector<void*> two = Take(c, int(2 * n));  // reuses the empty span
  st = c.Stats();
  EXPECT_EQ(st.spans, 2u);
  EXPECT_EQ(st.empty_spans, 0u);
  EXPECT_EQ(st.span_allocs, 2u);
  EXPECT_EQ(h.heap.Stats().used_pages, 2 * span_pages());

  Give(c, two);  // one kept empty, the other back to the page heap
  st = c.Stats();
  EXPECT_EQ(st.spans, 1u);
  EXPECT_EQ(st.empty_spans, 1u);
  EXPECT_EQ(st.span_frees, 1u);
  EXPECT_EQ(h.heap.Stats().used_pages, span_pages());

  c.ReleaseEmpty();
  st = c.Stats();
  EXPECT_EQ(st.spans, 0u);
  EXPECT_EQ(st.empty_spans, 0u);
  EXPECT_EQ(st.span_frees, 2u);
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
  EXPECT_TRUE(h.Checked());
  c.ReleaseEmpty();  // idempotent
  EXPECT_EQ(c.Stats().span_frees, 2u);
}

TEST_F(CentralTest, ManySpansReturnToThePageHeap) {
  Use(SizeToClass(4096));
  std::vector<void*> objs = Take(c, int(50 * objects()));
  EXPECT_EQ(c.Stats().spans, 50u);
  const uint64_t before = h.heap.Stats().used_pages;
  EXPECT_EQ(before, 50 * span_pages());
  // Give back everything but one object of the first span.
  Give(c, std::vector<void*>(objs.begin() + 1, objs.end()));
  EXPECT_EQ(c.Stats().spans, 1u + Central::MaxEmptySpans(cls_));
  EXPECT_EQ(h.heap.Stats().used_pages, (1 + Central::MaxEmptySpans(cls_)) * span_pages());
  EXPECT_TRUE(h.Checked());
  Give(c, {objs[0]});
  c.ReleaseEmpty();
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.splits, st.merges) << "every span merged back";
}

TEST_F(CentralTest, InterleavedRemoveAndInsertKeepCountsRight) {
  Use(SizeToClass(96));
  std::vector<void*> held;
  uint64_t seed = 12345;
  for (int round = 0; round < 2000; ++round) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    int n = int(1 + (seed >> 33) % 40);
    if (held.size() < 2000 && (seed >> 20) % 3 != 0) {
      std::vector<void*> got = Take(c, n);
      held.insert(held.end(), got.begin(), got.end());
    } else if (!held.empty()) {
      size_t k = std::min(held.size(), size_t(n));
      std::vector<void*> give(held.end() - long(k), held.end());
      held.resize(held.size() - k);
      Give(c, give);
    }
    ASSERT_EQ(c.Stats().objects_out, held.size());
  }
  EXPECT_TRUE(ObjectsOk(h, SizeToClass(96), held));
  CentralStats st = c.Stats();
  EXPECT_EQ(st.spans * objects(), st.objects_out + st.free_objects + st.transfer_objects);
  Give(c, held);
  c.ReleaseEmpty();
  EXPECT_EQ(h.heap.Stats().used_pages, 0u);
}

TEST_F(CentralTest, OutOfMemoryGivesWhatItHas) {
  size_t cls = kNumClasses - 1;  // 64 KiB objects, one 16-page span each
  Use(cls);
  h.os.maps_left = 3;  // one chunk: 64 spans
  const size_t per_chunk = (size_t{1} << kMaxOrder) / span_pages();
  std::vector<void*> got = Take(c, int(per_chunk + 4), int(per_chunk));
  EXPECT_EQ(got.size(), per_chunk);
  EXPECT_TRUE(ObjectsOk(h, cls, got));
  EXPECT_EQ(c.Stats().objects_out, per_chunk);
  std::vector<void*> none = Take(c, 1, 0);
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(h.Checked());
  Give(c, got);
  EXPECT_EQ(c.Stats().objects_out, 0u);
}

// The heap's peak tracker hears of a class's objects out in steps of
// kPeakSlackBytes, not at every batch.
TEST_F(CentralTest, ThePeakTrackerHearsOfChangesInSteps) {
  PeakTracker peak;
  Use(SizeToClass(64), &peak);
  const int per_step = int(Central::kPeakSlackBytes / 64);  // 256 objects
  std::vector<void*> a = Take(c, per_step - 1);
  EXPECT_EQ(peak.current(), 0) << "less than a step: not told yet";
  std::vector<void*> b = Take(c, 1);
  EXPECT_EQ(peak.current(), Central::kPeakSlackBytes);
  EXPECT_EQ(peak.peak(), Central::kPeakSlackBytes);
  Give(c, a);
  EXPECT_EQ(peak.current(), Central::kPeakSlackBytes) << "back by less than a step";
  Give(c, b);
  EXPECT_EQ(peak.current(), 0);
  EXPECT_EQ(peak.peak(), Central::kPeakSlackBytes) << "the peak stays";
  EXPECT_EQ(c.Stats().objects_out, 0u) << "the list's own count is exact at every step";
}

TEST_F(CentralTest, OutOfMemoryFromTheStart) {
  Use(1);
  h.os.maps_left = 0;
  std::vector<void*> none = Take(c, 8, 0);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(c.Stats().spans, 0u);
  EXPECT_EQ(c.Stats().objects_out, 0u);
}

TEST_F(CentralTest, LockIsTakenOncePerCall) {
  Use(2);
  uint64_t before = c.Stats().lock_acquisitions;
  std::vector<void*> a = Take(c, 7);
  Give(c, a);
  // RemoveRange, InsertRange, and the Stats() call that reads the count.
  EXPECT_EQ(c.Stats().lock_acquisitions, before + 3);
  EXPECT_EQ(c.Stats().lock_contended, 0u);
}

// ---- the page heap's releases and this list's lock ----

// Spans a list gives back go to the page heap under the list's lock (a span
// between owners while no lock is held was lost by a fork() in the child),
// and what the page heap then owes, a release, runs once the lock is
// dropped: with STRATA_DECAY_MS=0 every span that goes back is madvised.
TEST_F(CentralTest, SpansGoBackUnderTheLockAndTheirPagesAfterIt) {
  Use(SizeToClass(4096));
  h.heap.set_decay_ms(0);
  const size_t n = (Central::MaxEmptySpans(cls_) + 2) * objects();
  std::vector<void*> objs = Take(c, int(n));
  size_t madvised_unlocked = 0;
  h.os.on_release = [&](void*, size_t) {
    EXPECT_FALSE(c.lock().IsLocked()) << "madvise under the central list's lock";
    ++madvised_unlocked;
  };
  Give(c, objs);
  h.os.on_release = nullptr;
  EXPECT_GE(madvised_unlocked, 2u) << "the spans beyond those kept empty went back, released";
  PageHeapStats st = h.heap.Stats();
  EXPECT_EQ(st.free_pages, st.released_pages);
  EXPECT_EQ(st.used_pages, c.Stats().spans * span_pages());
  EXPECT_TRUE(h.Checked());
}

// Without a purger, a free that gives back its budget leaves the rest of
// the idle blocks to the next page-heap call: when that is a central list
// taking a new span, under its lock, the release waits until the lock is
// dropped (it had run under it: other threads of the class waited for the
// madvise, ~0.2-0.5 ms).
TEST_F(CentralTest, ARefillThatGoesOnWithTheHeapsReleaseDoesItAfterTheLock) {
  Use(SizeToClass(4096));
  h.os.now_ms = 10000;
  h.heap.set_decay_ms(1000);
  const Order mib{8};
  std::vector<Span*> idle, kept;
  for (int i = 0; i < 5; ++i) {
    idle.push_back(h.heap.Alloc(mib, SpanState::kPageObject, 0));
    kept.push_back(h.heap.Alloc(mib, SpanState::kPageObject, 0));  // so that no two idle ones merge
  }
  Span* trigger = h.heap.Alloc(Order{0}, SpanState::kSmall, 1);
  for (Span* s : idle) h.heap.Free(s);
  h.os.now_ms += 1000;
  h.heap.Free(trigger);  // one budget (2 MiB) goes back; the next call goes on
  const size_t budget = PageHeap<strata_test::FakeOs>::kFreePathReleaseBytes;
  ASSERT_EQ(h.os.released_bytes, budget);
  size_t madvised = 0;
  h.os.on_release = [&](void*, size_t) {
    EXPECT_FALSE(c.lock().IsLocked()) << "madvise under the central list's lock";
    ++madvised;
  };
  std::vector<void*> objs = Take(c, int(objects()));  // a new span from the page heap
  h.os.on_release = nullptr;
  EXPECT_GT(madvised, 0u) << "the refill went on with the release";
  EXPECT_GT(h.os.released_bytes, budget);
  Give(c, objs);
  for (Span* s : kept) h.heap.Free(s);
  EXPECT_TRUE(h.Checked());
}

// ---- fatal errors ----

using CentralDeathTest = CentralTest;

TEST_F(CentralDeathTest, DoubleFreeIntoAnEmptySpanIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Use(SizeToClass(64));
  std::vector<void*> objs = Take(c, int(objects()));
  void* victim = objs[5];
  Give(c, objs);  // the span is now empty (and kept)
  ASSERT_EQ(c.Stats().empty_spans, 1u);
  EXPECT_ABORT(Give(c, {victim}), "strata: double free");
}

TEST_F(CentralDeathTest, DoubleFreeMessageNamesTheObject) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Use(SizeToClass(256));
  std::vector<void*> objs = Take(c, 3);
  void* victim = objs[1];
  Give(c, objs);
  // The child of a threadsafe death test is a new process: addresses differ,
  // so the message is matched by shape.
  const std::string expect = "^strata: double free of 0x[0-9a-f]+ \\(size class " +
                             std::to_string(SizeToClass(256)) + ", 256 bytes\\)\n$";
  EXPECT_ABORT(Give(c, {victim}), expect);
}

}  // namespace
}  // namespace strata
