// The statistics reports of libstrata.so:
//  - at exit, when STRATA_STATS asks for one (text or JSON), to stderr or
//    STRATA_STATS_FILE;
//  - every STRATA_STATS_INTERVAL_MS, one JSON line, from a background thread;
//  - on request: malloc_stats() (text to stderr).
// Reports are formatted into a static buffer and written with write(2):
// nothing here allocates. The buffer is shared, so a try-lock guards it; a
// report that finds it busy waits briefly and then gives up rather than
// hang exit behind a stuck thread.
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "alloc/os/format.h"
#include "alloc/stats/stats.h"
#include "alloc/strata.h"
#include "shim/shim.h"

namespace strata::shim {

namespace {

SpinLock g_report_lock;
char g_report_buf[256 * 1024];
Snapshot g_snapshot;
int g_stats_fd = -1;  // STRATA_STATS_FILE, opened at start-up

// STRATA_STATS choices are "off|0|1|text|json".
bool ExitReportWanted(ReportFormat* format) {
  int64_t v = g_heap.options.stats;
  *format = v == 4 ? ReportFormat::kJson : ReportFormat::kText;
  return v >= 2;
}

// The file name with %p replaced by the process id.
void OpenStatsFile() {
  const char* name = g_heap.options.stats_file_text;
  if (name == nullptr || name[0] == '\0') return;
  char path[4096];
  TextBuf out(path, sizeof path);
  for (const char* c = name; *c != '\0'; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      out.U64(uint64_t(getpid()));
      ++c;
    } else {
      out.Put(*c);
    }
  }
  g_stats_fd = open(out.CStr(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (g_stats_fd < 0) Warnf("cannot open STRATA_STATS_FILE=%s; writing reports to stderr", name);
}

int ReportFd() { return g_stats_fd >= 0 ? g_stats_fd : 2; }

bool LockReport() {
  for (int i = 0; i < 200; ++i) {
    if (g_report_lock.TryLock()) return true;
    RealOs::SleepShort();
  }
  return false;
}

void* IntervalThread(void*) {
  int64_t ms = g_heap.options.stats_interval_ms;
  struct timespec ts = {time_t(ms / 1000), long(ms % 1000) * 1000000L};
  for (;;) {
    nanosleep(&ts, nullptr);
    WriteReport(ReportFd(), ReportFormat::kJson);
  }
  return nullptr;
}

}  // namespace

void WriteReport(int fd, ReportFormat format) {
  if (!LockReport()) return;
  TakeSnapshot(&g_snapshot);
  size_t n = format == ReportFormat::kJson ? WriteJson(g_snapshot, g_report_buf, sizeof g_report_buf)
                                           : WriteText(g_snapshot, g_report_buf, sizeof g_report_buf);
  if (n >= sizeof g_report_buf) n = sizeof g_report_buf - 1;
  RealOs::Write(fd, g_report_buf, n);
  g_report_lock.Unlock();
}

namespace {

// The shim's locks around fork(). Registered after the allocator's
// handlers (EnsureInit registers those), so taken before its locks, in the
// order a report takes them (report, then the thread registry in
// TakeSnapshot). A child that inherited the report lock held by the
// STRATA_STATS_INTERVAL_MS thread printed no report at all (malloc_stats,
// the exit report: 2 of 200 children with a 1 ms interval); one that
// inherited deepbind.cc's lock mid-copy would spin on it for ever.
void ShimForkPrepare() {
  g_report_lock.Lock();
  DeepbindLock().Lock();
}
// In the parent, and in the child too (where the interval thread did not
// come along: it is not restarted, and the child writes to the same
// STRATA_STATS_FILE).
void ShimForkUnlock() {
  DeepbindLock().Unlock();
  g_report_lock.Unlock();
}

__attribute__((constructor)) void StrataStart() {
  EnsureInit();
  pthread_atfork(ShimForkPrepare, ShimForkUnlock, ShimForkUnlock);
  ReportFormat format;
  if (ExitReportWanted(&format) || g_heap.options.stats_interval_ms > 0) OpenStatsFile();
  if (g_heap.options.stats_interval_ms > 0 && !RealOs::StartThread(IntervalThread, 0)) {
    Warnf("cannot start the STRATA_STATS_INTERVAL_MS thread");
  }
}

__attribute__((destructor)) void StrataExitReport() {
  ReportFormat format;
  if (!ExitReportWanted(&format)) return;
  WriteReport(ReportFd(), format);
}

}  // namespace

}  // namespace strata::shim
