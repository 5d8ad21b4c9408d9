// Fatal errors through the strata_* API: a pointer strata did not hand out
// (stack, global, wild, inside a large object or a page object, already
// freed) aborts with one line that starts "strata: " and names the address.
#include <gtest/gtest.h>
#include <stdio.h>

#include <string>
#include <vector>

#include "alloc/middle/size_class.h"
#include "alloc/strata.h"
#include "strata/strata.h"
#include "tests/unit/abort.h"

namespace strata {
namespace {

int g_global = 1;

// The message, by shape: one line, "strata: <op>(): invalid pointer 0x...".
std::string InvalidShape(const char* op = "free") {
  return std::string("^strata: ") + op + "\\(\\): invalid pointer 0x[0-9a-f]+: [^\n]*\n$";
}

// The message with the exact address (only where the child has the same
// addresses as the parent: the "fast" style forks without exec).
std::string InvalidExact(const void* p) {
  char buf[64];
  snprintf(buf, sizeof buf, "%p", p);
  return std::string("^strata: free\\(\\): invalid pointer ") + buf + ": ";
}

// Threadsafe style: the child re-runs the test from the start in a new
// process, so it sees the same kinds of pointers at other addresses.
class ApiDeathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EnsureInit();
  }
};

TEST_F(ApiDeathTest, FreeOfAStackPointer) {
  int on_stack = 0;
  EXPECT_ABORT(strata_free(&on_stack), "invalid pointer 0x");
  EXPECT_ABORT(strata_free(&on_stack), InvalidShape());
}

TEST_F(ApiDeathTest, FreeOfAGlobal) { EXPECT_ABORT(strata_free(&g_global), InvalidShape()); }

TEST_F(ApiDeathTest, FreeOfAWildPointer) {
  EXPECT_ABORT(strata_free(reinterpret_cast<void*>(uintptr_t{0x123456789a0})),
               "^strata: free\\(\\): invalid pointer 0x123456789a0: ");
  EXPECT_ABORT(strata_free(reinterpret_cast<void*>(uintptr_t{0xdead000000000000})),
               "^strata: free\\(\\): invalid pointer 0xdead000000000000: ");
}

TEST_F(ApiDeathTest, FreeOfGlibcMemory) {
  void* p = malloc(100);
  EXPECT_ABORT(strata_free(p), InvalidShape());
  free(p);
}

TEST_F(ApiDeathTest, FreeInsideALargeObject) {
  char* p = static_cast<char*>(strata_malloc(kMaxSmall * 4));
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(strata_free(p + 16), InvalidShape());
  EXPECT_ABORT(strata_free(p + kPageSize), InvalidShape());
  EXPECT_ABORT(strata_free(p + kMaxSmall * 4 - 16), InvalidShape());
  strata_free(p);
}

TEST_F(ApiDeathTest, FreeInsideAPageObject) {
  char* p = static_cast<char*>(strata_aligned_alloc(64 * 1024, 100));
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(strata_free(p + 4096), InvalidShape());
  EXPECT_ABORT(strata_free(p + 32), InvalidShape());
  strata_free(p);
}

TEST_F(ApiDeathTest, DoubleFreeOfALargeObject) {
  void* p = strata_malloc(kMaxSmall * 2);
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(
      {
        strata_free(p);
        strata_free(p);
      },
      InvalidShape());
  strata_free(p);
}

TEST_F(ApiDeathTest, DoubleFreeOfAPageObject) {
  void* p = strata_aligned_alloc(16 * 1024, 5000);
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(
      {
        strata_free(p);
        strata_free(p);
      },
      InvalidShape());
  strata_free(p);
}

TEST_F(ApiDeathTest, FreeOfAFreeBlockInAChunk) {
  // A page of a chunk that is free in the page heap is not a block.
  void* p = strata_aligned_alloc(8192, 8192);
  ASSERT_NE(p, nullptr);
  char* after = static_cast<char*>(p) + 8192;  // its buddy
  Span* s = g_heap.map.SpanOf(uintptr_t(after));
  if (s == nullptr || s->state != SpanState::kFree || s->start != uintptr_t(after)) {
    strata_free(p);
    GTEST_SKIP() << "the buddy is in use (earlier tests in this process)";
  }
  EXPECT_ABORT(strata_free(after), InvalidShape());
  strata_free(p);
}

// A 200-byte object in the hole of a mixed span (alloc/middle/mixed.h):
// 8 MiB of 64-byte objects, 90% freed, then 200-byte ones until one lands in
// a mixed span. nullptr if none did.
void* MixedObject() {
  std::vector<void*> small((size_t{8} << 20) / 64);
  for (void*& p : small) p = strata_malloc(64);
  for (size_t i = 0; i < small.size(); ++i) {
    if (i % 10 != 0) strata_free(small[i]);
  }
  for (int i = 0; i < 100000; ++i) {
    void* p = strata_malloc(200);
    if (g_heap.map.SpanOf(uintptr_t(p))->state == SpanState::kMixed) return p;
  }
  return nullptr;
}

TEST_F(ApiDeathTest, FreeInsideAMixedObject) {
  char* p = static_cast<char*>(MixedObject());
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(strata_free(p + 16),
               "^strata: free\\(\\): invalid pointer 0x[0-9a-f]+: inside an object of a mixed span, not at its start\n$");
  EXPECT_ABORT(strata_usable_size(p + 32), "^strata: malloc_usable_size\\(\\): invalid pointer 0x[0-9a-f]+: inside");
  EXPECT_ABORT(strata_free(p + 8), "^strata: free\\(\\): invalid pointer 0x[0-9a-f]+: inside");
}

TEST_F(ApiDeathTest, DoubleFreeOfAMixedObject) {
  void* p = MixedObject();
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(
      {
        strata_free(p);
        strata_free(p);
      },
      "^strata: free\\(\\): 0x[0-9a-f]+ is not a live object \\(double free or use after free, or never "
      "allocated; a mixed span\\)\n$");
}

TEST_F(ApiDeathTest, OtherEntryPointsNameThemselves) {
  int on_stack = 0;
  EXPECT_ABORT(strata_realloc(&on_stack, 100), InvalidShape("realloc"));
  EXPECT_ABORT(strata_usable_size(&on_stack), InvalidShape("malloc_usable_size"));
}

// Fast style: fork() without exec, so the child's addresses are the
// parent's and the message can be matched with the exact address. (No
// other thread runs in this test binary, which the fast style needs.)
class ApiExactAddressDeathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "fast");
    EnsureInit();
  }
};

TEST_F(ApiExactAddressDeathTest, StackPointer) {
  int on_stack = 0;
  EXPECT_ABORT(strata_free(&on_stack), InvalidExact(&on_stack));
}

TEST_F(ApiExactAddressDeathTest, Global) { EXPECT_ABORT(strata_free(&g_global), InvalidExact(&g_global)); }

TEST_F(ApiExactAddressDeathTest, InsideALargeObject) {
  char* p = static_cast<char*>(strata_malloc(kMaxSmall * 4));
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(strata_free(p + 16), InvalidExact(p + 16));
  EXPECT_ABORT(strata_free(p + 3 * kPageSize), InvalidExact(p + 3 * kPageSize));
  strata_free(p);
}

TEST_F(ApiExactAddressDeathTest, InsideAPageObject) {
  char* p = static_cast<char*>(strata_aligned_alloc(32 * 1024, 1000));
  ASSERT_NE(p, nullptr);
  EXPECT_ABORT(strata_free(p + kPageSize), InvalidExact(p + kPageSize));
  strata_free(p);
}

TEST_F(ApiExactAddressDeathTest, LargeObjectFreedTwice) {
  void* p = strata_malloc(kMaxSmall * 3);
  ASSERT_NE(p, nullptr);
  strata_free(p);
  EXPECT_ABORT(strata_free(p), InvalidExact(p));
}

}  // namespace
}  // namespace strata
