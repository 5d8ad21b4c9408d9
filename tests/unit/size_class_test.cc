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
  // Plus the classes just above a power of two: base + 16 from 1 KiB to
  // 4 KiB, and a 4 KiB page with its bookkeeping.
  for (size_t lo = 256; lo < kMaxSmall; lo *= 2) {
    int n = 0;
    for (size_t c = 1; c < kNumClasses; ++c) {
      if (Info(c).size > lo && Info(c).size <= 2 * lo) ++n;
    }
    const int extra = (lo >= 1024 && lo <= 4096 ? 1 : 0) + (lo == 4096 ? 1 : 0);
    EXPECT_EQ(n, (lo < 1024 ? 4 : 5) + extra) << "(" << lo << ", " << 2 * lo << "]";
  }
}

TEST(SizeClassTable, APowerOfTwoFrom1KPlusAnEighthIsAClass) {
  // A 4 KiB page plus its header (sqlite3's page cache) must not pay the
  // 25% of the next quarter class.
  for (size_t p = 1024; p < kMaxSmall; p *= 2) {
    EXPECT_EQ(Info(SizeToClass(p + p / 8)).size, p + p / 8) << p;
    EXPECT_EQ(Info(SizeToClass(p + p / 8 - 15)).size, p + p / 8) << p;
  }
}

TEST(SizeClassTable, ABufferWithASmallHeaderFitsWithin16Bytes) {
  // 1 KiB + 8 (sqlite3's size prefix on a 1 KiB buffer) went to 1,152.
  for (size_t p = 1024; p <= 4096; p *= 2) {
    EXPECT_EQ(Info(SizeToClass(p + 8)).size, p + 16) << p;
    EXPECT_EQ(Info(SizeToClass(p + 16)).size, p + 16) << p;
  }
  EXPECT_EQ(Info(SizeToClass(8192 + 8)).size, 8192u + 1024u);
}

TEST(SizeClassTable, AFourKiBPageWithItsBookkeepingIsAClass) {
  // sqlite3's page cache entry: a 4 KiB page, PgHdr1, MemPage and PgHdr.
  EXPECT_EQ(Info(SizeToClass(4096 + 272)).size, 4096u + 288u);
  EXPECT_EQ(Info(SizeToClass(4096 + 288)).size, 4096u + 288u);
  EXPECT_EQ(Info(SizeToClass(4096 + 289)).size, 4608u);
}

TEST(SizeClassTable, SpansOfTheHeaderClassesWasteLittleResidentMemory) {
  // Pages an object never reaches cost no RSS: 4,384-byte objects fill 15
  // pages of a 16-page span, 14 to a span, and 1,040-byte ones fill a
  // 64 KiB span all but 16 bytes.
  const ClassInfo& page = Info(SizeToClass(4096 + 288));
  EXPECT_EQ(page.objects, 14u);
  EXPECT_EQ(kPageSize << page.order, 64u * 1024);
  const ClassInfo& kib = Info(SizeToClass(1024 + 16));
  EXPECT_EQ(size_t(kib.objects) * kib.size, (kPageSize << kib.order) - 16);
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

// The span rules of alloc/middle/size_class.h, restated here.
bool SpanSuits(size_t size, size_t span) {
  if (span < size) return false;
  const size_t objs = span / size;
  const size_t used = objs * size;
  if ((span - used) * 8 > span) return false;
  if (objs < 8 && span < 64 * 1024) return false;
  if (size <= 1024 || size > 16 * 1024) return true;
  const size_t touched = (used + kPageSize - 1) / kPageSize * kPageSize;
  return (touched - used) * 64 <= touched;
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
  EXPECT_TRUE(SpanSuits(c.size, span) || c.order == kMaxOrder) << "size " << c.size;
  if (c.size > 1024 && c.size <= 16 * 1024) {
    const size_t used = size_t(c.objects) * c.size;
    const size_t touched = (used + kPageSize - 1) / kPageSize * kPageSize;
    EXPECT_LE((touched - used) * 64, touched) << "resident waste of " << c.size;
  }
  // The generator picks the smallest order that satisfies the rules.
  for (size_t k = 0; k < c.order; ++k) {
    EXPECT_FALSE(SpanSuits(c.size, kPageSize << k)) << "order " << k << " also suits " << c.size;
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
