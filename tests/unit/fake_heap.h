// A page heap with its page map and metadata arena, all on a FakeOs: the
// back end of strata as the layer tests build it.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "alloc/back/page_heap.h"
#include "tests/unit/fake_os.h"

namespace strata_test {

struct FakeHeap {
  explicit FakeHeap(size_t bytes = size_t{256} << 20, size_t brk_bytes = 0)
      : os(bytes, brk_bytes),
        map(new strata::PageMap<FakeOs>(&os)),  // ~2 MiB of root: on the heap
        arena(&os),
        heap(&os, map.get(), &arena) {
    heap.set_decay_ms(1000);  // tests that depend on the decay set their own
  }

  // Check() as a gtest predicate result carrying the reason.
  // Also fails once the heap madvised memory that was not mapped.
  ::testing::AssertionResult Checked() {
    if (os.dead_releases != 0) {
      return ::testing::AssertionFailure() << os.dead_releases << " madvise calls on memory not mapped";
    }
    const char* why = "";
    if (heap.Check(&why)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "PageHeap::Check: " << why;
  }

  FakeOs os;
  std::unique_ptr<strata::PageMap<FakeOs>> map;
  strata::MetaArena<FakeOs> arena;
  strata::PageHeap<FakeOs> heap;
};

}  // namespace strata_test
