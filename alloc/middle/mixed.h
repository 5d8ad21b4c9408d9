// MixedPool: one-page spans of small objects that went nearly empty while
// their class had plenty of free room, reused for objects of every size.
//
// Why. A size-class allocator cannot return a page while one object on it
// lives, nor put objects of another size into its free slots. A program that
// fills memory with one size, frees most of it at random and then allocates
// another size (frag: 256 MiB of 64-byte objects, 90% freed at random, then
// 200-byte objects) keeps every page of the first size at a tenth of its
// use (a 4 KiB page is empty with probability 0.9^64 = 0.1%) and maps new
// pages for the second: its peak is the sum of both. glibc puts the second
// size into the holes, because its free chunks coalesce.
//
// What. When a class has at least kMinFreeBytes free in its own spans, and
// at least half of them free, a one-page span of it whose objects out drop
// to a quarter is handed over here (Adopt). Its objects stay where they are;
// the pool tracks the page in granules of 16 bytes, two bits each:
//   00 free, 11 an object's first granule, 01 the rest of an object.
// Free runs serve any class up to kMaxObject (Carve), at the class's natural
// alignment (the largest power of two dividing its size: what aligned_alloc
// relies on), when the class has no partly used span of its own left. A
// carved object has its class's exact size, so it is handed out through the
// thread caches like any other object of its class.
//
// Frees. A mixed span's pages have class 0 in the page map, so a free of one
// of its objects leaves the fast path; the slow path reads the object's
// length from the map without a lock (ObjectBytes) and gives it back to the
// central list of the class of that size, which puts it back into the map
// (Free), as it does for objects a thread cache returns. A span whose last
// granule comes back goes to the page heap. A class whose objects come back
// as fast as it carves them stops carving for a while and takes spans of
// its own (CentralList::ChurnsInPoolLocked): its frees are then fast again.
//
// Lock-free reads: writers hold the pool's lock and store each word of the
// map whole, and an object's first granule changes in one store (00 <-> 11),
// so the length of a live object (its own granules, then the first one that
// is not 01) reads the same whatever its neighbours do.
//
// Lock order: central (any class) -> mixed -> page heap -> arena.
#pragma once

#include <atomic>

#include "alloc/back/arena.h"
#include "alloc/back/page_map.h"
#include "alloc/back/span.h"
#include "alloc/middle/size_class.h"
#include "alloc/os/os.h"

namespace strata {

inline constexpr size_t kGranule = 16;

// The granule map of one mixed span: 256 granules of a 4 KiB page, 2 bits
// each, 64 bytes. A free map's first word links the pool's free list.
union MixedMap {
  static constexpr size_t kGranules = kPageSize / kGranule;
  static constexpr size_t kWords = kGranules / 32;
  static constexpr uint64_t kFree = 0, kRest = 1, kStart = 3;

  MixedMap* next_free;
  uint64_t w[kWords];

  uint64_t Word(size_t i) const { return __atomic_load_n(&w[i], __ATOMIC_RELAXED); }
  uint64_t Code(size_t g) const { return (Word(g / 32) >> (2 * (g % 32))) & 3; }

  // Granules [g, g + len) become one object (alloc) or free. Pool lock held.
  void Mark(size_t g, size_t len, bool alloc) {
    const size_t first = g, end = g + len;
    while (g < end) {
      const size_t wi = g / 32;
      uint64_t word = w[wi];
      for (; g < end && g / 32 == wi; ++g) {
        const unsigned sh = unsigned(2 * (g % 32));
        const uint64_t code = !alloc ? kFree : g == first ? kStart : kRest;
        word = (word & ~(uint64_t{3} << sh)) | (code << sh);
      }
      __atomic_store_n(&w[wi], word, __ATOMIC_RELAXED);
    }
  }

  // Length in granules of the object whose first granule is g; 0 when g is
  // not an object's first granule. Lock-free for a live object.
  size_t LengthAt(size_t g) const {
    if (g >= kGranules || Code(g) != kStart) return 0;
    size_t n = 1;
    while (g + n < kGranules && Code(g + n) == kRest) ++n;
    return n;
  }

  // Bit j of out[i]: granule 64 * i + j is free. Pool lock held.
  void FreeMask(uint64_t (&out)[kGranules / 64]) const {
    for (size_t i = 0; i < kGranules / 64; ++i) {
      out[i] = ~(EvenBits(w[2 * i]) | (EvenBits(w[2 * i + 1]) << 32));
    }
  }

  // The 32 even bits of x (granules' "in use" bits), packed.
  static uint64_t EvenBits(uint64_t x) {
    x &= 0x5555555555555555ull;
    x = (x | (x >> 1)) & 0x3333333333333333ull;
    x = (x | (x >> 2)) & 0x0f0f0f0f0f0f0f0full;
    x = (x | (x >> 4)) & 0x00ff00ff00ff00ffull;
    x = (x | (x >> 8)) & 0x0000ffff0000ffffull;
    x = (x | (x >> 16)) & 0x00000000ffffffffull;
    return x;
  }
};
static_assert(sizeof(MixedMap) == 64, "one map per cache line");

// A span's free granules as a bit mask (FreeMask), and the runs in it: the
// first that holds an object at an alignment (Find), the longest (Longest,
// which picks the span's list in the pool).
struct FreeRuns {
  uint64_t mask[MixedMap::kGranules / 64];

  bool IsFree(size_t g) const { return (mask[g / 64] >> (g % 64)) & 1; }
  // The first free granule at or after g (kGranules if none).
  size_t NextFree(size_t g) const {
    while (g < MixedMap::kGranules) {
      uint64_t m = mask[g / 64] >> (g % 64);
      if (m != 0) return g + size_t(__builtin_ctzll(m));
      g = AlignUp(g + 1, 64);
    }
    return MixedMap::kGranules;
  }
  // The first granule at or after g that is in use (kGranules if none).
  size_t NextUsed(size_t g) const {
    while (g < MixedMap::kGranules) {
      uint64_t m = ~mask[g / 64] >> (g % 64);
      if (m != 0) {
        size_t r = g + size_t(__builtin_ctzll(m));
        return r < MixedMap::kGranules ? r : MixedMap::kGranules;
      }
      g = AlignUp(g + 1, 64);
    }
    return MixedMap::kGranules;
  }
  // The first granule at or after `from` of a run of `len` free granules
  // starting at a multiple of `align` (granules), or MixedMap::kGranules.
  size_t Find(size_t from, size_t len, size_t align) const {
    for (size_t g = NextFree(from); g < MixedMap::kGranules;) {
      const size_t end = NextUsed(g);
      const size_t at = AlignUp(g, align);
      if (at + len <= end) return at;
      g = NextFree(end);
    }
    return MixedMap::kGranules;
  }
  size_t Longest() const {
    size_t best = 0;
    for (size_t g = NextFree(0); g < MixedMap::kGranules;) {
      const size_t end = NextUsed(g);
      if (end - g > best) best = end - g;
      g = NextFree(end);
    }
    return best;
  }
  void Take(size_t g, size_t len) {
    for (size_t i = g; i < g + len; ++i) mask[i / 64] &= ~(uint64_t{1} << (i % 64));
  }
};

struct MixedStats {
  uint64_t spans = 0;         // spans in the pool now
  uint64_t used_bytes = 0;    // bytes of their objects (handed out or cached)
  uint64_t free_bytes = 0;    // bytes free in them
  uint64_t adopted = 0;       // spans taken over since start
  uint64_t released = 0;      // spans given back to the page heap, emptied
  uint64_t carved = 0;        // objects carved from free runs
};

template <class Os>
class MixedPool {
 public:
  // A class hands spans over only while this much of it is free in its own
  // spans (and at least half of them); see CentralList.
  static constexpr size_t kMinFreeBytes = size_t{4} << 20;
  // Classes up to this size carve from the pool: a larger object rarely
  // finds a free run in a page, and each try scans one.
  static constexpr size_t kMaxObject = 1024;
  // Spans looked at per Carve (per group of lists: see Carve) before the
  // caller takes a new span.
  static constexpr unsigned kScanLimit = 16;

  constexpr MixedPool() = default;
  void Bind(PageMap<Os>* map, MetaArena<Os>* arena) {
    map_ = map;
    arena_ = arena;
  }
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  // Whether some span has a free run (a hint, read without the lock).
  bool HasRoom() const { return spans_with_room_.load(std::memory_order_relaxed) != 0; }

  // Takes over s: a one-page span of objects of `size` bytes, on no list of
  // its class, whose objects not on s->freelist are out (handed out, or in
  // a cache). Called by the span's central list under its lock. False, with
  // s unchanged, when there is no memory for the map.
  bool Adopt(Span* s, size_t size) {
    MixedMap* m;
    {
      LockGuard g(lock_);
      m = maps_.New(*arena_);
    }
    if (m == nullptr) return false;
    const size_t len = size / kGranule;
    size_t used = 0;
    for (uintptr_t o = s->start; o + size <= s->bump; o += size) {
      m->Mark((o - s->start) / kGranule, len, true);
      used += len;
    }
    for (void* f = s->freelist; f != nullptr; f = *static_cast<void**>(f)) {
      m->Mark((uintptr_t(f) - s->start) / kGranule, len, false);
      used -= len;
    }
    s->freelist = m;
    s->used = uint32_t(used);
    s->cls = 0;
    s->on_list = 0;
    // Frees read the class byte, then the state: state first.
    s->StoreStateRelease(SpanState::kMixed);
    map_->ClearClass(s->start, s->pages());
    LockGuard g(lock_);
    ++spans_;
    ++adopted_;
    used_granules_ += used;
    List(s, *m);
    return true;
  }

  // Carves up to n objects of `size` bytes (a class size) from free runs,
  // chained through their first words into *head..*tail. Returns how many.
  int Carve(size_t size, int n, void** head, void** tail) {
    const size_t len = size / kGranule;
    size_t align = (size & (~size + 1)) / kGranule;
    if (align > MixedMap::kGranules) align = MixedMap::kGranules;
    Chain c{n};
    LockGuard g(lock_);
    // Best fit: the spans whose longest run is the shortest that holds the
    // object. Runs of len to len + align - 2 granules may be too short once
    // aligned: they get a scan of their own, so that spans that do not fit
    // cannot use up the one of the runs that surely do.
    const size_t sure = len + align - 1;
    if (align > 1) ScanLists(len, sure - 1, len, align, c);
    ScanLists(sure, MixedMap::kGranules, len, align, c);
    if (c.last != nullptr) *static_cast<void**>(c.last) = nullptr;
    *head = c.first;
    *tail = c.last;
    return c.got;
  }

  // o, an object of `size` bytes in mixed span s, is free again. The
  // caller is the central list of o's class, under its lock. True when the
  // span is now empty: it left the pool, and the caller gives it back to
  // the page heap before its own lock is dropped.
  bool Free(Span* s, void* o, size_t size) {
    LockGuard g(lock_);
    // No object of that size there (ObjectBytes also finds no map when the
    // span emptied a moment ago and this is a second copy of its last one).
    if (STRATA_UNLIKELY(ObjectBytes(s, uintptr_t(o)) != size)) {
      Fatalf("double free of %p (a %zu-byte object in a mixed span)", o, size);
    }
    const size_t g0 = (uintptr_t(o) - s->start) / kGranule;
    const size_t len = size / kGranule;
    MixedMap& m = Map(s);
    m.Mark(g0, len, false);
    s->used -= uint32_t(len);
    used_granules_ -= len;
    Unlist(s);
    if (s->used == 0) {
      --spans_;
      ++released_;
      s->freelist = nullptr;  // first: a racing lock-free reader sees no map rather than a recycled one
      s->bump = 0;
      maps_.Delete(&m);
      return true;
    }
    List(s, m);
    return false;
  }

  // Bytes of the object that starts at p in mixed span s (0: p is not an
  // object's start). Lock-free; exact for a live object.
  static size_t ObjectBytes(const Span* s, uintptr_t p) {
    const MixedMap* m = static_cast<const MixedMap*>(s->freelist);
    // No map: the span just emptied and is on its way to the page heap.
    if (m == nullptr || (p - s->start) % kGranule != 0) return 0;
    return m->LengthAt((p - s->start) / kGranule) * kGranule;
  }

  // Whether p lies inside an object of mixed span s but not at its start
  // (for the message when ObjectBytes finds no object there). Lock-free.
  static bool IsInterior(const Span* s, uintptr_t p) {
    const MixedMap* m = static_cast<const MixedMap*>(s->freelist);
    if (m == nullptr) return false;
    return (p - s->start) % kGranule != 0 || m->Code((p - s->start) / kGranule) == MixedMap::kRest;
  }

  MixedStats Stats() {
    MixedStats st;
    LockGuard g(lock_);
    st.spans = spans_;
    st.used_bytes = used_granules_ * kGranule;
    st.free_bytes = spans_ * kPageSize - st.used_bytes;
    st.adopted = adopted_;
    st.released = released_;
    st.carved = carved_;
    return st;
  }

  // Walks every span in the pool: on the list of its longest free run, its
  // counts matching its map. For tests.
  bool Check(const char** why) {
    LockGuard g(lock_);
    size_t spans = 0, used = 0;
    for (size_t b = 0; b < kLists; ++b) {
      if (lists_[b].empty() == ((listed_[b / 64] >> (b % 64)) & 1)) return Fail(why, "list's bit is wrong");
      for (Span* s = lists_[b].head; s != nullptr; s = s->next) {
        const MixedMap& m = Map(s);
        FreeRuns runs;
        m.FreeMask(runs.mask);
        size_t busy = 0;
        for (size_t i = 0; i < MixedMap::kGranules; ++i) busy += !runs.IsFree(i);
        if (s->state != SpanState::kMixed) return Fail(why, "span in the pool is not mixed");
        if (busy != s->used) return Fail(why, "span's used granules do not match its map");
        if (runs.Longest() != s->bump) return Fail(why, "span's longest run is stale");
        if (s->bump != b || s->on_list != 1) return Fail(why, "span on the wrong list");
        if (m.Code(0) == MixedMap::kRest) return Fail(why, "an object starts before the span");
        ++spans;
        used += busy;
      }
    }
    if (spans != spans_) return Fail(why, "span count wrong");
    if (used != used_granules_) return Fail(why, "used granule count wrong");
    return true;
  }

  SpinLock& lock() { return lock_; }

 private:
  // One list per length of the longest free run, 0 to 256 granules, and a
  // bit per list that is not empty.
  static constexpr size_t kLists = MixedMap::kGranules + 1;
  static constexpr size_t kListedWords = (kLists + 63) / 64;
  // The first non-empty list from `run` up (kLists if none).
  size_t NextListed(size_t run) const {
    while (run < kLists) {
      const uint64_t m = listed_[run / 64] >> (run % 64);
      if (m != 0) return run + size_t(__builtin_ctzll(m));
      run = AlignUp(run + 1, 64);
    }
    return kLists;
  }
  static bool Fail(const char** why, const char* w) {
    *why = w;
    return false;
  }
  static MixedMap& Map(Span* s) { return *static_cast<MixedMap*>(s->freelist); }
  static const MixedMap& Map(const Span* s) { return *static_cast<const MixedMap*>(s->freelist); }

  // Objects carved so far by one Carve call, chained through first words.
  struct Chain {
    int want;
    int got = 0;
    void* first = nullptr;
    void* last = nullptr;
    void Append(void* o) {
      if (last == nullptr) first = o; else *static_cast<void**>(last) = o;
      last = o;
      ++got;
    }
  };

  // Carves from spans whose longest run is [from, to] granules, looking at
  // kScanLimit spans at most.
  void ScanLists(size_t from, size_t to, size_t len, size_t align, Chain& c) {
    unsigned looked = 0;
    for (size_t b = NextListed(from); b <= to && c.got < c.want && looked < kScanLimit; b = NextListed(b + 1)) {
      for (Span* s = lists_[b].head; s != nullptr && c.got < c.want && looked < kScanLimit; ++looked) {
        Span* next = s->next;  // s may move to another list (or this one's head)
        CarveFrom(s, len, align, c);
        s = next;
      }
    }
  }

  // As many objects of len granules as s holds, up to what c still wants.
  void CarveFrom(Span* s, size_t len, size_t align, Chain& c) {
    MixedMap& m = Map(s);
    FreeRuns runs;
    m.FreeMask(runs.mask);
    size_t took = 0;
    for (size_t at = runs.Find(0, len, align); at < MixedMap::kGranules && c.got < c.want;
         at = runs.Find(at + len, len, align)) {
      m.Mark(at, len, true);
      runs.Take(at, len);
      c.Append(reinterpret_cast<void*>(s->start + at * kGranule));
      ++took;
    }
    if (took == 0) return;
    s->used += uint32_t(took * len);
    used_granules_ += took * len;
    carved_ += took;
    Unlist(s);
    List(s, runs);
  }

  void List(Span* s, const MixedMap& m) {
    FreeRuns runs;
    m.FreeMask(runs.mask);
    List(s, runs);
  }
  // s->bump keeps the span's longest free run, in granules.
  void List(Span* s, const FreeRuns& runs) {
    s->bump = runs.Longest();
    lists_[s->bump].Push(s);
    listed_[s->bump / 64] |= uint64_t{1} << (s->bump % 64);
    s->on_list = 1;
    if (s->bump != 0) spans_with_room_.fetch_add(1, std::memory_order_relaxed);
  }
  void Unlist(Span* s) {
    if (s->on_list == 0) return;
    SpanList& l = lists_[s->bump];
    l.Remove(s);
    if (l.empty()) listed_[s->bump / 64] &= ~(uint64_t{1} << (s->bump % 64));
    s->on_list = 0;
    if (s->bump != 0) spans_with_room_.fetch_sub(1, std::memory_order_relaxed);
  }

  SpinLock lock_;
  bool enabled_ = false;
  std::atomic<size_t> spans_with_room_{0};
  SpanList lists_[kLists];
  uint64_t listed_[kListedWords] = {};
  RecordPool<MixedMap, Os> maps_;
  PageMap<Os>* map_ = nullptr;
  MetaArena<Os>* arena_ = nullptr;
  size_t spans_ = 0;
  size_t used_granules_ = 0;
  uint64_t adopted_ = 0;
  uint64_t released_ = 0;
  uint64_t carved_ = 0;
};

}  // namespace strata
