// fuzz_allocator: the whole allocator through the strata_* C API
// (include/strata/strata.h), driven by operation sequences decoded from the
// fuzzer's input. The allocator is process-global, so its state carries
// over from one input to the next (as it would in a program); every input
// frees what it allocated before it returns.
//
// Input: a sequence of operations, one selector byte each plus arguments
// (reads past the end yield 0):
//   malloc, calloc (n x size, zero checked; sometimes an n x size that
//   overflows, which must fail), realloc (of a slot, possibly empty, to a
//   new size, possibly 0), aligned_alloc (power-of-two alignments 1 B ..
//   1 MiB), free, free_sized (with the requested size or anything up to the
//   usable size), usable_size, strata_release, strata_stats_json.
// Sizes go from 0 to 4 MiB, biased to the class boundaries that matter:
// tiny, small, around 4 KiB pages, around the 64 KiB small/large
// threshold, and large.
//
// Checks: every block is at least 16-aligned (or as aligned as asked), its
// usable size is at least the request, it does not overlap any live block,
// and all of its usable bytes are filled with a pattern derived from the
// block's id, which is verified in full before the block is freed or
// reallocated; realloc must keep the first min(old usable, new size) bytes.
// calloc's bytes must be zero. Live blocks are at most kSlots and kMaxBytes
// in all. Any violation aborts (libFuzzer then saves the input).
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <map>

#include "strata/strata.h"
#include "tests/fuzz/fuzz_common.h"

const char* const kFuzzTarget = "fuzz_allocator";

namespace {

constexpr size_t kSlots = 64;
constexpr size_t kMaxBytes = size_t{48} << 20;


// The byte loops below skip coverage instrumentation and ASan checks (they
// only touch memory strata handed out, which ASan does not track): with
// them, filling and checking were over 80% of the fuzzer's time.
#define NO_INSTRUMENT __attribute__((no_sanitize("coverage", "address")))

// The pattern: 8-byte words base(id) + index * kStep, so a block copied to
// the wrong offset, or bytes of another block, show. Cheap enough to fill
// and check megabytes per input.
constexpr uint64_t kStep = 0xd6e8feb86659fd93ull;
inline uint64_t Base(uint64_t id) { return (id + 1) * 0x9e3779b97f4a7c15ull; }
inline uint8_t PatternByte(uint64_t id, size_t i) {
  return uint8_t((Base(id) + (i / 8) * kStep) >> (8 * (i % 8)));
}

NO_INSTRUMENT void Fill(uint8_t* p, size_t from, size_t to, uint64_t id) {
  size_t i = from;
  for (; i < to && i % 8 != 0; ++i) p[i] = PatternByte(id, i);
  uint64_t w = Base(id) + (i / 8) * kStep;
  for (; i + 8 <= to; i += 8, w += kStep) memcpy(p + i, &w, 8);
  for (; i < to; ++i) p[i] = PatternByte(id, i);
}

// Index of the first byte in [0, n) that does not match, or SIZE_MAX.
NO_INSTRUMENT size_t FirstBad(const uint8_t* p, size_t n, uint64_t id) {
  size_t i = 0;
  uint64_t w = Base(id);
  for (; i + 8 <= n; i += 8, w += kStep) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    if (v != w) break;
  }
  for (; i < n; ++i) {
    if (p[i] != PatternByte(id, i)) return i;
  }
  return SIZE_MAX;
}

// Index of the first nonzero byte in [0, n), or SIZE_MAX.
NO_INSTRUMENT size_t FirstNonzero(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    if (v != 0) break;
  }
  for (; i < n; ++i) {
    if (p[i] != 0) return i;
  }
  return SIZE_MAX;
}

struct Block {
  uint8_t* p = nullptr;
  size_t req = 0;
  size_t usable = 0;
  uint64_t id = 0;
};

class Driver {
 public:
  ~Driver() {
    for (size_t i = 0; i < kSlots; ++i) Free(i, false, 0);
    if (!ranges_.empty() || bytes_ != 0) Die("bookkeeping: %zu ranges, %zu bytes left", ranges_.size(), bytes_);
  }

  bool HasRoom(size_t size) const { return size <= kMaxBytes && bytes_ + size <= kMaxBytes; }

  void Malloc(size_t slot, size_t size) {
    Free(slot, false, 0);
    if (!HasRoom(size)) return;
    void* p = strata_malloc(size);
    Adopt(slot, p, size, 16, "malloc");
  }

  void Calloc(size_t slot, size_t n, size_t each) {
    Free(slot, false, 0);
    size_t total = n * each;
    if (!HasRoom(total)) return;
    uint8_t* p = static_cast<uint8_t*>(strata_calloc(n, each));
    if (p != nullptr) {
      size_t i = FirstNonzero(p, total);
      if (i != SIZE_MAX) Die("calloc(%zu, %zu) = %p: byte %zu is %#x, not 0", n, each, (void*)p, i, p[i]);
    }
    Adopt(slot, p, total, 16, "calloc");
  }

  void CallocOverflow(size_t n, size_t each) {
    void* p = strata_calloc(n, each);
    if (p != nullptr) Die("calloc(%zu, %zu) overflows but returned %p", n, each, p);
  }

  void AlignedAlloc(size_t slot, size_t align, size_t size) {
    Free(slot, false, 0);
    if (!HasRoom(size + align)) return;
    void* p = strata_aligned_alloc(align, size);
    Adopt(slot, p, size, align < 16 ? 16 : align, "aligned_alloc");
  }

  void Realloc(size_t slot, size_t size) {
    Block& b = slots_[slot];
    if (b.p == nullptr) {
      if (!HasRoom(size)) return;
      void* p = strata_realloc(nullptr, size);
      if (size == 0 && p == nullptr) return;  // allowed either way for NULL
      Adopt(slot, p, size, 16, "realloc(NULL)");
      return;
    }
    Verify(b, "realloc");
    if (size == 0) {
      Forget(b);
      void* p = strata_realloc(b.p, 0);
      if (p != nullptr) Die("realloc(%p, 0) returned %p, not NULL", (void*)b.p, p);
      b = Block{};
      return;
    }
    if (size > b.usable && !HasRoom(size)) return;  // may need a copy of both
    Forget(b);
    uint8_t* q = static_cast<uint8_t*>(strata_realloc(b.p, size));
    if (q == nullptr) Die("realloc(%p, %zu) failed", (void*)b.p, size);
    size_t keep = b.usable < size ? b.usable : size;
    size_t bad = FirstBad(q, keep, b.id);
    if (bad != SIZE_MAX) {
      Die("realloc(%p [usable %zu], %zu) = %p lost byte %zu of the old contents", (void*)b.p, b.usable, size,
          (void*)q, bad);
    }
    uint64_t id = b.id;
    b = Block{};
    Place(slot, q, size, 16, "realloc", id, keep);
  }

  void Free(size_t slot, bool sized, uint32_t extra) {
    Block& b = slots_[slot];
    if (b.p == nullptr) return;
    Verify(b, sized ? "free_sized" : "free");
    Forget(b);
    if (sized) {
      // Any size from the request up to the usable size is valid.
      size_t span = b.usable - b.req;
      strata_free_sized(b.p, b.req + (span == 0 ? 0 : extra % (span + 1)));
    } else {
      strata_free(b.p);
    }
    b = Block{};
  }

  void UsableSize(size_t slot) {
    Block& b = slots_[slot];
    if (b.p == nullptr) {
      if (strata_usable_size(nullptr) != 0) Die("usable_size(NULL) != 0");
      return;
    }
    size_t u = strata_usable_size(b.p);
    if (u != b.usable) Die("usable_size(%p) changed from %zu to %zu", (void*)b.p, b.usable, u);
    Verify(b, "usable_size");
  }

  void Release() { strata_release(); }

  void StatsJson() {
    char buf[256];
    size_t need = strata_stats_json(buf, sizeof buf);
    if (strnlen(buf, sizeof buf) == sizeof buf) Die("stats_json: no NUL in a short buffer");
    if (need < 2) Die("stats_json: needs %zu bytes?", need);
    // Numbers (time, resident bytes) may grow a digit or two in between.
    size_t len = need + 256;
    char* big = static_cast<char*>(malloc(len));  // the harness's malloc, not strata's
    size_t again = strata_stats_json(big, len);
    if (again >= len) Die("stats_json: %zu bytes, then %zu", need, again);
    while (again > 0 && (big[again - 1] == '\n' || big[again - 1] == ' ')) --again;
    if (strlen(big) < again || again < 2 || big[0] != '{' || big[again - 1] != '}') {
      Die("stats_json: not one JSON object");
    }
    free(big);
  }

 private:
  void Adopt(size_t slot, void* p, size_t size, size_t align, const char* op) {
    if (p == nullptr) Die("%s(%zu) failed (align %zu)", op, size, align);
    Place(slot, static_cast<uint8_t*>(p), size, align, op, ++next_id_, 0);
  }

  // Records a new block whose first `valid` bytes already hold its pattern.
  void Place(size_t slot, uint8_t* p, size_t size, size_t align, const char* op, uint64_t id, size_t valid) {
    if (uintptr_t(p) % align != 0) Die("%s(%zu): %p is not aligned to %zu", op, size, (void*)p, align);
    size_t usable = strata_usable_size(p);
    if (usable < size) Die("%s(%zu): %p has usable size %zu", op, size, (void*)p, usable);
    if (usable == 0) Die("%s(%zu): %p has usable size 0", op, size, (void*)p);
    auto next = ranges_.lower_bound(uintptr_t(p));
    if (next != ranges_.end() && next->first < uintptr_t(p) + usable) {
      Die("%s(%zu): [%p, +%zu) overlaps a live block at %#lx", op, size, (void*)p, usable, next->first);
    }
    if (next != ranges_.begin() && std::prev(next)->second > uintptr_t(p)) {
      Die("%s(%zu): [%p, +%zu) overlaps a live block at %#lx", op, size, (void*)p, usable, std::prev(next)->first);
    }
    ranges_.emplace(uintptr_t(p), uintptr_t(p) + usable);
    bytes_ += usable;
    Fill(p, valid, usable, id);
    slots_[slot] = Block{p, size, usable, id};
  }

  void Forget(const Block& b) {
    ranges_.erase(uintptr_t(b.p));
    bytes_ -= b.usable;
  }

  static void Verify(const Block& b, const char* op) {
    size_t bad = FirstBad(b.p, b.usable, b.id);
    if (bad != SIZE_MAX) {
      Die("before %s: block %p (requested %zu, usable %zu) has a wrong byte at offset %zu", op, (void*)b.p, b.req,
          b.usable, bad);
    }
  }

  Block slots_[kSlots];
  std::map<uintptr_t, uintptr_t> ranges_;  // live [start, end)
  size_t bytes_ = 0;
  uint64_t next_id_ = 0;
};

// Sizes from 0 to 4 MiB, biased to where the allocator changes paths, and
// mostly small (big blocks cost the fuzzer most of its time filling and
// checking them).
size_t DecodeSize(Reader& in) {
  uint8_t kind = in.u8();
  switch (kind % 16) {
    case 0:
    case 1: return in.u8() % 33;                                  // 0..32
    case 2:
    case 3:
    case 4:
    case 5: return in.u16() % 1025;                               // small classes
    case 6:
    case 7: return in.u16() % 16385;                              // up to 16 KiB
    case 8: {                                                     // around pages
      size_t pages = 1 + in.u8() % 16;
      return (pages << 12) + in.u8() % 3 - 1;
    }
    case 9:
    case 10: return in.u24() % (64 << 10) + 1;                    // any small
    case 11: return (size_t{64} << 10) - 64 + in.u8();            // the small/large threshold
    case 12: return (size_t{64} << 10) + in.u24() % (960 << 10);  // large up to 1 MiB
    case 13: {                                                    // up to ~4 MiB
      size_t mib = in.u8() % 5;
      return mib << 20 | in.u16();
    }
    case 14: return size_t{1} << (in.u8() % 22);                  // powers of two up to 2 MiB
    default: return size_t{1} << (in.u8() % 17);                  // powers of two up to 64 KiB
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  Driver d;
  while (in.more()) {
    uint8_t op = in.u8();
    size_t slot = in.u8() % kSlots;
    switch (op % 16) {
      case 0:
      case 1:
      case 2:
        d.Malloc(slot, DecodeSize(in));
        break;
      case 3: {
        size_t total = DecodeSize(in);
        size_t n = 1 + in.u8() % 8;
        d.Calloc(slot, n, total / n);
        break;
      }
      case 4: {
        // n * each > SIZE_MAX, either way round.
        uint16_t v = in.u16();
        size_t each = 2 + v % 4096;
        size_t n = SIZE_MAX / each + 1 + (v >> 12);
        if (v & 1) d.CallocOverflow(n, each); else d.CallocOverflow(each, n);
        break;
      }
      case 5:
      case 6:
        d.Realloc(slot, DecodeSize(in));
        break;
      case 7:
        d.Realloc(slot, 0);
        break;
      case 8: {
        size_t align = size_t{1} << (in.u8() % 21);  // 1 B .. 1 MiB
        d.AlignedAlloc(slot, align, DecodeSize(in));
        break;
      }
      case 9:
      case 10:
      case 11:
        d.Free(slot, false, 0);
        break;
      case 12:
        d.Free(slot, true, in.u16());
        break;
      case 13:
        d.UsableSize(slot);
        break;
      case 14:
        if (in.u8() < 16) d.Release();
        break;
      case 15:
        if (in.u8() < 32) d.StatsJson();
        break;
    }
  }
  return 0;
}
