// Fatal errors that only a layer test can provoke: a corrupted page heap
// found by the invariant walker of checking mode, and the page map out of
// memory while a large object is moved by mremap. (Misuse through the
// public API is in death_test.cc and tests/misuse; the fatal errors of the
// shim and of initialisation are in tests/misuse too.)
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "alloc/large/large.h"
#include "alloc/strata.h"
#include "strata/strata.h"
#include "tests/unit/abort.h"
#include "tests/unit/fake_os.h"

namespace strata {
namespace {

using strata_test::FakeOs;
using strata_test::Hex;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

// ---- the page heap's invariant walker (checking mode) ----

// Runs in the death test's child, which was started with STRATA_CHECK=1
// and so initialised strata in checking mode: the page heap is checked on
// the first checked free and every 1024th after it.
void CorruptThePageHeapThenFree() {
  if (g_heap.options.check == 0) {
    fprintf(stderr, "test setup: STRATA_CHECK=1 did not reach the child\n");
    _exit(2);
  }
  // A page object (8 KiB, 8 KiB aligned: a block of its own in a chunk)
  // that claims a size class its pages do not have in the page map.
  void* p = strata_aligned_alloc(8192, 8192);
  Span* s = p != nullptr ? g_heap.map.SpanOf(uintptr_t(p)) : nullptr;
  if (s == nullptr || s->state != SpanState::kPageObject || s->start != uintptr_t(p)) {
    fprintf(stderr, "test setup: no page object to corrupt\n");
    _exit(2);
  }
  s->cls = 7;
  for (int i = 0; i < 1025; ++i) strata_free(strata_malloc(64));
  fprintf(stderr, "the corruption went unnoticed\n");
  _exit(3);
}

TEST(CheckingModeDeathTest, PageHeapCheckFailureIsFatal) {
  // Threadsafe style: the child is a new process (re-executed), so it reads
  // STRATA_CHECK at its own initialisation. This process is not affected:
  // it read its options long ago.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ASSERT_EQ(setenv("STRATA_CHECK", "1", 1), 0);
  EXPECT_ABORT(CorruptThePageHeapThenFree(),
               "^strata: heap corruption detected by the page heap check: "
               "a page of a live span has the wrong class\n$");
  unsetenv("STRATA_CHECK");
}

// ---- the page map out of memory while a large object moves ----

TEST(LargeDeathTest, PageMapOutOfMemoryWhileMovingIsFatal) {
  // Fast style: the child is a fork, so it has the parent's addresses and
  // the message is matched with the exact address of the moved object.
  GTEST_FLAG_SET(death_test_style, "fast");
  // Address space only (MAP_NORESERVE): room for the object, its page-map
  // leaf and a jump into another GiB.
  FakeOs os(3 * kGiB);
  std::unique_ptr<PageMap<FakeOs>> map(new PageMap<FakeOs>(&os));
  MetaArena<FakeOs> arena(&os);
  LargeHeap<FakeOs> large;
  large.Bind(&os, map.get(), &arena);
  large.set_decay_ms(0);
  void* p = large.Alloc(kMiB, kPageSize);
  ASSERT_NE(p, nullptr);
  Span* s = map->SpanOf(uintptr_t(p));
  ASSERT_NE(s, nullptr);
  // The fake OS hands out memory in address order: after this, the next
  // mapping (where the object moves) is in a GiB with no page-map leaf.
  void* jump = os.Map(kPageSize, kGiB);
  ASSERT_NE(jump, nullptr);
  ASSERT_EQ(map->SpanOf(uintptr_t(jump) + kPageSize), nullptr);
  ASSERT_NE(uintptr_t(jump) >> 30, uintptr_t(p) >> 30);
  os.remap_moves = true;  // mremap moves the mapping ...
  os.maps_left = 0;       // ... and the leaf for its new address cannot be mapped
  EXPECT_ABORT(large.Realloc(s, 4 * kMiB), "^strata: out of memory for the page map while moving " + Hex(p) + "\n$");
  // The parent is unchanged: the object is still there, unmoved.
  os.remap_moves = false;
  os.maps_left = -1;
  EXPECT_EQ(map->SpanOf(uintptr_t(p)), s);
  large.Free(s, os.now_ms);
}

}  // namespace
}  // namespace strata
