// Death-test helpers for strata's fatal errors: every one writes a single
// line "strata: <what went wrong>" to stderr and calls abort(), so a test
// asserts both the line and death by SIGABRT (EXPECT_DEATH would accept
// any death, a segfault included).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>

#include <string>

// `statement` must die by SIGABRT with stderr matching `regex`.
#define EXPECT_ABORT(statement, regex) EXPECT_EXIT(statement, ::testing::KilledBySignal(SIGABRT), regex)

namespace strata_test {

// A pointer as strata's formatter prints it ("0x" and lowercase hex), for
// a message matched with the exact address (fast-style death tests, whose
// child has the parent's addresses).
inline std::string Hex(const void* p) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(p)));
  return buf;
}

}  // namespace strata_test
