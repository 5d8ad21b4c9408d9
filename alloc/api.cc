// The strata_* C API (include/strata/strata.h): the allocator called by
// name, without errno handling (that belongs to the malloc shim).
#include "strata/strata.h"

#include "alloc/stats/stats.h"
#include "alloc/strata.h"

extern "C" {

void* strata_malloc(size_t size) { return strata::Malloc(size); }
void strata_free(void* p) { strata::Free(p); }
void strata_free_sized(void* p, size_t size) { strata::FreeSized(p, size); }
void* strata_calloc(size_t n, size_t size) { return strata::Calloc(n, size); }
void* strata_realloc(void* p, size_t size) { return strata::Realloc(p, size); }
void* strata_aligned_alloc(size_t align, size_t size) {
  if (!strata::IsPow2(align) || align > (size_t{1} << 30)) return nullptr;
  return strata::AlignedAlloc(align, size);
}
size_t strata_usable_size(const void* p) { return strata::UsableSize(p); }
size_t strata_release(void) { return strata::ReleaseMemory(); }

size_t strata_stats_json(char* buf, size_t len) {
  strata::Snapshot snap;
  strata::TakeSnapshot(&snap);
  return strata::WriteJson(snap, buf, len);
}

void strata_stats_print(int fd) {
  strata::Snapshot snap;
  strata::TakeSnapshot(&snap);
  char buf[32 * 1024];
  size_t n = strata::WriteText(snap, buf, sizeof buf);
  if (n >= sizeof buf) n = sizeof buf - 1;
  strata::RealOs::Write(fd, buf, n);
}

}  // extern "C"
