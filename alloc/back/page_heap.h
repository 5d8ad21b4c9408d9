// PageHeap: a binary buddy allocator of pages.
//
// Memory comes from the OS in chunks of kChunkSize bytes aligned to their
// size (mmap by default; brk when configured, falling back to mmap). A
// chunk is cut into blocks of 2^k pages; a free block of order k starts at
// an offset from its chunk that is a multiple of 2^k pages, and its buddy
// starts at (offset XOR 2^k pages). Alloc takes the smallest free block of
// at least the wanted order and splits it in halves; Free merges a block
// with its free buddy, repeatedly, as far as it goes. So two free buddies
// of one order never both stay on the free lists.
//
// Free-list links and block states live in Span records (metadata), never
// in the free pages: pages returned to the OS (Release) stay untouched
// until they are handed out again.
//
// Returning memory: every free block records when it became free and how
// many of its pages are known to be released. ReleaseIdle() gives back
// blocks idle for longer than the decay time; ReleaseAll() gives back all.
//
// Releasing without the lock: the blocks to give back are taken off the
// free lists under the lock (state kReleasing, on releasing_), and then
// given back one at a time with the lock dropped, each going back onto the
// free lists, merged, as soon as its madvise returns. madvise takes time in
// proportion to the resident pages (about 80 us per MiB here): the purger
// once held the lock for 40-45 ms while it gave back 512 MiB, and every
// thread that needed a span or a page object waited that long (a malloc
// of 128 KiB: 45 ms where it takes 0.07 us). While a block waits its turn,
// an allocation that finds no free block takes the waiting ones back
// rather than grow the heap; only the block under madvise is out of reach.
// A block off the lists does not merge with its buddy: the buddy merges
// with it when it comes back.
//
// Locking: one spinlock guards everything here. Callers may hold a central
// list lock (order: central -> page heap -> arena/page-map leaves).
#pragma once

#include <atomic>

#include "alloc/back/arena.h"
#include "alloc/back/page_map.h"
#include "alloc/back/span.h"
#include "alloc/os/spinlock.h"

namespace strata {

struct PageHeapStats {
  uint64_t free_blocks[kNumOrders] = {};
  uint64_t free_pages = 0;
  uint64_t released_pages = 0;   // of the free pages, known not resident
  uint64_t used_pages = 0;
  uint64_t splits = 0;
  uint64_t merges = 0;
  uint64_t chunks = 0;
  uint64_t mmap_bytes = 0;
  uint64_t brk_bytes = 0;             // chunk bytes currently from brk
  uint64_t brk_returned_bytes = 0;    // chunk bytes given back by shrinking the break
  uint64_t released_bytes_total = 0;  // cumulative bytes given back
  uint64_t largest_free_pages = 0;
};

template <class Os>
class PageHeap {
 public:
  // What a free or allocation path left to do once the lock is dropped.
  struct Release {
    size_t bytes = 0;  // detached, to release (0: nothing)
    bool shrink = false;
    uint64_t cutoff = 0;
    bool empty() const { return bytes == 0 && !shrink; }
    void Add(const Release& r) {
      bytes += r.bytes;
      shrink |= r.shrink;
      if (r.cutoff > cutoff) cutoff = r.cutoff;
    }
  };

  // Huge pages. Where transparent huge pages are "always" on, the first
  // touch of a chunk's first page makes a whole 2 MiB resident: a hello
  // world held 5.9 MiB against glibc's 1.5. The first kSmallHeapChunks
  // chunks (8 MiB) are marked MADV_NOHUGEPAGE, as are the page map's root
  // and leaves: a heap that small gains little from huge pages and pays
  // 2 MiB for each half-chunk it touches. With them marked, under THP
  // "always": hello world 1.7 MiB; g++ 323.1 -> 320.5 MiB (glibc 315.7);
  // python3 54.3 -> 51.6 MiB, its time unchanged (9 reps). Larger heaps get
  // what the system gives: marking every chunk cost python3 7% of its time
  // (3 reps). With THP "madvise" or "never" the marks change nothing.
  static constexpr uint64_t kSmallHeapChunks = 2;

  constexpr PageHeap() = default;
  PageHeap(Os* os, PageMap<Os>* map, MetaArena<Os>* arena) { Bind(os, map, arena); }
  void Bind(Os* os, PageMap<Os>* map, MetaArena<Os>* arena) {
    os_ = os;
    map_ = map;
    arena_ = arena;
  }
  void set_use_brk(bool b) { use_brk_ = b; }
  void set_decay_ms(int64_t ms) {
    LockGuard g(lock_);  // the background purger reads it under the lock
    decay_ms_ = ms;
  }
  void set_lazy_release(bool b) { lazy_release_ = b; }
  int64_t decay_ms() const { return decay_ms_; }
  // Whether a background purger calls ReleaseIdle: then Free leaves idle
  // blocks to it (see Free).
  void set_purger(bool on) { purger_.store(on, std::memory_order_relaxed); }
  // Eager: the purger gives back every few milliseconds what has been free
  // a few milliseconds (ReleaseFree), and central lists keep no empty span
  // meanwhile (the purger turns it on for a while when the rest of the
  // process grows past its peak: alloc/stats/growth.h). The heap itself
  // only keeps the flag.
  void set_eager(bool on) { eager_.store(on, std::memory_order_relaxed); }
  bool eager() const { return eager_.load(std::memory_order_relaxed); }
  // Bytes handed out from pages that were not resident (released, or never
  // touched), ever: what this heap's growth may have added to the RSS.
  // Lock-free. A block freed resident counts as resident as a whole, even
  // if its last owner touched only part of it: a page object of up to
  // 1 MiB freed after a page was touched, handed out again and filled,
  // grows the RSS uncounted. Counting every page object's whole block
  // instead hid cc1plus's growth (its peak went back up by 2 MiB).
  uint64_t fresh_bytes() const { return fresh_pages_.load(std::memory_order_relaxed) << kPageShift; }

  // A block of 2^order pages, recorded in the page map for all its pages
  // with `state` and class `cls`. nullptr when the OS has no memory, or,
  // with may_grow false, when no free block is large enough.
  // Out of line, as GrowLocked: they run once per span or chunk, and at
  // -O3 every slow path that inlined them carried its own 3 KiB copy (the
  // library's text is resident in every process that loads it).
  // When a free path's release stopped at its budget (see Free), an
  // allocation goes on with it too.
  STRATA_NOINLINE Span* Alloc(Order order, SpanState state, uint8_t cls, bool may_grow = true) {
    Release owed;
    Span* s = AllocHeld(order, state, cls, &owed, may_grow);
    FinishFree(owed);
    return s;
  }
  // Alloc for a caller that holds a lock of its own (a central list's): the
  // release it may owe is added to *owed, for FinishFree once the caller
  // dropped its lock (see FreeHeld).
  STRATA_NOINLINE Span* AllocHeld(Order order, SpanState state, uint8_t cls, Release* owed,
                                  bool may_grow = true) {
    LockGuard g(lock_);
    Span* s = AllocLocked(order, may_grow);
    if (s != nullptr) {
      s->state = state;
      s->cls = cls;
      map_->Set(s->start, s->pages(), s, cls);
      used_pages_ += s->pages().n;
    }
    if (STRATA_LIKELY(!release_pending_)) return s;
    const uint64_t now = os_->NowMs();
    if (SlowPathReleaseDue(now)) owed->Add(SlowPathDetachLocked(now));
    return s;
  }

  // Gives a block back; it merges with its free buddies.
  //
  // When the decay check is due and no background purger runs, idle blocks
  // go back to the OS from here, after the lock is dropped, but only about
  // kFreePathReleaseBytes of them per call (the block that reaches it
  // included, so up to a chunk more); the next Free or Alloc goes on with
  // the rest. A program that freed 512 MiB would otherwise wait 25-40 ms in
  // one free() while all of it went back (madvise: about 80 us per MiB);
  // now a free waits about 0.2-0.5 ms. With a purger, Free leaves it all
  // to the purger, which runs as often. With STRATA_DECAY_MS=0 each freed
  // block goes back at once (the option's promise), whatever its size.
  static constexpr size_t kFreePathReleaseBytes = size_t{2} << 20;
  void Free(Span* s) { FinishFree(FreeHeld(s)); }
  // Free for a caller that holds a lock of its own (a central list's): the
  // block is on the free lists when it returns, so that no span is between
  // owners while the caller's lock is free (see CentralList::FreeSpanLocked).
  // The release it may owe is returned, for FinishFree once the caller
  // dropped its lock: no madvise runs under a central list's lock.
  [[nodiscard]] Release FreeHeld(Span* s) {
    const uint64_t now = os_->NowMs();
    LockGuard g(lock_);
    FreeLocked(s, now);
    if (STRATA_LIKELY(!SlowPathReleaseDue(now))) return Release{};
    return SlowPathDetachLocked(now);
  }
  void FinishFree(const Release& r) {
    if (STRATA_UNLIKELY(!r.empty())) Finish(r);
  }

  // Release blocks that have been free longer than the decay time.
  size_t ReleaseIdle() {
    uint64_t now = os_->NowMs();
    uint64_t cutoff;
    {
      LockGuard g(lock_);
      if (!DetachIdleLocked(now, &cutoff, nullptr)) return 0;
    }
    const size_t released = ReleaseDetached(SIZE_MAX);
    return released + ShrinkBreak(cutoff);
  }

  // Gives back the pages of [start, start + bytes), inside a span the
  // caller owns and whose contents there nobody needs (free objects:
  // CentralList::ReleaseInsideFreeObjects). The caller counts what it gave
  // back once it is done (CountReleased), not a lock round per range.
  void ReleaseRange(uintptr_t start, size_t bytes) {
    os_->Release(reinterpret_cast<void*>(start), bytes, lazy_release_);
  }
  void CountReleased(size_t bytes) {
    LockGuard g(lock_);
    stats_.released_bytes_total += bytes;
  }

  // Gives back the resident pages of every block free since `cutoff_ms`
  // or before, like ReleaseAll but without waiting for other threads'
  // releases, and with no limit on the blocks it looks at (the purger's
  // growth watch). Returns the bytes released.
  size_t ReleaseFree(uint64_t cutoff_ms) {
    size_t taken = 0;
    {
      LockGuard g(lock_);
      DetachWhereLocked(cutoff_ms, SIZE_MAX, &taken);
    }
    return taken != 0 ? ReleaseDetached(taken) : 0;
  }

  // Whether a free block still has resident pages: what the background
  // purger may yet give back. Walks the free lists (the purger's pace, not
  // an allocation path's). Blocks waiting on releasing_ count: an
  // allocation may take them back before their turn.
  bool HoldsResidentFree() {
    LockGuard g(lock_);
    if (!releasing_.empty()) return true;
    for (unsigned k = 0; k < kNumOrders; ++k) {
      for (Span* s = free_[k].head; s != nullptr; s = s->next) {
        if (s->clean_pages != s->pages().n) return true;
      }
    }
    return false;
  }
  // Release every free page now. Returns bytes newly released (by this
  // call). When it returns, every page free when it was called has gone
  // back: blocks under another thread's madvise (the purger's) are waited
  // for, so that the statistics read after strata_release() show no
  // resident free page. With brk they are waited for before too, so that a
  // whole free chunk at the top of the break goes (an allocation that
  // failed under RLIMIT_AS retries after this).
  size_t ReleaseAll() {
    if (use_brk_) AwaitOthersReleases();
    {
      LockGuard g(lock_);
      DetachWhereLocked(UINT64_MAX, SIZE_MAX, nullptr);
    }
    const size_t released = ReleaseDetached(SIZE_MAX);
    AwaitOthersReleases();
    return released + ShrinkBreak(UINT64_MAX);
  }

  // In a child after fork(): blocks that a thread of the parent was giving
  // back go back onto the free lists (that thread does not exist here, or
  // it is this one, forking from a signal handler: see ReleaseDetached).
  // Their pages count as resident unless known released before.
  void ReturnDetachedAfterFork() {
    LockGuard g(lock_);
    ++forks_;
    ReturnListLocked(&releasing_);
    ReturnListLocked(&in_flight_);
  }

  // Pages handed out since the last call that were not resident (released
  // or never touched): what the heap's growth costs in RSS, for the
  // exchange with the large cache (alloc/strata.cc). Counted only while
  // the owner says the exchange is on (set_count_faulting): elsewhere the
  // counter stays zero and a reader's load finds its line in no other
  // core's cache. Lock-free.
  void set_count_faulting(bool on) { count_faulting_.store(on, std::memory_order_relaxed); }
  size_t TakeFaultingPages() { return TakeAll(faulting_pages_); }

  // Releases resident free blocks idle since before `cutoff_ms`, largest
  // first, until at least `bytes` went back (or none is left), looking at
  // no more than kReleaseScanLimit blocks: a heap fragmented into many
  // small free blocks, mostly released already, must not make every large
  // allocation walk them all. Returns the bytes released.
  static constexpr size_t kReleaseScanLimit = 1024;
  size_t ReleaseIdleBytes(size_t bytes, uint64_t cutoff_ms) {
    size_t taken = 0;
    {
      LockGuard g(lock_);
      size_t looked = 0;
      for (unsigned k = kNumOrders; k-- > 0 && taken < bytes && looked < kReleaseScanLimit;) {
        for (Span* s = free_[k].head; s != nullptr && taken < bytes && looked < kReleaseScanLimit; ++looked) {
          Span* next = s->next;
          if (s->free_since_ms <= cutoff_ms) taken += DetachLocked(s);
          s = next;
        }
      }
    }
    return taken != 0 ? ReleaseDetached(taken) : 0;
  }

  PageHeapStats Stats() {
    LockGuard g(lock_);
    PageHeapStats st = stats_;
    auto count = [&st](const SpanList& list) {
      for (Span* s = list.head; s != nullptr; s = s->next) {
        ++st.free_blocks[s->order];
        st.free_pages += s->pages().n;
        st.released_pages += s->clean_pages;
        if (s->pages().n > st.largest_free_pages) st.largest_free_pages = s->pages().n;
      }
    };
    for (unsigned k = 0; k < kNumOrders; ++k) count(free_[k]);
    count(releasing_);  // free blocks still, on their way to the OS
    count(in_flight_);
    st.used_pages = used_pages_;
    return st;
  }

  // Unmaps every mmap'd chunk that is entirely free, giving its address
  // space back (under an address-space limit, released pages still count).
  // Returns the bytes unmapped. Called when an allocation fails.
  size_t UnmapFreeChunks() {
    AwaitOthersReleases();  // a whole free chunk may be on its way to the OS
    size_t total = 0;
    LockGuard g(lock_);
    Chunk* prev = nullptr;
    for (Chunk* c = chunks_; c != nullptr;) {
      Chunk* next = c->next;
      Span* s = c->from_brk ? nullptr : WholeFreeChunkLocked(c);
      if (s != nullptr) {
        DropChunkLocked(c, prev, s);
        os_->Unmap(reinterpret_cast<void*>(c->base), kChunkSize);
        total += kChunkSize;
      } else {
        prev = c;
      }
      c = next;
    }
    return total;
  }

  // Puts blocks waiting for release back on the free lists, and waits
  // until the blocks under another thread's madvise when it was called are
  // back (a fraction of a millisecond each, unless that thread is
  // descheduled): after it, every block free then is on the free lists,
  // where UnmapFreeChunks and ShrinkBreakLocked look for whole free chunks.
  // Blocks that went under madvise after the call are not waited for:
  // threads that keep releasing (STRATA_DECAY_MS=0) would keep it waiting.
  // Yields at first, then sleeps; gives up after about a second (8,000
  // sleeps of 50 us, some 120 us each with the kernel's timer slack), so
  // that a signal handler that allocates during its own thread's madvise
  // cannot hang on it.
  static constexpr int kAwaitReleaseYields = 64;
  static constexpr int kAwaitReleaseTries = kAwaitReleaseYields + 8000;
  void AwaitOthersReleases() {
    uint64_t seen = 0;
    for (int tries = 0;; ++tries) {
      {
        LockGuard g(lock_);
        if (tries == 0) seen = flight_seq_;
        ReturnListLocked(&releasing_);
        if (!InFlightUpToLocked(seen) || tries == kAwaitReleaseTries) return;
      }
      if (tries < kAwaitReleaseYields) {
        os_->Yield();
      } else {
        os_->SleepShort();
      }
    }
  }

  // Walks every chunk and checks every invariant; on failure writes what
  // broke into `why` and returns false. For tests.
  bool Check(const char** why);

  SpinLock& lock() { return lock_; }
  PageMap<Os>* map() { return map_; }

 private:
  struct Chunk {
    uintptr_t base;
    Chunk* next;
    bool from_brk;
  };

  // Whether a free or allocation path has memory to give back now (see
  // Free). Lock held.
  bool SlowPathReleaseDue(uint64_t now) const {
    if (decay_ms_ == 0) return true;
    return decay_ms_ > 0 && now >= next_decay_check_ms_ && !purger_.load(std::memory_order_relaxed);
  }
  // Out of line, as Finish: a release is rare on the paths that call Free
  // and Alloc, which stay short (the same instructions run; xmalloc-test,
  // its threads passing spans back and forth, measured within its noise).
  STRATA_NOINLINE Release SlowPathDetachLocked(uint64_t now) {
    Release r;
    if (DetachIdleLocked(now, &r.cutoff, &r.bytes, decay_ms_ == 0 ? SIZE_MAX : kFreePathReleaseBytes)) {
      r.shrink = use_brk_;
    }
    return r;
  }
  // A slow path's shrink of the break takes only chunks whose pages went
  // back already (with the lock dropped): the others wait for a later
  // call's budget. Shrinking resident chunks under the lock had held it
  // 26 ms for 512 MiB.
  STRATA_NOINLINE void Finish(const Release& r) {
    if (r.bytes != 0) ReleaseDetached(r.bytes);
    if (r.shrink) ShrinkBreak(r.cutoff, /*clean_only=*/true);
  }

  void FreeLocked(Span* s, uint64_t now) {
    map_->ClearClass(s->start, s->pages());
    used_pages_ -= s->pages().n;
    s->state = SpanState::kFree;
    s->cls = 0;
    s->freelist = nullptr;
    s->bump = 0;  // and bytes: they share a word
    s->used = 0;
    s->clean_pages = 0;
    s->free_since_ms = now;
    InsertFreeMerging(s);
  }

  // The smallest order of at least `want` with a free block; kNumOrders if
  // none. Lock held.
  unsigned FirstFitLocked(Order want) const {
    unsigned k = want.k;
    while (k < kNumOrders && free_[k].empty()) ++k;
    return k;
  }

  Span* AllocLocked(Order want, bool may_grow) {
    unsigned k = FirstFitLocked(want);
    // Blocks wait to go back to the OS (another thread gives them back
    // with the lock dropped): take them back, one at a time, until one
    // fits, rather than grow the heap.
    while (k == kNumOrders && !releasing_.empty()) {
      ReturnLocked(releasing_.Pop());
      k = FirstFitLocked(want);
    }
    if (k == kNumOrders) {
      if (!may_grow || !GrowLocked()) return nullptr;
      k = kMaxOrder;
    }
    Span* s = free_[k].Pop();
    // Split in halves until the block has the wanted order; the upper half
    // of each split goes back on the free lists.
    while (k > want.k) {
      --k;
      Span* upper = spans_.New(*arena_);
      if (upper == nullptr) {
        // Out of metadata: give the block back; it merges again with the
        // upper halves split off so far, restoring the buddy invariant.
        s->order = uint8_t(k + 1);
        InsertFreeMerging(s);
        return nullptr;
      }
      ++stats_.splits;
      uint32_t half = uint32_t(1) << k;
      upper->start = s->start + (uintptr_t(half) << kPageShift);
      upper->order = uint8_t(k);
      upper->state = SpanState::kFree;
      upper->free_since_ms = s->free_since_ms;
      // Released pages are not tracked page by page: split the count.
      uint32_t clean = s->clean_pages;
      upper->clean_pages = clean >= 2 * half ? half : clean / 2;
      s->clean_pages = clean - upper->clean_pages;
      s->order = uint8_t(k);
      map_->SetSpan(upper->start, upper);
      free_[k].Push(upper);
    }
    if (s->clean_pages != 0) {
      fresh_pages_.store(fresh_pages_.load(std::memory_order_relaxed) + s->clean_pages, std::memory_order_relaxed);
      if (count_faulting_.load(std::memory_order_relaxed)) {
        faulting_pages_.fetch_add(s->clean_pages, std::memory_order_relaxed);
      }
    }
    s->clean_pages = 0;
    s->next = s->prev = nullptr;
    return s;
  }

  void InsertFreeMerging(Span* s) {
    unsigned k = s->order;
    while (k < kMaxOrder) {
      uintptr_t chunk = AlignDown(s->start, kChunkSize);
      uintptr_t buddy_start = chunk + ((s->start - chunk) ^ (uintptr_t(kPageSize) << k));
      Span* b = map_->SpanOf(buddy_start);
      // An atomic read: a buddy in use may be handed to the mixed pool
      // meanwhile (MixedPool::Adopt, under its class's lock only), from
      // one in-use state to another; kFree is set under this lock.
      if (b == nullptr || b->LoadState() != SpanState::kFree || b->start != buddy_start || b->order != k) {
        break;
      }
      free_[k].Remove(b);
      ++stats_.merges;
      if (b->start < s->start) s->start = b->start;
      s->clean_pages += b->clean_pages;
      if (b->free_since_ms > s->free_since_ms) s->free_since_ms = b->free_since_ms;
      spans_.Delete(b);
      ++k;
      s->order = uint8_t(k);
    }
    map_->SetSpan(s->start, s);
    free_[k].Push(s);
  }

  STRATA_NOINLINE bool GrowLocked() {
    void* mem = nullptr;
    bool from_brk = false;
    if (use_brk_) {
      mem = os_->GrowBreak(kChunkSize, kChunkSize);
      from_brk = mem != nullptr;
    }
    if (mem == nullptr) {
      mem = os_->Map(kChunkSize, kChunkSize);
      if (mem == nullptr) return false;
    }
    uintptr_t base = uintptr_t(mem);
    if (stats_.chunks < kSmallHeapChunks) os_->NoHugePages(mem, kChunkSize);
    Chunk* c = static_cast<Chunk*>(arena_->Alloc(sizeof(Chunk)));
    Span* s = spans_.New(*arena_);
    if (c == nullptr || s == nullptr || !map_->Ensure(base, kChunkSize)) {
      // The record memory (if any) stays in the arena; the chunk goes back
      // where it came from (break memory cannot be unmapped).
      if (s != nullptr) spans_.Delete(s);
      if (!from_brk) {
        os_->Unmap(mem, kChunkSize);
      } else if (!os_->ShrinkBreak(mem, kChunkSize)) {
        os_->Release(mem, kChunkSize, false);  // not at the top: leave it, empty
      }
      return false;
    }
    (from_brk ? stats_.brk_bytes : stats_.mmap_bytes) += kChunkSize;
    c->base = base;
    c->next = chunks_;
    c->from_brk = from_brk;
    chunks_ = c;
    ++stats_.chunks;
    s->start = base;
    s->order = kMaxOrder;
    s->state = SpanState::kFree;
    s->clean_pages = uint32_t(Order{kMaxOrder}.pages().n);  // fresh: not resident
    s->free_since_ms = os_->NowMs();
    map_->SetSpan(base, s);
    free_[kMaxOrder].Push(s);
    return true;
  }

  // Takes the blocks idle for longer than the decay time off the free
  // lists, for ReleaseDetached, until `budget` resident bytes (the block
  // that reaches it included; the bytes taken go to *taken if not null);
  // when the budget runs out, the next check is due at once, and the next
  // Alloc makes it too (release_pending_). Lock held. False when nothing
  // can be idle that long yet (or ever); else *cutoff is the latest free
  // time that is.
  bool DetachIdleLocked(uint64_t now, uint64_t* cutoff, size_t* taken, size_t budget = SIZE_MAX) {
    uint64_t period = decay_ms_ > 4 ? uint64_t(decay_ms_) / 4 : 1;
    next_decay_check_ms_ = now + period;
    release_pending_ = false;
    if (!DecayCutoff(decay_ms_, now, cutoff)) return false;
    if (!DetachWhereLocked(*cutoff, budget, taken)) {
      next_decay_check_ms_ = now;
      release_pending_ = true;
    }
    return true;
  }

  // Gives back whole free chunks at the top of the break idle since before
  // `cutoff`. After ReleaseDetached: their pages went back with the lock
  // dropped, so that the kernel has little left to do under it. Returns
  // the bytes given back (resident ones only, as everywhere).
  size_t ShrinkBreak(uint64_t cutoff, bool clean_only = false) {
    if (!use_brk_) return 0;
    LockGuard g(lock_);
    const size_t released = ShrinkBreakLocked(cutoff, clean_only);
    stats_.released_bytes_total += released;
    return released;
  }

  // The free block that covers all of chunk c, or nullptr. Lock held.
  Span* WholeFreeChunkLocked(const Chunk* c) const {
    Span* s = map_->SpanOf(c->base);
    if (s == nullptr || s->state != SpanState::kFree || s->start != c->base || s->order != kMaxOrder) return nullptr;
    return s;
  }

  // Forgets chunk c (after `prev` on the chunk list; nullptr if first),
  // whose whole free block is s, before it goes back to the kernel. Lock
  // held.
  void DropChunkLocked(Chunk* c, Chunk* prev, Span* s) {
    free_[kMaxOrder].Remove(s);
    map_->SetSpan(c->base, nullptr);
    spans_.Delete(s);
    (prev != nullptr ? prev->next : chunks_) = c->next;  // the Chunk record stays in the arena
    --stats_.chunks;
    (c->from_brk ? stats_.brk_bytes : stats_.mmap_bytes) -= kChunkSize;
  }

  // Gives the top of the break back to the kernel while it is a whole free
  // chunk idle since before `cutoff` (and, with clean_only, whose pages all
  // went back). Lock held. Returns bytes given back.
  size_t ShrinkBreakLocked(uint64_t cutoff, bool clean_only) {
    size_t released = 0;
    for (bool again = true; again;) {
      again = false;
      Chunk* prev = nullptr;
      for (Chunk* c = chunks_; c != nullptr; prev = c, c = c->next) {
        if (!c->from_brk) continue;
        Span* s = WholeFreeChunkLocked(c);
        if (s == nullptr || s->free_since_ms > cutoff) continue;
        if (clean_only && s->clean_pages != s->pages().n) continue;
        if (!os_->ShrinkBreak(reinterpret_cast<void*>(c->base), kChunkSize)) continue;  // not the top
        released += size_t(kChunkSize) - (size_t(s->clean_pages) << kPageShift);
        DropChunkLocked(c, prev, s);
        stats_.brk_returned_bytes += kChunkSize;
        again = true;  // the chunk below may now be the top
        break;
      }
    }
    return released;
  }

  // Takes free blocks whose free_since_ms <= cutoff and that have resident
  // pages off the free lists, for ReleaseDetached, until they hold `budget`
  // resident bytes (added to *taken if not null). Lock held. False if it
  // stopped at the budget with such blocks left.
  bool DetachWhereLocked(uint64_t cutoff, size_t budget, size_t* taken) {
    size_t bytes = 0;
    bool done = true;
    for (unsigned k = 0; k < kNumOrders && done; ++k) {
      for (Span* s = free_[k].head; s != nullptr;) {
        Span* next = s->next;
        if (s->free_since_ms <= cutoff && s->clean_pages != s->pages().n) {
          if (bytes >= budget) {
            done = false;
            break;
          }
          bytes += DetachLocked(s);
        }
        s = next;
      }
    }
    if (taken != nullptr) *taken += bytes;
    return done;
  }

  // Takes free block s off its free list onto releasing_ if it has
  // resident pages. Lock held. Returns the bytes it will give back.
  size_t DetachLocked(Span* s) {
    const uint32_t pages = uint32_t(s->pages().n);
    if (s->clean_pages == pages) return 0;
    free_[s->order].Remove(s);
    s->state = SpanState::kReleasing;
    releasing_.Push(s);
    return size_t(pages - s->clean_pages) << kPageShift;
  }

  // Gives blocks waiting on releasing_ back to the OS one at a time, the
  // lock dropped around each madvise, and puts each back on the free
  // lists, until `limit` bytes went back or none waits. The list is shared:
  // other threads may run this at the same time, each with its own limit
  // (what it detached), so that none does much more than its own share,
  // and allocations may take waiting blocks back (AllocLocked). Returns the
  // bytes released.
  //
  // A fork() while the lock is dropped (from a signal handler that
  // interrupted this thread's madvise: fork is async-signal-safe) hands the
  // block back in the child (ReturnDetachedAfterFork), where this thread
  // then goes on: it must not touch the block again.
  size_t ReleaseDetached(size_t limit) {
    size_t released = 0;
    uint64_t forks = 0;
    for (Span* s = nullptr;;) {
      {
        LockGuard g(lock_);
        if (s != nullptr) {
          if (STRATA_UNLIKELY(forks != forks_)) return released;
          in_flight_.Remove(s);
          const size_t bytes = size_t(s->pages().n - s->clean_pages) << kPageShift;
          s->clean_pages = uint32_t(s->pages().n);
          stats_.released_bytes_total += bytes;
          released += bytes;
          ReturnLocked(s);
        }
        if (released >= limit) return released;
        s = releasing_.Pop();
        if (s == nullptr) return released;
        s->flight = ++flight_seq_;
        in_flight_.Push(s);
        forks = forks_;
      }
      os_->Release(reinterpret_cast<void*>(s->start), s->pages().bytes(), lazy_release_);
    }
  }

  // Whether a block that went under madvise as number `seq` or earlier is
  // still there. Lock held; in_flight_ holds a block per releasing thread.
  bool InFlightUpToLocked(uint64_t seq) const {
    for (const Span* f = in_flight_.head; f != nullptr; f = f->next) {
      if (f->flight <= seq) return true;
    }
    return false;
  }

  // Puts a block off the free lists (kReleasing) back on them, merged,
  // pages as resident as they are recorded. Lock held.
  void ReturnLocked(Span* s) {
    s->state = SpanState::kFree;
    InsertFreeMerging(s);
  }
  void ReturnListLocked(SpanList* list) {
    while (Span* s = list->Pop()) ReturnLocked(s);
  }

  Os* os_ = nullptr;
  PageMap<Os>* map_ = nullptr;
  MetaArena<Os>* arena_ = nullptr;
  SpinLock lock_;
  SpanList free_[kNumOrders];
  SpanList releasing_;  // free blocks waiting for ReleaseDetached (kReleasing)
  SpanList in_flight_;  // free blocks under madvise, the lock dropped (kReleasing)
  uint64_t flight_seq_ = 0;  // blocks put on in_flight_ so far (Span::flight)
  uint64_t forks_ = 0;       // ReturnDetachedAfterFork calls (ReleaseDetached)
  RecordPool<Span, Os> spans_;
  Chunk* chunks_ = nullptr;
  PageHeapStats stats_;
  uint64_t used_pages_ = 0;
  uint64_t next_decay_check_ms_ = 0;
  std::atomic<size_t> faulting_pages_{0};  // added to under lock_, taken without
  std::atomic<bool> count_faulting_{false};
  std::atomic<uint64_t> fresh_pages_{0};  // written under lock_, read without (fresh_bytes)
  std::atomic<bool> eager_{false};
  // Zero (return at once) until the owner sets it. Every default in the
  // heap is zero, so that the global heap lands in .bss (see Heap).
  int64_t decay_ms_ = 0;
  bool use_brk_ = false;
  bool lazy_release_ = false;
  bool release_pending_ = false;  // a slow path's release stopped at its budget
  std::atomic<bool> purger_{false};
};

template <class Os>
bool PageHeap<Os>::Check(const char** why) {
  LockGuard g(lock_);
  auto fail = [why](const char* w) {
    *why = w;
    return false;
  };
  size_t listed[kNumOrders] = {};
  for (unsigned k = 0; k < kNumOrders; ++k) {
    size_t n = 0;
    for (Span* s = free_[k].head; s != nullptr; s = s->next) {
      if (s->state != SpanState::kFree) return fail("span on a free list is not free");
      if (s->order != k) return fail("span on the free list of another order");
      if (s->next != nullptr && s->next->prev != s) return fail("free list links broken");
      ++n;
    }
    if (n != free_[k].count) return fail("free list count wrong");
  }
  for (const SpanList* list : {&releasing_, &in_flight_}) {
    for (Span* s = list->head; s != nullptr; s = s->next) {
      if (s->state != SpanState::kReleasing) return fail("span on a release list is not being released");
    }
  }
  size_t used = 0;
  size_t releasing = 0;
  for (Chunk* c = chunks_; c != nullptr; c = c->next) {
    uintptr_t a = c->base, end = c->base + kChunkSize;
    Span* prev_free = nullptr;
    while (a < end) {
      Span* s = map_->SpanOf(a);
      if (s == nullptr || s->start != a) return fail("page map does not know a block start");
      size_t off_pages = (a - c->base) >> kPageShift;
      if (off_pages % s->pages().n != 0) return fail("block not aligned to its order");
      if (s->end() > end) return fail("block runs past its chunk");
      if (s->state == SpanState::kFree) {
        ++listed[s->order];
        if (s->clean_pages > s->pages().n) return fail("more released pages than pages");
        // A free block and a free buddy of the same order must have merged.
        uintptr_t buddy = c->base + ((a - c->base) ^ Order{s->order}.bytes());
        Span* b = map_->SpanOf(buddy);
        if (s->order < kMaxOrder && b != nullptr && b->state == SpanState::kFree &&
            b->start == buddy && b->order == s->order) {
          return fail("two free buddies did not merge");
        }
        if (map_->ClassOf(a) != 0) return fail("free block has a size class");
        prev_free = s;
      } else if (s->state == SpanState::kReleasing) {
        ++releasing;
        if (s->clean_pages > s->pages().n) return fail("more released pages than pages");
        if (map_->ClassOf(a) != 0) return fail("block being released has a size class");
      } else if (s->state == SpanState::kSmall || s->state == SpanState::kPageObject) {
        used += s->pages().n;
        for (size_t i = 0; i < s->pages().n; ++i) {
          uintptr_t p = a + (i << kPageShift);
          if (map_->SpanOf(p) != s) return fail("a page of a live span maps elsewhere");
          if (map_->ClassOf(p) != s->cls) return fail("a page of a live span has the wrong class");
        }
      } else if (s->state == SpanState::kMixed) {
        used += s->pages().n;
        for (size_t i = 0; i < s->pages().n; ++i) {
          uintptr_t p = a + (i << kPageShift);
          if (map_->SpanOf(p) != s) return fail("a page of a mixed span maps elsewhere");
          if (map_->ClassOf(p) != 0) return fail("a page of a mixed span has a size class");
        }
      } else {
        return fail("block in a chunk with an unexpected state");
      }
      a = s->end();
    }
    (void)prev_free;
  }
  for (unsigned k = 0; k < kNumOrders; ++k) {
    if (listed[k] != free_[k].count) return fail("free block not on its list, or listed twice");
  }
  if (used != used_pages_) return fail("used page count wrong");
  if (releasing != releasing_.count + in_flight_.count) return fail("block being released not on a release list");
  return true;
}

}  // namespace strata
