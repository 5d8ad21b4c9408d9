// The strata_* C API (include/strata/strata.h) on the real OS: sizes,
// alignment, calloc, realloc, aligned allocation, release, and the thread
// caches' life cycle seen through the statistics snapshot.
#include <gtest/gtest.h>
#include <pthread.h>
#include <stdint.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "alloc/stats/stats.h"
#include "alloc/strata.h"
#include "strata/strata.h"
#include "tests/unit/pattern.h"

namespace strata {
namespace {

using strata_test::Fill;
using strata_test::FirstMismatch;
using strata_test::Intact;
using strata_test::SeedFor;

std::unique_ptr<Snapshot> Snap() {
  std::unique_ptr<Snapshot> s(new Snapshot);
  TakeSnapshot(s.get());
  return s;
}

// Live objects of a class, unclamped: out of the central list and not in
// any thread cache.
int64_t Live(const Snapshot& s, size_t cls) {
  return int64_t(s.central[cls].objects_out) - int64_t(s.cached_objects[cls]);
}

// A quiet heap's snapshot adds up: 0 <= live <= allocs.
::testing::AssertionResult Consistent(const Snapshot& s, size_t cls) {
  int64_t live = Live(s, cls);
  if (live < 0 || uint64_t(live) > s.threads.allocs[cls]) {
    return ::testing::AssertionFailure() << "class " << cls << ": " << s.central[cls].objects_out
                                         << " out of the central list, " << s.cached_objects[cls]
                                         << " cached, " << s.threads.allocs[cls] << " allocations";
  }
  return ::testing::AssertionSuccess();
}

// ---- every size ----

struct SizeRange {
  size_t lo, hi, step;
};

class ApiSizes : public ::testing::TestWithParam<SizeRange> {};

TEST_P(ApiSizes, MallocUsableAlignedAndContentsSurvive) {
  const SizeRange r = GetParam();
  constexpr size_t kWindow = 64;  // objects kept alive while others come and go
  struct Held {
    void* p;
    size_t n;
  };
  std::vector<Held> window(kWindow, Held{nullptr, 0});
  size_t i = 0;
  for (size_t n = r.lo; n <= r.hi; n += r.step, ++i) {
    void* p = strata_malloc(n);
    ASSERT_NE(p, nullptr) << n;
    ASSERT_EQ(uintptr_t(p) % 16, 0u) << n;
    size_t usable = strata_usable_size(p);
    ASSERT_GE(usable, n);
    if (n <= kMaxSmall) {
      ASSERT_EQ(usable, Info(SizeToClass(n)).size) << n;
    } else if (usable != AlignUp(n, kPageSize)) {
      // Up to 1 MiB, a whole free block of the page heap.
      ASSERT_LE(n, size_t{1} << 20) << n;
      ASSERT_EQ(usable, OrderFor(Pages{AlignUp(n, kPageSize) >> kPageShift}).bytes()) << n;
    }
    ASSERT_TRUE(Owns(p));
    Fill(p, usable, SeedFor(p, n));
    Held& slot = window[i % kWindow];
    if (slot.p != nullptr) {
      size_t bad = FirstMismatch(slot.p, strata_usable_size(slot.p), SeedFor(slot.p, slot.n));
      ASSERT_EQ(bad, SIZE_MAX) << "object of " << slot.n << " bytes damaged at " << bad;
      strata_free(slot.p);
    }
    slot = Held{p, n};
  }
  for (Held& h : window) {
    if (h.p == nullptr) continue;
    ASSERT_TRUE(Intact(h.p, strata_usable_size(h.p), SeedFor(h.p, h.n)));
    strata_free(h.p);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Ranges, ApiSizes,
    ::testing::Values(SizeRange{0, 1024, 1}, SizeRange{1025, 4096, 1}, SizeRange{4097, kMaxSmall, 13},
                      SizeRange{kMaxSmall - 4096, kMaxSmall + 70000, 127}, SizeRange{kMaxSmall + 70001, 300000, 61}),
    [](const ::testing::TestParamInfo<SizeRange>& i) {
      return std::to_string(i.param.lo) + "_to_" + std::to_string(i.param.hi);
    });

TEST(Api, ZeroBytesGiveDistinctFreeablePointers) {
  std::set<void*> seen;
  std::vector<void*> ps;
  for (int i = 0; i < 1000; ++i) {
    void* p = strata_malloc(0);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(seen.insert(p).second);
    EXPECT_GE(strata_usable_size(p), 1u);
    ps.push_back(p);
  }
  for (void* p : ps) strata_free(p);
}

TEST(Api, NullIsHarmless) {
  strata_free(nullptr);
  strata_free_sized(nullptr, 10);
  EXPECT_EQ(strata_usable_size(nullptr), 0u);
  EXPECT_FALSE(Owns(nullptr));
}

TEST(Api, FreeSized) {
  for (size_t n : {size_t(1), size_t(100), size_t(5000), kMaxSmall, kMaxSmall + 1, size_t(3) << 20}) {
    void* p = strata_malloc(n);
    ASSERT_NE(p, nullptr);
    memset(p, 7, n);
    strata_free_sized(p, n);
  }
}

TEST(Api, OwnsKnowsItsBlocks) {
  int on_stack = 0;
  void* small = strata_malloc(100);
  void* large = strata_malloc(kMaxSmall + 10);
  EXPECT_TRUE(Owns(small));
  EXPECT_TRUE(Owns(static_cast<char*>(small) + 8)) << "inside a small object";
  EXPECT_TRUE(Owns(large));
  EXPECT_FALSE(Owns(static_cast<char*>(large) + kPageSize)) << "inside a large object";
  EXPECT_FALSE(Owns(&on_stack));
  std::unique_ptr<int> from_glibc(new int(3));
  EXPECT_FALSE(Owns(from_glibc.get()));
  strata_free(small);
  strata_free(large);
}

// ---- calloc ----

TEST(Api, CallocIsZeroEvenWhenReusingMemory) {
  for (size_t n : {size_t(1), size_t(16), size_t(100), size_t(1000), size_t(4096), size_t(70000), kMaxSmall,
                   kMaxSmall + 1, size_t(1) << 20}) {
    for (int round = 0; round < 3; ++round) {
      std::vector<void*> dirty;
      for (int i = 0; i < 20; ++i) {
        void* p = strata_malloc(n);
        memset(p, 0xff, n);
        dirty.push_back(p);
      }
      for (void* p : dirty) strata_free(p);
      std::vector<void*> clean;
      for (int i = 0; i < 20; ++i) {
        unsigned char* p = static_cast<unsigned char*>(strata_calloc(1, n));
        ASSERT_NE(p, nullptr);
        for (size_t j = 0; j < n; ++j) ASSERT_EQ(p[j], 0) << "calloc(" << n << ") byte " << j;
        memset(p, 0xee, n);
        clean.push_back(p);
      }
      for (void* p : clean) strata_free(p);
    }
  }
}

TEST(Api, CallocOverflowFails) {
  EXPECT_EQ(strata_calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(strata_calloc(size_t(1) << 33, size_t(1) << 33), nullptr);
  void* p = strata_calloc(0, 100);
  EXPECT_NE(p, nullptr);
  strata_free(p);
  p = strata_calloc(3, 7);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(strata_usable_size(p), 21u);
  strata_free(p);
}

// ---- realloc ----

TEST(Api, ReallocNullAllocates) {
  void* p = strata_realloc(nullptr, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(strata_usable_size(p), 100u);
  strata_free(p);
}

TEST(Api, ReallocToZeroFreesAndReturnsNull) {
  const size_t cls = SizeToClass(200);
  void* p = strata_malloc(200);
  auto before = Snap();
  EXPECT_EQ(strata_realloc(p, 0), nullptr);
  auto after = Snap();
  EXPECT_EQ(Live(*after, cls), Live(*before, cls) - 1) << "the block was freed";
  EXPECT_EQ(Row(*after, cls).frees, Row(*before, cls).frees + 1);
  void* big = strata_malloc(size_t{2} << 20);  // above 1 MiB: a mapping of its own
  uint64_t large_frees = Snap()->large.frees;
  EXPECT_EQ(strata_realloc(big, 0), nullptr);
  EXPECT_EQ(Snap()->large.frees, large_frees + 1);
}

TEST(Api, ReallocWithinTheUsableSizeKeepsThePointer) {
  for (size_t n : {size_t(1), size_t(100), size_t(3000), size_t(60000)}) {
    char* p = static_cast<char*>(strata_malloc(n));
    size_t usable = strata_usable_size(p);
    Fill(p, usable, 11);
    EXPECT_EQ(strata_realloc(p, usable), p) << n;
    EXPECT_EQ(strata_realloc(p, n), p) << n;
    // Down to anything that keeps at least 3/4 of the class: in place.
    size_t smallest_kept = usable;
    while (smallest_kept > 1 &&
           Info(SizeToClass(smallest_kept - 1)).size > usable / 4 * 3) {
      --smallest_kept;
    }
    EXPECT_EQ(strata_realloc(p, smallest_kept), p) << n;
    EXPECT_EQ(strata_usable_size(p), usable) << n;
    EXPECT_TRUE(Intact(p, usable, 11));
    strata_free(p);
  }
}

// A block shrunk to a class at most 3/4 of its own moves there, so the
// bytes it no longer needs are not held (python3 shrinks most of its
// strings right after making them).
TEST(Api, ReallocShrinkingFarMovesToASmallerClass) {
  for (size_t n : {size_t(160), size_t(1000), size_t(5000), size_t(60000)}) {
    char* p = static_cast<char*>(strata_malloc(n));
    Fill(p, n, 14);
    const size_t to = n / 3;
    char* q = static_cast<char*>(strata_realloc(p, to));
    ASSERT_NE(q, nullptr) << n;
    EXPECT_NE(q, p) << n;
    EXPECT_EQ(strata_usable_size(q), Info(SizeToClass(to)).size) << n;
    EXPECT_LT(strata_usable_size(q), Info(SizeToClass(n)).size) << n;
    EXPECT_TRUE(Intact(q, to, 14)) << n;
    strata_free(q);
  }
  // The smallest class has nowhere smaller to go.
  void* p = strata_malloc(16);
  EXPECT_EQ(strata_realloc(p, 1), p);
  strata_free(p);
}

TEST(Api, ReallocGrowthKeepsContents) {
  size_t size = 1;
  char* p = static_cast<char*>(strata_malloc(size));
  Fill(p, size, 12);
  while (size < (size_t(8) << 20)) {
    size_t next = size * 3 / 2 + 7;
    char* q = static_cast<char*>(strata_realloc(p, next));
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(FirstMismatch(q, size, 12), SIZE_MAX) << size << " -> " << next;
    ASSERT_GE(strata_usable_size(q), next);
    Fill(q, next, 12);
    p = q;
    size = next;
  }
  strata_free(p);
}

TEST(Api, FailedReallocLeavesTheBlockIntact) {
  char* p = static_cast<char*>(strata_malloc(500));
  Fill(p, 500, 13);
  EXPECT_EQ(strata_realloc(p, SIZE_MAX - 100), nullptr);
  EXPECT_TRUE(Intact(p, 500, 13));
  EXPECT_TRUE(Owns(p));
  strata_free(p);
}

// ---- aligned allocation ----

class ApiAligned : public ::testing::TestWithParam<size_t> {};

TEST_P(ApiAligned, PowerOfTwoAlignments) {
  const size_t align = GetParam();
  std::vector<size_t> sizes = {1, 24, 100, 5000, 300000};
  if (align > 1) sizes.push_back(align - 1);
  sizes.push_back(align);
  sizes.push_back(align + 1);
  std::vector<void*> held;
  for (int round = 0; round < 3; ++round) {
    for (size_t n : sizes) {
      void* p = strata_aligned_alloc(align, n);
      ASSERT_NE(p, nullptr) << "align " << align << " size " << n;
      EXPECT_EQ(uintptr_t(p) % align, 0u) << "align " << align << " size " << n;
      EXPECT_EQ(uintptr_t(p) % 16, 0u);
      size_t usable = strata_usable_size(p);
      EXPECT_GE(usable, n);
      EXPECT_TRUE(Owns(p));
      Fill(p, n, SeedFor(p, n));
      held.push_back(p);
    }
  }
  size_t k = 0;
  for (int round = 0; round < 3; ++round) {
    for (size_t n : sizes) {
      void* p = held[k++];
      ASSERT_TRUE(Intact(p, n, SeedFor(p, n))) << "align " << align << " size " << n;
      strata_free(p);
    }
  }
}

// Like strata_malloc(0), a zero-byte aligned request gets a unique,
// freeable pointer (as glibc's aligned_alloc/posix_memalign do).
TEST_P(ApiAligned, ZeroBytes) {
  const size_t align = GetParam();
  void* a = strata_aligned_alloc(align, 0);
  void* b = strata_aligned_alloc(align, 0);
  ASSERT_NE(a, nullptr) << "align " << align;
  ASSERT_NE(b, nullptr) << "align " << align;
  EXPECT_NE(a, b);
  EXPECT_EQ(uintptr_t(a) % align, 0u);
  EXPECT_EQ(uintptr_t(b) % align, 0u);
  strata_free(a);
  strata_free(b);
}

std::vector<size_t> PowersOfTwo() {
  std::vector<size_t> v;
  for (size_t a = 1; a <= (size_t(64) << 20); a *= 2) v.push_back(a);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Pow2, ApiAligned, ::testing::ValuesIn(PowersOfTwo()),
                         [](const ::testing::TestParamInfo<size_t>& i) { return std::to_string(i.param); });

TEST(Api, AlignedAllocRejectsBadAlignments) {
  for (size_t a : {size_t(0), size_t(3), size_t(24), size_t(48), size_t(1000), (size_t(1) << 30) + 1,
                   size_t(1) << 31}) {
    EXPECT_EQ(strata_aligned_alloc(a, 64), nullptr) << a;
  }
}

TEST(Api, PageAlignedSmallRequestsComeFromTheirClass) {
  // Alignments up to a page are served by a class whose size is a multiple
  // of the alignment: the usable size says which.
  for (size_t align = 32; align <= kPageSize; align *= 2) {
    for (size_t n : {size_t(1), align - 1, align + 1, 3 * align}) {
      void* p = strata_aligned_alloc(align, n);
      ASSERT_NE(p, nullptr);
      size_t usable = strata_usable_size(p);
      EXPECT_EQ(usable % align, 0u) << "align " << align << " size " << n;
      EXPECT_LE(usable, AlignUp(n, align) * 5 / 4 + align) << "align " << align << " size " << n;
      strata_free(p);
    }
  }
}

// ---- returning memory ----

// Mallocs n blocks of 32 KiB, writes them and frees them all. A failed
// malloc is a fatal failure of the caller, which wraps the call in
// ASSERT_NO_FATAL_FAILURE; what was allocated is freed either way.
void AllocTouchAndFree(int n) {
  std::vector<void*> ps;
  for (int i = 0; i < n; ++i) {
    void* p = strata_malloc(32 * 1024);
    if (p == nullptr) break;
    memset(p, 1, 32 * 1024);
    ps.push_back(p);
  }
  for (void* p : ps) strata_free(p);
  ASSERT_EQ(ps.size(), size_t(n)) << "malloc(32 KiB) failed";
}

TEST(Api, ReleaseReturnsMemoryAfterFreeingALot) {
  ASSERT_NO_FATAL_FAILURE(AllocTouchAndFree(2000));
  size_t released = strata_release();
  EXPECT_GT(released, size_t(32) << 20) << "most of 64 MiB of freed objects";
  auto s = Snap();
  EXPECT_EQ(s->pages.released_pages, s->pages.free_pages) << "every free page is released";
  EXPECT_EQ(strata_release(), 0u) << "nothing left to release";
}

// The exchange between the page heap and the large cache (alloc/strata.cc):
// in a single-threaded process, what one side maps anew the other gives
// back from what it held idle for 50 ms.
TEST(Api, ANewLargeMappingTakesBackIdleFreePages) {
  ASSERT_NO_FATAL_FAILURE(AllocTouchAndFree(1024));
  auto before = Snap();
  ASSERT_GE(before->pages.free_pages - before->pages.released_pages, size_t(4) << (20 - kPageShift))
      << "freed spans went back to the page heap, resident";
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  void* big = strata_malloc(size_t(4) << 20);
  ASSERT_NE(big, nullptr);
  auto after = Snap();
  EXPECT_GE(after->pages.released_bytes_total - before->pages.released_bytes_total, size_t(4) << 20);
  strata_free(big);
}

// Frees a written 4 MiB mapping into the large cache, waits past the
// exchange's idle bound, then has the page heap hand out 8 MiB of pages
// that are not resident. The large cache's bytes before and after that
// growth; a failed malloc is a fatal failure of the caller (wrap the call
// in ASSERT_NO_FATAL_FAILURE).
struct CachedAroundGrowth {
  size_t before = 0;
  size_t after = 0;
};
void GrowPageHeapPastACachedMapping(CachedAroundGrowth* cached) {
  strata_release();  // no free page is resident: what the page heap hands out next faults in
  void* big = strata_malloc(size_t(4) << 20);
  ASSERT_NE(big, nullptr);
  memset(big, 1, size_t(4) << 20);
  strata_free(big);
  cached->before = Snap()->large.cached_bytes;
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  ASSERT_NO_FATAL_FAILURE(AllocTouchAndFree(256));
  cached->after = Snap()->large.cached_bytes;
}

TEST(Api, PageHeapGrowthTakesBackIdleLargeMappings) {
  CachedAroundGrowth cached;
  ASSERT_NO_FATAL_FAILURE(GrowPageHeapPastACachedMapping(&cached));
  ASSERT_EQ(cached.before, size_t(4) << 20) << "the mapping freed last is kept";
  EXPECT_EQ(cached.after, 0u);
}

// ---- threads ----

// While a second thread allocates, the exchange is off: every munmap would
// interrupt the other core (a TLB shootdown), so page-heap growth leaves
// the large cache alone.
TEST(ApiThreads, TheExchangeIsOffWhileAnotherThreadAllocates) {
  std::atomic<int> step{0};
  std::thread other([&] {
    strata_free(strata_malloc(64));  // registers a second thread cache
    step = 1;
    while (step.load() != 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (step.load() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CachedAroundGrowth cached;
  GrowPageHeapPastACachedMapping(&cached);
  step = 2;
  other.join();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GE(cached.before, size_t(4) << 20);
  EXPECT_EQ(cached.after, cached.before) << "nothing traded";
}

TEST(ApiThreads, ThreadExitFlushesItsCache) {
  const size_t cls = SizeToClass(64);
  auto before = Snap();
  const uint64_t out_before = before->central[cls].objects_out;
  const uint32_t main_cached_before = t_cache.lists[cls].length();
  std::vector<void*> kept;
  std::thread t([&] {
    std::vector<void*> mine;
    for (int i = 0; i < 5000; ++i) {
      void* p = strata_malloc(64);
      memset(p, 0x33, 64);
      mine.push_back(p);
    }
    auto during = Snap();
    EXPECT_EQ(during->live_threads, before->live_threads + 1);
    for (int i = 0; i < 4000; ++i) strata_free(mine[size_t(i)]);
    kept.assign(mine.begin() + 4000, mine.end());
  });
  t.join();
  auto after = Snap();
  EXPECT_EQ(after->live_threads, before->live_threads) << "the exited thread left the registry";
  EXPECT_EQ(after->threads.allocs[cls] - before->threads.allocs[cls], 5000u);
  EXPECT_EQ(Row(*after, cls).frees - Row(*before, cls).frees, 4000u);
  EXPECT_TRUE(Consistent(*after, cls));
  EXPECT_EQ(Live(*after, cls) - Live(*before, cls), 1000);
  EXPECT_EQ(Row(*after, cls).live - Row(*before, cls).live, 1000u);
  EXPECT_EQ(after->central[cls].objects_out - out_before, 1000u)
      << "the thread's cache went back to the central list";
  EXPECT_EQ(t_cache.lists[cls].length(), main_cached_before);

  // The main thread frees what the exited thread allocated.
  for (void* p : kept) strata_free(p);
  auto done = Snap();
  EXPECT_EQ(Live(*done, cls), Live(*before, cls));
  EXPECT_EQ(done->central[cls].objects_out,
            out_before + t_cache.lists[cls].length() - main_cached_before)
      << "what is out of the central list is in the main thread's cache";
}

TEST(ApiThreads, AThreadThatOnlyFreesIsFlushedToo) {
  const size_t cls = SizeToClass(300);
  std::vector<void*> objs;
  for (int i = 0; i < 3000; ++i) objs.push_back(strata_malloc(300));
  const uint32_t main_cached = t_cache.lists[cls].length();
  auto before = Snap();
  std::thread t([&] {
    for (void* p : objs) strata_free(p);
  });
  t.join();
  auto after = Snap();
  EXPECT_EQ(after->live_threads, before->live_threads);
  EXPECT_EQ(Row(*after, cls).frees - Row(*before, cls).frees, 3000u);
  EXPECT_EQ(Live(*before, cls) - Live(*after, cls), 3000);
  EXPECT_EQ(before->central[cls].objects_out - after->central[cls].objects_out, 3000u);
  EXPECT_EQ(t_cache.lists[cls].length(), main_cached);
}

TEST(ApiThreads, ManyShortThreadsLeaveNothingBehind) {
  auto before = Snap();
  for (int round = 0; round < 10; ++round) {
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; ++i) {
      ts.emplace_back([i] {
        std::vector<void*> v;
        for (int j = 0; j < 500; ++j) v.push_back(strata_malloc(size_t(16 + (i * 97 + j * 31) % 4000)));
        for (void* p : v) strata_free(p);
      });
    }
    for (auto& t : ts) t.join();
  }
  auto after = Snap();
  EXPECT_EQ(after->live_threads, before->live_threads);
  EXPECT_EQ(after->cached_bytes, before->cached_bytes) << "dead threads cache nothing";
  for (size_t c = 1; c < kNumClasses; ++c) {
    EXPECT_EQ(Live(*after, c), Live(*before, c)) << "class " << c;
    EXPECT_EQ(after->central[c].objects_out, before->central[c].objects_out) << "class " << c;
  }
}

TEST(ApiThreads, FreesDuringThreadExitGoStraightToTheCentralList) {
  // A pthread key destructor that runs after strata's has flushed the
  // cache: what it frees and allocates must not stay in the dead cache.
  static pthread_key_t key;
  EnsureInit();  // strata's key first, so this key's destructor runs after it
  ASSERT_EQ(pthread_key_create(&key, [](void* v) {
              auto* objs = static_cast<std::vector<void*>*>(v);
              for (void* p : *objs) strata_free(p);
              void* late = strata_malloc(40);
              strata_free(late);
              delete objs;
            }),
            0);
  const size_t cls = SizeToClass(40);
  auto before = Snap();
  std::thread t([] {
    auto* objs = new std::vector<void*>;
    for (int i = 0; i < 200; ++i) objs->push_back(strata_malloc(40));
    pthread_setspecific(key, objs);
  });
  t.join();
  auto after = Snap();
  EXPECT_EQ(after->live_threads, before->live_threads);
  EXPECT_EQ(Live(*after, cls), Live(*before, cls));
  EXPECT_EQ(after->central[cls].objects_out, before->central[cls].objects_out);
  pthread_key_delete(key);
}

TEST(ApiStats, SnapshotIsConsistent) {
  std::vector<void*> held;
  for (int i = 0; i < 3000; ++i) held.push_back(strata_malloc(size_t(i * 37 % 20000)));
  for (size_t i = 0; i < held.size(); i += 2) strata_free(held[i]);
  auto s = Snap();
  for (size_t c = 1; c < kNumClasses; ++c) {
    EXPECT_TRUE(Consistent(*s, c));
    ClassRow r = Row(*s, c);
    EXPECT_EQ(int64_t(r.live), Live(*s, c));
    EXPECT_EQ(r.allocs, r.frees + r.live);
    EXPECT_EQ(s->cached_objects[c], t_cache.lists[c].length()) << "only this thread has a cache";
    EXPECT_EQ(s->central[c].spans * Info(c).objects + s->central[c].mixed_objects,
              s->central[c].objects_out + s->central[c].free_objects + s->central[c].transfer_objects);
  }
  EXPECT_GE(s->allocs, s->frees);
  EXPECT_GT(s->mapped_bytes, 0u);
  char buf[1 << 14];
  size_t need = WriteText(*s, buf, sizeof buf);
  EXPECT_GT(need, 0u);
  EXPECT_NE(strstr(buf, "strata statistics"), nullptr);
  for (size_t i = 1; i < held.size(); i += 2) strata_free(held[i]);
}

// frag at a thirty-second: 8 MiB of 64-byte objects, 90% freed at random,
// then 200-byte objects. Their spans go to the mixed pool, the 200-byte
// objects (class 208) go into the holes, and every API treats them as
// small objects.
TEST(ApiMixed, HolesOfSparseSpansServeAnotherSizeThroughEveryCall) {
  const size_t n = (size_t{8} << 20) / 64;
  std::vector<void*> small(n);
  for (size_t i = 0; i < n; ++i) {
    small[i] = strata_malloc(64);
    ASSERT_NE(small[i], nullptr);
    Fill(small[i], 64, uint64_t(i) * 0x9e3779b97f4a7c15u);
  }
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937 rng(3);
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t j = 0; j < n * 9 / 10; ++j) {
    strata_free(small[order[j]]);
    small[order[j]] = nullptr;
  }
  auto before = Snap();
  EXPECT_GT(before->mixed.adopted, 0u);
  std::vector<void*> other;
  for (size_t i = 0; i < n * 9 / 10 * 64 / 200; ++i) {
    void* p = strata_malloc(200);
    ASSERT_NE(p, nullptr);
    Fill(p, 200, uint64_t(i + n) * 0x9e3779b97f4a7c15u);
    other.push_back(p);
  }
  auto after = Snap();
  EXPECT_GT(after->mixed.carved, other.size() / 2) << "most went into holes";
  size_t mixed = 0;
  for (size_t i = 0; i < other.size(); ++i) {
    void* p = other[i];
    Span* s = g_heap.map.SpanOf(uintptr_t(p));
    if (s->state != SpanState::kMixed) continue;
    ++mixed;
    EXPECT_EQ(strata_usable_size(p), 208u);
    EXPECT_EQ(g_heap.map.ClassOf(uintptr_t(p)), 0u);
    if (mixed % 7 == 0) {
      // Grown, it moves and keeps its bytes; the hole comes back.
      void* q = strata_realloc(p, 600);
      ASSERT_NE(q, nullptr);
      EXPECT_TRUE(Intact(q, 200, uint64_t(i + n) * 0x9e3779b97f4a7c15u)) << FirstMismatch(q, 200, uint64_t(i + n) * 0x9e3779b97f4a7c15u);
      other[i] = q = strata_realloc(q, 200);
      EXPECT_TRUE(Intact(q, 200, uint64_t(i + n) * 0x9e3779b97f4a7c15u));
    } else if (mixed % 7 == 1) {
      // Shrunk a little, it stays.
      EXPECT_EQ(strata_realloc(p, 190), p);
    }
  }
  EXPECT_GT(mixed, 0u);
  for (size_t i = 0; i < n; ++i) {
    if (small[i] == nullptr) continue;
    EXPECT_TRUE(Intact(small[i], 64, uint64_t(i) * 0x9e3779b97f4a7c15u)) << "a 64-byte object was carved over";
    strata_free(small[i]);
  }
  for (size_t i = 0; i < other.size(); ++i) {
    EXPECT_TRUE(Intact(other[i], 190, uint64_t(i + n) * 0x9e3779b97f4a7c15u));
    strata_free(other[i]);
  }
  strata_release();
  auto end = Snap();
  EXPECT_EQ(end->mixed.spans, 0u) << "every mixed span emptied and went back to the page heap";
  EXPECT_EQ(end->mixed.used_bytes, 0u);
  const char* why = "";
  EXPECT_TRUE(g_heap.mixed.Check(&why)) << why;
  EXPECT_TRUE(g_heap.pages.Check(&why)) << why;
}

}  // namespace
}  // namespace strata
