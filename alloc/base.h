// Base definitions shared by every layer of strata: compiler hints, the
// page and chunk geometry, and strong types for page counts and orders.
//
// Nothing here allocates or calls the C library.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#define STRATA_LIKELY(x) __builtin_expect(!!(x), 1)
#define STRATA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define STRATA_INLINE inline __attribute__((always_inline))
#define STRATA_NOINLINE __attribute__((noinline))
#define STRATA_COLD __attribute__((noinline, cold))
#define STRATA_TLS __thread __attribute__((tls_model("initial-exec")))

namespace strata {

// Allocator pages are the OS page (x86-64: 4 KiB). The page heap hands out
// blocks of 2^order pages from chunks of 2^kMaxOrder pages, and a chunk is
// aligned to its own size so that a block's buddy is found by XOR.
inline constexpr unsigned kPageShift = 12;
inline constexpr size_t kPageSize = size_t{1} << kPageShift;
inline constexpr unsigned kMaxOrder = 10;  // 1024 pages = 4 MiB chunks
inline constexpr unsigned kNumOrders = kMaxOrder + 1;
inline constexpr size_t kChunkSize = kPageSize << kMaxOrder;

// Addresses above this are not user-space on x86-64 (4-level paging) and
// are never ours.
inline constexpr unsigned kAddressBits = 48;

// malloc's alignment on x86-64.
inline constexpr size_t kMinAlign = 16;

// A count of pages. Keeps page counts and byte counts apart.
struct Pages {
  size_t n = 0;
  constexpr size_t bytes() const { return n << kPageShift; }
  constexpr bool operator==(const Pages&) const = default;
};

// The order of a buddy block: the block is 2^order pages.
struct Order {
  unsigned k = 0;
  constexpr Pages pages() const { return Pages{size_t{1} << k}; }
  constexpr size_t bytes() const { return pages().bytes(); }
  constexpr bool operator==(const Order&) const = default;
};

constexpr uintptr_t AlignUp(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }
constexpr uintptr_t AlignDown(uintptr_t x, uintptr_t a) { return x & ~(a - 1); }
constexpr bool IsPow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Decay (STRATA_DECAY_MS): at time `now_ms`, what was freed at or before
// *cutoff_ms has been idle for decay_ms. False when nothing can be yet
// (decay_ms < 0: never; or the clock has not reached decay_ms).
constexpr bool DecayCutoff(int64_t decay_ms, uint64_t now_ms, uint64_t* cutoff_ms) {
  if (decay_ms < 0 || now_ms < uint64_t(decay_ms)) return false;
  *cutoff_ms = now_ms - uint64_t(decay_ms);
  return true;
}

// Takes what a counter added up since the last take, leaving zero. Loads
// first, so that taking from a counter nobody added to writes nothing to
// its cache line.
inline size_t TakeAll(std::atomic<size_t>& counter) {
  if (counter.load(std::memory_order_relaxed) == 0) return 0;
  return counter.exchange(0, std::memory_order_relaxed);
}

// Smallest order whose block holds at least `pages` pages.
constexpr Order OrderFor(Pages pages) {
  unsigned k = 0;
  while ((size_t{1} << k) < pages.n) ++k;
  return Order{k};
}

}  // namespace strata
