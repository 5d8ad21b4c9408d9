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
// Every member's default is zero, so the heap (2.2 MiB, most of it the
// page map's root) sits in .bss: anonymous zero pages that cost memory only
// once written. One non-zero default put it in .data, file-backed, where the
// kernel's fault-around and large page-cache folios mapped up to all of it
// into every process (+0.8-1 MiB RSS).
struct Heap {
  // The page map's root comes first: the free fast path indexes it from
  // the heap's address with no offset.
  PageMap<RealOs> map;
  [[no_unique_address]] RealOs os;
  MetaArena<RealOs> arena;
  PageHeap<RealOs> pages;
  CentralList<RealOs> central[kNumClasses];
  MixedPool<RealOs> mixed;
  // The central lists' transfer caches: every class's first batch, then
  // the others' storage (CentralList::Init).
  void* transfer_first[kNumClasses][kMaxBatch] = {};
  void* transfer[CentralList<RealOs>::AllTransferRestPointers()] = {};
  LargeHeap<RealOs> large;
  PeakTracker peak;
  Options options;

  // The thread caches' backend.
  int RemoveRange(size_t cls, void** head, void** tail, int n, int fresh) {
    return central[cls].RemoveRange(head, tail, n, fresh);
  }
  void InsertRange(size_t cls, void* head, void* tail, int n) { central[cls].InsertRange(head, tail, n); }
  void ReturnToSpans(size_t cls, void* head, int n) { central[cls].InsertRange(head, n); }
  bool Eager() const { return pages.eager(); }
};

// Set-up writes every class's central list: they should stay a few pages.
static_assert(sizeof(CentralList<RealOs>) * kNumClasses <= 4 * kPageSize);

using ThreadCacheT = ThreadCache<Heap>;
using PageMapT = PageMap<RealOs>;

extern Heap g_heap;
extern STRATA_TLS ThreadCacheT t_cache;

// Slow paths (alloc/strata.cc).
void* MallocSlow(size_t cls, size_t size);
void FreeOverflow(void* p);  // p was just pushed
void FreeSlow(void* p);
// A free that the fast path could not take: not a small object (class 0:
// nullptr, large, page-sized, foreign), a misuse (fatal), or a thread
// whose cache is not set up (uninitialised, exiting, checking mode).
void FreeUnchecked(void* p);
void* MallocLarge(size_t size);
// Fatal: p is inside a small object but not at its start, or was just freed.
[[noreturn]] void BadSmallFree(const char* op, void* p, size_t cls);

// ---- the fast paths ----

// Where the fast path goes when it cannot finish. The shim substitutes
// versions that also set errno, so that the fast path itself stays a few
// instructions with tail calls and nothing to save.
// Small() gets the size alone and finds the class again: keeping the class
// (or the list's address) alive for the slow path costs the fast path
// instructions.
struct SlowPaths {
  static void* Small(size_t size) { return MallocSlow(SizeToClass(size), size); }
  static void* Large(size_t size) { return MallocLarge(size); }
};

// Pop an object (for a request of `size` bytes) from one of this thread's
// lists; nullptr when the list is empty.
STRATA_INLINE void* Pop(FreeList& list, size_t size) {
  void* p = list.head;
  if (STRATA_LIKELY(p != nullptr)) {
    list.head = *static_cast<void**>(p);
    ++list.room;
    ++list.allocs;
    list.requested += size;
  }
  return p;
}

template <class Slow = SlowPaths>
STRATA_INLINE void* Malloc(size_t size) {
  size_t cls;
  if (STRATA_LIKELY(size <= kMaxSmallStep16)) {
    cls = ClassUpTo8K(size);
  } else if (STRATA_LIKELY(size <= kMaxSmall)) {
    cls = ClassAbove8K(size);
  } else {
    return Slow::Large(size);
  }
  void* p = Pop(t_cache.lists[cls], size);
  if (STRATA_LIKELY(p != nullptr)) return p;
  return Slow::Small(size);
}

STRATA_INLINE void Free(void* p) {
  const uint8_t* classes = g_heap.map.LeafClasses(uintptr_t(p));
  if (STRATA_UNLIKELY(classes == nullptr)) return FreeSlow(p);  // no leaf: not ours, or nullptr
  // Class 0 (not a small object: large, page-sized, free pages) needs no
  // test of its own: list 0's check is all zero and fails.
  FreeList& list = t_cache.lists[PageMapT::LoadClass(classes, uintptr_t(p))];
  // Two cheap checks before the pointer is trusted: it must be an object's
  // start, and not the object freed last (a double free).
  if (STRATA_UNLIKELY(!list.check.IsObjectStart(uintptr_t(p)) || p == list.head)) return FreeUnchecked(p);
  *static_cast<void**>(p) = list.head;
  list.head = p;
  if (STRATA_LIKELY(--list.room >= 0)) return;
  return FreeOverflow(p);
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

// Another allocator whose blocks may reach free, realloc and
// malloc_usable_size: glibc's, once a library was loaded with
// RTLD_DEEPBIND (shim/deepbind.cc). Until the shim sets it, a pointer
// strata does not own is a fatal error; after, it goes to these (and a
// pointer that is neither strata's nor glibc's gets glibc's diagnosis).
struct ForeignAllocator {
  void (*free)(void*);
  size_t (*usable_size)(void*);
};
void SetForeignAllocator(const ForeignAllocator* f);

}  // namespace strata
