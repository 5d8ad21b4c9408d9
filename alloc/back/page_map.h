// PageMap: from any address to the span that owns its page, in O(1),
// without touching the address itself.
//
// A two-level radix tree over the 48-bit address space: the root has one
// slot per GiB; a leaf covers one GiB (2^18 pages) and holds, per page, the
// owning Span* and the page's size class (0 = "not a small object": free,
// large, a page-sized object, or not ours). The class byte is what the free
// fast path reads (two dependent loads); the Span* serves the slow paths.
//
// Leaves come from the OS layer (lazily backed, so only the touched part of
// a leaf costs memory) and are never freed. Readers take no lock: leaves
// are published with a release store and entries are written by the owner
// of the pages (the page heap or the large-object registry) before the
// pages are handed out. Writers of *leaves* serialise on leaf_lock_.
//
// Invariant: every page of every live span maps to that span (and, for a
// span of small objects, to its class); the first page of every free buddy
// block maps to that block's record. Anything else may hold a stale Span*,
// so readers check the span's state and range before trusting it.
#pragma once

#include <atomic>

#include "alloc/base.h"
#include "alloc/os/spinlock.h"

namespace strata {

struct Span;

template <class Os>
class PageMap {
 public:
  static constexpr unsigned kLeafBits = 30 - kPageShift;  // 1 GiB per leaf
  static constexpr size_t kLeafPages = size_t{1} << kLeafBits;
  static constexpr unsigned kRootBits = kAddressBits - 30;
  static constexpr size_t kRootSize = size_t{1} << kRootBits;

  struct Leaf {
    uint8_t cls[kLeafPages];
    Span* span[kLeafPages];
  };

  constexpr PageMap() = default;
  explicit PageMap(Os* os) : os_(os) {}
  void set_os(Os* os) { os_ = os; }

  // The class byte for `a`: 0 unless a is inside a live span of small
  // objects. This is the free fast path; it must stay tiny.
  STRATA_INLINE size_t ClassOf(uintptr_t a) const {
    const uint8_t* classes = LeafClasses(a);
    if (STRATA_UNLIKELY(classes == nullptr)) return 0;
    return LoadClass(classes, a);
  }

  // The class bytes of the leaf that covers `a`, nullptr when there is no
  // leaf (beyond user space, or no memory of ours in that GiB); index them
  // with LeafIndex(a). ClassOf in two halves, for the free fast path.
  STRATA_INLINE const uint8_t* LeafClasses(uintptr_t a) const {
    const Leaf* leaf = LeafOf(a);
    return leaf != nullptr ? leaf->cls : nullptr;
  }
  STRATA_INLINE static size_t LeafIndex(uintptr_t a) { return (a >> kPageShift) & (kLeafPages - 1); }
  // A page's class byte. Atomic (relaxed, a plain load on every target):
  // a span of small objects handed to the mixed pool has its class cleared
  // while other threads free its objects (alloc/middle/mixed.h).
  STRATA_INLINE static size_t LoadClass(const uint8_t* classes, uintptr_t a) {
    return __atomic_load_n(&classes[LeafIndex(a)], __ATOMIC_RELAXED);
  }

  // The span record last stored for a's page (may be stale: see above).
  STRATA_INLINE Span* SpanOf(uintptr_t a) const {
    const Leaf* leaf = LeafOf(a);
    return leaf != nullptr ? leaf->span[LeafIndex(a)] : nullptr;
  }

  // Makes sure leaves exist for [start, start + bytes). False when the OS
  // has no memory for a leaf.
  bool Ensure(uintptr_t start, size_t bytes) {
    uintptr_t first = start >> 30, last = (start + bytes - 1) >> 30;
    for (uintptr_t i = first; i <= last; ++i) {
      if (root_[i].load(std::memory_order_acquire) != nullptr) continue;
      LockGuard g(leaf_lock_);
      if (root_[i].load(std::memory_order_relaxed) != nullptr) continue;
      void* mem = os_->Map(sizeof(Leaf));
      if (mem == nullptr) return false;
      // Touched a few bytes per page of the heap: a huge page here would
      // make 2 MiB resident for them (THP "always").
      os_->NoHugePages(mem, sizeof(Leaf));
      leaf_bytes_ += sizeof(Leaf);
      root_[i].store(static_cast<Leaf*>(mem), std::memory_order_release);
    }
    return true;
  }

  // The root (2 MiB of slots, one touched per GiB of heap) is in the
  // library's .bss; with THP "always" the kernel may back it with a huge
  // page. Called once, at initialisation.
  void NoHugeRoot() {
    const uintptr_t lo = AlignUp(uintptr_t(&root_[0]), kPageSize);
    const uintptr_t hi = AlignDown(uintptr_t(&root_[kRootSize]), kPageSize);
    if (hi > lo) os_->NoHugePages(reinterpret_cast<void*>(lo), hi - lo);
  }

  // Record `span` and `cls` for `pages` pages from `start` (leaves must
  // exist: Ensure first).
  void Set(uintptr_t start, Pages pages, Span* span, uint8_t cls) {
    for (size_t i = 0; i < pages.n; ++i) {
      uintptr_t a = start + (i << kPageShift);
      Leaf* leaf = root_[a >> 30].load(std::memory_order_relaxed);
      size_t idx = LeafIndex(a);
      leaf->span[idx] = span;
      __atomic_store_n(&leaf->cls[idx], cls, __ATOMIC_RELAXED);
    }
  }
  void SetSpan(uintptr_t a, Span* span) {
    Leaf* leaf = root_[a >> 30].load(std::memory_order_relaxed);
    leaf->span[LeafIndex(a)] = span;
  }
  // Class 0 for `pages` pages from `start`. Release: a reader that finds 0
  // and then fences (acquire) sees what the writer stored before, such as
  // the span's new state.
  void ClearClass(uintptr_t start, Pages pages) {
    for (size_t i = 0; i < pages.n; ++i) {
      uintptr_t a = start + (i << kPageShift);
      Leaf* leaf = root_[a >> 30].load(std::memory_order_relaxed);
      __atomic_store_n(&leaf->cls[LeafIndex(a)], uint8_t{0}, __ATOMIC_RELEASE);
    }
  }

  // Bytes of leaves mapped (virtual; resident is what was touched).
  size_t leaf_bytes() const { return leaf_bytes_; }
  SpinLock& leaf_lock() { return leaf_lock_; }

 private:
  // The leaf covering `a`; nullptr beyond user space or where none exists.
  STRATA_INLINE const Leaf* LeafOf(uintptr_t a) const {
    uintptr_t root = a >> 30;
    if (STRATA_UNLIKELY(root >= kRootSize)) return nullptr;  // beyond user space
    return root_[root].load(std::memory_order_acquire);
  }

  std::atomic<Leaf*> root_[kRootSize] = {};  // first: see Heap in alloc/strata.h
  Os* os_ = nullptr;
  SpinLock leaf_lock_;
  size_t leaf_bytes_ = 0;
};

}  // namespace strata
