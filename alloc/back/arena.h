// MetaArena: where strata's own metadata lives (span records, page-map
// leaves are mapped directly). Never malloc: memory comes from the OS layer
// in blocks and is carved with a bump pointer; records are recycled through
// a typed free list (RecordPool) and never returned to the OS.
//
// Lock: one spinlock, innermost in the lock order (central -> page heap ->
// arena), so any layer may call it while holding its own lock.
#pragma once

#include "alloc/base.h"
#include "alloc/os/spinlock.h"

namespace strata {

template <class Os>
class MetaArena {
 public:
  static constexpr size_t kBlockSize = 256 * 1024;

  constexpr MetaArena() = default;
  explicit MetaArena(Os* os) : os_(os) {}
  void set_os(Os* os) { os_ = os; }

  // `bytes` of zeroed memory aligned to 64, or nullptr when out of memory.
  void* Alloc(size_t bytes) {
    bytes = AlignUp(bytes, 64);
    LockGuard g(lock_);
    if (bytes > size_t(end_ - cur_)) {
      size_t block = bytes > kBlockSize ? AlignUp(bytes, kPageSize) : kBlockSize;
      void* mem = os_->Map(block);
      if (mem == nullptr) return nullptr;
      mapped_ += block;
      cur_ = uintptr_t(mem);
      end_ = cur_ + block;
    }
    void* p = reinterpret_cast<void*>(cur_);
    cur_ += bytes;
    used_ += bytes;
    return p;
  }

  size_t mapped_bytes() const { return mapped_; }
  size_t used_bytes() const { return used_; }
  SpinLock& lock() { return lock_; }

 private:
  Os* os_ = nullptr;
  SpinLock lock_;
  uintptr_t cur_ = 0;
  uintptr_t end_ = 0;
  size_t mapped_ = 0;
  size_t used_ = 0;
};

// A free list of fixed-size records on top of the arena. Not thread-safe:
// the owner serialises (each pool is used under one lock). A free record's
// first word links the list, so T's first member must be a T*.
template <class T, class Os>
class RecordPool {
 public:
  constexpr RecordPool() = default;
  T* New(MetaArena<Os>& arena) {
    T* r = free_;
    if (r != nullptr) {
      free_ = *reinterpret_cast<T**>(r);
    } else {
      r = static_cast<T*>(arena.Alloc(sizeof(T)));
      if (r == nullptr) return nullptr;
    }
    *r = T{};
    ++live_;
    return r;
  }
  void Delete(T* r) {
    *r = T{};  // clears the state so a stale page-map entry reads "none"
    *reinterpret_cast<T**>(r) = free_;
    free_ = r;
    --live_;
  }
  size_t live() const { return live_; }

 private:
  T* free_ = nullptr;
  size_t live_ = 0;
};

}  // namespace strata
