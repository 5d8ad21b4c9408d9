// Shared by the shim's files: export macro and the report writer.
#pragma once

#define STRATA_EXPORT __attribute__((visibility("default")))

namespace strata::shim {

enum class ReportFormat { kText, kJson };

// Formats a report of the current statistics and writes it to fd, without
// allocating. Safe at exit (takes no lock that a stuck thread could hold
// for long: see report.cc).
void WriteReport(int fd, ReportFormat format);

}  // namespace strata::shim
