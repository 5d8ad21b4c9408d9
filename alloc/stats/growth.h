// GrowthWatch: tells the background purger when the process's peak RSS
// grows for reasons other than strata's own new pages.
//
// Why. Free memory that strata keeps resident (free page-heap blocks
// waiting for the decay time, cached large mappings, an empty span per
// class) costs nothing at the process's peak RSS while the process stays
// below that peak: a program that frees and refills (python3) reuses it,
// and returning it would only make it fault in again. It adds to the peak
// when the process grows past its peak while it is kept: then every byte
// kept is a byte more in the high-water mark. A compiler does exactly this:
// cc1plus's own garbage-collected heap, which it maps itself, grows from
// start to end while it frees and allocates through malloc, and at its end
// it frees 4 MiB of 64 KiB buffers 17 ms before it exits: with the decay
// time, all of that was still resident when the process reached its peak.
//
// What. The purger samples the process's RSS (/proc/self/statm; the
// watch keeps the highest it has seen: the peak) and the bytes strata
// handed out from pages that were not resident (PageHeap::fresh_bytes),
// and new or reused large mappings (LargeHeap::fresh_bytes_total). Each
// time the peak has grown by kMinGrowthBytes since the last such time, it
// compares: when strata's fresh pages explain at most half of that growth,
// somebody else is growing the process past its peak. Sample says so, and
// the purger gives back what strata holds and turns eager for a while
// (alloc/strata.cc, "Watch": every millisecond it gives back what has
// been free two, central lists keep no empty span, freed large mappings
// are not cached, and the pages inside free objects of 8 KiB and more go
// back). A
// program whose growth is its own allocations (python3 with
// PYTHONMALLOC=malloc) is left alone: its peak grows with what strata
// hands out.
//
// Fresh pages are counted when they are handed out, and become resident
// when they are touched, later: over a short growth the two need not
// match. Comparing them over steps of kMinGrowthBytes rather than from one
// sample to the next keeps that from counting as growth by others: with
// 64 KiB steps, python3 (whose only other growth is its C stack, in deep
// recursion) was seen growing "from outside" by 128 KiB, twice in a run,
// and each time paid for 50 ms of frees going back (+15,000 minor faults,
// 14% of its time); with 512 KiB, once in six runs. cc1plus's heap grows
// some 100 MiB a second: a step every 5 ms.
//
// Pure logic on the numbers it is given, so that tests drive it.
#pragma once

#include <stdint.h>

namespace strata {

class GrowthWatch {
 public:
  static constexpr uint64_t kMinGrowthBytes = 512 << 10;

  // One sample: `rss`, the process's resident bytes now (0: unknown);
  // `own_fresh`, the bytes strata ever handed out from pages that were not
  // resident. True when the RSS passed the base by at least
  // kMinGrowthBytes, and own_fresh grew by at most half as much meanwhile;
  // either way such a sample becomes the base. The first sample only sets
  // it. A lower RSS changes nothing: the base is the peak.
  bool Sample(uint64_t rss, uint64_t own_fresh) {
    if (rss == 0) return false;
    if (!seen_) {
      seen_ = true;
      peak_ = rss;
      fresh_at_peak_ = own_fresh;
      return false;
    }
    if (rss < peak_ + kMinGrowthBytes) return false;
    const uint64_t grew = rss - peak_;
    const uint64_t own = own_fresh > fresh_at_peak_ ? own_fresh - fresh_at_peak_ : 0;
    peak_ = rss;
    fresh_at_peak_ = own_fresh;
    return own <= grew / 2;
  }

  // The peak at the base.
  uint64_t peak() const { return peak_; }

 private:
  bool seen_ = false;
  uint64_t peak_ = 0;
  uint64_t fresh_at_peak_ = 0;
};

}  // namespace strata
