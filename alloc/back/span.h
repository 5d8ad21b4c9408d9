// Span: the record for one run of pages (a buddy block) or one large
// mapping. Records live in metadata (MetaArena via RecordPool), never in
// the pages they describe, so pages returned to the OS are not touched.
//
// Who owns which fields:
//  - page heap (under its lock): start, order, states kFree and
//    kReleasing, clean_pages, free_since_ms, next/prev while on a free list
//    or a release list;
//  - central list of `cls` (under its lock): freelist, bump, used,
//    next/prev while on the central list;
//  - large registry (under its lock): bytes, next/prev;
//  - mixed pool (under its lock), for a kMixed span: freelist (its granule
//    map), bump (its longest free run), used (granules in use), next/prev,
//    on_list.
// bump and bytes share a word: no span is both small and large.
#pragma once

#include <atomic>
#include <cstddef>
#include <type_traits>

#include "alloc/base.h"

namespace strata {

enum class SpanState : uint8_t {
  kNone = 0,     // a recycled or unused record
  kFree,         // a free buddy block in the page heap
  kSmall,        // a span carved into objects of one size class
  kPageObject,   // one object in a whole page-heap block (aligned, or large up to 1 MiB)
  kLarge,        // a large object with its own mapping
  kLargeCached,  // a freed large mapping kept for reuse (large.h)
  kMixed,        // a span of small objects of any size (middle/mixed.h)
  kReleasing,    // a free buddy block off the free lists while its pages go back to the OS (page_heap.h)
};

struct Span {
  // 64 bytes, one cache line (the arena aligns every record to 64): a
  // process with a GiB of 4 KiB spans keeps 16 MiB of these.
  Span* next = nullptr;       // first word: also RecordPool's free-list link
  Span* prev = nullptr;
  uintptr_t start = 0;        // first byte
  void* freelist = nullptr;   // kSmall: objects given back
  union {
    uintptr_t bump = 0;       // kSmall: first never-handed-out object
    size_t bytes;             // kLarge, kLargeCached: mapping length; kPageObject: usable
    uint64_t flight;          // kReleasing, under madvise: its number (PageHeap::AwaitOthersReleases)
  };
  uint64_t free_since_ms = 0; // kFree, kReleasing, kLargeCached: when it became free (decay)
  uint32_t used = 0;          // kSmall: objects out of the span
  uint32_t clean_pages = 0;   // kFree, kReleasing: pages known not resident
  uint32_t generation = 0;    // kSmall, kMixed: this life of the span (NewSpanGeneration)
  uint8_t order = 0;
  SpanState state = SpanState::kNone;
  uint8_t cls = 0;
  uint8_t on_list = 0;        // kSmall: which central list holds it (central.h)

  // The state as read and written where a span changes hands while other
  // threads may look at it (a span handed to the mixed pool).
  SpanState LoadState() const {
    return SpanState(__atomic_load_n(reinterpret_cast<const uint8_t*>(&state), __ATOMIC_RELAXED));
  }
  // Pairs with StoreStateRelease: what was written before it (a mixed
  // span's map) is seen after.
  SpanState LoadStateAcquire() const {
    return SpanState(__atomic_load_n(reinterpret_cast<const uint8_t*>(&state), __ATOMIC_ACQUIRE));
  }
  void StoreStateRelease(SpanState st) {
    __atomic_store_n(reinterpret_cast<uint8_t*>(&state), uint8_t(st), __ATOMIC_RELEASE);
  }

  Pages pages() const { return Order{order}.pages(); }
  uintptr_t end() const { return start + Order{order}.bytes(); }
};
static_assert(sizeof(Span) == 64, "a span record is one cache line");
static_assert(std::is_standard_layout_v<Span> && offsetof(Span, next) == 0,
              "RecordPool links free records through their first word");

// An intrusive doubly linked list of spans (null-terminated, so it is
// constant-initialisable).
struct SpanList {
  Span* head = nullptr;
  size_t count = 0;

  bool empty() const { return head == nullptr; }
  void Push(Span* s) {
    s->prev = nullptr;
    s->next = head;
    if (head != nullptr) head->prev = s;
    head = s;
    ++count;
  }
  void Remove(Span* s) {
    if (s->prev != nullptr) s->prev->next = s->next; else head = s->next;
    if (s->next != nullptr) s->next->prev = s->prev;
    s->next = s->prev = nullptr;
    --count;
  }
  Span* Pop() {
    Span* s = head;
    if (s != nullptr) Remove(s);
    return s;
  }
};

// A number for each life of a span of small objects, unique across classes
// (until it wraps at 2^32): a new span of a class, and a span handed to the
// mixed pool, get a new one. Checking mode's free marker includes it
// (FreedMarker, alloc/strata.cc), so that a marker an earlier life left in
// memory never matches a later one's, even when a program overwrote part
// of it in between. (Numbered per class, a 32-byte span and an 80-byte span
// shared numbers: a Lua string whose tag byte turned the old marker's class
// bits from 2 into 5 made a fresh 80-byte object look freed, and checking
// mode stopped the program with a false "write after free".)
inline uint32_t NewSpanGeneration() {
  static constinit std::atomic<uint32_t> lives{0};
  return lives.fetch_add(1, std::memory_order_relaxed) + 1;
}

}  // namespace strata
