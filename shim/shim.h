// Shared by the shim's files: export macro and the report writer.
#pragma once

#define STRATA_EXPORT __attribute__((visibility("default")))
// The entry points of the fast path start on a cache line of their own:
// where the linker happened to put them moved glibc-simple (a malloc/free
// loop) by 7% between two builds whose instruction counts were the same
// (malloc and free had moved from 16 to 32 bytes into their lines).
#define STRATA_EXPORT_HOT __attribute__((visibility("default"), aligned(64)))

#include "alloc/os/spinlock.h"

namespace strata::shim {

enum class ReportFormat { kText, kJson };

// Formats a report of the current statistics and writes it to fd, without
// allocating. Safe at exit (takes no lock that a stuck thread could hold
// for long: see report.cc).
void WriteReport(int fd, ReportFormat format);

// deepbind.cc's lock (it guards the copy of glibc's allocator entry points),
// for the shim's fork handlers (report.cc).
SpinLock& DeepbindLock();

}  // namespace strata::shim
