// SpinLock: test-and-test-and-set with back-off that gives the CPU away.
//
// Spins with `pause` for a short while, then yields (sched_yield), then
// sleeps briefly, so that many threads on few cores do not burn their time
// slices while the holder is descheduled. Counts acquisitions and contended
// acquisitions for the stats (plain counters, written under the lock).
//
// Constant-initialised: usable before any constructor runs.
#pragma once

#include <atomic>

#include "alloc/base.h"
#include "alloc/os/os.h"

namespace strata {

class SpinLock {
 public:
  constexpr SpinLock() = default;

  STRATA_INLINE void Lock() {
    if (STRATA_LIKELY(!locked_.exchange(true, std::memory_order_acquire))) {
      ++acquisitions_;
      return;
    }
    LockSlow();
  }
  STRATA_INLINE bool TryLock() {
    if (locked_.load(std::memory_order_relaxed) ||
        locked_.exchange(true, std::memory_order_acquire)) {
      return false;
    }
    ++acquisitions_;
    return true;
  }
  STRATA_INLINE void Unlock() { locked_.store(false, std::memory_order_release); }
  bool IsLocked() const { return locked_.load(std::memory_order_relaxed); }

  // Racy reads are fine for statistics.
  uint64_t acquisitions() const { return acquisitions_; }
  uint64_t contended() const { return contended_; }

  // After fork() in the child, a lock held by a thread that no longer exists
  // must be forced open. Only the fork handlers call this.
  void ResetAfterFork() { locked_.store(false, std::memory_order_relaxed); }

 private:
  STRATA_NOINLINE void LockSlow() {
    for (unsigned spins = 0;; ++spins) {
      if (!locked_.load(std::memory_order_relaxed) &&
          !locked_.exchange(true, std::memory_order_acquire)) {
        break;
      }
      if (spins < 64) {
        __builtin_ia32_pause();
      } else if (spins < 96) {
        RealOs::Yield();
      } else {
        RealOs::SleepShort();
      }
    }
    ++acquisitions_;
    ++contended_;
  }

  std::atomic<bool> locked_{false};
  uint64_t acquisitions_ = 0;
  uint64_t contended_ = 0;
};

class LockGuard {
 public:
  explicit LockGuard(SpinLock& l) : l_(l) { l_.Lock(); }
  ~LockGuard() { l_.Unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  SpinLock& l_;
};

}  // namespace strata
