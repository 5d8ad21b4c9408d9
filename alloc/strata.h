// The allocator: one global heap (page map, page heap, central lists,
// large objects) and one thread cache per thread, plus the fast paths.
//
//   Malloc: size -> class by table; pop the class's thread-cache list.
//   Free:   address -> class by the page map; push onto the list.
//
// Everything else (refill, overflow, large objects, aligned requests,
// thread set-up and teardown, initialisation) is out of line in
// alloc/strata.cc. Nothing here knows about errno or symbol names: that is
// the shim's job. All functions return nullptr on failure.
#pragma once

#include "alloc/back/page_heap.h"
#include "alloc/front/thread_cache.h"
#include "alloc/large/large.h"
#include "alloc/middle/central.h"
#include "alloc/options.h"
#include "alloc/os/os.h"
#include "alloc/stats/peak.h"

namespace strata {

// The global heap. Constant-initialised (usable before any constructor
// runs); Init() binds the layers and reads the options on first use.
struct Heap {
  RealOs os;
  PageMap<RealOs> map;
  MetaArena<RealOs> arena;
  PageHeap<RealOs> pages;
  CentralList<RealOs> central[kNumClasses];
  LargeHeap<RealOs> large;
  PeakTracker peak;
  Options options;

  // The thread caches' backend.
  int RemoveRange(size_t cls, void** head, void** tail, int n) {
    return central[cls].RemoveRange(head, tail, n);
  }
  void InsertRange(size_t cls, void* head, void* tail, int n) { central[cls].InsertRange(head, tail, n); }
};

using ThreadCacheT = ThreadCache<Heap>;

extern Heap g_heap;
extern STRATA_TLS ThreadCacheT t_cache;

// Slow paths (alloc/strata.cc).
void* MallocSlow(size_t cls, size_t size);
void FreeOverflow(size_t cls);
void FreeSlow(void* p);
void* MallocLarge(size_t size);
// Fatal: p is inside a small object but not at its start, or was just freed.
[[noreturn]] void BadSmallFree(const char* op, void* p, size_t cls);

// ---- the fast paths ----

// Where the fast path goes when it cannot finish. The shim substitutes
// versions that also set errno, so that the fast path itself stays a few
// instructions with tail calls and nothing to save.
struct SlowPaths {
  static void* Small(size_t cls, size_t size) { return MallocSlow(cls, size); }
  static void* Large(size_t size) { return MallocLarge(size); }
};

// Pop an object of class `cls` (for a request of `size` bytes) from this
// thread's cache.
template <class Slow = SlowPaths>
STRATA_INLINE void* MallocClass(size_t cls, size_t size) {
  FreeList& list = t_cache.lists[cls];
  void* p = list.head;
  if (STRATA_LIKELY(p != nullptr)) {
    list.head = *static_cast<void**>(p);
    --list.count;
    ++list.allocs;
    list.requested += size;
    return p;
  }
  return Slow::Small(cls, size);
}

template <class Slow = SlowPaths>
STRATA_INLINE void* Malloc(size_t size) {
  if (STRATA_LIKELY(size <= kMaxSmall)) return MallocClass<Slow>(SizeToClass(size), size);
  return Slow::Large(size);
}

STRATA_INLINE void Free(void* p) {
  size_t cls = g_heap.map.ClassOf(uintptr_t(p));
  if (STRATA_LIKELY(cls != 0)) {
    FreeList& list = t_cache.lists[cls];
    // Two cheap checks before the pointer is trusted: it must be an
    // object's start, and not the object freed last (a double free).
    if (STRATA_UNLIKELY(!IsObjectStart(uintptr_t(p), cls) || p == list.head)) BadSmallFree("free", p, cls);
    *static_cast<void**>(p) = list.head;
    list.head = p;
    if (STRATA_LIKELY(++list.count <= list.max)) return;
    return FreeOverflow(cls);
  }
  FreeSlow(p);  // nullptr, large, page-sized objects, foreign pointers
}

// ---- the rest of the API (out of line) ----

// size bytes zeroed, nullptr on overflow of n * size.
void* Calloc(size_t n, size_t size);
// glibc semantics: Realloc(nullptr, n) = Malloc(n); Realloc(p, 0) frees p
// and returns nullptr; on failure p is intact. Within the usable size the
// block does not move.
void* Realloc(void* p, size_t size);
// `align` must be a power of two (any size; callers validate).
void* AlignedAlloc(size_t align, size_t size);
// 0 for nullptr. Fatal for a pointer strata does not own.
size_t UsableSize(const void* p);
void FreeSized(void* p, size_t size);
// Return free memory to the OS now; flushes the calling thread's cache.
size_t ReleaseMemory();
// Called by malloc_trim, strata_release and the fork handlers.
void ForkPrepare();
void ForkParent();
void ForkChild();
// Makes sure the global heap is initialised (idempotent). Returns false
// only on a recursive call from the initialising thread itself, whose
// requests are then served from a small static bootstrap arena.
bool EnsureInit();
// True when `p` is the start of a block strata handed out (or inside a
// small object). For the shim's foreign-pointer policy and tests.
bool Owns(const void* p);

}  // namespace strata
