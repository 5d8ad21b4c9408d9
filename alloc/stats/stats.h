// Statistics: each layer keeps its own counters (thread caches: plain
// per-thread integers; central lists, page heap, large heap: counters
// under their own locks). A Snapshot merges them on demand; the writers
// format a snapshot into a caller's fixed buffer and never allocate.
#pragma once

#include "alloc/back/page_heap.h"
#include "alloc/front/thread_cache.h"
#include "alloc/large/large.h"
#include "alloc/middle/central.h"
#include "alloc/options.h"

namespace strata {

struct Heap;

// Thread-cache counters summed over threads (live and exited).
struct ThreadTotals {
  uint64_t allocs[kNumClasses] = {};
  uint64_t requested[kNumClasses] = {};
  uint64_t misses = 0;
  uint64_t flushes = 0;
  void Add(const ThreadCache<Heap>& tc);
};

enum class PurgerState : uint8_t { kOff, kNotStarted, kRunning, kParked };
const char* PurgerStateName(PurgerState s);

struct ClassRow {
  uint64_t size, allocs, frees, live, spans, cached, requested;
};

struct Snapshot {
  ThreadTotals threads;
  uint64_t live_threads = 0;
  uint64_t cached_bytes = 0;      // in thread caches
  uint64_t cached_objects[kNumClasses] = {};
  CentralStats central[kNumClasses];
  MixedStats mixed;
  PageHeapStats pages;
  LargeStats large;
  uint64_t page_objects = 0;
  uint64_t page_object_frees = 0;
  uint64_t metadata_bytes = 0;
  uint64_t resident_bytes = 0;
  uint64_t peak_allocated_bytes = 0;
  uint64_t time_ms = 0;
  const Options* options = nullptr;
  // The background purger (alloc/strata.cc): its state, passes made, and
  // times it parked (slept with nothing left to give back).
  PurgerState purger_state = PurgerState::kOff;
  uint64_t purger_passes = 0;
  uint64_t purger_parks = 0;
  // Times the process grew past its peak for reasons other than strata's
  // own pages, and the purger gave back what strata held (growth.h).
  uint64_t purger_growth_releases = 0;

  // Derived by Finish().
  uint64_t small_live_bytes = 0;   // class size x live objects
  uint64_t page_object_bytes = 0;
  uint64_t allocated_bytes = 0;    // live bytes handed to the program
  uint64_t mapped_bytes = 0;       // chunks + large mappings + metadata
  uint64_t released_bytes = 0;     // free page-heap bytes returned to the OS
  uint64_t central_free_bytes = 0; // free objects inside spans (mixed spans' free bytes too)
  uint64_t heap_free_bytes = 0;    // free pages in the page heap
  uint64_t hits = 0, misses = 0;
  uint64_t lock_acquisitions = 0, lock_contended = 0;
  uint64_t allocs = 0, frees = 0;
  uint64_t requested_bytes = 0;    // asked for by small mallocs, cumulative
  uint64_t granted_bytes = 0;      // class sizes given for them, cumulative
  // Class rounding waste, for all small allocations so far, as a fraction
  // of the bytes given: (granted - requested) / granted, in [0, 1).
  double internal_fragmentation = 0;
  // Free page-heap bytes that the largest free block cannot serve, over all
  // free page-heap bytes: 1 - largest / free (0 when nothing is free).
  double external_fragmentation = 0;
};

void TakeSnapshot(Snapshot* snap);  // alloc/strata.cc
void Finish(Snapshot* snap);
ClassRow Row(const Snapshot& snap, size_t cls);

// One JSON document into buf (same contract as WriteText); `newline`
// ends it with '\n'. The keys are documented in docs/stats.md.
size_t WriteJson(const Snapshot& snap, char* buf, size_t len);

// Human-readable report into buf (NUL-terminated, truncated if needed).
// Returns the length a complete report needs.
size_t WriteText(const Snapshot& snap, char* buf, size_t len);

}  // namespace strata
