// ThreadCache (alloc/front/thread_cache.h) over a fake backend that hands
// out objects from a pool and checks every object that comes back: slow
// start of list limits, overflow, flush, scavenging against the budget.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <random>
#include <unordered_map>
#include <vector>

#include "alloc/front/thread_cache.h"

namespace strata {
namespace {

// Objects are 16-byte cells whatever the class: the cache only ever writes
// an object's first word.
struct FakeBackend {
  struct Cell {
    void* link;
    uint64_t pad;
  };

  int RemoveRange(size_t cls, void** head, void** tail, int n, int fresh = 1 << 30) {
    ++remove_calls;
    last_remove_n = n;
    last_remove_fresh = fresh;
    if (fail) return 0;
    void* first = nullptr;
    void* last = nullptr;
    int got = 0;
    for (; got < n; ++got) {
      void* o;
      if (!pool[cls].empty()) {  // came back earlier
        o = pool[cls].back();
        pool[cls].pop_back();
      } else if (fresh-- > 0) {  // never used
        cells.emplace_back();
        o = &cells.back();
      } else {
        break;
      }
      out[o] = cls;
      if (last == nullptr) first = o; else *static_cast<void**>(last) = o;
      last = o;
    }
    *static_cast<void**>(last) = nullptr;
    *head = first;
    *tail = last;
    removed += size_t(got);
    return got;
  }

  void ReturnToSpans(size_t cls, void* head, int n) {
    ++span_returns;
    Take(cls, head, n);
  }

  void InsertRange(size_t cls, void* head, void* tail, int n) {
    ++insert_calls;
    if (n > 0 && tail == nullptr) ++errors;
    Take(cls, head, n);
  }

  void Take(size_t cls, void* head, int n) {
    last_insert_n = n;
    inserted += size_t(n);
    void* o = head;
    for (int i = 0; i < n; ++i) {
      if (o == nullptr) {
        ++errors;  // chain shorter than n
        return;
      }
      void* next = *static_cast<void**>(o);
      auto it = out.find(o);
      if (it == out.end() || it->second != cls) {
        ++errors;  // not ours, or given back twice, or wrong class
      } else {
        out.erase(it);
        pool[cls].push_back(o);
      }
      o = next;
    }
    if (o != nullptr) ++errors;  // the chain must end after n objects
  }

  size_t OutOf(size_t cls) const {
    size_t n = 0;
    for (const auto& kv : out) n += kv.second == cls;
    return n;
  }

  std::deque<Cell> cells;  // stable addresses
  std::vector<void*> pool[kNumClasses];
  std::unordered_map<void*, size_t> out;  // objects outside the backend
  size_t remove_calls = 0, insert_calls = 0, span_returns = 0, removed = 0, inserted = 0, errors = 0;
  int last_remove_n = 0, last_remove_fresh = 0, last_insert_n = 0;
  bool fail = false;
  bool eager = false;
  bool Eager() const { return eager; }
};

using Cache = ThreadCache<FakeBackend>;

// The fast paths of alloc/strata.h, over a given cache.
void* Pop(Cache& tc, size_t cls, FakeBackend& b) {
  FreeList& l = tc.lists[cls];
  void* p = l.head;
  if (p != nullptr) {
    l.head = *static_cast<void**>(p);
    ++l.room;
    ++l.allocs;
    l.requested += Info(cls).size;
    return p;
  }
  return tc.Refill(cls, Info(cls).size, b);
}

void Push(Cache& tc, size_t cls, void* p, FakeBackend& b) {
  FreeList& l = tc.lists[cls];
  *static_cast<void**>(p) = l.head;
  l.head = p;
  if (--l.room >= 0) return;
  tc.Overflow(cls, b);
}

// The list's count matches its chain.
::testing::AssertionResult ListOk(const Cache& tc, size_t cls) {
  const FreeList& l = tc.lists[cls];
  uint32_t n = 0;
  for (void* o = l.head; o != nullptr; o = *static_cast<void**>(o)) {
    if (++n > l.length()) break;
  }
  if (n != l.length()) {
    return ::testing::AssertionFailure() << "class " << cls << ": length " << l.length() << ", chain " << n;
  }
  return ::testing::AssertionSuccess();
}

constexpr size_t kHuge = size_t{1} << 40;

TEST(ThreadCache, ZeroInitialisedIsUninitialisedAndEmpty) {
  static Cache s_tc;  // as thread-local storage is: zero-initialised
  EXPECT_EQ(s_tc.state, CacheState::kUninit);
  for (size_t c = 1; c < kNumClasses; ++c) {
    EXPECT_EQ(s_tc.lists[c].head, nullptr);
    EXPECT_EQ(s_tc.lists[c].length(), 0u);
    EXPECT_EQ(s_tc.lists[c].max, 0u);
    EXPECT_FALSE(s_tc.lists[c].check.IsObjectStart(0)) << "a free before set-up fails the fast path's check";
  }
  EXPECT_EQ(s_tc.CachedBytes(), 0u);
}

TEST(ThreadCache, ActivateSetsOneBatchPerList) {
  Cache tc{};
  tc.Activate(12345);
  EXPECT_EQ(tc.state, CacheState::kActive);
  EXPECT_EQ(tc.budget, 12345u);
  for (size_t c = 1; c < kNumClasses; ++c) {
    EXPECT_EQ(tc.lists[c].max, Info(c).batch) << c;
    EXPECT_EQ(tc.lists[c].length(), 0u) << c;
    EXPECT_EQ(tc.lists[c].check.span_mask, ClassCheck(c).span_mask) << c;
    EXPECT_EQ(tc.lists[c].check.magic, ClassCheck(c).magic) << c;
    EXPECT_GE(Cache::MaxListLength(c), Info(c).batch) << c;
    EXPECT_LE(Cache::MaxListLength(c), Info(c).batch * Cache::kMaxListBatches) << c;
    if (Info(c).size <= Cache::kSmallListClassBytes) {
      EXPECT_EQ(Cache::MaxListLength(c), Info(c).batch * Cache::kMaxListBatches) << c;
    } else {
      EXPECT_LE(size_t(Cache::MaxListLength(c)) * Info(c).size,
                std::max<size_t>(Cache::kListCapBytes, size_t(Info(c).batch) * Info(c).size))
          << c;
    }
  }
}

class ThreadCachePerClass : public ::testing::TestWithParam<size_t> {};

// With nothing that came back to the backend, every object is fresh: the
// refills take 1, 2, 4, ... objects up to a batch, and the limit grows by
// what each took.
TEST_P(ThreadCachePerClass, RefillTakesFreshObjectsInDoublingStepsAndTheLimitGrowsToTheCap) {
  const size_t cls = GetParam();
  const uint32_t batch = Info(cls).batch;
  const uint32_t cap = Cache::MaxListLength(cls);
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  std::vector<void*> held;
  uint32_t expect_max = batch;
  uint32_t expect_got = 1;
  const size_t refills = cap / batch + 10;
  for (size_t r = 0; r < refills; ++r) {
    ASSERT_EQ(tc.lists[cls].length(), 0u);
    size_t calls = b.remove_calls;
    void* p = Pop(tc, cls, b);
    ASSERT_NE(p, nullptr);
    held.push_back(p);
    ASSERT_EQ(b.remove_calls, calls + 1);
    ASSERT_EQ(b.last_remove_n, int(batch));
    ASSERT_EQ(b.last_remove_fresh, int(expect_got)) << "refill " << r;
    ASSERT_EQ(tc.lists[cls].length(), expect_got - 1) << "refill " << r;
    expect_max = std::min(expect_max + expect_got, cap);
    expect_got = std::min(2 * expect_got, batch);
    ASSERT_LE(tc.lists[cls].max, cap) << "refill " << r << ": the limit went past MaxListLength";
    ASSERT_EQ(tc.lists[cls].max, expect_max) << "refill " << r;
    ASSERT_TRUE(ListOk(tc, cls));
    // Drain without another refill.
    while (tc.lists[cls].length() > 0) held.push_back(Pop(tc, cls, b));
    ASSERT_EQ(b.remove_calls, calls + 1);
  }
  EXPECT_EQ(tc.misses, refills);
  EXPECT_EQ(tc.lists[cls].allocs, held.size());
  ThreadCacheStats st = tc.Stats();
  EXPECT_EQ(st.misses, refills);
  EXPECT_EQ(st.hits, held.size() - refills);
  for (void* p : held) Push(tc, cls, p, b);
  tc.FlushAll(b);
  EXPECT_EQ(b.out.size(), 0u);
  EXPECT_EQ(b.errors, 0u);
}

// Objects that came back cost no new pages: the first refill of a class
// takes a whole batch of them, fresh ones only to make up the start step.
TEST_P(ThreadCachePerClass, RefillTakesAWholeBatchOfObjectsThatCameBack) {
  const size_t cls = GetParam();
  const uint32_t batch = Info(cls).batch;
  FakeBackend b;
  std::vector<void*> objs;
  for (uint32_t i = 0; i < batch; ++i) {
    void* head = nullptr;
    void* tail = nullptr;
    ASSERT_EQ(b.RemoveRange(cls, &head, &tail, 1), 1);
    objs.push_back(head);
  }
  for (void* o : objs) b.InsertRange(cls, o, o, 1);  // back into the pool
  ASSERT_EQ(b.pool[cls].size(), size_t(batch));
  Cache tc{};
  tc.Activate(kHuge);
  void* p = Pop(tc, cls, b);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(tc.lists[cls].length(), batch - 1);
  EXPECT_EQ(b.cells.size(), size_t(batch)) << "no fresh object was needed";
  Push(tc, cls, p, b);
  tc.FlushAll(b);
  EXPECT_EQ(b.out.size(), 0u);
  EXPECT_EQ(b.errors, 0u);
}

TEST_P(ThreadCachePerClass, PushingPastTheLimitGivesBackOneBatch) {
  const size_t cls = GetParam();
  const uint32_t batch = Info(cls).batch;
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  const uint32_t max = tc.lists[cls].max;
  // Objects from the backend directly, so the limit does not grow.
  std::vector<void*> objs;
  void* head = nullptr;
  void* tail = nullptr;
  for (uint32_t got = 0; got < max + 1;) {
    int n = b.RemoveRange(cls, &head, &tail, 1);
    ASSERT_EQ(n, 1);
    objs.push_back(head);
    ++got;
  }
  for (uint32_t i = 0; i < max; ++i) Push(tc, cls, objs[i], b);
  EXPECT_EQ(b.insert_calls, 0u);
  EXPECT_EQ(tc.lists[cls].length(), max);
  Push(tc, cls, objs[max], b);
  EXPECT_EQ(b.insert_calls, 1u);
  EXPECT_EQ(b.last_insert_n, int(std::min(batch, max + 1)));
  EXPECT_EQ(tc.lists[cls].length(), max + 1 - uint32_t(b.last_insert_n));
  EXPECT_TRUE(ListOk(tc, cls));
  EXPECT_EQ(tc.flushes, 1u);
  EXPECT_EQ(b.OutOf(cls), tc.lists[cls].length());
  tc.FlushAll(b);
  EXPECT_EQ(b.out.size(), 0u);
  EXPECT_EQ(b.errors, 0u);
}

INSTANTIATE_TEST_SUITE_P(AllClasses, ThreadCachePerClass, ::testing::Range<size_t>(1, kNumClasses),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return "class" + std::to_string(i.param) + "_" +
                                  std::to_string(Info(i.param).size);
                         });

TEST(ThreadCache, FlushAllReturnsEveryCachedObject) {
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  std::mt19937 rng(5);
  std::vector<std::pair<size_t, void*>> held;
  for (int op = 0; op < 50000; ++op) {
    size_t cls = 1 + rng() % (kNumClasses - 1);
    if (held.empty() || rng() % 100 < 55) {
      void* p = Pop(tc, cls, b);
      ASSERT_NE(p, nullptr);
      held.emplace_back(cls, p);
    } else {
      size_t i = rng() % held.size();
      Push(tc, held[i].first, held[i].second, b);
      held[i] = held.back();
      held.pop_back();
    }
  }
  for (size_t c = 1; c < kNumClasses; ++c) ASSERT_TRUE(ListOk(tc, c));
  size_t cached = 0;
  for (size_t c = 1; c < kNumClasses; ++c) cached += tc.lists[c].length();
  EXPECT_EQ(b.out.size(), held.size() + cached) << "out = held by the test + cached";
  tc.FlushAll(b);
  for (size_t c = 1; c < kNumClasses; ++c) {
    EXPECT_EQ(tc.lists[c].length(), 0u);
    EXPECT_EQ(tc.lists[c].head, nullptr);
  }
  EXPECT_EQ(tc.CachedBytes(), 0u);
  EXPECT_EQ(b.out.size(), held.size()) << "only what the test holds is still out";
  for (auto& [cls, p] : held) Push(tc, cls, p, b);
  tc.FlushAll(b);
  EXPECT_EQ(b.out.size(), 0u);
  EXPECT_EQ(b.errors, 0u);
  EXPECT_EQ(b.removed, b.inserted);
}

TEST(ThreadCache, StatsCountHitsAndMisses) {
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  const size_t cls = SizeToClass(32);
  std::vector<void*> held;
  for (int i = 0; i < 100; ++i) held.push_back(Pop(tc, cls, b));
  ThreadCacheStats st = tc.Stats();
  EXPECT_EQ(st.misses, b.remove_calls);
  EXPECT_EQ(st.hits + st.misses, 100u);
  EXPECT_EQ(tc.lists[cls].requested, 100u * Info(cls).size);
  for (void* p : held) Push(tc, cls, p, b);
  EXPECT_EQ(tc.Stats().cached_bytes, size_t(tc.lists[cls].length()) * Info(cls).size);
  tc.FlushAll(b);
}

TEST(ThreadCache, BackendOutOfMemoryLeavesTheCacheUnchanged) {
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  b.fail = true;
  EXPECT_EQ(Pop(tc, 3, b), nullptr);
  EXPECT_EQ(tc.lists[3].length(), 0u);
  EXPECT_EQ(tc.lists[3].allocs, 0u);
  EXPECT_EQ(tc.lists[3].max, Info(3).batch);
  EXPECT_EQ(tc.misses, 0u);
  b.fail = false;
  void* p = Pop(tc, 3, b);
  ASSERT_NE(p, nullptr);
  Push(tc, 3, p, b);
  tc.FlushAll(b);
  EXPECT_EQ(b.out.size(), 0u);
}

TEST(ThreadCache, ReleaseMovesTheFirstObjectsOfAList) {
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  const size_t cls = SizeToClass(100);
  std::vector<void*> objs;
  for (int i = 0; i < 10; ++i) objs.push_back(Pop(tc, cls, b));
  tc.FlushAll(b);  // the rest of the refilled batch
  for (void* p : objs) Push(tc, cls, p, b);
  ASSERT_EQ(tc.lists[cls].length(), 10u);
  tc.Release(cls, 4, b);
  EXPECT_EQ(b.last_insert_n, 4);
  EXPECT_EQ(tc.lists[cls].length(), 6u);
  EXPECT_TRUE(ListOk(tc, cls));
  // The list is LIFO: the four pushed last went back.
  for (int i = 6; i < 10; ++i) EXPECT_EQ(b.out.count(objs[size_t(i)]), 0u) << i;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b.out.count(objs[size_t(i)]), 1u) << i;
  tc.Release(cls, 0, b);
  EXPECT_EQ(b.last_insert_n, 4) << "releasing nothing does not call the backend";
  tc.FlushAll(b);
  EXPECT_EQ(b.errors, 0u);
}

// ---- the byte budget ----

TEST(ThreadCacheBudget, ScavengeHalvesEveryListWhenOverBudget) {
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  std::vector<uint32_t> counts(kNumClasses), maxes(kNumClasses);
  for (size_t c = 1; c < kNumClasses; c += 3) {
    std::vector<void*> objs;
    for (int i = 0; i < 3 * Info(c).batch; ++i) objs.push_back(Pop(tc, c, b));
    for (void* p : objs) Push(tc, c, p, b);
  }
  for (size_t c = 1; c < kNumClasses; ++c) {
    counts[c] = tc.lists[c].length();
    maxes[c] = tc.lists[c].max;
  }
  const size_t before = tc.CachedBytes();
  ASSERT_GT(before, 0u);
  tc.budget = before;  // at the budget: nothing happens
  tc.MaybeScavenge(b);
  EXPECT_EQ(tc.CachedBytes(), before);
  tc.budget = before - 1;
  tc.MaybeScavenge(b);
  for (size_t c = 1; c < kNumClasses; ++c) {
    EXPECT_EQ(tc.lists[c].length(), counts[c] / 2) << c;
    EXPECT_EQ(tc.lists[c].max, std::max<uint32_t>(maxes[c] / 2, Info(c).batch)) << c;
    EXPECT_TRUE(ListOk(tc, c));
  }
  EXPECT_LE(tc.CachedBytes(), before / 2 + before / 20);
  tc.FlushAll(b);
  EXPECT_EQ(b.out.size(), 0u);
  EXPECT_EQ(b.errors, 0u);
}

// Churns many classes (take a few batches, give them back) and returns the
// largest CachedBytes() seen.
size_t ChurnPeak(size_t budget, size_t* final_bytes) {
  FakeBackend b;
  Cache tc{};
  tc.Activate(budget);
  size_t peak = 0;
  std::vector<void*> objs;
  for (int round = 0; round < 40; ++round) {
    for (size_t c = 1; c < kNumClasses; ++c) {
      if (Info(c).size > 32 * 1024) continue;
      objs.clear();
      for (int i = 0; i < 3 * Info(c).batch; ++i) objs.push_back(Pop(tc, c, b));
      peak = std::max(peak, tc.CachedBytes());
      for (void* p : objs) {
        Push(tc, c, p, b);
        peak = std::max(peak, tc.CachedBytes());
      }
    }
  }
  *final_bytes = tc.CachedBytes();
  tc.FlushAll(b);
  EXPECT_EQ(b.out.size(), 0u);
  EXPECT_EQ(b.errors, 0u);
  return peak;
}

TEST(ThreadCacheBudget, CachedBytesStayNearTheBudget) {
  size_t unbounded_final = 0, bounded_final = 0;
  const size_t unbounded = ChurnPeak(kHuge, &unbounded_final);
  const size_t budget = 256 << 10;
  const size_t bounded = ChurnPeak(budget, &bounded_final);
  // Scavenging is checked every 16 slow-path events, and a refill brings at
  // most 64 KiB, so the cache overshoots by a bounded amount.
  EXPECT_GT(unbounded, 8 * budget) << "the workload must be able to exceed the budget";
  EXPECT_LE(bounded, budget + 16 * (64 << 10)) << "peak " << bounded << " with budget " << budget;
  EXPECT_LE(bounded_final, budget + 16 * (64 << 10));
  // (The unbounded cache's final size says little: lists of the classes the
  // last rounds did not use were collected as idle.)
  EXPECT_LT(bounded, unbounded);
}

// A thread that allocates a lot and then frees it all (and may go idle,
// where nothing can reach its cache) keeps little: after
// kFreeOnlyOverflows overflows without a refill its limit drops to
// kFreeOnlyBudget; the next refill restores the budget.
TEST(ThreadCacheBudget, AThreadThatOnlyFreesKeepsLittle) {
  FakeBackend b;
  Cache tc{};
  tc.Activate(kHuge);
  std::vector<std::pair<size_t, void*>> objs;
  size_t one_batch_each = 0;
  for (size_t c = 1; c < kNumClasses; ++c) {
    if (Info(c).size > 32 * 1024) continue;
    one_batch_each += size_t(Info(c).batch) * Info(c).size;
    const size_t n = 4 * size_t(Cache::MaxListLength(c));
    for (size_t i = 0; i < n; ++i) objs.push_back({c, Pop(tc, c, b)});
  }
  EXPECT_EQ(tc.Limit(), kHuge) << "allocating: the full budget";
  for (auto [c, p] : objs) Push(tc, c, p, b);
  EXPECT_EQ(tc.Limit(), Cache::kFreeOnlyBudget);
  EXPECT_LE(tc.CachedBytes(), Cache::kFreeOnlyBudget + one_batch_each)
      << "lists shrink to about one batch each, under the free-only limit";
  for (size_t c = 1; c < kNumClasses; ++c) EXPECT_TRUE(ListOk(tc, c));
  // Allocating again: a refill restores the budget.
  const size_t c = 4;
  while (tc.lists[c].length() > 0) objs.push_back({c, Pop(tc, c, b)});
  objs.push_back({c, Pop(tc, c, b)});
  EXPECT_EQ(tc.Limit(), kHuge);
  tc.FlushAll(b);
  EXPECT_EQ(b.errors, 0u);
}

// ---- idle lists ----

struct ThreadCacheIdle : ::testing::Test {
  static constexpr size_t kBusy = 9;

  ThreadCacheIdle() { tc.Activate(kHuge); }

  // n slow events on kBusy (refills: its list is emptied each time), with
  // no malloc of any other class.
  void SlowEvents(int n) {
    for (int i = 0; i < n; ++i) {
      while (tc.lists[kBusy].length() > 0) keep.push_back(Pop(tc, kBusy, b));
      keep.push_back(Pop(tc, kBusy, b));  // a refill
    }
  }
  // Grows the list of `cls`: n mallocs, then n frees.
  void GrowList(size_t cls, int n) {
    std::vector<void*> objs;
    for (int i = 0; i < n; ++i) objs.push_back(Pop(tc, cls, b));
    for (void* p : objs) Push(tc, cls, p, b);
  }
  // Frees what SlowEvents kept, empties the cache, checks the backend.
  void TearDown() override {
    for (void* q : keep) Push(tc, kBusy, q, b);
    tc.FlushAll(b);
    EXPECT_EQ(b.errors, 0u);
    EXPECT_EQ(b.out.size(), 0u);
  }

  FakeBackend b;
  Cache tc{};
  std::vector<void*> keep;
};

TEST_F(ThreadCacheIdle, AClassNoLongerAllocatedGoesBackWhole) {
  const size_t idle = 4;
  GrowList(idle, 500);
  const uint32_t cached = tc.lists[idle].length();
  ASSERT_GT(cached, uint32_t(Info(idle).batch));
  ASSERT_EQ(b.span_returns, 0u);
  // Two collection rounds of slow events elsewhere: the first notes that
  // the class was used, the second finds it idle.
  SlowEvents(2 * int(Cache::kCheckPeriod));
  EXPECT_EQ(tc.lists[idle].length(), 0u);
  EXPECT_EQ(tc.lists[idle].max, uint32_t(Info(idle).batch)) << "the limit starts over";
  EXPECT_EQ(tc.fresh[idle], 1u) << "and so does the fresh step";
  EXPECT_EQ(b.span_returns, 1u) << "one chain, into the spans (not the transfer cache)";
  EXPECT_EQ(b.OutOf(idle), 0u);
  EXPECT_TRUE(ListOk(tc, idle));
  EXPECT_GT(tc.lists[kBusy].length() + keep.size(), 0u);
  // The class still works.
  void* p = Pop(tc, idle, b);
  ASSERT_NE(p, nullptr);
  Push(tc, idle, p, b);
}

TEST_F(ThreadCacheIdle, AListOfABatchOrLessIsLeftAlone) {
  const size_t rare = 20;
  void* p = Pop(tc, rare, b);  // a refill: the rest of a batch stays cached
  Push(tc, rare, p, b);
  const uint32_t cached = tc.lists[rare].length();
  ASSERT_GT(cached, 0u);
  ASSERT_LE(cached, uint32_t(Info(rare).batch));
  SlowEvents(4 * int(Cache::kCheckPeriod));
  EXPECT_EQ(tc.lists[rare].length(), cached);
  EXPECT_EQ(b.span_returns, 0u);
}

TEST_F(ThreadCacheIdle, AClassStillAllocatedKeepsItsList) {
  const size_t used = 4;
  GrowList(used, 500);
  for (int round = 0; round < 4; ++round) {
    // One malloc (and free) of the class per round is enough to keep it.
    Push(tc, used, Pop(tc, used, b), b);
    SlowEvents(int(Cache::kCheckPeriod));
  }
  EXPECT_GT(tc.lists[used].length(), uint32_t(Info(used).batch));
  EXPECT_EQ(b.span_returns, 0u);
}

TEST_F(ThreadCacheIdle, WhileEagerListsOfBigObjectsGoBackWholeToTheirSpans) {
  const size_t small = SizeToClass(Cache::kSmallListClassBytes);
  const size_t big = small + 1;  // the class above
  ASSERT_GT(Info(big).size, Cache::kSmallListClassBytes);
  // Lists still in use, longer than a batch, so that only eager empties them.
  GrowList(big, 100);
  GrowList(small, 100);
  for (size_t c : {big, small}) ASSERT_GT(tc.lists[c].length(), uint32_t(Info(c).batch));
  Push(tc, big, Pop(tc, big, b), b);
  Push(tc, small, Pop(tc, small, b), b);
  SlowEvents(int(Cache::kCheckPeriod));
  for (size_t c : {big, small}) ASSERT_GT(tc.lists[c].length(), 0u) << "not eager: kept";
  const uint32_t small_cached = tc.lists[small].length();

  b.eager = true;
  const size_t returns = b.span_returns;
  Push(tc, big, Pop(tc, big, b), b);
  Push(tc, small, Pop(tc, small, b), b);
  SlowEvents(int(Cache::kCheckPeriod));
  EXPECT_EQ(tc.lists[big].length(), 0u);
  EXPECT_EQ(b.OutOf(big), 0u) << "every cached object is back in the backend";
  EXPECT_EQ(tc.lists[big].max, uint32_t(Info(big).batch));
  EXPECT_EQ(b.span_returns, returns + 1) << "one chain, into the spans";
  EXPECT_EQ(tc.lists[small].length(), small_cached) << "smaller objects stay cached";
  EXPECT_TRUE(ListOk(tc, big));
  EXPECT_TRUE(ListOk(tc, small));
  void* p = Pop(tc, big, b);  // the class still works
  ASSERT_NE(p, nullptr);
  Push(tc, big, p, b);
  b.eager = false;
}

}  // namespace
}  // namespace strata
