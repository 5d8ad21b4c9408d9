// PageMap (alloc/back/page_map.h) on a FakeOs: Ensure/Set/SpanOf/ClassOf,
// and foreign addresses that must map to nothing.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "alloc/back/page_map.h"
#include "alloc/back/span.h"
#include "tests/unit/fake_os.h"

namespace strata {
namespace {

using strata_test::FakeOs;
using Map = PageMap<FakeOs>;

int g_some_global = 42;
constinit PageMap<FakeOs> g_static_map;  // constant-initialised, no OS bound

constexpr uintptr_t kGiB = uintptr_t{1} << 30;

struct PageMapTest : ::testing::Test {
  FakeOs os{size_t{64} << 20};
  std::unique_ptr<Map> map{new Map(&os)};
};

std::vector<uintptr_t> ForeignAddresses() {
  int on_stack = 0;
  static std::vector<char> heap_block(100);
  return {
      0,
      1,
      4095,
      uintptr_t(&on_stack),
      uintptr_t(&g_some_global),
      uintptr_t(heap_block.data()),  // glibc's heap
      uintptr_t(&ForeignAddresses),  // text
      uintptr_t{1} << 47,            // a region nobody Ensured
      (uintptr_t{1} << 47) + 12345,
      (uintptr_t{1} << 48) - 1,      // last user-space byte
      uintptr_t{1} << 48,            // beyond 48 bits: never ours
      (uintptr_t{1} << 48) + (uintptr_t{5} << 30),
      uintptr_t{0xffff800000000000},  // kernel half
      ~uintptr_t{0},
  };
}

TEST_F(PageMapTest, AStaticMapIsUsableBeforeAnyOsIsBound) {
  for (uintptr_t a : ForeignAddresses()) {
    EXPECT_EQ(g_static_map.ClassOf(a), 0u) << std::hex << a;
    EXPECT_EQ(g_static_map.SpanOf(a), nullptr) << std::hex << a;
  }
  EXPECT_EQ(g_static_map.leaf_bytes(), 0u);
}

TEST_F(PageMapTest, ForeignAddressesMapToNothing) {
  for (uintptr_t a : ForeignAddresses()) {
    EXPECT_EQ(map->ClassOf(a), 0u) << std::hex << a;
    EXPECT_EQ(map->SpanOf(a), nullptr) << std::hex << a;
  }
  EXPECT_EQ(os.maps, 0u) << "reading must never create a leaf";
}

TEST_F(PageMapTest, SetRecordsSpanAndClassForEveryPage) {
  void* mem = os.Map(64 * kPageSize);
  ASSERT_NE(mem, nullptr);
  uintptr_t base = uintptr_t(mem);
  ASSERT_TRUE(map->Ensure(base, 64 * kPageSize));
  Span span;
  span.start = base + 8 * kPageSize;
  map->Set(span.start, Pages{16}, &span, 7);
  for (size_t i = 0; i < 64; ++i) {
    uintptr_t page = base + i * kPageSize;
    bool inside = i >= 8 && i < 24;
    for (uintptr_t a : {page, page + 1, page + kPageSize / 2, page + kPageSize - 1}) {
      EXPECT_EQ(map->ClassOf(a), inside ? 7u : 0u) << "page " << i;
      EXPECT_EQ(map->SpanOf(a), inside ? &span : nullptr) << "page " << i;
    }
  }
}

TEST_F(PageMapTest, SetSpanAndClearClassChangeOneFieldEach) {
  void* mem = os.Map(8 * kPageSize);
  ASSERT_NE(mem, nullptr);
  uintptr_t base = uintptr_t(mem);
  ASSERT_TRUE(map->Ensure(base, 8 * kPageSize));
  Span a, b;
  map->Set(base, Pages{8}, &a, 3);
  map->SetSpan(base + 2 * kPageSize + 100, &b);  // any address in the page
  EXPECT_EQ(map->SpanOf(base + 2 * kPageSize), &b);
  EXPECT_EQ(map->ClassOf(base + 2 * kPageSize), 3u);
  EXPECT_EQ(map->SpanOf(base + 3 * kPageSize), &a);
  map->ClearClass(base, Pages{4});
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(map->ClassOf(base + i * kPageSize), i < 4 ? 0u : 3u) << i;
  }
  EXPECT_EQ(map->SpanOf(base), &a) << "ClearClass keeps the span";
  // Set with class 0: a page object or a free block.
  map->Set(base, Pages{8}, &b, 0);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(map->ClassOf(base + i * kPageSize), 0u);
    EXPECT_EQ(map->SpanOf(base + i * kPageSize), &b);
  }
}

TEST_F(PageMapTest, EnsureMapsOneLeafPerGiBAndIsIdempotent) {
  // The map never touches the addresses it describes, so any range will do.
  uintptr_t a = 5 * kGiB - 2 * kPageSize;  // straddles a GiB boundary
  ASSERT_TRUE(map->Ensure(a, 4 * kPageSize));
  EXPECT_EQ(os.maps, 2u);
  EXPECT_EQ(map->leaf_bytes(), 2 * sizeof(Map::Leaf));
  ASSERT_TRUE(map->Ensure(a, 4 * kPageSize));
  ASSERT_TRUE(map->Ensure(5 * kGiB + 77 * kPageSize, kPageSize));
  EXPECT_EQ(os.maps, 2u) << "existing leaves are reused";
  Span s;
  map->Set(a, Pages{4}, &s, 9);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(map->ClassOf(a + i * kPageSize), 9u);
    EXPECT_EQ(map->SpanOf(a + i * kPageSize), &s);
  }
  EXPECT_EQ(map->ClassOf(a - 1), 0u);
  EXPECT_EQ(map->ClassOf(a + 4 * kPageSize), 0u);
  // An ensured but never set page reads as nothing.
  EXPECT_EQ(map->SpanOf(5 * kGiB + 500 * kPageSize), nullptr);
}

TEST_F(PageMapTest, AddressesAbove48BitsNeverAliasAKnownPage) {
  uintptr_t a = 3 * kGiB + 17 * kPageSize;
  ASSERT_TRUE(map->Ensure(a, kPageSize));
  Span s;
  map->Set(a, Pages{1}, &s, 5);
  ASSERT_EQ(map->ClassOf(a), 5u);
  for (unsigned bit = kAddressBits; bit < 64; ++bit) {
    uintptr_t alias = a | (uintptr_t{1} << bit);
    EXPECT_EQ(map->ClassOf(alias), 0u) << "bit " << bit;
    EXPECT_EQ(map->SpanOf(alias), nullptr) << "bit " << bit;
  }
}

TEST_F(PageMapTest, EnsureFailsCleanlyWhenTheOsHasNoMemory) {
  os.maps_left = 0;
  EXPECT_FALSE(map->Ensure(7 * kGiB, kPageSize));
  EXPECT_EQ(map->leaf_bytes(), 0u);
  EXPECT_EQ(map->ClassOf(7 * kGiB), 0u);
  EXPECT_EQ(map->SpanOf(7 * kGiB), nullptr);
  os.maps_left = -1;
  EXPECT_TRUE(map->Ensure(7 * kGiB, kPageSize));
  EXPECT_EQ(map->leaf_bytes(), sizeof(Map::Leaf));
}

TEST_F(PageMapTest, EnsureFailsHalfWayAcrossTwoLeaves) {
  os.maps_left = 1;
  EXPECT_FALSE(map->Ensure(9 * kGiB - kPageSize, 2 * kPageSize));
  EXPECT_EQ(map->leaf_bytes(), sizeof(Map::Leaf)) << "the first leaf stays (leaves are never freed)";
  os.maps_left = -1;
  EXPECT_TRUE(map->Ensure(9 * kGiB - kPageSize, 2 * kPageSize));
  EXPECT_EQ(map->leaf_bytes(), 2 * sizeof(Map::Leaf));
}

TEST_F(PageMapTest, LastPageOfTheAddressSpace) {
  uintptr_t a = (uintptr_t{1} << kAddressBits) - kPageSize;
  ASSERT_TRUE(map->Ensure(a, kPageSize));
  Span s;
  map->Set(a, Pages{1}, &s, 1);
  EXPECT_EQ(map->ClassOf(a + kPageSize - 1), 1u);
  EXPECT_EQ(map->SpanOf(a), &s);
  EXPECT_EQ(map->ClassOf(a + kPageSize), 0u);
}

}  // namespace
}  // namespace strata
