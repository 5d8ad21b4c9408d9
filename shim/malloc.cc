// The C malloc family, exported under glibc's names (and glibc's own
// __libc_* aliases) so that LD_PRELOAD=libstrata.so, or linking it, routes
// every allocation of the process through strata. This file is the only
// place that knows glibc's conventions: errno, EINVAL vs ENOMEM, the odd
// alignments memalign accepts, mallinfo's fields.
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc/stats/stats.h"
#include "alloc/strata.h"
#include "shim/shim.h"

using strata::kPageSize;

namespace {

STRATA_INLINE void* SetErrno(void* p) {
  if (STRATA_UNLIKELY(p == nullptr)) errno = ENOMEM;
  return p;
}

// malloc's slow paths with errno: the fast path tail-calls these.
struct ErrnoSlowPaths {
  STRATA_NOINLINE static void* Small(size_t size) {
    return SetErrno(strata::MallocSlow(strata::SizeToClass(size), size));
  }
  STRATA_NOINLINE static void* Large(size_t size) { return SetErrno(strata::MallocLarge(size)); }
};

// glibc's memalign: alignments up to 16 are malloc's; a non-power of two is
// rounded up to the next power of two; one beyond SIZE_MAX/2+1 is EINVAL.
void* Memalign(size_t align, size_t size) {
  if (align <= strata::kMinAlign) return SetErrno(strata::Malloc(size));
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (!strata::IsPow2(align)) align = size_t{1} << (64 - __builtin_clzll(align));
  return SetErrno(strata::AlignedAlloc(align, size));
}

}  // namespace

extern "C" {

STRATA_EXPORT_HOT void* malloc(size_t size) __THROW { return strata::Malloc<ErrnoSlowPaths>(size); }

STRATA_EXPORT_HOT void free(void* p) __THROW { strata::Free(p); }

STRATA_EXPORT void cfree(void* p) __THROW { strata::Free(p); }

STRATA_EXPORT void free_sized(void* p, size_t size) __THROW { strata::FreeSized(p, size); }

STRATA_EXPORT void free_aligned_sized(void* p, size_t /*align*/, size_t size) __THROW {
  strata::FreeSized(p, size);
}

STRATA_EXPORT void* calloc(size_t n, size_t size) __THROW { return SetErrno(strata::Calloc(n, size)); }

STRATA_EXPORT void* realloc(void* p, size_t size) __THROW {
  void* q = strata::Realloc(p, size);
  if (STRATA_UNLIKELY(q == nullptr) && size != 0) errno = ENOMEM;
  return q;
}

STRATA_EXPORT void* reallocarray(void* p, size_t n, size_t size) __THROW {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, total);
}

STRATA_EXPORT void* memalign(size_t align, size_t size) __THROW { return Memalign(align, size); }

// glibc 2.36 treats aligned_alloc exactly as memalign (no EINVAL for an
// alignment that is not a power of two: it is rounded up).
STRATA_EXPORT void* aligned_alloc(size_t align, size_t size) __THROW { return Memalign(align, size); }

STRATA_EXPORT int posix_memalign(void** out, size_t align, size_t size) __THROW {
  if (align % sizeof(void*) != 0 || !strata::IsPow2(align / sizeof(void*))) return EINVAL;
  void* p = align <= strata::kMinAlign ? strata::Malloc(size) : strata::AlignedAlloc(align, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

STRATA_EXPORT void* valloc(size_t size) __THROW { return SetErrno(strata::AlignedAlloc(kPageSize, size)); }

STRATA_EXPORT void* pvalloc(size_t size) __THROW {
  if (size > SIZE_MAX - kPageSize) {
    errno = ENOMEM;
    return nullptr;
  }
  size_t rounded = strata::AlignUp(size == 0 ? 1 : size, kPageSize);
  return SetErrno(strata::AlignedAlloc(kPageSize, rounded));
}

STRATA_EXPORT size_t malloc_usable_size(void* p) __THROW { return strata::UsableSize(p); }

STRATA_EXPORT int malloc_trim(size_t /*pad*/) __THROW { return strata::ReleaseMemory() > 0 ? 1 : 0; }

STRATA_EXPORT struct mallinfo2 mallinfo2(void) __THROW {
  strata::Snapshot s;
  strata::TakeSnapshot(&s);
  struct mallinfo2 mi = {};
  uint64_t chunk_bytes = s.pages.mmap_bytes + s.pages.brk_bytes;
  mi.arena = chunk_bytes;                               // non-mmapped space (page heap)
  mi.ordblks = 0;
  for (unsigned k = 0; k < strata::kNumOrders; ++k) mi.ordblks += s.pages.free_blocks[k];
  mi.smblks = 0;
  mi.hblks = s.large.live;                              // large objects' own mappings
  mi.hblkhd = s.large.live_bytes;
  mi.usmblks = 0;
  mi.fsmblks = s.cached_bytes;                          // held in thread caches
  mi.uordblks = s.small_live_bytes + s.page_object_bytes;  // in use in the page heap
  uint64_t in_use = mi.uordblks;
  mi.fordblks = chunk_bytes > in_use ? chunk_bytes - in_use : 0;  // free in the page heap
  mi.keepcost = s.heap_free_bytes - (s.released_bytes < s.heap_free_bytes ? s.released_bytes : s.heap_free_bytes);
  return mi;
}

STRATA_EXPORT struct mallinfo mallinfo(void) __THROW {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi = {};
  mi.arena = int(m2.arena);
  mi.ordblks = int(m2.ordblks);
  mi.smblks = int(m2.smblks);
  mi.hblks = int(m2.hblks);
  mi.hblkhd = int(m2.hblkhd);
  mi.usmblks = int(m2.usmblks);
  mi.fsmblks = int(m2.fsmblks);
  mi.uordblks = int(m2.uordblks);
  mi.fordblks = int(m2.fordblks);
  mi.keepcost = int(m2.keepcost);
  return mi;
}

STRATA_EXPORT void malloc_stats(void) __THROW { strata::shim::WriteReport(2, strata::shim::ReportFormat::kText); }

// strata has no tunables through mallopt: accept every request and change
// nothing (options come from STRATA_* environment variables).
STRATA_EXPORT int mallopt(int /*param*/, int /*value*/) __THROW { return 1; }

STRATA_EXPORT int malloc_info(int options, FILE* fp) __THROW {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  strata::Snapshot s;
  strata::TakeSnapshot(&s);
  fprintf(fp,
          "<malloc version=\"strata-1\">\n"
          "<total type=\"allocated\" size=\"%llu\"/>\n"
          "<total type=\"mapped\" size=\"%llu\"/>\n"
          "<total type=\"resident\" size=\"%llu\"/>\n"
          "<total type=\"released\" size=\"%llu\"/>\n"
          "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n"
          "<system type=\"current\" size=\"%llu\"/>\n"
          "</malloc>\n",
          (unsigned long long)s.allocated_bytes, (unsigned long long)s.mapped_bytes,
          (unsigned long long)s.resident_bytes, (unsigned long long)s.released_bytes,
          (unsigned long long)s.large.live, (unsigned long long)s.large.live_bytes,
          (unsigned long long)s.mapped_bytes);
  return 0;
}

// glibc's internal names, which glibc itself and some programs call.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#endif
STRATA_EXPORT void* __libc_malloc(size_t) __attribute__((alias("malloc")));
STRATA_EXPORT void __libc_free(void*) __attribute__((alias("free")));
STRATA_EXPORT void* __libc_calloc(size_t, size_t) __attribute__((alias("calloc")));
STRATA_EXPORT void* __libc_realloc(void*, size_t) __attribute__((alias("realloc")));
STRATA_EXPORT void* __libc_memalign(size_t, size_t) __attribute__((alias("memalign")));
STRATA_EXPORT void* __libc_valloc(size_t) __attribute__((alias("valloc")));
STRATA_EXPORT void* __libc_pvalloc(size_t) __attribute__((alias("pvalloc")));

}  // extern "C"
