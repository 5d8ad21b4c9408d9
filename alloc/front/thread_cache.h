// ThreadCache: one per thread, a free list per size class, no lock and no
// atomic. malloc pops from the class's list, free pushes onto it; the rest
// of the allocator exists so that these two rarely leave the cache.
//
// The pop and push themselves are written out in alloc/strata.h (the fast
// path, on one screen); this class holds the data and the out-of-line slow
// paths: Refill (list empty: take a batch from the central list), Overflow
// (list over its limit: give a batch back), Scavenge (the thread holds more
// than its byte budget), CollectIdle (lists of classes the thread stopped
// using) and FlushAll (thread exit, malloc_trim).
//
// List limits start at one batch and grow by a batch on each refill (slow
// start), up to a per-class cap, so a thread that uses a class a little
// holds little of it. Refills take whole batches of objects that came back
// to the central list, but of never-used memory only 1, 2, 4, ... objects
// (fresh[]), doubling up to a batch: linking a fresh batch touches every
// object in it, and a batch is up to 64 KiB, which a thread that mallocs
// one object of a class would otherwise pay for in resident pages. The
// bytes cached by one thread are bounded by its budget, which shrinks as
// threads multiply (see SetBudget).
//
// Idle lists: every kCheckPeriod slow events, a list longer than one
// batch whose class served no malloc since the previous round goes back
// whole, into its spans (not the transfer cache), and its limit back to one
// batch. A program that moves from one size to another (phases, as most
// do) would otherwise keep the old size's objects cached, and they would
// pin spans the new size could have used (glibc-simple: peak RSS -12%).
// Lists of a batch or less are left alone: they are what classes used now
// and then keep, and collecting them too only moved objects back and forth
// (glibc-thread: +4% RSS). A thread with no slow events grows nothing, so
// it needs no collection.
//
// `Backend` supplies RemoveRange(cls, head, tail, n, fresh), InsertRange(cls,
// head, tail, n), ReturnToSpans(cls, head, n) and Eager(): the central
// lists in production, a fake in tests.
#pragma once

#include "alloc/middle/size_class.h"

namespace strata {

// One class's list. 64 bytes, so that a malloc or a free touches one cache
// line of the thread cache: the head, the room counter, the stats and the
// class's object check all live here.
struct alignas(64) FreeList {
  void* head;
  // How many more frees the list takes before one overflows: max - length.
  // A free decrements it and goes to the slow path when it turns negative,
  // a malloc increments it; keeping the difference instead of the length
  // spares the free path a load and a compare against the limit.
  int32_t room;
  uint32_t max;        // over this length, a batch goes back to the central list
  uint64_t allocs;     // stats: mallocs served for this class by this thread
  uint64_t requested;  // stats: bytes those mallocs asked for
  uint64_t allocs_seen;  // `allocs` at the last idle collection
  // The class's object check (size_class.h), copied in when the cache is
  // set up. All zero until then, after thread exit and in checking mode:
  // the check then fails and every free takes the slow path.
  ObjectCheck check;

  uint32_t length() const { return uint32_t(int64_t(max) - room); }
  void set_max(uint32_t m) {
    room += int32_t(m) - int32_t(max);
    max = m;
  }
};
static_assert(sizeof(FreeList) == 64);
// Frees are not counted here: per class, live objects = objects out of the
// central list - objects in thread caches, and frees = allocs - live, both
// exact when threads are quiet. That keeps the free fast path one add
// shorter.

enum class CacheState : uint8_t {
  kUninit = 0,   // zero-initialised TLS: first slow path sets it up
  kActive,
  kInitializing, // set-up in progress (it may call malloc recursively)
  kDead,         // thread exit ran: frees go straight to the central lists
};

struct ThreadCacheStats {
  uint64_t hits = 0;       // allocations served from the cache
  uint64_t misses = 0;     // refills from the central lists
  uint64_t flushes = 0;    // batches given back
  uint64_t cached_bytes = 0;
};

template <class Backend>
class ThreadCache {
 public:
  // A list holds at most 64 batches, and at most kListCapBytes of objects
  // above kSmallListClassBytes: up to 1 KiB (2048 objects, 2 MiB at most)
  // programs build and drop structures of thousands of objects in one go,
  // and a list that cannot hold such a run sends the rest through the
  // spans and the page heap on every round (glibc-simple's 1600 blocks of
  // 1 KiB: 257,000 span splits and merges, 0.4 MiB more resident, 1.3x
  // slower with a 256 KiB cap). Larger objects come fewer at a time and
  // each pins more; the thread's budget bounds the sum.
  static constexpr size_t kListCapBytes = 256 << 10;
  static constexpr size_t kSmallListClassBytes = 1024;
  static constexpr uint32_t kMaxListBatches = 64;
  // A thread that only frees (this many overflows without a refill) keeps
  // at most kFreeOnlyBudget bytes: objects it would cache are scattered
  // over many spans and would pin them if the thread then goes idle, where
  // nothing can reach its cache. The first refill restores the budget.
  static constexpr uint32_t kFreeOnlyOverflows = 32;
  static constexpr size_t kFreeOnlyBudget = 256 << 10;
  // Slow events (refills and overflows) between two periodic checks: idle
  // lists, and the budget on refills (an overflow checks it every time).
  static constexpr uint32_t kCheckPeriod = 16;

  // lists[0] (class 0: "not a small object") is never set up: its check
  // stays zero and fails, which is how the free fast path sends anything
  // that is not a small object to the slow path without a test of its own.
  FreeList lists[kNumClasses];
  CacheState state;
  uint32_t slow_events;
  uint32_t overflows_since_refill;
  uint64_t misses;
  uint64_t flushes;
  size_t budget;
  uint8_t fresh[kNumClasses];  // fresh objects the next refill may take
  ThreadCache* reg_next;  // registry of live caches (owned by the glue)
  ThreadCache* reg_prev;

  static uint32_t MaxListLength(size_t cls) {
    const ClassInfo& c = Info(cls);
    const size_t hi = size_t(c.batch) * kMaxListBatches;
    size_t cap = c.size <= kSmallListClassBytes ? hi : kListCapBytes / c.size;
    if (cap > hi) cap = hi;
    if (cap < c.batch) cap = c.batch;
    return uint32_t(cap);
  }

  // Ready for the fast paths. `checks`: false in checking mode, where
  // every free must reach the slow path.
  void Activate(size_t budget_bytes, bool checks = true) {
    for (size_t c = 1; c < kNumClasses; ++c) {
      lists[c].set_max(Info(c).batch);
      fresh[c] = 1;
      if (checks) lists[c].check = ClassCheck(c);
    }
    budget = budget_bytes;
    state = CacheState::kActive;
  }

  // The list of `cls` is empty: refill it with a batch and return one
  // object (nullptr when out of memory).
  STRATA_NOINLINE void* Refill(size_t cls, size_t size, Backend& backend) {
    FreeList& l = lists[cls];
    const ClassInfo& c = Info(cls);
    void* head;
    void* tail;
    int n = backend.RemoveRange(cls, &head, &tail, int(c.batch), fresh[cls]);
    if (n == 0) return nullptr;
    if (fresh[cls] < c.batch) fresh[cls] = uint8_t(2 * fresh[cls] < c.batch ? 2 * fresh[cls] : c.batch);
    ++misses;
    overflows_since_refill = 0;
    l.head = *static_cast<void**>(head);
    l.room -= n - 1;
    ++l.allocs;
    l.requested += size;
    uint32_t cap = MaxListLength(cls);
    l.set_max(l.max + uint32_t(n) < cap ? l.max + uint32_t(n) : cap);
    if (++slow_events % kCheckPeriod == 0) {
      MaybeScavenge(backend);
      CollectIdle(backend);
    }
    return head;
  }

  // The list of `cls` went over its limit: give a batch back.
  STRATA_NOINLINE void Overflow(size_t cls, Backend& backend) {
    FreeList& l = lists[cls];
    uint32_t n = Info(cls).batch;
    if (n > l.length()) n = l.length();
    Release(cls, n, backend);
    if (overflows_since_refill < kFreeOnlyOverflows) ++overflows_since_refill;
    MaybeScavenge(backend);  // frees are what grow a cache: check each time
    if (++slow_events % kCheckPeriod == 0) CollectIdle(backend);
  }

  // Gives back the lists of classes that served no malloc since the last
  // call (see "Idle lists" above). While the backend is eager (the
  // purger's growth watch: the rest of the process grows past its peak),
  // the lists of classes above kSmallListClassBytes go back whole as well,
  // into their spans: there the purger gives back the pages inside free
  // objects of kReleaseInsideFrom bytes and more
  // (CentralList::ReleaseInsideFreeObjects), and spans that empty. At
  // g++'s peak, its cache held 350 KiB of objects of 8 KiB and more, and
  // as much again above 1 KiB. g++'s peak RSS in two runs of 7
  // interleaved reps (glibc 314.6 MiB in both): 315.0 without this, 314.9
  // with lists from 8 KiB (both runs), 314.5 and 314.7 from 1 KiB; with
  // every list 314.4, but the compile 7% slower.
  STRATA_NOINLINE void CollectIdle(Backend& backend) {
    const bool eager = backend.Eager();
    for (size_t c = 1; c < kNumClasses; ++c) {
      FreeList& l = lists[c];
      const uint32_t n = l.length();
      if ((n > Info(c).batch && l.allocs == l.allocs_seen) || (eager && n > 0 && Info(c).size > kSmallListClassBytes)) {
        void* head = l.head;
        l.head = nullptr;
        l.room += int32_t(n);
        l.set_max(Info(c).batch);
        fresh[c] = 1;
        ++flushes;
        backend.ReturnToSpans(c, head, int(n));
      }
      l.allocs_seen = l.allocs;
    }
  }

  // Moves the first n objects of a list to the central list.
  void Release(size_t cls, uint32_t n, Backend& backend) {
    if (n == 0) return;
    FreeList& l = lists[cls];
    void* head = l.head;
    void* last = head;
    for (uint32_t i = 1; i < n; ++i) last = *static_cast<void**>(last);
    l.head = *static_cast<void**>(last);
    *static_cast<void**>(last) = nullptr;
    l.room += int32_t(n);
    ++flushes;
    backend.InsertRange(cls, head, last, int(n));
  }

  size_t CachedBytes() const {
    size_t total = 0;
    for (size_t c = 1; c < kNumClasses; ++c) total += size_t(lists[c].length()) * Info(c).size;
    return total;
  }

  // What the cache may hold now (see kFreeOnlyBudget).
  size_t Limit() const {
    if (overflows_since_refill >= kFreeOnlyOverflows && budget > kFreeOnlyBudget) return kFreeOnlyBudget;
    return budget;
  }

  // Over the limit: halve every list (and its limit) until under it.
  void MaybeScavenge(Backend& backend) {
    const size_t limit = Limit();
    while (CachedBytes() > limit) {
      for (size_t c = 1; c < kNumClasses; ++c) {
        FreeList& l = lists[c];
        Release(c, l.length() / 2 + (l.length() & 1), backend);
        uint32_t m = l.max / 2;
        l.set_max(m < Info(c).batch ? Info(c).batch : m);
      }
    }
  }

  // Everything back to the central lists.
  void FlushAll(Backend& backend) {
    for (size_t c = 1; c < kNumClasses; ++c) Release(c, lists[c].length(), backend);
  }

  // No cache any more (thread exit) or not a fast one (checking mode):
  // every free takes the slow path and every list is empty.
  void Disable() {
    for (size_t c = 1; c < kNumClasses; ++c) {
      lists[c].check = ObjectCheck{};
      lists[c].set_max(0);
    }
  }

  ThreadCacheStats Stats() const {
    ThreadCacheStats st;
    for (size_t c = 1; c < kNumClasses; ++c) st.hits += lists[c].allocs;
    st.misses = misses;
    st.hits -= misses < st.hits ? misses : st.hits;
    st.flushes = flushes;
    st.cached_bytes = CachedBytes();
    return st;
  }
};

}  // namespace strata
