// fuzz_page_heap: the buddy page heap (alloc/back/page_heap.h) on a FakeOs,
// driven by operation sequences decoded from the fuzzer's input.
//
// Input layout (every read past the end yields 0):
//   byte 0   configuration: bit 0 brk source, bits 1-3 decay time,
//            bit 4 lazy release (MADV_FREE)
//   byte 1   size of the fake OS region (8 MiB steps, 8..128 MiB)
//   byte 2   size of the fake break (4 MiB steps), when brk is on
//   then     operations, one selector byte each plus arguments:
//     alloc    order (biased to small orders), state/class
//     free     index of a live block
//     idle     clock advance, then ReleaseIdle()
//     all      ReleaseAll()
//     fail     make the fake OS's Map fail after 0..3 more successes,
//              or lift that limit (covers the out-of-metadata paths)
//     unmap    UnmapFreeChunks() (what an allocation failure does)
//     inside   the next 0..7 allocs and frees of the input run inside the
//              fake OS's Release, one per madvise: while the heap gives
//              pages back with its lock dropped, as another thread would
//
// After every operation: PageHeap::Check() (buddy, page-map and accounting
// invariants), no bad unmap/release seen by the fake OS, page counts that
// add up, and the stats' used pages equal to the pages of the live blocks.
// Every block handed out must be aligned to its order, inside memory the
// fake OS gave out, mapped page by page to its span with its class, and
// must not overlap any live block; its first and last words are marked and
// verified when it is freed and after every release. When the input ends,
// every live block is freed and every chunk must have merged back into one
// free block of the largest order. Any violation aborts.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <functional>
#include <map>
#include <vector>

#include <new>

#include "alloc/back/page_heap.h"
#include "alloc/middle/size_class.h"
#include "tests/unit/fake_os.h"
#include "tests/fuzz/fuzz_common.h"

const char* const kFuzzTarget = "fuzz_page_heap";

namespace {

using strata::kChunkSize;
using strata::kMaxOrder;
using strata::kNumClasses;
using strata::kNumOrders;
using strata::kPageShift;
using strata::kPageSize;
using strata::Order;
using strata::Span;
using strata::SpanState;
using strata_test::FakeOs;


// The parts of tests/unit/fake_heap.h's FakeHeap (a page heap with its page
// map and metadata arena on a FakeOs), except that the page map's 2 MiB
// root is placed in one buffer that every run reuses: a fresh `new` of it
// per run costs ~500 page faults, which was most of the fuzzer's time.
struct FuzzHeap {
  using Map = strata::PageMap<FakeOs>;
  FuzzHeap(size_t bytes, size_t brk_bytes)
      : os(bytes, brk_bytes), map(new (Storage()) Map(&os)), arena(&os), heap(&os, map, &arena) {}
  ~FuzzHeap() { map->~Map(); }
  FuzzHeap(const FuzzHeap&) = delete;
  FuzzHeap& operator=(const FuzzHeap&) = delete;

  static void* Storage() {
    static void* buf = ::operator new(sizeof(Map));
    return buf;
  }

  FakeOs os;
  Map* map;
  strata::MetaArena<FakeOs> arena;
  strata::PageHeap<FakeOs> heap;
};

struct Live {
  Span* span;
  unsigned order;
  SpanState state;
  uint8_t cls;
  uint64_t mark;
};

constexpr size_t kMaxLive = 4096;

// Checking code gets no coverage instrumentation (PageHeap::Check is left
// out by coverage_ignorelist.txt): its loops are not what the fuzzer should
// steer by, and their traced comparisons were 80% of the run time.
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))

class Driver {
 public:
  Driver(size_t region, size_t brk, bool use_brk, int64_t decay, bool lazy)
      : h_(region, use_brk ? brk : 0) {
    h_.heap.set_use_brk(use_brk);
    h_.heap.set_decay_ms(decay);
    h_.heap.set_lazy_release(lazy);
  }

  void Alloc(unsigned order, SpanState state, uint8_t cls) {
    Span* s = h_.heap.Alloc(Order{order}, state, cls);
    if (s == nullptr) {
      // Out of memory is allowed only when the fake OS refused something.
      if (h_.os.map_failures == 0 && h_.os.brk_failures == 0) Die("Alloc(order %u) failed, but no Map failed", order);
      return;
    }
    uintptr_t start = s->start;
    size_t bytes = Order{order}.bytes();
    if (s->order != order || s->state != state || s->cls != cls) {
      Die("Alloc(order %u): span has order %u state %d class %u", order, s->order, int(s->state), s->cls);
    }
    uintptr_t chunk = strata::AlignDown(start, kChunkSize);
    if ((start - chunk) % bytes != 0) Die("block %#lx of order %u not aligned in its chunk", start, order);
    if (!h_.os.InRegion(reinterpret_cast<void*>(start)) && !h_.os.InBreak(reinterpret_cast<void*>(start))) {
      Die("block %#lx not from the fake OS", start);
    }
    if (!h_.os.InRegion(reinterpret_cast<void*>(start + bytes - 1)) &&
        !h_.os.InBreak(reinterpret_cast<void*>(start + bytes - 1))) {
      Die("block %#lx of order %u runs past the fake OS's memory", start, order);
    }
    CheckPages(s, order, cls);
    auto next = live_.lower_bound(start);
    if (next != live_.end() && next->first < start + bytes) {
      Die("block %#lx (order %u) overlaps live block %#lx", start, order, next->first);
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + Order{prev->second.order}.bytes() > start) {
        Die("block %#lx (order %u) overlaps live block %#lx", start, order, prev->first);
      }
    }
    Live b{s, order, state, cls, ++serial_ * 0x9e3779b97f4a7c15ull};
    Mark(start, b);
    live_.emplace(start, b);
    order_.push_back(start);
    live_pages_ += size_t{1} << order;
  }

  void Free(size_t index) {
    if (order_.empty()) return;
    index %= order_.size();
    uintptr_t start = order_[index];
    order_[index] = order_.back();
    order_.pop_back();
    auto it = live_.find(start);
    Live b = it->second;
    live_.erase(it);
    Verify(start, b);
    if (b.span->start != start || b.span->state != b.state) Die("live block %#lx: its span record changed", start);
    live_pages_ -= size_t{1} << b.order;
    h_.heap.Free(b.span);
  }

  void ReleaseIdle(uint32_t advance_ms) {
    h_.os.now_ms += advance_ms;
    h_.heap.ReleaseIdle();
    VerifyAll();
  }

  // `step` runs inside each of the next `n` madvise calls (not nested).
  void RunInsideReleases(unsigned n, std::function<void()> step) {
    inside_left_ = n;
    h_.os.on_release = [this, step](void*, size_t) {
      if (inside_left_ == 0 || inside_) return;
      if (h_.heap.lock().IsLocked()) Die("madvise with the page heap's lock held");
      inside_ = true;
      --inside_left_;
      ++inside_ran_;
      step();
      inside_ = false;
    };
  }

  void ReleaseAll() {
    const uint64_t ran = inside_ran_;
    h_.heap.ReleaseAll();
    VerifyAll();
    strata::PageHeapStats st = h_.heap.Stats();
    // (A block an allocation inside took back from the release list, and
    // freed again, may stay resident.)
    if (st.released_pages != st.free_pages && inside_ran_ == ran) {
      Die("after ReleaseAll: %lu of %lu free pages released", (unsigned long)st.released_pages,
          (unsigned long)st.free_pages);
    }
  }

  void SetMapsLeft(long n) { h_.os.maps_left = n; }

  void UnmapFreeChunks() {
    strata::PageHeapStats before = h_.heap.Stats();
    size_t unmaps = h_.os.unmaps;
    size_t bytes = h_.heap.UnmapFreeChunks();
    strata::PageHeapStats after = h_.heap.Stats();
    if (bytes != (before.chunks - after.chunks) * kChunkSize || bytes != before.mmap_bytes - after.mmap_bytes) {
      Die("UnmapFreeChunks: %zu bytes, but %lu -> %lu chunks", bytes, (unsigned long)before.chunks,
          (unsigned long)after.chunks);
    }
    if (h_.os.unmaps - unmaps != bytes / kChunkSize) Die("UnmapFreeChunks: %zu bytes in %zu unmaps", bytes,
                                                        h_.os.unmaps - unmaps);
    if (after.free_blocks[kMaxOrder] != 0 && after.mmap_bytes != 0) {
      // Whatever top-order free block is left must be a brk chunk.
      if (after.brk_bytes == 0) Die("UnmapFreeChunks left a whole free mmap chunk");
    }
    VerifyAll();
  }

  // Every invariant, after every step.
  NO_COVERAGE void Check(const char* after) {
    const char* why = "";
    if (!h_.heap.Check(&why)) Die("PageHeap::Check after %s: %s", after, why);
    if (h_.os.bad_unmaps != 0) Die("after %s: the heap unmapped memory it did not map", after);
    if (h_.os.bad_releases != 0) Die("after %s: the heap released memory outside the fake OS", after);
    if (h_.os.dead_releases != 0) Die("after %s: the heap released memory that was not mapped", after);
    strata::PageHeapStats st = h_.heap.Stats();
    if (st.used_pages != live_pages_) {
      Die("after %s: stats say %lu used pages, the live blocks have %zu", after, (unsigned long)st.used_pages,
          live_pages_);
    }
    uint64_t chunk_pages = st.chunks << kMaxOrder;
    if (st.free_pages + st.used_pages != chunk_pages) {
      Die("after %s: %lu free + %lu used pages != %lu pages in %lu chunks", after, (unsigned long)st.free_pages,
          (unsigned long)st.used_pages, (unsigned long)chunk_pages, (unsigned long)st.chunks);
    }
    if (st.released_pages > st.free_pages) Die("after %s: more released pages than free pages", after);
    if (st.mmap_bytes + st.brk_bytes != st.chunks * kChunkSize) Die("after %s: chunk bytes do not add up", after);
  }

  // Frees everything; the heap must then be whole chunks again.
  void Drain() {
    while (!order_.empty()) {
      Free(order_.size() - 1);
      Check("drain");
    }
    strata::PageHeapStats st = h_.heap.Stats();
    for (unsigned k = 0; k < kMaxOrder; ++k) {
      if (st.free_blocks[k] != 0) Die("everything freed, but %lu free blocks of order %u remain",
                                      (unsigned long)st.free_blocks[k], k);
    }
    if (st.free_blocks[kMaxOrder] != st.chunks) {
      Die("everything freed: %lu chunks but %lu free blocks of the largest order", (unsigned long)st.chunks,
          (unsigned long)st.free_blocks[kMaxOrder]);
    }
  }

  size_t live() const { return order_.size(); }

 private:
  NO_COVERAGE void CheckPages(Span* s, unsigned order, uint8_t cls) {
    for (size_t i = 0; i < (size_t{1} << order); ++i) {
      uintptr_t p = s->start + (i << kPageShift);
      if (h_.map->SpanOf(p) != s) Die("page %zu of block %#lx maps to another span", i, s->start);
      if (h_.map->ClassOf(p + 17) != cls) {
        Die("page %zu of block %#lx has class %zu, not %u", i, s->start, h_.map->ClassOf(p + 17), cls);
      }
    }
  }
  static void Mark(uintptr_t start, const Live& b) {
    uint64_t* first = reinterpret_cast<uint64_t*>(start);
    uint64_t* last = reinterpret_cast<uint64_t*>(start + Order{b.order}.bytes()) - 1;
    *first = b.mark ^ start;
    *last = ~b.mark ^ start;
  }
  NO_COVERAGE static void Verify(uintptr_t start, const Live& b) {
    const uint64_t* first = reinterpret_cast<const uint64_t*>(start);
    const uint64_t* last = reinterpret_cast<const uint64_t*>(start + Order{b.order}.bytes()) - 1;
    if (*first != (b.mark ^ start) || *last != (~b.mark ^ start)) {
      Die("live block %#lx (order %u) was overwritten or released", start, b.order);
    }
  }
  NO_COVERAGE void VerifyAll() {
    for (const auto& [start, b] : live_) Verify(start, b);
  }

  FuzzHeap h_;
  unsigned inside_left_ = 0;
  bool inside_ = false;
  uint64_t inside_ran_ = 0;
  std::map<uintptr_t, Live> live_;
  std::vector<uintptr_t> order_;  // live block starts, for "free the i-th"
  size_t live_pages_ = 0;
  uint64_t serial_ = 0;
};

unsigned DecodeOrder(uint8_t b) {
  if (b < 150) return b % 4;             // 1..8 pages: most spans
  if (b < 220) return 4 + b % 4;         // 16..128 pages
  return 8 + b % (kNumOrders - 8);       // up to a whole chunk
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  uint8_t cfg = in.u8();
  static constexpr int64_t kDecays[8] = {0, 1, 10, 100, 1000, -1, 5, 50};
  bool use_brk = cfg & 1;
  int64_t decay = kDecays[(cfg >> 1) & 7];
  bool lazy = (cfg >> 4) & 1;
  size_t region = (size_t{8} << 20) * (1 + in.u8() % 16);
  size_t brk = (size_t{4} << 20) * (1 + in.u8() % 8);

  Driver d(region, brk, use_brk, decay, lazy);
  d.Check("construction");
  // One alloc or free decoded from the input, for "inside".
  auto inside_step = [&in, &d] {
    uint8_t b = in.u8();
    if (b & 1) {
      if (d.live() < kMaxLive) d.Alloc(DecodeOrder(in.u8()), SpanState::kSmall, 1);
      d.Check("alloc inside a release");
    } else {
      d.Free(in.u16());
      d.Check("free inside a release");
    }
  };
  while (in.more()) {
    uint8_t op = in.u8();
    switch (op % 12) {
      case 0:
      case 1:
      case 2:
      case 3: {
        unsigned order = DecodeOrder(in.u8());
        uint8_t c = in.u8();
        if (d.live() >= kMaxLive) break;
        if (c & 1) {
          d.Alloc(order, SpanState::kPageObject, 0);
        } else {
          d.Alloc(order, SpanState::kSmall, uint8_t(1 + (c >> 1) % (kNumClasses - 1)));
        }
        d.Check("alloc");
        break;
      }
      case 4:
      case 5:
      case 6:
        d.Free(in.u16());
        d.Check("free");
        break;
      case 7:
        d.ReleaseIdle(uint32_t(in.u16()) % 3000);
        d.Check("release idle");
        break;
      case 8:
        d.ReleaseAll();
        d.Check("release all");
        break;
      case 9: {
        uint8_t v = in.u8();
        d.SetMapsLeft(v < 64 ? long(v % 4) : -1);
        break;
      }
      case 10:
        d.UnmapFreeChunks();
        d.Check("unmap free chunks");
        break;
      case 11:
        d.RunInsideReleases(in.u8() % 8, inside_step);
        break;
    }
  }
  d.RunInsideReleases(0, nullptr);
  d.SetMapsLeft(-1);
  d.Drain();
  d.Check("drain");
  d.ReleaseAll();
  d.Check("final release all");
  return 0;
}
