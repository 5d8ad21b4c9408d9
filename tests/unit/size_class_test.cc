// Size classes (alloc/middle/size_class.h): the generated table against
// its stated rules, and the lookup against a linear scan for every size.
#include <gtest/gtest.h>

#include "alloc/middle/size_class.h"

namespace strata {
namespace {

// The smallest class whose size fits `size`, by a linear scan.
size_t ScanClass(size_t size) {
  for (size_t c = 1; c < kNumClasses; ++c) {
    if (AllClasses()[c].size >= size) return c;
  }
  return 0;
}

TEST(SizeClassTable, ClassZeroIsReservedAndTheLastIsTheSmallMaximum) {
  EXPECT_EQ(AllClasses()[0].size, 0u);
  EXPECT_EQ(AllClasses()[kNumClasses - 1].size, kMaxSmall);
  EXPECT_LT(kNumClasses, 256u);
  EXPECT_EQ(AllClasses()[1].size, 16u);
}

TEST(SizeClassTable, EverySizeMapsToTheSmallestClassThatFits) {
  for (size_t size = 0; size <= kMaxSmall; ++size) {
    size_t want = ScanClass(size);
    ASSERT_NE(want, 0u) << size;
    ASSERT_EQ(SizeToClass(size), want) << "size " << size;
  }
}

TEST(SizeClassTable, SizesStrictlyIncreaseInStepsOf16UpTo128) {
  for (size_t c = 1; c < kNumClasses; ++c) {
    if (c > 1) {
      EXPECT_GT(Info(c).size, Info(c - 1).size) << c;
    }
    if (Info(c).size <= 128) {
      EXPECT_EQ(Info(c).size, 16 * c) << c;
    }
  }
}

TEST(SizeClassTable, NeighboursAbove128AreAtMost25PercentApart) {
  for (size_t c = 2; c < kNumClasses; ++c) {
    if (Info(c - 1).size < 128) continue;
    EXPECT_LE(uint64_t(Info(c).size) * 4, uint64_t(Info(c - 1).size) * 5)
        << Info(c - 1).size << " -> " << Info(c).size;
  }
}

TEST(SizeClassTable, SixteenBytesApartUpTo256) {
  // 208 among them: a 200-byte object in a hole of a mixed span takes 208
  // bytes, not 224 (frag's refill).
  for (size_t size = 16; size <= 256; size += 16) EXPECT_EQ(Info(SizeToClass(size)).size, size) << size;
}

TEST(SizeClassTable, FourClassesPerDoublingAbove256AndFiveFrom1K) {
  for (size_t lo = 256; lo < kMaxSmall; lo *= 2) {
    int n = 0;
    for (size_t c = 1; c < kNumClasses; ++c) {
      if (Info(c).size > lo && Info(c).size <= 2 * lo) ++n;
    }
    EXPECT_EQ(n, lo < 1024 ? 4 : 5) << "(" << lo << ", " << 2 * lo << "]";
  }
}

TEST(SizeClassTable, APowerOfTwoFrom1KPlusAnEighthIsAClass) {
  // A 4 KiB page plus its header (sqlite3's page cache) must not pay the
  // 25% of the next quarter class.
  for (size_t p = 1024; p < kMaxSmall; p *= 2) {
    EXPECT_EQ(Info(SizeToClass(p + 1)).size, p + p / 8) << p;
  }
  EXPECT_EQ(Info(SizeToClass(4096 + 272)).size, 4608u);
}

TEST(SizeClassTable, EveryPowerOfTwoIsAClass) {
  // AlignedAlloc relies on it: a class whose size is a multiple of the
  // alignment always exists.
  for (size_t p = 16; p <= kMaxSmall; p *= 2) {
    EXPECT_EQ(Info(SizeToClass(p)).size, p) << p;
  }
}

TEST(SizeClassTable, InternalWasteAbove128IsBelowAFifth) {
  for (size_t size = 129; size <= kMaxSmall; ++size) {
    size_t got = Info(SizeToClass(size)).size;
    ASSERT_LT((got - size) * 5, got) << "size " << size << " gets " << got;
  }
}

TEST(SizeClassTable, LookupTablesCoverTheirRanges) {
  EXPECT_EQ(kSmallLookup.size(), kMaxSmallStep16 / 16 + 1);
  EXPECT_EQ(kBigLookup.size(), kMaxSmall / 128 + 1);
  EXPECT_EQ(SizeToClass(0), 1u);
  EXPECT_EQ(SizeToClass(kMaxSmall), kNumClasses - 1);
}

// ---- per class ----

class SizeClassInfo : public ::testing::TestWithParam<size_t> {};

TEST_P(SizeClassInfo, SizeIsAMultipleOf16) {
  const ClassInfo& c = Info(GetParam());
  EXPECT_EQ(c.size % 16, 0u) << c.size;
  if (c.size > kMaxSmallStep16) {
    EXPECT_EQ(c.size % 128, 0u) << "the big lookup steps by 128";
  }
}

TEST_P(SizeClassInfo, SpanHoldsItsObjectsWithLittleTailWaste) {
  const ClassInfo& c = Info(GetParam());
  size_t span = kPageSize << c.order;
  ASSERT_LE(c.order, kMaxOrder);
  ASSERT_GE(c.objects, 1u);
  EXPECT_EQ(c.objects, span / c.size) << "objects per span";
  EXPECT_LE(uint64_t(c.objects) * c.size, span);
  size_t waste = span - size_t(c.objects) * c.size;
  EXPECT_TRUE(waste * 8 <= span || c.objects == 1) << "size " << c.size << " waste " << waste;
  EXPECT_TRUE(c.objects >= 8 || span >= 64 * 1024) << "size " << c.size;
  if (c.order > 0) {
    // The generator picks the smallest order that satisfies the rules.
    size_t smaller = span / 2;
    size_t objs = smaller / c.size;
    bool ok = smaller >= c.size && (smaller - objs * c.size) * 8 <= smaller &&
              (objs >= 8 || smaller >= 64 * 1024);
    EXPECT_FALSE(ok) << "order " << unsigned(c.order) << " is not the smallest for " << c.size;
  }
}

TEST_P(SizeClassInfo, BatchIsAtLeastOneAndMovesAtMost64KiB) {
  const ClassInfo& c = Info(GetParam());
  EXPECT_GE(c.batch, 1u);
  EXPECT_LE(c.batch, 32u);
  EXPECT_TRUE(size_t(c.batch) * c.size <= 64 * 1024 || c.batch == 1) << c.size;
}

TEST_P(SizeClassInfo, ExactlyTheSizesAboveThePreviousClassMapHere) {
  size_t cls = GetParam();
  size_t lo = cls == 1 ? 0 : Info(cls - 1).size + 1;
  size_t hi = Info(cls).size;
  for (size_t s = lo; s <= hi; ++s) ASSERT_EQ(SizeToClass(s), cls) << "size " << s;
  if (cls + 1 < kNumClasses) {
    EXPECT_EQ(SizeToClass(hi + 1), cls + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(AllClasses, SizeClassInfo, ::testing::Range<size_t>(1, kNumClasses),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return "class" + std::to_string(i.param) + "_" +
                                  std::to_string(Info(i.param).size);
                         });

}  // namespace
}  // namespace strata
