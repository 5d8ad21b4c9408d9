// LargeHeap: objects above kMaxSmall, each with its own mapping.
//
// Freeing one unmaps it at once, so its memory goes back to the OS without
// waiting for any decay; realloc of one resizes the mapping with mremap
// (in place when the kernel can, else moved without copying). Each mapping
// has a Span record (state kLarge) and is entered in the page map under
// its first page, which is how free() recognises it; the class byte stays
// 0, so frees of large objects always take the slow path.
//
// A mapping aligned beyond the page size is never mremap'd with MAYMOVE
// (the kernel would not keep the alignment); realloc copies instead.
//
// Locking: one spinlock guards the record pool and the list of live
// mappings. Syscalls run outside it where the record is not shared yet.
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
};

template <class Os>
class LargeHeap {
 public:
  constexpr LargeHeap() = default;
  void Bind(Os* os, PageMap<Os>* map, MetaArena<Os>* arena, PeakTracker* peak = nullptr) {
    os_ = os;
    map_ = map;
    arena_ = arena;
    peak_ = peak;
  }

  // 0 when no mapping can hold `size`. A zero-byte request gets a page.
  static size_t MappingSize(size_t size) {
    if (size > (SIZE_MAX >> 1)) return 0;  // beyond any mapping: fail early
    return size == 0 ? kPageSize : AlignUp(size, kPageSize);
  }

  // nullptr when out of memory (or size absurd).
  void* Alloc(size_t size, size_t align) {
    size_t bytes = MappingSize(size);
    if (bytes == 0) return nullptr;
    if (align < kPageSize) align = kPageSize;
    void* mem = os_->Map(bytes, align);
    if (mem == nullptr) return nullptr;
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
    s->state = SpanState::kLarge;
    s->order = align > kPageSize ? 1 : 0;  // 1: aligned mapping, no MAYMOVE
    live_.Push(s);
    map_->Set(s->start, Pages{1}, s, 0);
    ++stats_.allocs;
    AddLive(bytes);
    return mem;
  }

  void Free(Span* s) {
    uintptr_t start;
    size_t bytes;
    {
      LockGuard g(lock_);
      start = s->start;
      bytes = s->bytes;
      map_->SetSpan(start, nullptr);
      live_.Remove(s);
      pool_.Delete(s);
      ++stats_.frees;
      stats_.live_bytes -= bytes;
      if (peak_ != nullptr) peak_->Add(-int64_t(bytes));
    }
    os_->Unmap(reinterpret_cast<void*>(start), bytes);
  }

  // Resizes to `size` (> kMaxSmall). Returns the new address or nullptr
  // (the old object is then intact).
  void* Realloc(Span* s, size_t size) {
    size_t bytes = MappingSize(size);
    if (bytes == 0) return nullptr;
    if (bytes == s->bytes) return reinterpret_cast<void*>(s->start);
    void* old = reinterpret_cast<void*>(s->start);
    void* mem = nullptr;
    if (s->order == 0) {
      mem = os_->Remap(old, s->bytes, bytes);
    } else if (os_->RemapInPlace(old, s->bytes, bytes)) {
      mem = old;
    } else {
      mem = os_->Map(bytes, kPageSize);
      if (mem == nullptr) return nullptr;
      memcpy(mem, old, s->bytes < bytes ? s->bytes : bytes);
      os_->Unmap(old, s->bytes);
      s->order = 0;
    }
    if (mem == nullptr) return nullptr;
    if (!map_->Ensure(uintptr_t(mem), kPageSize)) {
      // Cannot record the new place: move it back is not possible in
      // general, so keep the mapping under a fatal error rather than lose it.
      Fatalf("out of memory for the page map while moving %p", old);
    }
    LockGuard g(lock_);
    if (mem != old) {
      // The old address may already belong to a new mapping of another
      // thread, which recorded itself: clear the entry only if it is ours.
      if (map_->SpanOf(s->start) == s) map_->SetSpan(s->start, nullptr);
      s->start = uintptr_t(mem);
      map_->Set(s->start, Pages{1}, s, 0);
    }
    stats_.live_bytes -= s->bytes;
    if (peak_ != nullptr) peak_->Add(-int64_t(s->bytes));
    s->bytes = bytes;
    AddLive(bytes);
    ++stats_.mremaps;
    return mem;
  }

  LargeStats Stats() {
    LockGuard g(lock_);
    LargeStats st = stats_;
    st.live = live_.count;
    return st;
  }

  SpinLock& lock() { return lock_; }

 private:
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
  LargeStats stats_;
};

}  // namespace strata
