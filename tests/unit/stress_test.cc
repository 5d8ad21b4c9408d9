// Multithreaded stress through the strata_* API: random sizes (mostly
// small, sometimes up to 2 MiB), aligned requests and realloc, objects
// passed between threads through a shared table so that frees happen on
// other threads than the allocating one, every object's contents verified
// before it is freed or resized. Ends with the statistics and the page
// heap's invariant checker.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <algorithm>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "alloc/stats/stats.h"
#include "alloc/strata.h"
#include "strata/strata.h"
#include "tests/unit/pattern.h"

extern "C" char __bss_start[], _end[];  // from the linker

namespace strata {
namespace {

using strata_test::Fill;
using strata_test::FirstMismatch;
using strata_test::SeedFor;

struct Slot {
  void* p = nullptr;
  size_t n = 0;
  uint64_t seed = 0;
};

struct Table {
  explicit Table(size_t n) : slots(n) {}
  std::mutex mu;
  std::vector<Slot> slots;
};

size_t RandomSize(std::mt19937_64& rng) {
  unsigned r = unsigned(rng() % 1000);
  if (r < 600) return rng() % 257;
  if (r < 900) return 257 + rng() % (4096 - 256);
  if (r < 997) return 4097 + rng() % (65536 - 4096);
  return 65537 + rng() % ((size_t(2) << 20) - 65536);
}

struct Failures {
  std::atomic<int> count{0};
  std::mutex mu;
  std::string first;
  void Add(const std::string& what) {
    if (count.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> g(mu);
      first = what;
    }
  }
};

bool Verify(const Slot& s, Failures& f, const char* when) {
  size_t bad = FirstMismatch(s.p, s.n, s.seed);
  if (bad == SIZE_MAX) return true;
  f.Add(std::string("object of ") + std::to_string(s.n) + " bytes damaged at offset " + std::to_string(bad) +
        " before " + when);
  return false;
}

void Worker(Table& t, unsigned id, int ops, Failures& f) {
  std::mt19937_64 rng(0x9e3779b9u * (id + 1));
  for (int op = 0; op < ops && f.count.load(std::memory_order_relaxed) == 0; ++op) {
    size_t idx = rng() % t.slots.size();
    Slot s;
    {
      std::lock_guard<std::mutex> g(t.mu);
      std::swap(s, t.slots[idx]);
    }
    unsigned r = unsigned(rng() % 100);
    if (s.p != nullptr) {
      if (!Verify(s, f, "free or realloc")) return;
      if (r < 70) {
        strata_free(s.p);
        s = Slot{};
      } else {
        size_t n = r < 95 ? RandomSize(rng) : s.n / 2;
        void* q = strata_realloc(s.p, n);
        if (n == 0) {
          if (q != nullptr) f.Add("realloc(p, 0) returned a pointer");
          s = Slot{};
        } else {
          if (q == nullptr) return f.Add("realloc failed");
          size_t keep = n < s.n ? n : s.n;
          if (FirstMismatch(q, keep, s.seed) != SIZE_MAX) return f.Add("realloc lost contents");
          s = Slot{q, n, SeedFor(q, n)};
          Fill(q, n, s.seed);
        }
      }
    } else {
      size_t n = RandomSize(rng);
      void* p;
      if (r < 5) {
        size_t align = size_t(32) << (rng() % 9);  // 32 .. 8 KiB
        p = strata_aligned_alloc(align, n);
        if (p != nullptr && uintptr_t(p) % align != 0) return f.Add("misaligned aligned_alloc");
      } else if (r < 15) {
        p = strata_calloc(1, n);
        if (p != nullptr) {
          const unsigned char* b = static_cast<const unsigned char*>(p);
          for (size_t i = 0; i < n; ++i) {
            if (b[i] != 0) return f.Add("calloc memory not zero");
          }
        }
      } else {
        p = strata_malloc(n);
      }
      if (p == nullptr) return f.Add("allocation failed");
      if (uintptr_t(p) % 16 != 0) return f.Add("not 16-aligned");
      if (strata_usable_size(p) < n) return f.Add("usable size too small");
      s = Slot{p, n, SeedFor(p, n)};
      Fill(p, n, s.seed);
    }
    if (s.p != nullptr) {
      Slot displaced;
      {
        std::lock_guard<std::mutex> g(t.mu);
        std::swap(displaced, t.slots[idx]);
        t.slots[idx] = s;
      }
      if (displaced.p != nullptr) {
        if (!Verify(displaced, f, "free")) return;
        strata_free(displaced.p);
      }
    }
  }
}

// A quiet heap's snapshot adds up: objects out of the central list are
// either cached or live, and no more are live than were allocated.
::testing::AssertionResult Consistent(const Snapshot& s, size_t cls) {
  uint64_t out = s.central[cls].objects_out, cached = s.cached_objects[cls];
  if (out < cached || out - cached > s.threads.allocs[cls]) {
    return ::testing::AssertionFailure() << "class " << cls << ": " << out << " out of the central list, "
                                         << cached << " cached, " << s.threads.allocs[cls] << " allocations";
  }
  return ::testing::AssertionSuccess();
}

std::unique_ptr<Snapshot> Snap() {
  std::unique_ptr<Snapshot> s(new Snapshot);
  TakeSnapshot(s.get());
  return s;
}

void RunStress(unsigned threads, int ops_per_thread, size_t slots) {
  strata_free(strata_malloc(1));  // this thread's cache exists before `before`
  auto before = Snap();
  Table table(slots);
  Failures failures;
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < threads; ++i) ts.emplace_back(Worker, std::ref(table), i, ops_per_thread, std::ref(failures));
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.count.load(), 0) << failures.first;

  // What the workers left: still intact, freed here.
  auto mid = Snap();
  for (size_t c = 1; c < kNumClasses; ++c) ASSERT_TRUE(Consistent(*mid, c));
  for (Slot& s : table.slots) {
    if (s.p == nullptr) continue;
    Verify(s, failures, "the final free");
    strata_free(s.p);
  }
  EXPECT_EQ(failures.count.load(), 0) << failures.first;

  auto after = Snap();
  EXPECT_EQ(after->live_threads, before->live_threads);
  for (size_t c = 1; c < kNumClasses; ++c) {
    ClassRow r = Row(*after, c);
    ASSERT_TRUE(Consistent(*after, c));
    EXPECT_EQ(r.allocs, r.frees + r.live);
    EXPECT_EQ(r.live, Row(*before, c).live) << "class " << c << ": everything allocated was freed";
    EXPECT_EQ(r.frees - Row(*before, c).frees, r.allocs - Row(*before, c).allocs) << "class " << c;
    // Only this thread has a cache now.
    EXPECT_EQ(after->cached_objects[c], t_cache.lists[c].length()) << "class " << c;
    EXPECT_EQ(after->central[c].spans * Info(c).objects,
              after->central[c].objects_out + after->central[c].free_objects +
                  after->central[c].transfer_objects);
  }
  EXPECT_EQ(after->large.live, before->large.live);
  EXPECT_EQ(after->page_objects - after->page_object_frees, before->page_objects - before->page_object_frees);
  EXPECT_GT(after->allocs - before->allocs, uint64_t(threads) * uint64_t(ops_per_thread) / 4);

  const char* why = "";
  EXPECT_TRUE(g_heap.pages.Check(&why)) << why;
  strata_release();
  EXPECT_TRUE(g_heap.pages.Check(&why)) << why;
  auto released = Snap();
  EXPECT_EQ(released->pages.released_pages, released->pages.free_pages);
}

TEST(Stress, FourThreadsCrossThreadFrees) { RunStress(4, 300000, 4096); }

TEST(Stress, SixteenThreadsOnFewCores) { RunStress(16, 50000, 2048); }

TEST(Stress, ImmediateDecay) {
  EnsureInit();
  const int64_t decay = g_heap.pages.decay_ms();
  g_heap.pages.set_decay_ms(0);  // every free returns pages: the release path under load
  RunStress(4, 150000, 1024);
  g_heap.pages.set_decay_ms(decay);
}

TEST(Stress, ProducerConsumer) {
  // One thread allocates, another frees everything: no object is ever
  // freed by the thread that allocated it.
  strata_free(strata_malloc(1));
  auto before = Snap();
  constexpr int kObjects = 200000;
  std::vector<std::atomic<void*>> q(4096);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread producer([&] {
    std::mt19937_64 rng(1);
    for (int i = 0; i < kObjects; ++i) {
      size_t n = sizeof(size_t) + rng() % 2000;
      void* p = strata_malloc(n);
      memset(p, int(n & 0xff), n);
      static_cast<size_t*>(p)[0] = n;
      size_t slot = size_t(i) % q.size();
      void* expected = nullptr;
      while (!q[slot].compare_exchange_weak(expected, p)) {
        expected = nullptr;
        std::this_thread::yield();
      }
    }
    stop = true;
  });
  std::thread consumer([&] {
    size_t slot = 0;
    int freed = 0;
    while (freed < kObjects) {
      void* p = q[slot].exchange(nullptr);
      if (p == nullptr) {
        std::this_thread::yield();
        continue;
      }
      size_t n = static_cast<size_t*>(p)[0];
      const unsigned char* b = static_cast<const unsigned char*>(p);
      for (size_t i = sizeof(size_t); i < n; ++i) {
        if (b[i] != (n & 0xff)) {
          ++bad;
          break;
        }
      }
      strata_free(p);
      ++freed;
      slot = (slot + 1) % q.size();
    }
  });
  producer.join();
  consumer.join();
  EXPECT_TRUE(stop);
  EXPECT_EQ(bad.load(), 0);
  auto after = Snap();
  for (size_t c = 1; c < kNumClasses; ++c) {
    EXPECT_EQ(Row(*after, c).live, Row(*before, c).live) << "class " << c;
  }
  EXPECT_EQ(after->live_threads, before->live_threads);
}

// Spans go to the mixed pool while other threads free their objects (the
// fast path may have read the old class, an overflow reads it again), and
// threads allocate other sizes from the holes and free each other's.
TEST(Stress, MixedSpansUnderCrossThreadFrees) {
  constexpr int kThreads = 4;
  const size_t n = (size_t{12} << 20) / 64;
  std::vector<void*> small(n);
  for (size_t i = 0; i < n; ++i) {
    small[i] = strata_malloc(64);
    Fill(small[i], 64, uint64_t(i) * 0x9e3779b97f4a7c15u);
  }
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937 rng(11);
  std::shuffle(order.begin(), order.end(), rng);
  const size_t nfree = n * 9 / 10;
  std::vector<std::atomic<void*>> shared(8192);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 r(uint64_t(t) + 100);
      for (size_t j = size_t(t); j < nfree; j += kThreads) {
        strata_free(small[order[j]]);
        if (j % 4 != 0) continue;
        // Another size, first stamped with its size, left for any thread
        // to check and free.
        const size_t sizes[] = {48, 96, 144, 200, 208, 240, 400};
        const size_t sz = sizes[r() % 7];
        auto* p = static_cast<unsigned char*>(strata_malloc(sz));
        memset(p, int(sz & 0xff), sz);
        void* old = shared[r() % shared.size()].exchange(p);
        if (old != nullptr) {
          const size_t have = strata_usable_size(old);
          const auto* b = static_cast<const unsigned char*>(old);
          const size_t want = b[0];
          for (size_t k = 0; k < have && k < 48; ++k) bad += b[k] != want;
          strata_free(old);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  auto mid = Snap();
  EXPECT_GT(mid->mixed.adopted, 0u);
  for (size_t j = nfree; j < n; ++j) {
    EXPECT_TRUE(strata_test::Intact(small[order[j]], 64, uint64_t(order[j]) * 0x9e3779b97f4a7c15u));
    strata_free(small[order[j]]);
  }
  for (auto& slot : shared) strata_free(slot.exchange(nullptr));
  EXPECT_EQ(bad.load(), 0);
  strata_release();
  auto end = Snap();
  EXPECT_EQ(end->mixed.spans, 0u);
  const char* why = "";
  EXPECT_TRUE(g_heap.mixed.Check(&why)) << why;
  EXPECT_TRUE(g_heap.pages.Check(&why)) << why;
}

// The global heap must stay in .bss (see Heap in alloc/strata.h): in .data
// its 2 MiB were file-backed and could be mapped whole into every process.
// Here the allocator is linked into the test program, whose .bss runs from
// __bss_start to _end.
TEST(Heap, LivesInBss) {
  const uintptr_t heap = uintptr_t(&g_heap);
  EXPECT_GE(heap, uintptr_t(__bss_start));
  EXPECT_LE(heap + sizeof(Heap), uintptr_t(_end));
}

}  // namespace
}  // namespace strata
