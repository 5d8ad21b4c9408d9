// GrowthWatch (alloc/stats/growth.h): when the process's peak RSS grows
// for reasons other than strata's own new pages.
#include "alloc/stats/growth.h"

#include <gtest/gtest.h>

namespace {

using strata::GrowthWatch;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kStep = GrowthWatch::kMinGrowthBytes;

TEST(GrowthWatch, TheFirstSampleOnlySetsTheBase) {
  GrowthWatch w;
  EXPECT_FALSE(w.Sample(100 * kMiB, 0));
  EXPECT_EQ(w.peak(), 100 * kMiB);
}

TEST(GrowthWatch, GrowthNobodyInStrataMadeIsSeen) {
  GrowthWatch w;
  w.Sample(100 * kMiB, 5 * kMiB);
  EXPECT_TRUE(w.Sample(100 * kMiB + kStep, 5 * kMiB));
  EXPECT_EQ(w.peak(), 100 * kMiB + kStep);
  EXPECT_FALSE(w.Sample(100 * kMiB + kStep, 5 * kMiB)) << "no growth since";
  EXPECT_TRUE(w.Sample(100 * kMiB + 2 * kStep, 5 * kMiB + kStep / 2)) << "half of it strata's own: still others'";
}

TEST(GrowthWatch, GrowthStrataMadeIsNot) {
  GrowthWatch w;
  w.Sample(100 * kMiB, 0);
  EXPECT_FALSE(w.Sample(100 * kMiB + kStep, kStep)) << "all of it fresh pages strata handed out";
  EXPECT_EQ(w.peak(), 100 * kMiB + kStep) << "a new base all the same";
  EXPECT_FALSE(w.Sample(100 * kMiB + 2 * kStep, kStep + kStep * 3 / 4)) << "three quarters strata's own";
  EXPECT_FALSE(w.Sample(100 * kMiB + 4 * kStep, 10 * kMiB)) << "more fresh than growth (not all touched yet)";
}

// Growth is compared in steps of kMinGrowthBytes: smaller moves add up,
// with the fresh pages handed out meanwhile.
TEST(GrowthWatch, SmallGrowthAddsUpToAStep) {
  GrowthWatch w;
  w.Sample(100 * kMiB, 0);
  EXPECT_FALSE(w.Sample(100 * kMiB + kStep / 2, 0));
  EXPECT_EQ(w.peak(), 100 * kMiB) << "the base stays";
  EXPECT_FALSE(w.Sample(100 * kMiB + kStep - 4096, kStep / 4));
  EXPECT_TRUE(w.Sample(100 * kMiB + kStep, kStep / 4)) << "a quarter of the step was strata's";
  EXPECT_EQ(w.peak(), 100 * kMiB + kStep);
}

// Fresh pages handed out a little before the growth they cause (the pages
// of a span are counted when it is handed out, resident when touched) are
// still in the step they belong to.
TEST(GrowthWatch, FreshPagesCountedBeforeTheirGrowthStillExplainIt) {
  GrowthWatch w;
  w.Sample(100 * kMiB, 0);
  EXPECT_FALSE(w.Sample(100 * kMiB + 4096, kStep)) << "a span handed out, not touched yet";
  EXPECT_FALSE(w.Sample(100 * kMiB + kStep, kStep)) << "now touched: strata's own";
}

// The base is the highest RSS seen: going below it and back is no growth.
TEST(GrowthWatch, AnRssBelowThePeakIsNoGrowth) {
  GrowthWatch w;
  EXPECT_FALSE(w.Sample(0, 0)) << "statm unreadable: no base yet";
  w.Sample(100 * kMiB, 0);
  EXPECT_FALSE(w.Sample(0, 0)) << "statm unreadable";
  EXPECT_FALSE(w.Sample(60 * kMiB, 0));
  EXPECT_EQ(w.peak(), 100 * kMiB);
  EXPECT_FALSE(w.Sample(100 * kMiB + kStep / 2, 0)) << "back up, not past the peak by a step";
  EXPECT_TRUE(w.Sample(100 * kMiB + kStep, 0));
}

}  // namespace
