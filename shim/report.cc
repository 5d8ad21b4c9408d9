// The statistics report of libstrata.so: at exit when STRATA_STATS asks for
// it, and on request (malloc_stats). Formatted into a static buffer and
// written with write(2): nothing here allocates. The buffer is shared, so
// a try-lock guards it; a report that finds it busy is skipped rather than
// waited for (a crashed or stuck reporter must not hang exit).
#include <fcntl.h>
#include <unistd.h>

#include "alloc/stats/stats.h"
#include "alloc/strata.h"
#include "shim/shim.h"

namespace strata::shim {

namespace {

SpinLock g_report_lock;
char g_report_buf[64 * 1024];
Snapshot g_snapshot;

// Options index of STRATA_STATS choices: off|0|1|text|json.
ReportFormat FormatFromOption(int64_t v, bool* enabled) {
  *enabled = v >= 2 || v == 2;
  if (v == 2 || v == 3) return ReportFormat::kText;
  if (v == 4) return ReportFormat::kJson;
  *enabled = false;
  return ReportFormat::kText;
}

}  // namespace

void WriteReport(int fd, ReportFormat format) {
  if (!g_report_lock.TryLock()) return;
  TakeSnapshot(&g_snapshot);
  size_t n = 0;
  (void)format;  // JSON: issue 5; text for now
  WriteText(g_snapshot, g_report_buf, sizeof g_report_buf);
  while (g_report_buf[n] != '\0') ++n;
  RealOs::Write(fd, g_report_buf, n);
  g_report_lock.Unlock();
}

namespace {

__attribute__((constructor)) void StrataInit() { EnsureInit(); }

__attribute__((destructor)) void StrataExitReport() {
  bool enabled = false;
  ReportFormat format = FormatFromOption(g_heap.options.stats, &enabled);
  if (!enabled) return;
  int fd = 2;
  bool close_fd = false;
  if (g_heap.options.stats_text != nullptr && g_heap.options.stats_file_text != nullptr &&
      g_heap.options.stats_file_text[0] != '\0') {
    int f = open(g_heap.options.stats_file_text, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f >= 0) {
      fd = f;
      close_fd = true;
    } else {
      Warnf("cannot open STRATA_STATS_FILE=%s; writing the report to stderr", g_heap.options.stats_file_text);
    }
  }
  WriteReport(fd, format);
  if (close_fd) close(fd);
}

}  // namespace

}  // namespace strata::shim
