// FakeOs: a stand-in for RealOs (alloc/os/os.h) that the layers' Os
// template parameter accepts, so the buddy heap, the central lists and the
// large heap are tested without the kernel deciding anything.
//
// Memory comes from one region reserved at construction (a real mmap,
// MAP_NORESERVE, so only what a test touches costs RAM) and is carved with
// a bump pointer that honours `align`; nothing is ever reused, so every Map
// returns fresh zeroed memory. A second region plays the program break
// (GrowBreak/ShrinkBreak). Every call is counted; Map can be told to fail
// after N successes (`maps_left`), the clock is a plain member (`now_ms`).
//
// Unmap only forgets the range (it is checked against the live mappings:
// unmapping something never mapped is counted in `bad_unmaps`). Release
// uses a real MADV_DONTNEED on the region, so released pages read as zero
// as they do with RealOs; it first runs `on_release` if set: what another
// thread may do while a madvise takes its time.
//
// Not thread-safe, but for Release's counters and the mappings (`mu`): the
// layer tests drive it from one thread (a test with a second thread keeps
// the other calls ordered, and sets `real_sleeps`).
#pragma once

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "alloc/base.h"

namespace strata_test {

using strata::kChunkSize;
using strata::kPageSize;

class FakeOs {
 public:
  explicit FakeOs(size_t bytes = size_t{256} << 20, size_t brk_bytes = 0) {
    region_bytes_ = bytes + kChunkSize;
    region_ = Reserve(region_bytes_);
    cur_ = uintptr_t(region_);
    end_ = cur_ + region_bytes_;
    if (brk_bytes != 0) {
      // Start the break off any nice alignment, as a real break is, so the
      // padding of GrowBreak is exercised; after the padding to the first
      // chunk boundary, `brk_bytes` can be grown.
      brk_region_bytes_ = brk_bytes + 2 * kChunkSize;
      brk_region_ = Reserve(brk_region_bytes_);
      brk_base_ = uintptr_t(brk_region_) + 3 * kPageSize;
      if (brk_base_ % kChunkSize == 0) brk_base_ += kPageSize;
      brk_cur_ = brk_base_;
      brk_end_ = strata::AlignUp(brk_base_, kChunkSize) + brk_bytes;
    }
  }
  ~FakeOs() {
    munmap(region_, region_bytes_);
    if (brk_region_ != nullptr) munmap(brk_region_, brk_region_bytes_);
  }
  FakeOs(const FakeOs&) = delete;
  FakeOs& operator=(const FakeOs&) = delete;

  // ---- the Os interface ----

  void* Map(size_t bytes, size_t align = kPageSize) {
    ++map_calls;
    if (maps_left == 0 || bytes == 0 || bytes % kPageSize != 0) {
      ++map_failures;
      return nullptr;
    }
    if (align < kPageSize) align = kPageSize;
    void* p = Carve(bytes, align);
    if (p == nullptr) {
      ++map_failures;
      return nullptr;
    }
    if (maps_left > 0) --maps_left;
    ++maps;
    mapped_bytes += bytes;
    std::lock_guard<std::mutex> g(mu);
    mappings_[uintptr_t(p)] = bytes;
    return p;
  }

  void Unmap(void* p, size_t bytes) {
    ++unmaps;
    unmapped_bytes += bytes;
    last_unmap = p;
    last_unmap_bytes = bytes;
    std::lock_guard<std::mutex> g(mu);
    if (!Forget(uintptr_t(p), bytes)) ++bad_unmaps;
  }

  void* Remap(void* p, size_t old_bytes, size_t new_bytes) {
    ++remaps;
    if (on_remap) on_remap(p);
    if (remaps_fail) return nullptr;
    // Shrinking never moves (as with mremap); growing moves when told to.
    if ((!remap_moves || new_bytes <= old_bytes) && RemapInPlaceQuiet(p, old_bytes, new_bytes)) return p;
    void* q = Carve(new_bytes, kPageSize);
    if (q == nullptr) return nullptr;
    memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
    std::lock_guard<std::mutex> g(mu);
    if (!Forget(uintptr_t(p), old_bytes)) ++bad_unmaps;
    mappings_[uintptr_t(q)] = new_bytes;
    ++remap_moved;
    return q;
  }

  void Split(void* p, size_t bytes, size_t first) {
    std::lock_guard<std::mutex> g(mu);
    auto it = mappings_.find(uintptr_t(p));
    if (it == mappings_.end() || it->second != bytes || first == 0 || first >= bytes || first % kPageSize != 0) {
      ++bad_splits;
      return;
    }
    it->second = first;
    mappings_[uintptr_t(p) + first] = bytes - first;
  }

  bool RemapInPlace(void* p, size_t old_bytes, size_t new_bytes) {
    ++remaps_in_place_calls;
    if (remap_moves && new_bytes > old_bytes) return false;
    return RemapInPlaceQuiet(p, old_bytes, new_bytes);
  }

  void Release(void* p, size_t bytes, bool lazy = false) {
    {
      // The page heap calls this with its lock dropped: from two threads
      // in the tests that have them.
      std::lock_guard<std::mutex> g(mu);
      ++releases;
      released_bytes += bytes;
      if (lazy) ++lazy_releases;
      if (!Inside(uintptr_t(p), bytes)) {
        ++bad_releases;
        return;
      }
      // Memory unmapped (a chunk given back while a block of it was under
      // madvise) or above the break: with a real kernel, someone else's
      // memory may be mapped there by now.
      if (!LiveLocked(uintptr_t(p), bytes)) ++dead_releases;
    }
    // First the hook, so that anything it writes into the block (a bug
    // handing it out meanwhile) is wiped, and shows.
    if (on_release) on_release(p, bytes);
    madvise(p, bytes, MADV_DONTNEED);
  }

  void NoHugePages(void* p, size_t bytes) { no_huge.emplace_back(p, bytes); }
  void* GrowBreak(size_t bytes, size_t align) {
    ++grow_break_calls;
    if (brk_region_ == nullptr) return nullptr;
    uintptr_t a = strata::AlignUp(brk_cur_, align);
    if (a + bytes > brk_end_ || a + bytes < a) {
      ++brk_failures;
      return nullptr;
    }
    brk_cur_ = a + bytes;
    brk_grown_bytes += bytes;
    return reinterpret_cast<void*>(a);
  }

  bool ShrinkBreak(void* p, size_t bytes) {
    ++shrink_break_calls;
    if (uintptr_t(p) + bytes != brk_cur_) return false;
    brk_cur_ = uintptr_t(p);
    return true;
  }

  uint64_t NowMs() { return now_ms; }
  void Yield() { ++yields; }
  void SleepShort() {
    ++sleeps;
    if (real_sleeps) usleep(50);
  }
  size_t ResidentBytes() { return 0; }
  void Write(int /*fd*/, const char* buf, size_t len) { written.append(buf, len); }

  // ---- for tests ----

  bool InRegion(const void* p) const {
    return uintptr_t(p) >= uintptr_t(region_) && uintptr_t(p) < uintptr_t(region_) + region_bytes_;
  }
  bool InBreak(const void* p) const {
    return brk_region_ != nullptr && uintptr_t(p) >= brk_base_ && uintptr_t(p) < brk_end_;
  }
  size_t live_mappings() const { return mappings_.size(); }
  // Whether [p, p + bytes) lies within one live mapping or below the break.
  bool LiveLocked(uintptr_t p, size_t bytes) const {
    if (brk_region_ != nullptr && p >= brk_base_ && p + bytes <= brk_cur_) return true;
    auto it = mappings_.upper_bound(p);
    if (it == mappings_.begin()) return false;
    --it;
    return p + bytes <= it->first + it->second;
  }
  uintptr_t region_begin() const { return uintptr_t(region_); }
  size_t region_bytes() const { return region_bytes_; }
  uintptr_t brk_base() const { return brk_base_; }
  size_t brk_capacity() const { return brk_end_ - brk_base_; }
  // Bytes still free in the bump region (ignoring alignment).
  size_t bump_left() const { return end_ - cur_; }

  uint64_t now_ms = 0;
  long maps_left = -1;       // successful Maps still allowed; -1: unlimited
  bool remap_moves = false;  // growing: Remap always moves, RemapInPlace fails
  bool remaps_fail = false;

  size_t map_calls = 0, maps = 0, map_failures = 0, mapped_bytes = 0;
  size_t unmaps = 0, unmapped_bytes = 0, bad_unmaps = 0;
  void* last_unmap = nullptr;
  size_t last_unmap_bytes = 0;
  size_t remaps = 0, remap_moved = 0, remaps_in_place_calls = 0, bad_splits = 0;
  size_t releases = 0, released_bytes = 0, lazy_releases = 0, bad_releases = 0;
  size_t dead_releases = 0;  // of memory not mapped (or above the break) at the time
  std::mutex mu;            // Release's counters and the mappings (tests with two threads)
  size_t grow_break_calls = 0, brk_failures = 0, shrink_break_calls = 0, brk_grown_bytes = 0;
  size_t yields = 0, sleeps = 0;
  std::vector<std::pair<void*, size_t>> no_huge;  // NoHugePages calls
  std::function<void(void*, size_t)> on_release;  // run inside Release, before the madvise
  std::function<void(void*)> on_remap;            // run first in Remap, with the old address
  bool real_sleeps = false;  // SleepShort sleeps: for a test with a second thread
  std::string written;

 private:
  static void* Reserve(size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("FakeOs: cannot reserve its region");
    return p;
  }

  void* Carve(size_t bytes, size_t align) {
    uintptr_t a = strata::AlignUp(cur_, align);
    if (a < cur_ || a > end_ || bytes > end_ - a) return nullptr;
    cur_ = a + bytes;
    return reinterpret_cast<void*>(a);
  }

  bool Inside(uintptr_t p, size_t bytes) const {
    uintptr_t lo = uintptr_t(region_), hi = lo + region_bytes_;
    if (p >= lo && p + bytes <= hi) return true;
    return brk_region_ != nullptr && p >= brk_base_ && p + bytes <= brk_end_;
  }

  // Removes [p, p+bytes) from the live mappings (splitting one if needed,
  // as munmap does). False when the range is not inside one live mapping.
  bool Forget(uintptr_t p, size_t bytes) {
    auto it = mappings_.upper_bound(p);
    if (it == mappings_.begin()) return false;
    --it;
    uintptr_t start = it->first, stop = it->first + it->second;
    if (p + bytes > stop) return false;
    mappings_.erase(it);
    if (p > start) mappings_[start] = p - start;
    if (p + bytes < stop) mappings_[p + bytes] = stop - (p + bytes);
    return true;
  }

  bool RemapInPlaceQuiet(void* p, size_t old_bytes, size_t new_bytes) {
    std::lock_guard<std::mutex> g(mu);
    auto it = mappings_.find(uintptr_t(p));
    if (it == mappings_.end() || it->second != old_bytes) return false;
    if (new_bytes <= old_bytes) {
      it->second = new_bytes;
      return true;
    }
    // Grows only at the top of the bump region, where nothing follows.
    if (uintptr_t(p) + old_bytes != cur_ || new_bytes - old_bytes > end_ - cur_) return false;
    cur_ = uintptr_t(p) + new_bytes;
    it->second = new_bytes;
    return true;
  }

  void* region_ = nullptr;
  size_t region_bytes_ = 0;
  uintptr_t cur_ = 0, end_ = 0;
  void* brk_region_ = nullptr;
  size_t brk_region_bytes_ = 0;
  uintptr_t brk_base_ = 0, brk_cur_ = 0, brk_end_ = 0;
  std::map<uintptr_t, size_t> mappings_;
};

}  // namespace strata_test
