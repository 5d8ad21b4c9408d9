// PeakTracker: bytes handed out by the heap (objects outside the central
// lists, page objects, large mappings) and the highest value seen.
//
// Updated per large object and page object, and by each central list once
// its objects out changed by 16 KiB either way (CentralList::
// CountOutLocked), never on the malloc/free fast path. So the value counts
// objects resting in thread caches as handed out (it is above live bytes
// by at most the thread caches' budgets), and lags each size class's
// changes by less than 16 KiB. A statistics snapshot counts the bytes out
// exactly and raises the peak to them (Observe), so that no snapshot shows
// a peak below what it shows handed out.
#pragma once

#include <atomic>

#include "alloc/base.h"

namespace strata {

class PeakTracker {
 public:
  constexpr PeakTracker() = default;
  void Add(int64_t delta) {
    Observe(current_.fetch_add(delta, std::memory_order_relaxed) + delta);
  }
  // The bytes handed out were `value` at some point: the peak is at least that.
  void Observe(int64_t value) {
    int64_t peak = peak_.load(std::memory_order_relaxed);
    while (value > peak && !peak_.compare_exchange_weak(peak, value, std::memory_order_relaxed)) {
    }
  }
  int64_t current() const { return current_.load(std::memory_order_relaxed); }
  int64_t peak() const { return peak_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> peak_{0};
};

}  // namespace strata
