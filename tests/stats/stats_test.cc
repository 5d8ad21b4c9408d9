// Statistics: known allocation patterns give known counts, and making a
// report never allocates.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc/middle/size_class.h"
#include "alloc/stats/stats.h"
#include "strata/strata.h"

// Count every call to the process's malloc family (glibc's, since this test
// links strata_core, which exports none): reporting must make none.
extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void __libc_free(void*);
static std::atomic<long> g_libc_calls{0};
extern "C" void* malloc(size_t n) {
  g_libc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
extern "C" void* calloc(size_t n, size_t m) {
  g_libc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, m);
}
extern "C" void* realloc(void* p, size_t n) {
  g_libc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
extern "C" void free(void* p) {
  if (p != nullptr) g_libc_calls.fetch_add(1, std::memory_order_relaxed);
  __libc_free(p);
}

namespace strata {
namespace {

ClassRow RowFor(size_t size) {
  Snapshot s;
  TakeSnapshot(&s);
  return Row(s, SizeToClass(size));
}

TEST(Stats, SmallCountsAreExact) {
  constexpr size_t kSize = 200;  // class 224: nothing else here uses it
  ClassRow before = RowFor(kSize);
  std::vector<void*> blocks;
  for (int i = 0; i < 10000; ++i) blocks.push_back(strata_malloc(kSize));
  for (int i = 0; i < 4000; ++i) strata_free(blocks[i]);
  ClassRow after = RowFor(kSize);
  EXPECT_EQ(after.allocs - before.allocs, 10000u);
  EXPECT_EQ(after.frees - before.frees, 4000u);
  EXPECT_EQ(after.live - before.live, 6000u);
  EXPECT_EQ(after.live, after.allocs - after.frees);
  EXPECT_EQ(after.requested - before.requested, 10000u * kSize);
  for (int i = 4000; i < 10000; ++i) strata_free(blocks[i]);
  ClassRow end = RowFor(kSize);
  EXPECT_EQ(end.live, before.live);
  EXPECT_EQ(end.frees - before.frees, 10000u);
}

TEST(Stats, CrossThreadFreesAndThreadExitKeepCountsExact) {
  constexpr size_t kSize = 3000;  // class 3072
  ClassRow before = RowFor(kSize);
  std::vector<void*> blocks(5000);
  std::thread producer([&] {
    for (auto& b : blocks) b = strata_malloc(kSize);
  });
  producer.join();  // its cache is flushed at exit
  std::thread consumer([&] {
    for (size_t i = 0; i < blocks.size(); i += 2) strata_free(blocks[i]);
  });
  consumer.join();
  ClassRow after = RowFor(kSize);
  EXPECT_EQ(after.allocs - before.allocs, 5000u);
  EXPECT_EQ(after.frees - before.frees, 2500u);
  EXPECT_EQ(after.live - before.live, 2500u);
  for (size_t i = 1; i < blocks.size(); i += 2) strata_free(blocks[i]);
}

TEST(Stats, LargeObjectsAndTotals) {
  Snapshot a;
  TakeSnapshot(&a);
  std::vector<void*> big;
  for (int i = 0; i < 12; ++i) {
    big.push_back(strata_malloc(8 << 20));
    memset(big.back(), 1, 4096);
  }
  Snapshot b;
  TakeSnapshot(&b);
  EXPECT_EQ(b.large.allocs - a.large.allocs, 12u);
  EXPECT_EQ(b.large.live - a.large.live, 12u);
  EXPECT_EQ(b.large.live_bytes - a.large.live_bytes, 12u * (8 << 20));
  EXPECT_GE(b.allocated_bytes, 12u * (8 << 20));
  EXPECT_GE(b.mapped_bytes, b.allocated_bytes);
  EXPECT_GE(b.peak_allocated_bytes, b.large.live_bytes);
  for (void* p : big) strata_free(p);
  Snapshot c;
  TakeSnapshot(&c);
  EXPECT_EQ(c.large.frees - a.large.frees, 12u);
  EXPECT_EQ(c.large.live, a.large.live);
  EXPECT_GE(c.peak_allocated_bytes, b.large.live_bytes);  // the peak stays
  EXPECT_GE(c.internal_fragmentation, 0.0);
  EXPECT_LT(c.internal_fragmentation, 1.0);
  EXPECT_GE(c.external_fragmentation, 0.0);
  EXPECT_LE(c.external_fragmentation, 1.0);
}

// The peak tracker hears of a class's change only in steps of 16 KiB; a
// snapshot still never shows a peak below the bytes it shows handed out.
// One object of each class up to 8 KiB tells the tracker of none of them
// (ctest runs each test in a process of its own, so nothing came before).
TEST(Stats, PeakIsNeverBelowWhatIsHandedOut) {
  std::vector<void*> blocks;
  for (size_t c = 1; c < kNumClasses && Info(c).size <= 8192; ++c) blocks.push_back(strata_malloc(Info(c).size));
  Snapshot s;
  TakeSnapshot(&s);
  EXPECT_GE(s.allocated_bytes, 40u * 1024);
  EXPECT_GE(s.peak_allocated_bytes, s.allocated_bytes);
  const uint64_t peak = s.peak_allocated_bytes;
  for (void* p : blocks) strata_free(p);
  TakeSnapshot(&s);
  EXPECT_GE(s.peak_allocated_bytes, peak) << "the peak stays";
}

// The transfer caches keep at most 32 KiB of a class while one thread has
// a cache (alloc/middle/central.h, SetThreaded), up to 256 KiB once another
// has one, and 32 KiB again once it has exited (the churn takes what waits
// there before giving back).
uint64_t TransferredAfterChurn(size_t size) {
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) blocks.push_back(strata_malloc(size));
  for (void* p : blocks) strata_free(p);
  Snapshot s;
  TakeSnapshot(&s);
  return s.central[SizeToClass(size)].transfer_objects * Info(SizeToClass(size)).size;
}

TEST(Stats, TransferCachesKeepLessWhileOneThreadHasACache) {
  constexpr size_t kSize = 64;
  EXPECT_LE(TransferredAfterChurn(kSize), 32u << 10) << "one thread";
  std::atomic<bool> done{false};
  std::atomic<bool> ready{false};
  std::thread other([&] {
    strata_free(strata_malloc(kSize));  // gives this thread a cache
    ready = true;
    while (!done) std::this_thread::yield();
  });
  while (!ready) std::this_thread::yield();
  EXPECT_GT(TransferredAfterChurn(kSize), 32u << 10) << "two threads";
  done = true;
  other.join();  // its cache goes at exit: one thread again
  EXPECT_LE(TransferredAfterChurn(kSize), 32u << 10) << "one thread again";
}

TEST(Stats, InternalFragmentationMatchesRounding) {
  // 100k requests of 17 bytes get 32-byte objects: the waste of this class
  // alone is 15/32 of what it gave.
  ClassRow before = RowFor(17);
  std::vector<void*> v;
  for (int i = 0; i < 100000; ++i) v.push_back(strata_malloc(17));
  ClassRow after = RowFor(17);
  uint64_t given = (after.allocs - before.allocs) * after.size;
  uint64_t asked = after.requested - before.requested;
  EXPECT_EQ(given, 100000u * 32);
  EXPECT_EQ(asked, 100000u * 17);
  for (void* p : v) strata_free(p);
}

TEST(Stats, ReportingNeverAllocates) {
  void* keep = strata_malloc(100);  // make sure the heap is initialised
  static char buf[256 * 1024];
  long before = g_libc_calls.load();
  size_t n = strata_stats_json(buf, sizeof buf);
  Snapshot s;
  TakeSnapshot(&s);
  size_t t = WriteText(s, buf, sizeof buf);
  int fd = open("/dev/null", O_WRONLY);
  strata_stats_print(fd);
  close(fd);
  long after = g_libc_calls.load();
  EXPECT_EQ(after, before) << "a report called malloc/free";
  EXPECT_GT(n, 100u);
  EXPECT_GT(t, 100u);
  strata_free(keep);
}

TEST(Stats, JsonReportsTheLengthItNeeds) {
  static char full[256 * 1024];
  size_t need = strata_stats_json(full, sizeof full);
  ASSERT_LT(need, sizeof full);
  EXPECT_EQ(strlen(full), need);
  EXPECT_EQ(full[0], '{');
  char small[64];
  size_t need2 = strata_stats_json(small, sizeof small);
  EXPECT_GE(need2, sizeof small);        // too small: says how much it needs
  EXPECT_EQ(strlen(small), sizeof small - 1);  // truncated, still terminated
}

// The purger's state in both reports. This test program holds little, so
// it has not started (the default options run one once 8 MiB were held).
TEST(Stats, ThePurgersStateIsReported) {
  static char buf[256 * 1024];
  ASSERT_LT(strata_stats_json(buf, sizeof buf), sizeof buf);
  const char* purger = strstr(buf, "\"purger\":{\"state\":\"");
  ASSERT_NE(purger, nullptr) << buf;
  EXPECT_NE(strstr(purger, "\"passes\":"), nullptr);
  EXPECT_NE(strstr(purger, "\"parks\":"), nullptr);
  EXPECT_NE(strstr(purger, "\"growth_releases\":"), nullptr);
  Snapshot s;
  TakeSnapshot(&s);
  if (s.purger_state == PurgerState::kNotStarted) {
    EXPECT_EQ(s.purger_passes, 0u);
    EXPECT_EQ(strncmp(purger + strlen("\"purger\":{\"state\":\""), "not_started\"", 12), 0);
  }
  WriteText(s, buf, sizeof buf);
  EXPECT_NE(strstr(buf, "background purger: "), nullptr) << buf;
  EXPECT_STREQ(PurgerStateName(PurgerState::kOff), "off");
  EXPECT_STREQ(PurgerStateName(PurgerState::kParked), "parked");
  EXPECT_STREQ(PurgerStateName(PurgerState::kRunning), "running");
}

}  // namespace
}  // namespace strata
