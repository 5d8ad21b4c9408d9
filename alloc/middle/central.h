// CentralList: the objects of one size class that are not in any thread
// cache, kept in their spans, as a slab allocator does.
//
// A span of this class is in one of three states:
//   partial: some objects out, some free      -> on partial_[bucket]
//   full:    every object out                 -> on no list (found again
//            through the page map when an object comes back)
//   empty:   no object out                    -> on empty_ (at most
//            MaxEmptySpans(cls) kept; the rest go back to the page heap)
// and, for one-page spans of a class with room to spare, a fourth: down to
// a quarter of its objects, the span leaves the class for the mixed pool
// (MixLocked, alloc/middle/mixed.h), whose holes serve every class; its
// objects still out come back here and are passed on to the pool. A class
// with no partial span takes objects from the pool's holes before a new
// span. mixed_objects_ counts this class's objects that live in mixed
// spans, so that the span counts and free objects stay exact.
// Partial spans are bucketed by occupancy and objects are handed out from
// the fullest bucket first, so that nearly empty spans are left alone long
// enough to drain and go back to the page heap (less fragmentation, and
// memory that can be returned to the OS).
// Objects inside a span are carved lazily: `bump` is the first object never
// handed out, `freelist` chains objects that came back (the link is stored
// in the free object itself, as in every slab allocator).
//
// Thread caches move objects in batches: RemoveRange hands out a chain of
// up to n objects, InsertRange takes a chain back. Whole batches (the
// class's batch size) first go to a transfer cache, a small stack of
// batches, so that objects passing from one thread to another (a producer
// and a consumer) do not go through their spans at all. It is bounded
// (kTransferBytes per class, one batch while only one thread
// has a cache: SetThreaded) and drained back into the spans by DrainIdle()
// (the background purger) when it went unused for a whole purge period, and
// by ReleaseEmpty() (malloc_trim).
//
// A batch waits there as an array of its objects' addresses, not as a
// chain. The thread that gives it back reads the links out of objects it
// has just freed (in its own CPU cache); the thread that takes it writes
// the links anew. Those are stores to lines the other core holds, and the
// CPU overlaps them. Handed over as a chain, each of the taker's mallocs
// read the next link out of the object it popped: one cache miss after the
// other, on the critical path (producer/consumer xmalloc-test: +43% ops/s
// with arrays).
//
// Locking: one spinlock per class. Calls into the page heap are made with
// it held (order: central -> page heap), spans going back to it included,
// so that a span is never between owners while no lock is held; the page
// heap's madvise that such a call may owe runs after the lock is dropped
// (UnlockAndSettle).
#pragma once

#include "alloc/back/page_heap.h"
#include "alloc/middle/mixed.h"
#include "alloc/middle/size_class.h"
#include "alloc/stats/peak.h"

namespace strata {

struct CentralStats {
  uint64_t spans = 0;          // live spans of this class (partial+full+empty)
  uint64_t partial_spans = 0;
  uint64_t empty_spans = 0;
  uint64_t objects_out = 0;    // objects currently outside the central list
  uint64_t free_objects = 0;   // objects free inside its spans
  uint64_t transfer_objects = 0;  // objects in the transfer cache (free, whole batches)
  uint64_t lock_acquisitions = 0;
  uint64_t lock_contended = 0;
  uint64_t span_allocs = 0;    // spans taken from the page heap
  uint64_t span_frees = 0;     // spans given back to it
  uint64_t spans_mixed = 0;    // spans handed to the mixed pool
  uint64_t mixed_objects = 0;  // objects out (or in the transfer cache) that live in mixed spans
};

// Batches move through arrays of kMaxBatch pointers.
constexpr bool BatchesFitArrays() {
  for (size_t c = 1; c < kNumClasses; ++c) {
    if (AllClasses()[c].batch < 1 || AllClasses()[c].batch > kMaxBatch) return false;
  }
  return true;
}
static_assert(BatchesFitArrays());

template <class Os>
class CentralList {
  // What the page heap owes once this list's lock is dropped (a release).
  using Owed = typename PageHeap<Os>::Release;

 public:
  // One empty span is kept per class, so that a class whose last object
  // comes and goes does not split and merge a buddy block each time; but
  // only when its spans are at most kKeepEmptyBytes. Larger spans (128 and
  // 256 KiB: the 18, 24, 36, 40 and 48 KiB classes) kept one
  // empty each, memory that neither decay nor any other class could reach
  // until malloc_trim. Given back, the block serves every class and decays
  // when idle (g++'s peak: -0.5 MiB; speed unchanged). While the page
  // heap is eager (the rest of the process grows past its peak: see
  // alloc/stats/growth.h), no empty span is kept.
  static constexpr size_t kKeepEmptyBytes = 64 << 10;
  static constexpr size_t MaxEmptySpans(size_t cls) {
    return Order{AllClasses()[cls].order}.bytes() <= kKeepEmptyBytes ? 1 : 0;
  }

  // How far a class's bytes out may move before the peak tracker hears of
  // it (CountOutLocked).
  static constexpr int64_t kPeakSlackBytes = 16 << 10;

  // The transfer cache holds at most this many batches, and at most
  // kTransferBytes of objects (but always one batch).
  static constexpr size_t kTransferSlots = 64;
  static constexpr size_t kTransferBytes = 256 << 10;
  // While the process has a single thread with a cache, batches have no
  // other thread to go to: the transfer cache only saves that thread's
  // overflows a trip through the spans before its next refills, and what it
  // holds keeps spans from emptying that other classes could have used.
  // It holds one batch then (SetThreaded): a thread that frees a batch and
  // allocates again takes it back without a trip through the spans. With
  // 256 KiB per class, python3's peak RSS was 52.2 MiB; with 32 KiB, 50.5
  // (glibc 52.4), and g++'s 319.1 -> 318.5 (glibc 314.7), speed unchanged;
  // with one batch, python3's 50.5 -> 49.7, its time unchanged (5
  // interleaved reps), and the storage the batches' addresses take (16 KiB
  // for 32 KiB of 16-byte objects) is no longer touched. The same bound
  // for every process cost xmalloc-test, one producer and one consumer,
  // 19% of its speed at 32 KiB.
  static constexpr uint32_t kTransferBatchesOneThread = 1;
  static constexpr uint32_t TransferCap(size_t cls, size_t bytes = kTransferBytes) {
    const ClassInfo& c = AllClasses()[cls];
    const size_t cap = bytes / (size_t(c.batch) * c.size);
    return uint32_t(cap < 1 ? 1 : cap > kTransferSlots ? kTransferSlots : cap);
  }
  // The storage of a class's transfer cache, in pointers. It is kept apart
  // from the list (Init): set-up writes every class's list, and with the
  // slots inside, the lists of all classes spanned pages that every process
  // then had resident.
  static constexpr size_t TransferPointers(size_t cls) { return size_t(TransferCap(cls)) * AllClasses()[cls].batch; }
  // The same, less the first batch (kept apart: see Init).
  static constexpr size_t TransferRestPointers(size_t cls) { return TransferPointers(cls) - AllClasses()[cls].batch; }
  static constexpr size_t AllTransferRestPointers() {
    size_t n = 0;
    for (size_t c = 1; c < kNumClasses; ++c) n += TransferRestPointers(c);
    return n;
  }

  constexpr CentralList() = default;
  // `transfer`: TransferPointers(cls) pointers of storage for the transfer
  // cache; or, with `first` (kMaxBatch pointers), the storage of its first
  // batch is `first` and `transfer` holds the rest (TransferRestPointers),
  // within 2 GiB of `first` (the list keeps the distance in 32 bits: see
  // transfer_rest_offset_). The heap keeps every class's first batch
  // together, apart from the rest: a process with one thread uses only the
  // first (SetThreaded), and the classes' first batches then take 15 KiB
  // of resident pages where, spread over the classes' whole storage, they
  // took a page or two each (g++: 144 KiB of the heap's static data
  // resident).
  // `peak` (may be null) follows the bytes handed out.
  // `mixed` (may be null): the pool that takes this class's nearly empty
  // one-page spans when the class has room to spare, and whose free runs
  // serve it when it has no partly used span.
  void Init(uint8_t cls, PageHeap<Os>* heap, void** transfer, PeakTracker* peak = nullptr,
            MixedPool<Os>* mixed = nullptr, void** first = nullptr) {
    cls_ = cls;
    heap_ = heap;
    mixed_ = mixed;
    peak_ = peak;
    size_ = Info(cls).size;
    objects_ = Info(cls).objects;
    order_ = Order{Info(cls).order};
    batch_ = Info(cls).batch;
    transfer_first_ = first != nullptr ? first : transfer;
    void** rest = first != nullptr ? transfer : transfer + batch_;
    transfer_rest_offset_ = int32_t(intptr_t(rest) - intptr_t(transfer_first_));
    transfer_cap_ = TransferCap(cls);
    transfer_limit_ = transfer_cap_;
    for (unsigned i = 0; i < kBuckets - 1; ++i) {
      threshold_[i] = uint32_t((uint64_t(objects_) * (i + 1) + kBuckets - 1) / kBuckets);
    }
    const bool mixable = mixed != nullptr && size_ <= MixedPool<Os>::kMaxObject;
    mix_at_or_below_ = mixable && order_.k == 0 ? objects_ / 4 : 0;
    carves_ = mixable;
  }

  // Takes up to n objects, chained through their first word; *head gets
  // the first, *tail the last. Returns how many (0: out of memory). At
  // most `fresh` of them are carved from never-used memory: objects that
  // came back (transfer cache, span free lists) cost no new pages, fresh
  // ones do, since linking them writes into each (a 64 KiB batch of 4 KiB
  // objects is 16 pages). Thread caches start a class with few fresh
  // objects and double (ThreadCache::Refill), so what a thread caches but
  // never uses stays within what it used.
  int RemoveRange(void** head, void** tail, int n, int fresh = 1 << 30) {
    void* batch[kMaxBatch];
    lock_.Lock();
    if (n != batch_ || transfer_n_ == 0) {
      Owed owed;
      const int got = RemoveFromSpansLocked(head, tail, n, fresh, &owed);
      UnlockAndSettle(owed);
      return got;
    }
    PopBatchLocked(batch);
    ++transfer_uses_;
    CountOutLocked(n);
    lock_.Unlock();
    Chain(batch, n, head, tail);
    return n;
  }

  // Takes back a chain of n objects (null-terminated through first words;
  // `tail` is the last, or nullptr if the caller does not know it).
  void InsertRange(void* head, void* tail, int n) {
    if (tail != nullptr && n == batch_) {
      void* batch[kMaxBatch];
      void* o = head;
      for (int i = 0; i < n; ++i) {
        batch[i] = o;
        o = *static_cast<void**>(o);
      }
      LockGuard g(lock_);
      if (transfer_n_ < transfer_limit_) {
        void** slot = SlotLocked(transfer_n_);
        for (int i = 0; i < n; ++i) slot[i] = batch[i];
        ++transfer_n_;
        ++transfer_uses_;
        CountOutLocked(-n);
        return;
      }
    }
    InsertRange(head, n);
  }
  void InsertRange(void* head, int n) { ReturnToSpans(head, n, /*counted_out=*/true); }
  // Puts a chain of n objects back into their spans. `counted_out`: they
  // were handed out (to a thread cache), not drained from the transfer
  // cache, whose objects never stopped counting as the list's.
  void ReturnToSpans(void* head, int n, bool counted_out) {
    Owed owed;
    lock_.Lock();
    ReturnToSpansLocked(head, n, &owed);
    if (counted_out) CountOutLocked(-n);
    UnlockAndSettle(owed);
  }

  enum class ObjectState { kLive, kFree, kNeverHandedOut };
  // Where `o` (the start of an object of this class) stands: handed out,
  // free in its span, or beyond what the span ever handed out. Walks the
  // span's free list: for checking mode only.
  ObjectState StateOf(void* o) {
    LockGuard g(lock_);
    Span* s = heap_->map()->SpanOf(uintptr_t(o));
    if (uintptr_t(o) >= s->bump) return ObjectState::kNeverHandedOut;
    for (void* f = s->freelist; f != nullptr; f = *static_cast<void**>(f)) {
      if (f == o) return ObjectState::kFree;
    }
    return ObjectState::kLive;
  }

  // More than one thread has a cache (the default after Init), or one:
  // then new batches wait in the transfer cache only up to
  // kTransferBatchesOneThread. Batches already there beyond it stay until
  // taken or drained.
  void SetThreaded(bool threaded) {
    LockGuard g(lock_);
    transfer_limit_ = threaded ? transfer_cap_ : kTransferBatchesOneThread;
  }

  // Moves the transfer cache's batches back into their spans if it was not
  // used since the last call (or always, with force). For the purger.
  void DrainIdle(bool force) {
    uint32_t n;
    {
      LockGuard g(lock_);
      if (!force && transfer_uses_ != transfer_uses_seen_) {
        transfer_uses_seen_ = transfer_uses_;
        return;
      }
      n = transfer_n_;
    }
    // One batch at a time: the lock is not held over the spans' updates of
    // all of them, and no stack holds them all. Once a thread uses the
    // cache again, the rest stays for the threads. A batch goes from the
    // cache into its spans under one hold of the lock: with the lock
    // dropped in between, its objects were in neither (a snapshot counted
    // them free in their spans, and mixing decided on that), and a fork()
    // there lost them in the child, where the purger's thread does not
    // exist: their spans could never empty again.
    for (; n > 0; --n) {
      lock_.Lock();
      if (transfer_n_ == 0 || (!force && transfer_uses_ != transfer_uses_seen_)) {
        lock_.Unlock();
        return;
      }
      void* batch[kMaxBatch];
      PopBatchLocked(batch);
      void* head;
      void* tail;
      Chain(batch, batch_, &head, &tail);
      Owed owed;
      ReturnToSpansLocked(head, batch_, &owed);
      UnlockAndSettle(owed);
    }
  }

  // Whether batches wait in the transfer cache (for DrainIdle).
  bool HoldsTransfer() {
    LockGuard g(lock_);
    return transfer_n_ != 0;
  }

  // Gives back to the OS the pages that lie wholly inside this class's
  // free objects that were already free at the previous call, in spans
  // that still have objects out, for classes of kReleaseInsideFrom bytes
  // and more (size_class.h): the purger's growth watch, while the rest of
  // the process grows past its peak (alloc/stats/growth.h). In a span of
  // five 48 KiB objects, one live object kept the other four resident.
  //
  // Each free object keeps its first page, which holds the free-list link
  // and a mark in its second word: the first call that finds the object
  // free marks it seen, the next one gives its inside pages back and marks
  // it released (and later calls pass it by). The mark is cleared when the
  // object leaves its span (RemoveFromSpansLocked), so a marked object was
  // free all along since it was marked: the calls' spacing is an idle
  // bound, as for free blocks, so that a program that frees and
  // reallocates objects at once does not fault them in again each time.
  // madvise runs under this list's lock: no object may be handed out while
  // its pages go back. Not in checking mode: its marker lives in the second
  // word and its fill would read back as zeros (alloc/strata.cc). Objects
  // in the transfer cache are left alone (the watch drains it first:
  // ReleaseEmpty). Returns the bytes given back.
  //
  // g++'s peak RSS: 315.4 -> 315.0 MiB (glibc 314.7; 7 interleaved reps;
  // from 5 KiB instead of 8, no better), and 314.6 with thread caches
  // sending their objects above 1 KiB to their spans while eager
  // (ThreadCache::CollectIdle). The program that churns 1-64 KiB blocks
  // while it grows (alloc/strata.cc, Watch) ran 1.8x slower when every
  // call gave back every free object; with the idle bound, 5% (0.59 ->
  // 0.62 s).
  size_t ReleaseInsideFreeObjects() {
    if (size_ < kReleaseInsideFrom) return 0;
    size_t bytes = 0;
    LockGuard g(lock_);
    for (const SpanList& list : partial_) {
      for (const Span* s = list.head; s != nullptr; s = s->next) {
        for (void* o = s->freelist; o != nullptr; o = *static_cast<void**>(o)) {
          uintptr_t* w = static_cast<uintptr_t*>(o);
          if (w[1] == InsideMark(o, kReleased)) continue;
          if (w[1] != InsideMark(o, kSeen)) {
            w[1] = InsideMark(o, kSeen);
            continue;
          }
          const uintptr_t lo = AlignUp(uintptr_t(o) + 2 * sizeof(uintptr_t), kPageSize);
          const uintptr_t hi = AlignDown(uintptr_t(o) + size_, kPageSize);
          if (hi > lo) {
            heap_->ReleaseRange(lo, hi - lo);
            bytes += hi - lo;
          }
          w[1] = InsideMark(o, kReleased);
        }
      }
    }
    if (bytes != 0) heap_->CountReleased(bytes);
    return bytes;
  }

  // Gives every empty span back to the page heap (malloc_trim).
  void ReleaseEmpty() {
    DrainIdle(true);
    Owed owed;
    lock_.Lock();
    while (Span* s = empty_.Pop()) {
      s->on_list = 0;
      ++span_frees_;
      --spans_;
      FreeSpanLocked(s, &owed);
    }
    UnlockAndSettle(owed);
  }

  CentralStats Stats() {
    CentralStats st;
    LockGuard g(lock_);
    st.spans = spans_;
    for (const SpanList& l : partial_) st.partial_spans += l.count;
    st.empty_spans = empty_.count;
    st.objects_out = objects_out_;
    st.transfer_objects = uint64_t(transfer_n_) * batch_;
    st.mixed_objects = mixed_objects_;
    st.free_objects = spans_ * objects_ - InOwnSpansLocked();
    st.spans_mixed = spans_mixed_;
    st.span_allocs = span_allocs_;
    st.span_frees = span_frees_;
    st.lock_acquisitions = lock_.acquisitions();
    st.lock_contended = lock_.contended();
    return st;
  }

  SpinLock& lock() { return lock_; }

 private:
  // ReturnToSpans, lock held. Spans left empty beyond what the list keeps
  // go back to the page heap at the end of the walk (not during it: a
  // double free further down the chain must still find its span), before
  // the lock is dropped.
  void ReturnToSpansLocked(void* head, int n, Owed* owed) {
    SpanList to_release;
    void* o = head;
    for (int i = 0; i < n; ++i) {
      void* next = *static_cast<void**>(o);
      Span* s = heap_->map()->SpanOf(uintptr_t(o));
      if (STRATA_UNLIKELY(s->state == SpanState::kMixed)) {
        --mixed_objects_;
        NoteBackInPoolLocked();
        if (mixed_->Free(s, o, size_)) to_release.Push(s);
        o = next;
        continue;
      }
      if (STRATA_UNLIKELY(s->used == 0)) {
        // Every object of the span is already free: this one was freed
        // twice. Cheap to see here, fatal to let through.
        Fatalf("double free of %p (size class %u, %u bytes)", o, unsigned(cls_), unsigned(size_));
      }
      *static_cast<void**>(o) = s->freelist;
      s->freelist = o;
      --s->used;
      if (s->used == 0) {
        Unlist(s);
        if (empty_.count < MaxEmptySpans(cls_) && !heap_->eager()) {
          empty_.Push(s);
          s->on_list = kOnEmpty;
        } else {
          ++span_frees_;
          --spans_;
          to_release.Push(s);
        }
      } else if (STRATA_UNLIKELY(s->used <= mix_at_or_below_) && MixLocked(s)) {
        // handed to the mixed pool
      } else if (s->on_list != BucketMark(s->used)) {
        Unlist(s);
        ListPartial(s);
      }
      o = next;
    }
    while (Span* s = to_release.Pop()) FreeSpanLocked(s, owed);
  }

  // A span of this list's (or an emptied mixed span) goes back to the page
  // heap now, under this list's lock, so that it is never between owners
  // while the lock is free (a fork() then lost it in the child, and the
  // statistics counted it both gone from here and in use there). What the
  // page heap owes for it (a release: see PageHeap::Free) goes to *owed,
  // for UnlockAndSettle: no madvise under this lock.
  void FreeSpanLocked(Span* s, Owed* owed) { owed->Add(heap_->FreeHeld(s)); }
  // Drops the lock, then settles what the page heap owed.
  void UnlockAndSettle(const Owed& owed) {
    lock_.Unlock();
    heap_->FinishFree(owed);
  }

  static constexpr unsigned kBuckets = 4;

  // The marks ReleaseInsideFreeObjects writes into a free object's second
  // word. They name the object, so that a value a program left there
  // matches by chance only (and then costs a release made early or not at
  // all, never a wrong one: the object is free either way).
  static constexpr uintptr_t kSeen = 0x5345454e5345454eull;      // "SEENSEEN"
  static constexpr uintptr_t kReleased = 0x52454c4541534544ull;  // "RELEASED"
  static uintptr_t InsideMark(const void* o, uintptr_t kind) { return uintptr_t(o) ^ kind; }
  // Only a mark: checking mode keeps its own marker in that word (and never
  // gets these).
  static void ClearInsideMark(void* o) {
    uintptr_t* w = static_cast<uintptr_t*>(o);
    if (w[1] == InsideMark(o, kSeen) || w[1] == InsideMark(o, kReleased)) w[1] = 0;
  }

  // RemoveRange's work when the transfer cache has no batch for it.
  int RemoveFromSpansLocked(void** head, void** tail, int n, int fresh, Owed* owed) {
    void* first = nullptr;
    void* last = nullptr;
    int got = 0;
    bool fresh_left = fresh > 0;
    while (got < n) {
      Span* s = FullestPartial();
      if (s == nullptr && empty_.empty() && carves_ && mixed_->HasRoom() && !ChurnsInPoolLocked()) {
        // Free runs of the mixed pool before a new span (already touched
        // memory: they count as objects that came back, not fresh ones).
        // Fewer than n is fine: the pool looks at a few spans only.
        void* h;
        void* t;
        const int c = mixed_->Carve(size_, n - got, &h, &t);
        if (c > 0) {
          if (last == nullptr) first = h; else *static_cast<void**>(last) = h;
          last = t;
          got += c;
          mixed_objects_ += uint64_t(c);
          NoteCarvedLocked(c);
          break;
        }
      }
      if (s == nullptr) {
        if (!fresh_left && empty_.empty()) break;  // a kept empty span's objects came back
        s = TakeSpanLocked(owed);
        if (s == nullptr) break;
      }
      Unlist(s);
      uintptr_t limit = s->start + uintptr_t(objects_) * size_;
      while (got < n) {
        void* o;
        if (s->freelist != nullptr) {
          o = s->freelist;
          s->freelist = *static_cast<void**>(o);
          if (size_ >= kReleaseInsideFrom) ClearInsideMark(o);
        } else if (fresh_left && s->bump + size_ <= limit) {
          o = reinterpret_cast<void*>(s->bump);
          s->bump += size_;
          fresh_left = --fresh > 0;
        } else {
          break;
        }
        if (last == nullptr) first = o; else *static_cast<void**>(last) = o;
        last = o;
        ++got;
        ++s->used;
      }
      if (s->used < objects_) ListPartial(s);  // else full: on no list
      // No fresh objects left to give and none came back to this span: stop
      // with fewer than n rather than search emptier spans (this one would
      // be found first again).
      if (!fresh_left && s->freelist == nullptr) break;
    }
    if (last != nullptr) *static_cast<void**>(last) = nullptr;
    CountOutLocked(got);
    *head = first;
    *tail = last;
    return got;
  }

  // Where the transfer cache's batch number i is kept (see Init).
  void** SlotLocked(uint32_t i) const {
    if (i == 0) return transfer_first_;
    void** rest = reinterpret_cast<void**>(intptr_t(transfer_first_) + transfer_rest_offset_);
    return rest + size_t(i - 1) * size_t(batch_);
  }

  // The transfer cache's top batch, copied to `batch` (batch_ pointers).
  void PopBatchLocked(void** batch) {
    --transfer_n_;
    void* const* slot = SlotLocked(transfer_n_);
    for (int i = 0; i < batch_; ++i) batch[i] = slot[i];
  }

  // Links the n objects of `batch` into a null-terminated chain, in order.
  // Stores only: no object is read.
  static void Chain(void* const* batch, int n, void** head, void** tail) {
    for (int i = 0; i + 1 < n; ++i) *static_cast<void**>(batch[i]) = batch[i + 1];
    *static_cast<void**>(batch[n - 1]) = nullptr;
    *head = batch[0];
    *tail = batch[n - 1];
  }

  static constexpr uint8_t kOnEmpty = 0xff;  // on_list: 0 none, 1+b bucket b

  // Bucket of a partial span with `used` objects out: the number of
  // occupancy thresholds (a quarter, a half, three quarters) it reaches.
  uint8_t BucketMark(uint32_t used) const {
    unsigned b = 0;
    for (unsigned i = 0; i < kBuckets - 1; ++i) b += used >= threshold_[i];
    return uint8_t(1 + b);
  }
  // n objects left the central list (negative: came back). Lock held.
  // The heap's peak tracker hears of it once this class's change since the
  // last report reaches kPeakSlackBytes either way: the tracker is one
  // atomic counter for every class and thread, and its cache line moved
  // between the cores at every batch (xmalloc-test, a producer and a
  // consumer of 64-byte objects: 100M ops/s with an update per batch, 117M
  // in steps). The peak may then miss up to kPeakSlackBytes per class.
  void CountOutLocked(int64_t n) {
    objects_out_ += uint64_t(n);
    peak_pending_ += n * int64_t(size_);
    if (peak_pending_ >= kPeakSlackBytes || peak_pending_ <= -kPeakSlackBytes) {
      if (peak_ != nullptr) peak_->Add(peak_pending_);
      peak_pending_ = 0;
    }
  }
  Span* FullestPartial() {
    for (unsigned b = kBuckets; b-- > 0;) {
      if (!partial_[b].empty()) return partial_[b].head;
    }
    return nullptr;
  }
  void ListPartial(Span* s) {
    s->on_list = BucketMark(s->used);
    partial_[s->on_list - 1].Push(s);
  }
  void Unlist(Span* s) {
    if (s->on_list == kOnEmpty) empty_.Remove(s);
    else if (s->on_list != 0) partial_[s->on_list - 1].Remove(s);
    s->on_list = 0;
  }

  // Whether this class's objects go back into mixed spans about as fast as
  // it carves them: it churns there rather than grows into the holes (frag's
  // refill), and every free of such an object takes the slow path (a
  // malloc/free loop of 208-byte objects after frag: 2-3x slower). It then
  // takes spans of its own until its carved objects have come back.
  static constexpr uint32_t kChurnWindow = 4096;
  // Whether this class churns through the pool's holes (what it carves
  // comes back about as fast): it then takes spans of its own. The verdict
  // lapses once the class has grown by kChurnWindow objects since it was
  // first refused: it grows rather than churns. (The counters age only as
  // the class carves, which the verdict forbids: a class stayed barred for
  // the rest of the process, and one that then grew by 100,000 objects
  // took 5,264 spans, 20 MiB, with 3 MiB free in the pool.)
  bool ChurnsInPoolLocked() {
    if (uint32_t(back_recent_) * 2 <= carved_recent_ + kChurnWindow / 4) {
      barred_at_ = 0;
      return false;
    }
    if (barred_at_ == 0) {
      barred_at_ = objects_out_ + 1;
      return true;
    }
    if (objects_out_ <= barred_at_ + kChurnWindow) return true;
    carved_recent_ = back_recent_ = 0;
    barred_at_ = 0;
    return false;
  }
  void NoteCarvedLocked(int n) {
    carved_recent_ = uint16_t(carved_recent_ + n);
    if (carved_recent_ > kChurnWindow) {
      carved_recent_ /= 2;
      back_recent_ /= 2;
    }
  }
  // One of this class's objects came back into a mixed span. Only what it
  // carved can come back as churn: its own objects in spans the pool
  // adopted were never carved (a class whose spans went to the pool was
  // judged to churn without having carved one).
  void NoteBackInPoolLocked() {
    if (back_recent_ < carved_recent_) ++back_recent_;
  }

  // Objects out of this class's own spans: handed out or in the transfer
  // cache, and not in a mixed span. Clamped: while ReturnToSpansLocked
  // walks a batch drained from the transfer cache, the batch's objects in
  // mixed spans not reached yet are counted neither out nor in the cache.
  uint64_t InOwnSpansLocked() const {
    const uint64_t counted = objects_out_ + uint64_t(transfer_n_) * batch_;
    return counted > mixed_objects_ ? counted - mixed_objects_ : 0;
  }

  // s, a one-page span down to a quarter of its objects, goes to the mixed
  // pool if this class has room to spare: at least half of its own spans'
  // objects free, and at least kMinFreeBytes of them when it starts (see
  // alloc/middle/mixed.h). Once started it goes on while half are free:
  // the spans it hands over take their free room with them, and stopping
  // at kMinFreeBytes left that much stranded (frag: 1,242 spans, 4 MiB).
  // Lock held; objects_out_ may lag by the batch being returned.
  bool MixLocked(Span* s) {
    const uint64_t in_spans = InOwnSpansLocked();
    const uint64_t total = spans_ * objects_;
    const uint64_t free = total > in_spans ? total - in_spans : 0;
    if (2 * free < total || !mixed_->enabled()) {
      mixing_ = false;
      return false;
    }
    if (!mixing_ && free * size_ < MixedPool<Os>::kMinFreeBytes) return false;
    mixing_ = true;
    Unlist(s);
    const uint32_t used = s->used;
    if (!mixed_->Adopt(s, size_)) {
      ListPartial(s);
      return false;
    }
    // A new life: markers freed objects of the class left in it no longer
    // count (carved objects of other sizes may overlap them from now on).
    s->generation = NewSpanGeneration();
    --spans_;
    ++spans_mixed_;
    mixed_objects_ += used;
    return true;
  }

  // A span with free objects (on no list): an empty one we kept, or a new
  // one from the page heap.
  Span* TakeSpanLocked(Owed* owed) {
    Span* s = empty_.head;
    if (s != nullptr) return s;  // the caller unlists it
    s = heap_->AllocHeld(order_, SpanState::kSmall, cls_, owed);
    if (s == nullptr) return nullptr;
    s->bump = s->start;
    s->on_list = 0;
    ++span_allocs_;
    s->generation = NewSpanGeneration();
    ++spans_;
    return s;
  }

  SpinLock lock_;
  void** transfer_first_ = nullptr;  // the first batch's batch_ pointers
  uint32_t transfer_n_ = 0;
  uint32_t transfer_cap_ = 0;
  uint32_t transfer_limit_ = 0;  // batches InsertRange may leave: the cap, or less (SetThreaded)
  // Where the other transfer_cap_ - 1 batches are kept, in bytes from
  // transfer_first_ (a pointer would not fit the lists in four pages).
  int32_t transfer_rest_offset_ = 0;
  uint64_t transfer_uses_ = 0;
  uint64_t transfer_uses_seen_ = 0;
  int batch_ = 0;
  uint32_t mix_at_or_below_ = 0;  // 0: spans of this class never go to the mixed pool
  SpanList partial_[kBuckets];
  uint32_t threshold_[kBuckets - 1] = {};
  uint16_t carved_recent_ = 0;  // objects carved from the pool lately (halved past kChurnWindow)
  uint16_t back_recent_ = 0;    // of those, the ones freed back into mixed spans lately
  uint64_t barred_at_ = 0;      // objects_out_ + 1 when churn first refused carving (0: not barred)
  SpanList empty_;
  PageHeap<Os>* heap_ = nullptr;
  PeakTracker* peak_ = nullptr;
  MixedPool<Os>* mixed_ = nullptr;
  uint64_t mixed_objects_ = 0;
  uint64_t spans_mixed_ = 0;
  uint32_t size_ = 0;
  uint32_t objects_ = 0;
  Order order_{};
  uint8_t cls_ = 0;
  bool carves_ = false;  // objects of this class may be carved from mixed spans
  bool mixing_ = false;  // handing spans to the mixed pool (MixLocked)
  uint64_t spans_ = 0;
  uint64_t objects_out_ = 0;
  int64_t peak_pending_ = 0;  // bytes out not yet told to peak_ (CountOutLocked)
  uint64_t span_allocs_ = 0;
  uint64_t span_frees_ = 0;
};

}  // namespace strata
