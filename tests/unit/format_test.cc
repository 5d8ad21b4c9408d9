// The fixed-buffer formatter (alloc/os/format.h), the warning writer, and
// the options parser (alloc/options.h) driven through the environment.
#include <gtest/gtest.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "alloc/options.h"
#include "alloc/os/format.h"
#include "alloc/os/os.h"

namespace strata {
namespace {

// Vformat without the printf attribute, so that the tests may pass what a
// compiler would warn about (unknown conversions).
std::string Fmt(const char* fmt, ...) {
  char buf[512];
  TextBuf b(buf, sizeof buf);
  va_list ap;
  va_start(ap, fmt);
  b.Vformat(fmt, ap);
  va_end(ap);
  return b.CStr();
}

TEST(TextBuf, Conversions) {
  EXPECT_EQ(Fmt("%s %zu %p %d %x", "abc", size_t(42), reinterpret_cast<void*>(0x1234), -7, 255u),
            "abc 42 0x1234 -7 0xff");
  EXPECT_EQ(Fmt("%c%c", 'o', 'k'), "ok");
  EXPECT_EQ(Fmt("%u", 4000000000u), "4000000000");
  EXPECT_EQ(Fmt("%llu", 18446744073709551615ull), "18446744073709551615");
  EXPECT_EQ(Fmt("%lld", -9223372036854775807ll - 1), "-9223372036854775808");
  EXPECT_EQ(Fmt("%zd", ptrdiff_t(-5)), "-5");
  EXPECT_EQ(Fmt("%zx", size_t(0xdeadbeefcafe)), "0xdeadbeefcafe");
  EXPECT_EQ(Fmt("%d", 0), "0");
  EXPECT_EQ(Fmt("%x", 0u), "0x0");
  EXPECT_EQ(Fmt("%p", static_cast<void*>(nullptr)), "0x0");
  EXPECT_EQ(Fmt("100%%"), "100%");
  EXPECT_EQ(Fmt("%s", static_cast<const char*>(nullptr)), "(null)");
  EXPECT_EQ(Fmt("%q"), "%q") << "unknown conversions are copied";
  EXPECT_EQ(Fmt("trailing %"), "trailing ");
  EXPECT_EQ(Fmt("%p", reinterpret_cast<void*>(~uintptr_t{0})), "0xffffffffffffffff");
}

TEST(TextBuf, FormatMatchesVformat) {
  char buf[64];
  TextBuf b(buf, sizeof buf);
  b.Format("%s=%zu", "n", size_t(7));
  EXPECT_STREQ(b.CStr(), "n=7");
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(b.needed(), 3u);
  EXPECT_FALSE(b.truncated());
  b.Clear();
  EXPECT_STREQ(b.CStr(), "");
}

TEST(TextBuf, Integers) {
  char buf[64];
  TextBuf b(buf, sizeof buf);
  b.U64(0);
  b.Put(' ');
  b.U64(UINT64_MAX);
  b.Put(' ');
  b.I64(INT64_MIN);
  b.Put(' ');
  b.Hex(0xabcdef);
  EXPECT_STREQ(b.CStr(), "0 18446744073709551615 -9223372036854775808 0xabcdef");
}

std::string FixedStr(double v, int digits) {
  char buf[64];
  TextBuf b(buf, sizeof buf);
  b.Fixed(v, digits);
  return b.CStr();
}

TEST(TextBuf, Fixed) {
  EXPECT_EQ(FixedStr(3.14159, 2), "3.14");
  EXPECT_EQ(FixedStr(3.14159, 0), "3");
  EXPECT_EQ(FixedStr(2.5, 1), "2.5");
  EXPECT_EQ(FixedStr(-2.5, 1), "-2.5");
  EXPECT_EQ(FixedStr(0.001, 2), "0.00");
  EXPECT_EQ(FixedStr(9.999, 2), "10.00");
  EXPECT_EQ(FixedStr(123.456, 3), "123.456");
  EXPECT_EQ(FixedStr(1024.0, 1), "1024.0");
  EXPECT_EQ(FixedStr(__builtin_nan(""), 2), "nan");
}

// Values beyond 1e18 are clamped to 1e18 (format.cc); the scaled value must
// not overflow 64 bits on the way.
TEST(TextBuf, FixedClampsHugeValues) {
  EXPECT_EQ(FixedStr(1e30, 2), "1000000000000000000.00");
  EXPECT_EQ(FixedStr(1e18, 1), "1000000000000000000.0");
}

TEST(TextBuf, PadLeftFrom) {
  char buf[64];
  TextBuf b(buf, sizeof buf);
  b.Str("[");
  size_t mark = b.Mark();
  b.U64(42);
  b.PadLeftFrom(mark, 6);
  b.Str("]");
  EXPECT_STREQ(b.CStr(), "[    42]");
  b.Clear();
  mark = b.Mark();
  b.Str("toolong");
  b.PadLeftFrom(mark, 3);
  EXPECT_STREQ(b.CStr(), "toolong") << "no padding when the text is wider";
  b.Clear();
  mark = b.Mark();
  b.PadLeftFrom(mark, 4);
  EXPECT_STREQ(b.CStr(), "    ");
}

TEST(TextBuf, TruncationKeepsCountingAndTerminates) {
  char buf[8];
  memset(buf, 'x', sizeof buf);
  TextBuf b(buf, sizeof buf);
  b.Str("hello world");
  EXPECT_TRUE(b.truncated());
  EXPECT_EQ(b.needed(), 11u);
  EXPECT_EQ(b.size(), 7u);
  EXPECT_STREQ(b.CStr(), "hello w");
  b.Format(" %zu more", size_t(12345));
  EXPECT_EQ(b.needed(), 11u + 11u);
  EXPECT_STREQ(b.CStr(), "hello w");
}

TEST(TextBuf, ExactFitIsNotTruncated) {
  char buf[6];
  TextBuf b(buf, sizeof buf);
  b.Str("12345");
  EXPECT_FALSE(b.truncated());
  EXPECT_STREQ(b.CStr(), "12345");
  b.Put('6');
  EXPECT_TRUE(b.truncated());
  EXPECT_STREQ(b.CStr(), "12345");
  EXPECT_EQ(b.needed(), 6u);
}

TEST(TextBuf, PaddingPastTheEndIsCountedNotWritten) {
  char guard_before[8] = "GUARD";
  char buf[8];
  char guard_after[8] = "GUARD";
  TextBuf b(buf, sizeof buf);
  b.Str("abcde");
  size_t mark = b.Mark();
  b.U64(123);
  b.PadLeftFrom(mark, 10);
  EXPECT_EQ(b.needed(), 15u);
  EXPECT_TRUE(b.truncated());
  EXPECT_EQ(strlen(b.CStr()), 7u);
  EXPECT_EQ(std::string(b.CStr(), 5), "abcde");
  EXPECT_STREQ(guard_before, "GUARD");
  EXPECT_STREQ(guard_after, "GUARD");
}

TEST(TextBuf, ZeroCapacity) {
  char c = 'z';
  TextBuf b(&c, 0);
  b.Str("abc");
  EXPECT_EQ(b.needed(), 3u);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_TRUE(b.truncated());
  b.CStr();
  EXPECT_EQ(c, 'z') << "nothing written into a zero-sized buffer";
}

// ---- warnings ----

TEST(Warn, OneLineStartingWithStrata) {
  testing::internal::CaptureStderr();
  Warnf("something odd at %p (%zu bytes)", reinterpret_cast<void*>(0xbeef), size_t(64));
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "strata: something odd at 0xbeef (64 bytes)\n");
}

TEST(Warn, OverlongMessagesAreMarkedTruncated) {
  std::string big(2000, 'a');
  testing::internal::CaptureStderr();
  Warnf("%s", big.c_str());
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "strata: (message truncated)\n");
}

// ---- options ----

class OptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    size_t n;
    const OptionInfo* t = OptionTable(&n);
    for (size_t i = 0; i < n; ++i) {
      std::string var = std::string("STRATA_") + t[i].name;
      const char* v = getenv(var.c_str());
      saved_.emplace_back(var, v ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(var.c_str());
    }
  }
  void TearDown() override {
    for (auto& [var, v] : saved_) {
      if (v) setenv(var.c_str(), v->c_str(), 1); else unsetenv(var.c_str());
    }
  }
  // Reads the options with `var` set to `value`; returns what went to stderr.
  std::string ReadWith(const char* var, const char* value, Options* o) {
    setenv(var, value, 1);
    testing::internal::CaptureStderr();
    ReadOptions(o);
    std::string err = testing::internal::GetCapturedStderr();
    unsetenv(var);
    return err;
  }

  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST_F(OptionsTest, TableListsEveryOptionOnce) {
  size_t n;
  const OptionInfo* t = OptionTable(&n);
  ASSERT_GE(n, 7u);
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    names.push_back(t[i].name);
    EXPECT_NE(t[i].help, nullptr);
    EXPECT_GT(strlen(t[i].help), 10u) << t[i].name;
    if (t[i].kind == OptKind::kChoice) {
      EXPECT_NE(strchr(t[i].choices, '|'), nullptr) << t[i].name;
    }
  }
  for (const char* want : {"SOURCE", "DECAY_MS", "BACKGROUND", "RELEASE", "THREAD_CACHE_BYTES", "STATS", "STATS_FILE",
                           "STATS_INTERVAL_MS"}) {
    EXPECT_EQ(std::count(names.begin(), names.end(), want), 1) << want;
  }
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a name is listed twice";
}

// The default of an option, as the option table states it.
int64_t TableDefault(const char* name) {
  size_t n;
  const OptionInfo* t = OptionTable(&n);
  for (size_t i = 0; i < n; ++i) {
    if (std::string(t[i].name) == name) return std::stoll(t[i].default_text);
  }
  ADD_FAILURE() << "no option " << name;
  return -1;
}

TEST_F(OptionsTest, DefaultsWithAnEmptyEnvironment) {
  Options o;
  testing::internal::CaptureStderr();
  ReadOptions(&o);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(o.source, 0);
  EXPECT_STREQ(o.source_text, "mmap");
  EXPECT_EQ(o.decay_ms, TableDefault("DECAY_MS"));
  EXPECT_EQ(o.release, 0);
  EXPECT_EQ(o.thread_cache_bytes, TableDefault("THREAD_CACHE_BYTES"));
  EXPECT_EQ(o.stats, 0);
  EXPECT_EQ(o.stats_file, 0);
  EXPECT_STREQ(o.stats_file_text, "");
  EXPECT_EQ(o.background, 1);
}

TEST_F(OptionsTest, DecayMsParses) {
  Options o;
  EXPECT_EQ(ReadWith("STRATA_DECAY_MS", "250", &o), "");
  EXPECT_EQ(o.decay_ms, 250);
  EXPECT_STREQ(o.decay_ms_text, "250");
  EXPECT_EQ(ReadWith("STRATA_DECAY_MS", "-1", &o), "");
  EXPECT_EQ(o.decay_ms, -1);
  EXPECT_EQ(ReadWith("STRATA_DECAY_MS", "0", &o), "");
  EXPECT_EQ(o.decay_ms, 0);
}

// redis-server rewrites its environment strings in place (process title):
// the option texts the report prints must not change with them.
TEST_F(OptionsTest, StringValuesAreCopiedOutOfTheEnvironment) {
  Options o;
  ASSERT_EQ(setenv("STRATA_STATS_FILE", "/tmp/strata-%p.txt", 1), 0);
  ReadOptions(&o);
  char* env_text = getenv("STRATA_STATS_FILE");
  ASSERT_NE(env_text, nullptr);
  EXPECT_NE(o.stats_file_text, env_text);
  memset(env_text, 'x', strlen(env_text));
  EXPECT_STREQ(o.stats_file_text, "/tmp/strata-%p.txt");
  unsetenv("STRATA_STATS_FILE");
}

TEST_F(OptionsTest, AValueTooLongToKeepWarnsAndKeepsTheDefault) {
  Options o;
  const std::string long_path(5000, 'a');
  std::string err = ReadWith("STRATA_STATS_FILE", long_path.c_str(), &o);
  EXPECT_EQ(err, "strata: ignoring STRATA_STATS_FILE: its value is longer than 4095 bytes; using the default \n");
  EXPECT_STREQ(o.stats_file_text, "");
  EXPECT_EQ(o.stats_file, 0);
}

TEST_F(OptionsTest, BadIntegerWarnsAndKeepsTheDefault) {
  for (const char* bad : {"abc", "", "12abc", "-", "1.5", " 5", "99999999999999999999"}) {
    Options o;
    std::string err = ReadWith("STRATA_DECAY_MS", bad, &o);
    EXPECT_EQ(o.decay_ms, TableDefault("DECAY_MS")) << "'" << bad << "'";
    EXPECT_EQ(err.rfind(std::string("strata: ignoring STRATA_DECAY_MS=") + bad, 0), 0u) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;
    EXPECT_NE(err.find(std::to_string(TableDefault("DECAY_MS"))), std::string::npos) << "names the default: " << err;
  }
}

TEST_F(OptionsTest, TheExactWarningForAbc) {
  Options o;
  std::string err = ReadWith("STRATA_DECAY_MS", "abc", &o);
  EXPECT_EQ(err.rfind("strata: ignoring STRATA_DECAY_MS=abc", 0), 0u) << err;
  EXPECT_EQ(o.decay_ms, TableDefault("DECAY_MS"));
}

TEST_F(OptionsTest, SourceChoices) {
  Options o;
  EXPECT_EQ(ReadWith("STRATA_SOURCE", "brk", &o), "");
  EXPECT_EQ(o.source, 1);
  EXPECT_STREQ(o.source_text, "brk");
  EXPECT_EQ(ReadWith("STRATA_SOURCE", "mmap", &o), "");
  EXPECT_EQ(o.source, 0);
  for (const char* bad : {"sbrk", "BRK", "br", "brkk", "", "mmap|brk"}) {
    Options p;
    std::string err = ReadWith("STRATA_SOURCE", bad, &p);
    EXPECT_EQ(p.source, 0) << bad;
    EXPECT_EQ(err.rfind(std::string("strata: ignoring STRATA_SOURCE=") + bad, 0), 0u) << err;
    EXPECT_NE(err.find("mmap|brk"), std::string::npos) << "lists the choices: " << err;
  }
}

TEST_F(OptionsTest, OtherChoicesBoolsAndStrings) {
  Options o;
  EXPECT_EQ(ReadWith("STRATA_RELEASE", "free", &o), "");
  EXPECT_EQ(o.release, 1);
  EXPECT_EQ(ReadWith("STRATA_STATS", "json", &o), "");
  EXPECT_EQ(o.stats, 4);
  EXPECT_EQ(ReadWith("STRATA_STATS", "1", &o), "");
  EXPECT_EQ(o.stats, 2);
  for (const char* yes : {"1", "true", "yes", "on"}) {
    EXPECT_EQ(ReadWith("STRATA_BACKGROUND", yes, &o), "");
    EXPECT_EQ(o.background, 1) << yes;
  }
  for (const char* no : {"0", "false", "no", "off"}) {
    EXPECT_EQ(ReadWith("STRATA_BACKGROUND", no, &o), "");
    EXPECT_EQ(o.background, 0) << no;
  }
  std::string err = ReadWith("STRATA_BACKGROUND", "maybe", &o);
  EXPECT_EQ(err.rfind("strata: ignoring STRATA_BACKGROUND=maybe", 0), 0u) << err;
  EXPECT_EQ(o.background, 1) << "the default is kept";
  EXPECT_EQ(ReadWith("STRATA_STATS_FILE", "/tmp/strata.txt", &o), "");
  EXPECT_STREQ(o.stats_file_text, "/tmp/strata.txt");
  EXPECT_EQ(o.stats_file, 15);
  EXPECT_EQ(ReadWith("STRATA_THREAD_CACHE_BYTES", "65536", &o), "");
  EXPECT_EQ(o.thread_cache_bytes, 65536);
}

TEST_F(OptionsTest, NamesMustMatchExactly) {
  Options o;
  EXPECT_EQ(ReadWith("STRATA_DECAY_MS_EXTRA", "5", &o), "");
  EXPECT_EQ(o.decay_ms, TableDefault("DECAY_MS"));
  EXPECT_EQ(ReadWith("STRATA_DECAY", "5", &o), "");
  EXPECT_EQ(o.decay_ms, TableDefault("DECAY_MS"));
  EXPECT_EQ(ReadWith("XSTRATA_DECAY_MS", "5", &o), "");
  EXPECT_EQ(o.decay_ms, TableDefault("DECAY_MS"));
}

TEST_F(OptionsTest, SeveralWarningsOneLineEach) {
  setenv("STRATA_SOURCE", "nope", 1);
  setenv("STRATA_DECAY_MS", "soon", 1);
  Options o;
  testing::internal::CaptureStderr();
  ReadOptions(&o);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 2) << err;
  EXPECT_NE(err.find("strata: ignoring STRATA_SOURCE=nope"), std::string::npos) << err;
  EXPECT_NE(err.find("strata: ignoring STRATA_DECAY_MS=soon"), std::string::npos) << err;
}

TEST_F(OptionsTest, FindEnv) {
  setenv("STRATA_SOMETHING", "value=with=equals", 1);
  const char* v = FindEnv("STRATA_SOMETHING");
  ASSERT_NE(v, nullptr);
  EXPECT_STREQ(v, "value=with=equals");
  EXPECT_EQ(FindEnv("STRATA_SOMETHIN"), nullptr);
  EXPECT_EQ(FindEnv("STRATA_SOMETHING_ELSE"), nullptr);
  unsetenv("STRATA_SOMETHING");
  EXPECT_EQ(FindEnv("STRATA_SOMETHING"), nullptr);
}

}  // namespace
}  // namespace strata
