// Black-box conformance test of the C++ allocation operators that
// libstrata.so replaces, run under LD_PRELOAD=libstrata.so. Every form of
// ::operator new / ::operator delete is called explicitly. Built with
// -fno-builtin -fsized-deallocation -faligned-new.
//
// STRATA_TEST_ALLOW_NATIVE=1 lets the test run against libstdc++/glibc
// (no preload) for development; strata-specific checks are then skipped.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <malloc.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace {

bool g_native = false;
size_t (*g_strata_usable_size)(const void *) = nullptr;

bool strata_mapped() {
  FILE *f = std::fopen("/proc/self/maps", "r");
  if (!f)
    return false;
  char line[4096];
  bool found = false;
  while (std::fgets(line, sizeof line, f))
    if (std::strstr(line, "libstrata.so")) {
      found = true;
      break;
    }
  std::fclose(f);
  return found;
}

// Where the global symbol lookup finds name (empty if nowhere).
std::string symbol_file(const char *name) {
  void *sym = dlsym(RTLD_DEFAULT, name);
  Dl_info info{};
  if (!sym || !dladdr(sym, &info) || !info.dli_fname)
    return std::string();
  return info.dli_fname;
}

bool from_strata(const char *name) {
  return symbol_file(name).find("libstrata.so") != std::string::npos;
}

// Runs before main(): exit(1) unless strata is in effect (libstrata.so
// mapped, exporting strata_malloc, and providing malloc and operator new).
bool check_in_effect() {
  bool mapped = strata_mapped();
  void *sym = dlsym(RTLD_DEFAULT, "strata_malloc");
  g_strata_usable_size = reinterpret_cast<size_t (*)(const void *)>(
      dlsym(RTLD_DEFAULT, "strata_usable_size"));
  bool owns = from_strata("malloc") && from_strata("_Znwm");
  if (mapped && sym && g_strata_usable_size && owns) {
    std::printf("cxx_ops: libstrata.so is in effect\n");
    return true;
  }
  std::fprintf(stderr,
               "cxx_ops: libstrata.so is NOT in effect (mapped: %s, "
               "strata_malloc: %s, malloc from '%s', operator new from '%s')\n",
               mapped ? "yes" : "no", sym ? "found" : "missing",
               symbol_file("malloc").c_str(), symbol_file("_Znwm").c_str());
  const char *allow = std::getenv("STRATA_TEST_ALLOW_NATIVE");
  if (allow && std::strcmp(allow, "1") == 0) {
    std::fprintf(stderr, "cxx_ops: WARNING: STRATA_TEST_ALLOW_NATIVE=1, "
                         "testing the native operators instead\n");
    g_native = true;
    g_strata_usable_size = nullptr;
    return false;
  }
  std::fprintf(stderr, "cxx_ops: FATAL: run under LD_PRELOAD=libstrata.so\n");
  std::exit(1);
}

const bool g_in_effect = check_in_effect();

size_t usable(const void *p) {
  if (g_strata_usable_size)
    return g_strata_usable_size(p);
  return malloc_usable_size(const_cast<void *>(p));  // native
}

bool is_aligned(const void *p, size_t a) {
  return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}

// Consumes a result that should never exist (the allocation must throw).
void sink(void *p) {
  if (p)
    ::operator delete(p);
}
void sink(void *p, std::align_val_t al) {
  if (p)
    ::operator delete(p, al);
}
void sink_array(void *p) {
  if (p)
    ::operator delete[](p);
}
void sink_array(void *p, std::align_val_t al) {
  if (p)
    ::operator delete[](p, al);
}

size_t opaque(size_t v) {
  volatile size_t x = v;
  return x;
}

// Writes n bytes and reads them back; returns true when all survived.
bool write_check(void *p, size_t n, unsigned char seed) {
  auto *b = static_cast<unsigned char *>(p);
  for (size_t i = 0; i < n; i++)
    b[i] = static_cast<unsigned char>(seed + i * 13);
  for (size_t i = 0; i < n; i++)
    if (b[i] != static_cast<unsigned char>(seed + i * 13))
      return false;
  return true;
}

constexpr size_t kMiB = size_t{1} << 20;
const size_t kSizes[] = {0,     1,      7,      8,       16,     17,
                         100,   255,    1000,   4096,    5000,   65536,
                         100000, 300000, kMiB,  4 * kMiB + 3, 16 * kMiB};

std::vector<size_t> alignments() {
  std::vector<size_t> v;
  for (size_t a = 1; a <= 64 * 1024; a <<= 1)
    v.push_back(a);
  v.push_back(kMiB);
  return v;
}

void check_block(void *p, size_t n, size_t align, const char *what) {
  ASSERT_NE(p, nullptr) << what << " size " << n;
  EXPECT_TRUE(is_aligned(p, align))
      << what << " size " << n << " align " << align << " got " << p;
  size_t u = usable(p);
  EXPECT_GE(u, n) << what << " size " << n << " align " << align;
  EXPECT_TRUE(write_check(p, n, static_cast<unsigned char>(n)))
      << what << " size " << n;
}

}  // namespace

TEST(CxxOps, StrataInEffect) {
  if (g_native)
    GTEST_SKIP() << "native run (STRATA_TEST_ALLOW_NATIVE=1)";
  EXPECT_TRUE(g_in_effect);
  // Every replaceable operator must resolve to libstrata.so.
  static const char *const names[] = {
      "_Znwm",
      "_Znam",
      "_ZnwmRKSt9nothrow_t",
      "_ZnamRKSt9nothrow_t",
      "_ZnwmSt11align_val_t",
      "_ZnamSt11align_val_t",
      "_ZnwmSt11align_val_tRKSt9nothrow_t",
      "_ZnamSt11align_val_tRKSt9nothrow_t",
      "_ZdlPv",
      "_ZdaPv",
      "_ZdlPvm",
      "_ZdaPvm",
      "_ZdlPvRKSt9nothrow_t",
      "_ZdaPvRKSt9nothrow_t",
      "_ZdlPvSt11align_val_t",
      "_ZdaPvSt11align_val_t",
      "_ZdlPvmSt11align_val_t",
      "_ZdaPvmSt11align_val_t",
      "_ZdlPvSt11align_val_tRKSt9nothrow_t",
      "_ZdaPvSt11align_val_tRKSt9nothrow_t",
  };
  for (const char *name : names)
    EXPECT_TRUE(from_strata(name))
        << name << " resolves to '" << symbol_file(name) << "'";
}

TEST(CxxOps, PlainNewDelete) {
  const size_t def = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  for (size_t n : kSizes) {
    void *p = ::operator new(n);
    check_block(p, n, def, "operator new");
    ::operator delete(p);

    p = ::operator new(n);
    check_block(p, n, def, "operator new (sized delete)");
    ::operator delete(p, n);

    p = ::operator new[](n);
    check_block(p, n, def, "operator new[]");
    ::operator delete[](p);

    p = ::operator new[](n);
    check_block(p, n, def, "operator new[] (sized delete[])");
    ::operator delete[](p, n);
  }
  ::operator delete(nullptr);
  ::operator delete[](nullptr);
  ::operator delete(nullptr, std::nothrow);
  ::operator delete[](nullptr, std::nothrow);
  ::operator delete(nullptr, std::align_val_t(64));
  ::operator delete[](nullptr, std::align_val_t(64));
}

TEST(CxxOps, NothrowNewDelete) {
  const size_t def = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  for (size_t n : kSizes) {
    void *p = ::operator new(n, std::nothrow);
    check_block(p, n, def, "operator new(nothrow)");
    ::operator delete(p, std::nothrow);

    p = ::operator new[](n, std::nothrow);
    check_block(p, n, def, "operator new[](nothrow)");
    ::operator delete[](p, std::nothrow);

    // nothrow allocation, ordinary deletes (all must interoperate)
    p = ::operator new(n, std::nothrow);
    check_block(p, n, def, "operator new(nothrow)");
    ::operator delete(p, n);
    p = ::operator new[](n, std::nothrow);
    check_block(p, n, def, "operator new[](nothrow)");
    ::operator delete[](p);
  }
}

TEST(CxxOps, AlignedNewDelete) {
  for (size_t a : alignments()) {
    const std::align_val_t al{a};
    const size_t sizes[] = {1, a / 2 + 1, a, 3 * a, 100, 4096 + 1};
    for (size_t n : sizes) {
      void *p = ::operator new(n, al);
      check_block(p, n, a, "operator new(align)");
      ::operator delete(p, al);

      p = ::operator new(n, al);
      check_block(p, n, a, "operator new(align), sized delete");
      ::operator delete(p, n, al);

      p = ::operator new[](n, al);
      check_block(p, n, a, "operator new[](align)");
      ::operator delete[](p, al);

      p = ::operator new[](n, al);
      check_block(p, n, a, "operator new[](align), sized delete[]");
      ::operator delete[](p, n, al);

      p = ::operator new(n, al, std::nothrow);
      check_block(p, n, a, "operator new(align, nothrow)");
      ::operator delete(p, al, std::nothrow);

      p = ::operator new[](n, al, std::nothrow);
      check_block(p, n, a, "operator new[](align, nothrow)");
      ::operator delete[](p, al, std::nothrow);
    }
  }
}

TEST(CxxOps, OutOfMemoryThrows) {
  const size_t huge[] = {opaque(SIZE_MAX / 2), opaque(SIZE_MAX),
                         opaque(SIZE_MAX - 4095), opaque(PTRDIFF_MAX)};
  for (size_t n : huge) {
    EXPECT_THROW(sink(::operator new(n)), std::bad_alloc) << n;
    EXPECT_THROW(sink_array(::operator new[](n)), std::bad_alloc) << n;
    EXPECT_EQ(::operator new(n, std::nothrow), nullptr) << n;
    EXPECT_EQ(::operator new[](n, std::nothrow), nullptr) << n;
    // native: libstdc++ 12 rounds the size up to a multiple of the alignment
    // without an overflow check, so for sizes within `align` of SIZE_MAX its
    // aligned operator new gets a size that wrapped to 0 and succeeds. strata
    // must fail these; natively they are skipped.
    if (g_native && n > SIZE_MAX - kMiB)
      continue;
    EXPECT_THROW(
        sink(::operator new(n, std::align_val_t(64)), std::align_val_t(64)),
        std::bad_alloc)
        << n;
    EXPECT_THROW(sink_array(::operator new[](n, std::align_val_t(4096)),
                            std::align_val_t(4096)),
                 std::bad_alloc)
        << n;
    EXPECT_EQ(::operator new(n, std::align_val_t(64), std::nothrow), nullptr)
        << n;
    EXPECT_EQ(::operator new[](n, std::align_val_t(kMiB), std::nothrow),
              nullptr)
        << n;
  }
  // Allocation still works afterwards.
  void *p = ::operator new(1000);
  check_block(p, 1000, __STDCPP_DEFAULT_NEW_ALIGNMENT__, "after OOM");
  ::operator delete(p, 1000);
}

namespace {
int g_handler_calls = 0;
void counting_handler() {
  ++g_handler_calls;
  std::set_new_handler(nullptr);  // uninstall: the next failure throws
}

template <class F>
int handler_calls_for(F &&alloc) {
  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  alloc();
  std::set_new_handler(nullptr);
  return g_handler_calls;
}
}  // namespace

TEST(CxxOps, NewHandlerCalledBeforeBadAlloc) {
  const size_t n = opaque(SIZE_MAX / 2);
  EXPECT_GE(handler_calls_for([&] {
              EXPECT_THROW(sink(::operator new(n)), std::bad_alloc);
            }),
            1)
      << "operator new(size_t)";
  EXPECT_GE(handler_calls_for([&] {
              EXPECT_THROW(sink_array(::operator new[](n)), std::bad_alloc);
            }),
            1)
      << "operator new[](size_t)";
  EXPECT_GE(handler_calls_for([&] {
              EXPECT_THROW(sink(::operator new(n, std::align_val_t(256)),
                                std::align_val_t(256)),
                           std::bad_alloc);
            }),
            1)
      << "operator new(size_t, align_val_t)";
  EXPECT_GE(handler_calls_for([&] {
              EXPECT_THROW(
                  sink_array(::operator new[](n, std::align_val_t(256)),
                             std::align_val_t(256)),
                  std::bad_alloc);
            }),
            1)
      << "operator new[](size_t, align_val_t)";
  // The nothrow forms also consult the new-handler, then return nullptr.
  EXPECT_GE(handler_calls_for([&] {
              EXPECT_EQ(::operator new(n, std::nothrow), nullptr);
            }),
            1)
      << "operator new(size_t, nothrow)";
  EXPECT_GE(handler_calls_for([&] {
              EXPECT_EQ(
                  ::operator new[](n, std::align_val_t(64), std::nothrow),
                  nullptr);
            }),
            1)
      << "operator new[](size_t, align_val_t, nothrow)";
  EXPECT_EQ(std::get_new_handler(), nullptr);
}

namespace {
// Successful allocations must never consult the new-handler.
int g_dummy_calls = 0;
void dummy_handler() { ++g_dummy_calls; }
}  // namespace

TEST(CxxOps, NewHandlerNotCalledOnSuccess) {
  g_dummy_calls = 0;
  std::set_new_handler(dummy_handler);
  for (size_t n : kSizes) {
    void *p = ::operator new(n);
    ::operator delete(p, n);
    p = ::operator new(n, std::align_val_t(128));
    ::operator delete(p, n, std::align_val_t(128));
  }
  std::set_new_handler(nullptr);
  EXPECT_EQ(g_dummy_calls, 0);
}

namespace {
int g_live_objects = 0;
struct Tracked {
  Tracked(int v = -1) : value(v) { ++g_live_objects; }  // NOLINT
  ~Tracked() { --g_live_objects; }
  int value;
  char pad[40];
};
struct alignas(64) Over64 {
  unsigned char bytes[100];
};
struct alignas(4096) OverPage {
  unsigned char bytes[10];
};
}  // namespace

TEST(CxxOps, ObjectsAndArrays) {
  for (int i = 0; i < 1000; i++) {
    Tracked *t = new Tracked(i);
    EXPECT_EQ(t->value, i);
    delete t;
    Tracked *arr = new Tracked[static_cast<size_t>(i % 37 + 1)]{Tracked(i)};
    delete[] arr;  // array cookie + sized delete[]
  }
  EXPECT_EQ(g_live_objects, 0);

  for (int i = 0; i < 200; i++) {
    auto *o = new Over64;
    EXPECT_TRUE(is_aligned(o, 64));
    std::memset(o->bytes, i, sizeof o->bytes);
    auto *oa = new Over64[static_cast<size_t>(i % 9 + 1)];
    EXPECT_TRUE(is_aligned(oa, 64));
    auto *pg = new OverPage;
    EXPECT_TRUE(is_aligned(pg, 4096));
    pg->bytes[0] = 1;
    auto *pga = new OverPage[3];
    EXPECT_TRUE(is_aligned(pga, 4096));
    delete o;
    delete[] oa;
    delete pg;
    delete[] pga;
  }
  auto up = std::make_unique<Over64[]>(50);
  EXPECT_TRUE(is_aligned(up.get(), 64));
  auto sp = std::make_shared<OverPage>();
  EXPECT_TRUE(is_aligned(sp.get(), 4096));
}

TEST(CxxOps, ContainerWorkload) {
  uint64_t s = 88172645463325252ull;
  auto rnd = [&s] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  std::map<int, std::string> m;
  std::vector<std::vector<int>> vv;
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 5000; i++) {
      int k = static_cast<int>(rnd() % 20000);
      m[k] = std::string(rnd() % 300, static_cast<char>('a' + k % 26));
      if (rnd() % 3 == 0)
        m.erase(static_cast<int>(rnd() % 20000));
    }
    for (int i = 0; i < 200; i++) {
      std::vector<int> v;
      size_t n = rnd() % 20000;
      for (size_t j = 0; j < n; j++)
        v.push_back(static_cast<int>(j));
      vv.push_back(std::move(v));
    }
    if (vv.size() > 400)
      vv.erase(vv.begin(), vv.begin() + 200);
    for (const auto &kv : m) {
      const std::string &str = kv.second;
      for (char c : str)
        ASSERT_EQ(c, static_cast<char>('a' + kv.first % 26));
    }
    for (const auto &v : vv)
      for (size_t j = 0; j < v.size(); j++)
        ASSERT_EQ(v[j], static_cast<int>(j));
  }
  std::string big;
  for (int i = 0; i < 100000; i++)
    big += "strata";
  EXPECT_EQ(big.size(), 600000u);
  big.shrink_to_fit();
  EXPECT_EQ(big.compare(0, 6, "strata"), 0);
}

TEST(CxxOps, MixWithMalloc) {
  // operator new memory is reported by the strata API like malloc memory.
  for (size_t n : kSizes) {
    void *p = ::operator new(n);
    EXPECT_GE(usable(p), n);
    ::operator delete(p, n);
    void *q = ::operator new(n, std::align_val_t(256));
    EXPECT_GE(usable(q), n);
    ::operator delete(q, std::align_val_t(256));
  }
}
