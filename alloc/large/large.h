// LargeHeap: objects above kMaxSmall, each with its own mapping (those of
// at most 1 MiB only when the page heap has no free block for them: see
// LargeFromFreePages in alloc/strata.cc).
//
// Each mapping has a Span record (state kLarge) entered in the page map
// under its first page, which is how free() recognises it; the class byte
// stays 0, so frees of large objects always take the slow path.
//
// Reuse: a freed mapping of up to kMaxCachedBytes goes to a small cache
// instead of munmap, and the next large allocation takes it back with its
// pages still resident: no new mapping and no page faults for the part it
// reuses, which is what makes large malloc/free cycles cheap. It takes the
// smallest cached mapping that holds the request or, if none does, the
// largest, grown with mremap (its pages move without a copy; only the new
// part faults). When more than an eighth of the mapping would be left
// over, the rest is split off and goes back to the cache as a mapping of
// its own, still resident, for the next request (or is cut off with mremap
// if no record can be made for it).
//
// Cached mappings idle for longer than the decay time are unmapped (Purge,
// called by the background purger and on the large slow paths). The cache
// holds at most kMaxCacheSlots mappings and kCacheFloorBytes plus a quarter
// of the live large bytes, up to kMaxCacheBytes (but always the mapping
// freed last): a program with 300 MiB of large buffers keeps up to 64 MiB
// of freed ones ready, python3 with 3 MiB about 3 MiB. While more than one
// thread allocates, the floor is kCacheFloorThreadedBytes: there munmap
// and shrinking mremap interrupt every other core to flush its TLB, which
// made mstress (threads passing 64 KiB-4 MiB blocks) 1.41x slower than
// tcmalloc; with the higher floor 1.07x, and 0.2 MiB more peak RSS. A
// single-threaded program (python3, g++, sqlite3) keeps the low floor.
//
// The cache's design, measured in one run on malloc-large (20 buffers of
// 5-25 MiB replaced at random), then realloc-growth and python3 peak RSS:
//   whole mappings reused for requests down to 1/4 (before): 0.60 s and
//     515 MiB; 334 MiB; 64 MiB
//   cut down, the rest unmapped: 1.12 s and 347 MiB; 267 MiB; 63 MiB
//   split, bounded as above: 0.89 s and 391 MiB; 267 MiB; 62.5 MiB
//   glibc: 0.96 s and 437 MiB; 258 MiB; 52 MiB
//
// Realloc resizes the mapping with mremap (in place when the kernel can,
// else moved without copying). Growth reserves 50% more than asked (address
// space only: untouched pages cost no memory), so a buffer grown in small
// steps is remapped a logarithmic number of times. A mapping aligned beyond
// the page size is never mremap'd with MAYMOVE (the kernel would not keep
// the alignment) and is not cached.
//
// Locking: one spinlock guards the record pool, the live list and the
// cache. mmap/munmap of mappings nobody else can see run outside it.
#pragma once

#include <string.h>

#include "alloc/back/arena.h"
#include "alloc/back/page_map.h"
#include "alloc/back/span.h"
#include "alloc/stats/peak.h"

namespace strata {

struct LargeStats {
  uint64_t allocs = 0;
  uint64_t frees = 0;
  uint64_t live = 0;
  uint64_t live_bytes = 0;     // mapped bytes of live large objects
  uint64_t mremaps = 0;
  uint64_t peak_live_bytes = 0;
  uint64_t cache_hits = 0;     // allocations served by a cached mapping
  uint64_t cached = 0;         // mappings in the cache now
  uint64_t cached_bytes = 0;
};

template <class Os>
class LargeHeap {
 public:
  static constexpr size_t kMaxCacheSlots = 16;
  static constexpr size_t kMaxCachedBytes = 64 << 20;   // per mapping
  // In all, the cache holds at most kCacheFloorBytes plus a quarter of the
  // live large bytes, and never more than kMaxCacheBytes.
  static constexpr size_t kMaxCacheBytes = 64 << 20;
  static constexpr size_t kCacheFloorBytes = 2 << 20;
  // The floor while more than one thread allocates (see "Reuse" above).
  static constexpr size_t kCacheFloorThreadedBytes = 16 << 20;

  constexpr LargeHeap() = default;
  void Bind(Os* os, PageMap<Os>* map, MetaArena<Os>* arena, PeakTracker* peak = nullptr) {
    os_ = os;
    map_ = map;
    arena_ = arena;
    peak_ = peak;
  }
  void set_decay_ms(int64_t ms) { decay_ms_ = ms; }
  // Whether more than one thread allocates now (the glue keeps it).
  void set_threaded(bool t) { threaded_.store(t, std::memory_order_relaxed); }
  bool threaded() const { return threaded_.load(std::memory_order_relaxed); }

  // 0 when no mapping can hold `size`. A zero-byte request gets a page.
  static size_t MappingSize(size_t size) {
    if (size > (SIZE_MAX >> 1)) return 0;  // beyond any mapping: fail early
    return size == 0 ? kPageSize : AlignUp(size, kPageSize);
  }

  // nullptr when out of memory (or size absurd). *dirty gets how many bytes
  // at the start may hold old data (a reused mapping; calloc clears them):
  // 0 when the memory is new from the kernel, hence zero.
  void* Alloc(size_t size, size_t align, size_t* dirty = nullptr) {
    size_t bytes = MappingSize(size);
    if (bytes == 0) return nullptr;
    if (align <= kPageSize) {
      if (void* p = Reuse(bytes, dirty)) return p;
    }
    if (dirty != nullptr) *dirty = 0;
    if (align < kPageSize) align = kPageSize;
    // On failure the caller gives address space back (Purge among the
    // rest) and retries: see ReclaimAddressSpace in alloc/strata.cc.
    void* mem = os_->Map(bytes, align);
    if (mem == nullptr) return nullptr;
    AddFresh(bytes);
    if (!map_->Ensure(uintptr_t(mem), kPageSize)) {
      os_->Unmap(mem, bytes);
      return nullptr;
    }
    LockGuard g(lock_);
    Span* s = pool_.New(*arena_);
    if (s == nullptr) {
      os_->Unmap(mem, bytes);
      return nullptr;
    }
    s->start = uintptr_t(mem);
    s->bytes = bytes;
    s->order = align > kPageSize ? 1 : 0;  // 1: aligned mapping, no MAYMOVE
    map_->Set(s->start, Pages{1}, s, 0);
    MakeLiveLocked(s);
    return mem;
  }

  // Frees large object `s`. Its mapping goes to the cache unless
  // `may_cache` is false (the purger's growth watch: the process grows past
  // its peak by other means, and a cached mapping would add to it).
  void Free(Span* s, uint64_t now_ms, bool may_cache = true) {
    Span* evicted[kMaxCacheSlots + 1];
    size_t n_evicted = 0;
    bool cached = false;
    uintptr_t start;
    size_t bytes;
    {
      LockGuard g(lock_);
      start = s->start;
      bytes = s->bytes;
      live_.Remove(s);
      ++stats_.frees;
      stats_.live_bytes -= bytes;
      if (peak_ != nullptr) peak_->Add(-int64_t(bytes));
      if (s->order == 0 && bytes <= kMaxCachedBytes && decay_ms_ != 0 && may_cache) {
        // The page-map entry stays: a second free of it sees state
        // kLargeCached and is refused.
        CacheLocked(s, now_ms, evicted, &n_evicted);
        cached = true;
      } else {
        ForgetLocked(s);
      }
    }
    if (!cached) os_->Unmap(reinterpret_cast<void*>(start), bytes);
    UnmapEvicted(evicted, n_evicted);
  }

  // Unmaps cached mappings idle since before `cutoff_ms` (all of them with
  // UINT64_MAX). Returns the bytes unmapped.
  size_t Purge(uint64_t cutoff_ms) { return PurgeBytes(SIZE_MAX, cutoff_ms); }
  // Unmaps cached mappings idle since before `cutoff_ms`, oldest first,
  // until at least `bytes` went back. Returns the bytes unmapped.
  size_t PurgeBytes(size_t bytes, uint64_t cutoff_ms) {
    Span* evicted[kMaxCacheSlots];
    size_t n = 0;
    {
      LockGuard g(lock_);
      size_t got = 0;
      for (size_t i = 0; i < cache_n_ && got < bytes;) {
        if (cache_[i]->free_since_ms <= cutoff_ms) {
          got += cache_[i]->bytes;
          evicted[n++] = RemoveCachedLocked(i);
        } else {
          ++i;
        }
      }
    }
    return UnmapEvicted(evicted, n);
  }

  // Bytes of new mappings (and of growth by mremap) since the last call:
  // what large objects cost in RSS, at most, for the exchange with the
  // page heap (alloc/strata.cc). Lock-free.
  size_t TakeFreshBytes() { return TakeAll(fresh_bytes_); }
  // The same, ever (never taken), and reused cached mappings too: for the
  // purger's growth watch.
  uint64_t fresh_bytes_total() const { return fresh_total_.load(std::memory_order_relaxed); }

  size_t PurgeIdle(uint64_t now_ms) {
    uint64_t cutoff;
    return DecayCutoff(decay_ms_, now_ms, &cutoff) ? Purge(cutoff) : 0;
  }

  // Resizes to `size`. Returns the new address or nullptr (the old object is
  // then intact).
  void* Realloc(Span* s, size_t size) {
    size_t bytes = MappingSize(size);
    if (bytes == 0) return nullptr;
    if (bytes <= s->bytes && bytes > s->bytes / 2) return reinterpret_cast<void*>(s->start);
    if (bytes > s->bytes) {
      // Reserve room to grow into (address space only).
      size_t roomy = AlignUp(s->bytes + s->bytes / 2, kPageSize);
      if (roomy > bytes && roomy > s->bytes) {
        void* p = Resize(s, roomy);
        if (p != nullptr) return p;
      }
      return Resize(s, bytes);
    }
    // A shrink that the OS refuses keeps the mapping: still a valid answer
    // (as for small objects), not ENOMEM.
    void* p = Resize(s, bytes);
    return p != nullptr ? p : reinterpret_cast<void*>(s->start);
  }

  LargeStats Stats() {
    LockGuard g(lock_);
    LargeStats st = stats_;
    st.live = live_.count;
    st.cached = cache_n_;
    st.cached_bytes = cache_bytes_;
    return st;
  }

  // Whether freed mappings wait in the cache (for PurgeIdle to unmap).
  bool HoldsCached() {
    LockGuard g(lock_);
    return cache_n_ != 0;
  }

  SpinLock& lock() { return lock_; }

 private:
  // A cached mapping made `bytes` long and live (see "Reuse" above);
  // nullptr if the cache is empty or the mapping could not be grown (it is
  // then unmapped: the caller maps anew).
  void* Reuse(size_t bytes, size_t* dirty) {
    Span* s;
    {
      LockGuard g(lock_);
      s = TakeCachedLocked(bytes);
      if (s == nullptr) return nullptr;
    }
    // Out of the cache and not live yet: a free of its old address still
    // finds state kLargeCached and is refused.
    const size_t had = s->bytes;
    Span* evicted[kMaxCacheSlots + 1];
    size_t n_evicted = 0;
    bool ok = true;
    if (had > bytes && had - bytes > bytes / 8) {
      ok = SplitOff(s, bytes, evicted, &n_evicted) || Move(s, bytes) != nullptr;
    } else if (had < bytes) {
      ok = Move(s, bytes) != nullptr;
    }
    if (!ok) {
      evicted[n_evicted++] = s;
      UnmapEvicted(evicted, n_evicted);
      return nullptr;
    }
    void* p = reinterpret_cast<void*>(s->start);
    {
      LockGuard g(lock_);
      ++stats_.cache_hits;
      MakeLiveLocked(s);
    }
    // For the growth watch, a reused mapping counts as fresh too: it may
    // have been barely touched before, and it fills now.
    const size_t reused = had < bytes ? had : bytes;
    fresh_total_.fetch_add(reused, std::memory_order_relaxed);
    UnmapEvicted(evicted, n_evicted);
    if (dirty != nullptr) *dirty = reused;
    return p;
  }

  // Cuts the cached mapping `s` (out of the cache, not live) down to
  // `bytes`; the rest, its pages still resident, goes back to the cache as
  // a mapping of its own. False (nothing changed) when it cannot be
  // recorded.
  bool SplitOff(Span* s, size_t bytes, Span** evicted, size_t* n_evicted) {
    const uintptr_t at = s->start + bytes;
    if (!map_->Ensure(at, kPageSize)) return false;
    LockGuard g(lock_);
    Span* rest = pool_.New(*arena_);
    if (rest == nullptr) return false;
    rest->start = at;
    rest->bytes = s->bytes - bytes;
    rest->order = 0;
    map_->Set(at, Pages{1}, rest, 0);
    s->bytes = bytes;
    os_->Split(reinterpret_cast<void*>(s->start), bytes + rest->bytes, bytes);
    CacheLocked(rest, s->free_since_ms, evicted, n_evicted);
    return true;
  }

  // The cache's bound in bytes (see "Reuse" above). Lock held.
  size_t CacheBudgetLocked() const {
    const size_t floor = threaded_.load(std::memory_order_relaxed) ? kCacheFloorThreadedBytes : kCacheFloorBytes;
    size_t b = floor + stats_.live_bytes / 4;
    return b < kMaxCacheBytes ? b : kMaxCacheBytes;
  }

  // Puts `s` in the cache, oldest mappings out first to make room. Lock held.
  void CacheLocked(Span* s, uint64_t since_ms, Span** evicted, size_t* n_evicted) {
    const size_t budget = CacheBudgetLocked();
    while (cache_n_ > 0 && (cache_n_ == kMaxCacheSlots || cache_bytes_ + s->bytes > budget)) {
      evicted[(*n_evicted)++] = RemoveCachedLocked(0);
    }
    s->state = SpanState::kLargeCached;
    s->free_since_ms = since_ms;
    cache_[cache_n_++] = s;
    cache_bytes_ += s->bytes;
  }

  // Takes out of the cache the smallest mapping that holds `bytes`, or the
  // largest if none does. Lock held.
  Span* TakeCachedLocked(size_t bytes) {
    if (cache_n_ == 0) return nullptr;
    size_t best = cache_n_;
    size_t largest = 0;
    for (size_t i = 0; i < cache_n_; ++i) {
      size_t b = cache_[i]->bytes;
      if (b >= bytes && (best == cache_n_ || b < cache_[best]->bytes)) best = i;
      if (b > cache_[largest]->bytes) largest = i;
    }
    return RemoveCachedLocked(best != cache_n_ ? best : largest);
  }

  Span* RemoveCachedLocked(size_t i) {
    Span* s = cache_[i];
    for (size_t j = i + 1; j < cache_n_; ++j) cache_[j - 1] = cache_[j];  // keep age order
    --cache_n_;
    cache_bytes_ -= s->bytes;
    return s;
  }

  void MakeLiveLocked(Span* s) {
    s->state = SpanState::kLarge;
    live_.Push(s);
    ++stats_.allocs;
    AddLive(s->bytes);
  }

  // Drops the record of a mapping about to be unmapped. Lock held.
  void ForgetLocked(Span* s) {
    if (map_->SpanOf(s->start) == s) map_->SetSpan(s->start, nullptr);
    pool_.Delete(s);
  }

  size_t UnmapEvicted(Span* const* evicted, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      uintptr_t start;
      size_t bytes;
      {
        LockGuard g(lock_);
        start = evicted[i]->start;
        bytes = evicted[i]->bytes;
        ForgetLocked(evicted[i]);
      }
      os_->Unmap(reinterpret_cast<void*>(start), bytes);
      total += bytes;
    }
    return total;
  }

  // A live mapping resized: Move, and the stats follow.
  void* Resize(Span* s, size_t bytes) {
    const size_t had = s->bytes;
    void* mem = Move(s, bytes);
    if (mem == nullptr) return nullptr;
    LockGuard g(lock_);
    stats_.live_bytes -= had;
    if (peak_ != nullptr) peak_->Add(-int64_t(had));
    AddLive(bytes);
    ++stats_.mremaps;
    return mem;
  }

  // New bytes of mapping: for the exchange (taken) and the growth watch
  // (kept).
  void AddFresh(size_t bytes) {
    fresh_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    fresh_total_.fetch_add(bytes, std::memory_order_relaxed);
  }

  // Makes the mapping of `s` `bytes` long (mremap: in place or moved
  // without a copy; an aligned mapping is copied when it cannot stay), and
  // records where it is now. nullptr (and nothing changed) on failure.
  //
  // The old address's page-map entry is cleared before the mapping moves:
  // once mremap (or the unmap after a copy) frees the old range, another
  // thread may map it and record itself there under its own lock, and a
  // clear afterwards, under this heap's lock only, could erase that record
  // (a later free of that thread's block: "invalid pointer"). Nobody else
  // looks the old address up meanwhile: the caller owns the object.
  void* Move(Span* s, size_t bytes) {
    void* old = reinterpret_cast<void*>(s->start);
    if (bytes > s->bytes) AddFresh(bytes - s->bytes);
    {
      LockGuard g(lock_);
      map_->SetSpan(s->start, nullptr);
    }
    void* mem = nullptr;
    if (s->order == 0) {
      mem = os_->Remap(old, s->bytes, bytes);
    } else if (os_->RemapInPlace(old, s->bytes, bytes)) {
      mem = old;
    } else if ((mem = os_->Map(bytes, kPageSize)) != nullptr) {
      memcpy(mem, old, s->bytes < bytes ? s->bytes : bytes);
      os_->Unmap(old, s->bytes);
      s->order = 0;
    }
    if (mem == nullptr) {
      LockGuard g(lock_);
      map_->Set(s->start, Pages{1}, s, 0);  // it stays where it was
      return nullptr;
    }
    if (!map_->Ensure(uintptr_t(mem), kPageSize)) {
      // The mapping has moved and cannot be recorded: nothing sane is left.
      Fatalf("out of memory for the page map while moving %p", old);
    }
    LockGuard g(lock_);
    s->start = uintptr_t(mem);
    map_->Set(s->start, Pages{1}, s, 0);
    s->bytes = bytes;
    return mem;
  }

  void AddLive(size_t bytes) {
    if (peak_ != nullptr) peak_->Add(int64_t(bytes));
    stats_.live_bytes += bytes;
    if (stats_.live_bytes > stats_.peak_live_bytes) stats_.peak_live_bytes = stats_.live_bytes;
  }

  Os* os_ = nullptr;
  PageMap<Os>* map_ = nullptr;
  MetaArena<Os>* arena_ = nullptr;
  PeakTracker* peak_ = nullptr;
  SpinLock lock_;
  SpanList live_;
  RecordPool<Span, Os> pool_;
  Span* cache_[kMaxCacheSlots] = {};
  size_t cache_n_ = 0;
  size_t cache_bytes_ = 0;
  std::atomic<bool> threaded_{false};
  std::atomic<uint64_t> fresh_total_{0};
  std::atomic<size_t> fresh_bytes_{0};
  int64_t decay_ms_ = 0;  // no cache until the owner sets it (zero: see Heap)
  LargeStats stats_;
};

}  // namespace strata
