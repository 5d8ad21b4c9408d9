// strata_micro: micro-benchmarks that run the same operation sequences
// through three allocators in one process, interleaved (strata, mimalloc,
// glibc, strata, mimalloc, glibc, ...):
//
//   strata    the strata_* API from strata_core (which does not replace malloc)
//   mimalloc  mi_* from libmimalloc.so.2, loaded with dlopen(RTLD_LOCAL) and
//             never linked: Debian's libmimalloc.so exports malloc, and a
//             linked copy would silently become the "glibc" column
//   glibc     plain malloc/free/calloc/realloc/aligned_alloc; main() verifies
//             that malloc really resolves to libc.so.6 before running
//
// Every allocator is called through the same struct of function pointers, so
// the indirect-call cost is identical for all three. Names say which
// allocator ran: BM_MallocFree/strata/64, BM_MallocFree/mimalloc/64, ...
//
// After the run a table prints, per benchmark, nanoseconds per item (an item
// is one malloc+free pair, one realloc, one object passed, ...) for each
// allocator and the ratio strata / min(mimalloc, glibc); above 1 strata is
// slower than the best peer. With the console format it goes to stdout; with
// --benchmark_format=json it goes to stderr so the JSON stays valid. A tool
// reading the JSON computes the same thing: for each entry take
// 1e9 / items_per_second (or real_time when absent), group names by replacing
// the "/strata/", "/mimalloc/", "/glibc/" segment, and divide.
//
// Run:  build/bench/bench/micro/strata_micro --benchmark_min_time=0.05
//       (--benchmark_filter=MallocFree, --benchmark_repetitions=5, ...)

#include <strata/strata.h>

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace {

struct Alloc {
  const char* name;
  void* (*malloc)(size_t);
  void (*free)(void*);
  void* (*calloc)(size_t, size_t);
  void* (*realloc)(void*, size_t);
  void* (*aligned)(size_t alignment, size_t size);  // aligned_alloc order
  bool available;
  const char* why_unavailable;
};

// ---- mimalloc, loaded at run time ------------------------------------------
struct Mi {
  void* handle = nullptr;
  void* (*malloc)(size_t) = nullptr;
  void (*free)(void*) = nullptr;
  void* (*calloc)(size_t, size_t) = nullptr;
  void* (*realloc)(void*, size_t) = nullptr;
  void* (*malloc_aligned)(size_t size, size_t alignment) = nullptr;
  bool (*is_in_heap_region)(const void*) = nullptr;
  std::string error;
} g_mi;

// mi_malloc_aligned takes (size, alignment): one tail-call adapter.
void* mi_aligned_adapter(size_t alignment, size_t size) {
  return g_mi.malloc_aligned(size, alignment);
}

template <class F>
bool mi_sym(F& f, const char* name) {
  f = reinterpret_cast<F>(dlsym(g_mi.handle, name));
  if (!f) g_mi.error = std::string("dlsym ") + name + " failed";
  return f != nullptr;
}

bool load_mimalloc() {
  // STRATA_MICRO_MIMALLOC overrides the library (a path, or "none" to skip).
  const char* lib = std::getenv("STRATA_MICRO_MIMALLOC");
  if (!lib || !*lib) lib = "libmimalloc.so.2";
  g_mi.handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!g_mi.handle) {
    const char* e = dlerror();
    g_mi.error = std::string("dlopen ") + lib + ": " + (e ? e : "?");
    return false;
  }
  return mi_sym(g_mi.malloc, "mi_malloc") && mi_sym(g_mi.free, "mi_free") &&
         mi_sym(g_mi.calloc, "mi_calloc") &&
         mi_sym(g_mi.realloc, "mi_realloc") &&
         mi_sym(g_mi.malloc_aligned, "mi_malloc_aligned") &&
         mi_sym(g_mi.is_in_heap_region, "mi_is_in_heap_region");
}

// ---- glibc check ---------------------------------------------------------
const char* object_of(const void* fn) {
  Dl_info info{};
  if (!dladdr(fn, &info) || !info.dli_fname) return "(unknown)";
  return info.dli_fname;
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "strata_micro: FATAL: %s\n", msg.c_str());
  std::abort();
}

std::string verify_glibc_malloc() {
  void* global_malloc = dlsym(RTLD_DEFAULT, "malloc");
  void* our_malloc = reinterpret_cast<void*>(&::malloc);
  std::string global_obj = object_of(global_malloc);
  std::string our_obj = object_of(our_malloc);
  if (global_obj.find("libc.so.6") == std::string::npos)
    die("malloc resolves to " + global_obj +
        ", not glibc's libc.so.6: the glibc column would measure another "
        "allocator (was mimalloc or libstrata.so linked or preloaded?)");
  if (our_malloc != global_malloc || our_obj.find("libc.so.6") == std::string::npos)
    die("&malloc in this binary (" + our_obj + ") is not glibc's malloc");
  if (reinterpret_cast<void*>(&strata_malloc) == global_malloc)
    die("malloc is strata_malloc");
  for (const char* sym : {"free", "calloc", "realloc", "aligned_alloc"}) {
    std::string obj = object_of(dlsym(RTLD_DEFAULT, sym));
    if (obj.find("libc.so.6") == std::string::npos)
      die(std::string(sym) + " resolves to " + obj + ", not libc.so.6");
  }
  void* p = ::malloc(16);
  if (g_mi.is_in_heap_region && g_mi.is_in_heap_region(p))
    die("malloc(16) returned memory in mimalloc's heap");
  ::free(p);
  if (g_mi.malloc) {  // and mimalloc itself works as expected
    void* q = g_mi.malloc(16);
    if (!g_mi.is_in_heap_region(q)) die("mi_malloc(16) is not in mimalloc's heap");
    g_mi.free(q);
  }
  return global_obj;
}

std::vector<Alloc> g_allocs;

// ---- helpers ---------------------------------------------------------------
inline void touch(void* p) {
  if (!p) die("allocation failed");
  *static_cast<volatile char*>(p) = 1;
}

bool ready(benchmark::State& st, const Alloc* a) {
  if (a->available) return true;
  st.SkipWithError(a->why_unavailable);
  for (auto _ : st) {
  }
  return false;
}

// A fixed pseudo-random sequence of sizes in [16, 512].
constexpr size_t kSizes = 1024;
size_t g_sizes[kSizes];
void init_sizes() {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t& s : g_sizes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s = 16 + x % 497;
  }
}

// ---- benchmarks --------------------------------------------------------------
void BM_MallocFree(benchmark::State& st, const Alloc* a, size_t size) {
  if (!ready(st, a)) return;
  for (auto _ : st) {
    void* p = a->malloc(size);
    touch(p);
    benchmark::DoNotOptimize(p);
    a->free(p);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations());
}

constexpr int kBatch = 1000;
void BM_Batch(benchmark::State& st, const Alloc* a, bool lifo) {
  if (!ready(st, a)) return;
  void* ptrs[kBatch];
  for (auto _ : st) {
    for (int i = 0; i < kBatch; i++) {
      ptrs[i] = a->malloc(g_sizes[i]);
      touch(ptrs[i]);
    }
    benchmark::DoNotOptimize(ptrs);
    benchmark::ClobberMemory();
    if (lifo) {
      for (int i = kBatch - 1; i >= 0; i--) a->free(ptrs[i]);
    } else {
      for (int i = 0; i < kBatch; i++) a->free(ptrs[i]);
    }
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * kBatch);  // item = malloc+free pair
}

// Grow a buffer from 16 B to 1 MiB, writing its last byte after each step.
void BM_ReallocGrow(benchmark::State& st, const Alloc* a, bool geometric) {
  if (!ready(st, a)) return;
  constexpr size_t kMax = size_t{1} << 20;
  int64_t steps = 0;
  for (auto _ : st) {
    size_t n = 16;
    char* p = static_cast<char*>(a->malloc(n));
    touch(p);
    while (n < kMax) {
      n = geometric ? n + n / 2 : n + 16;
      if (n > kMax) n = kMax;
      p = static_cast<char*>(a->realloc(p, n));
      touch(p);
      p[n - 1] = 1;
      steps++;
    }
    benchmark::DoNotOptimize(p);
    a->free(p);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(steps);  // item = one realloc
}

void BM_Calloc(benchmark::State& st, const Alloc* a, size_t size) {
  if (!ready(st, a)) return;
  for (auto _ : st) {
    void* p = a->calloc(1, size);
    touch(p);
    benchmark::DoNotOptimize(p);
    a->free(p);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations());
}

void BM_Aligned(benchmark::State& st, const Alloc* a, size_t size, size_t align) {
  if (!ready(st, a)) return;
  void* chk = a->aligned(align, size);
  bool ok = chk && (reinterpret_cast<uintptr_t>(chk) & (align - 1)) == 0;
  a->free(chk);
  if (!ok) {
    st.SkipWithError("aligned allocation returned NULL or a misaligned pointer");
    for (auto _ : st) {
    }
    return;
  }
  for (auto _ : st) {
    void* p = a->aligned(align, size);
    touch(p);
    benchmark::DoNotOptimize(p);
    a->free(p);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations());
}

// Google Benchmark threads, each doing malloc+free pairs of mixed sizes.
void BM_MT_MallocFree(benchmark::State& st, const Alloc* a) {
  if (!ready(st, a)) return;
  size_t i = static_cast<size_t>(st.thread_index()) * 97;
  for (auto _ : st) {
    void* p = a->malloc(g_sizes[i++ % kSizes]);
    touch(p);
    benchmark::DoNotOptimize(p);
    a->free(p);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations());
}

// Producer/consumer over a lock-free SPSC ring: thread 0 allocates batches of
// 64-byte objects and publishes them, thread 1 takes them and frees them
// (every free is a cross-thread free). Both threads run the same number of
// iterations, so each run ends with the ring empty.
struct Ring {
  static constexpr size_t kCap = 1024;  // power of two, multiple of kObjs
  static constexpr size_t kObjs = 64;   // objects per iteration
  alignas(64) std::atomic<size_t> head{0};  // written by the producer
  alignas(64) std::atomic<size_t> tail{0};  // written by the consumer
  alignas(64) void* slot[kCap];
};
Ring g_rings[3];

inline void spin_wait(int& spins) {
  if (++spins < 128) {
    __builtin_ia32_pause();
  } else {
    sched_yield();  // 2 cores, shared: never spin without yielding
  }
}

void BM_ProducerConsumer(benchmark::State& st, const Alloc* a, Ring* r) {
  if (!ready(st, a)) return;
  constexpr size_t kMask = Ring::kCap - 1;
  if (st.thread_index() == 0) {
    void* batch[Ring::kObjs];
    for (auto _ : st) {
      for (size_t i = 0; i < Ring::kObjs; i++) {
        batch[i] = a->malloc(64);
        touch(batch[i]);
      }
      size_t h = r->head.load(std::memory_order_relaxed);
      int spins = 0;
      while (h + Ring::kObjs - r->tail.load(std::memory_order_acquire) > Ring::kCap)
        spin_wait(spins);
      for (size_t i = 0; i < Ring::kObjs; i++) r->slot[(h + i) & kMask] = batch[i];
      r->head.store(h + Ring::kObjs, std::memory_order_release);
    }
    st.SetItemsProcessed(st.iterations() * Ring::kObjs);  // item = one object
  } else {
    for (auto _ : st) {
      size_t t = r->tail.load(std::memory_order_relaxed);
      int spins = 0;
      while (r->head.load(std::memory_order_acquire) - t < Ring::kObjs) spin_wait(spins);
      void* batch[Ring::kObjs];
      for (size_t i = 0; i < Ring::kObjs; i++) batch[i] = r->slot[(t + i) & kMask];
      r->tail.store(t + Ring::kObjs, std::memory_order_release);
      for (void* p : batch) a->free(p);
    }
  }
}

// ---- registration (interleaved: every config runs strata, mimalloc, glibc) --
template <class F, class... Args>
benchmark::internal::Benchmark* reg(const std::string& name, F f, Args... args) {
  return benchmark::RegisterBenchmark(
      name.c_str(), [=](benchmark::State& st) { f(st, args...); });
}

void register_all() {
  const size_t sizes[] = {16, 32, 64, 128, 256, 512, 1024, 4096, 16384,
                          65536, 262144, 1 << 20, 4 << 20};
  for (size_t s : sizes)
    for (const Alloc& a : g_allocs)
      reg(std::string("BM_MallocFree/") + a.name + "/" + std::to_string(s),
          BM_MallocFree, &a, s);
  for (bool lifo : {true, false})
    for (const Alloc& a : g_allocs)
      reg(std::string(lifo ? "BM_BatchLIFO/" : "BM_BatchFIFO/") + a.name,
          BM_Batch, &a, lifo);
  for (bool geometric : {false, true})
    for (const Alloc& a : g_allocs)
      reg(std::string(geometric ? "BM_ReallocGrowX1.5/" : "BM_ReallocGrow16/") + a.name,
          BM_ReallocGrow, &a, geometric);
  for (size_t s : {size_t{64}, size_t{4096}, size_t{1} << 20})
    for (const Alloc& a : g_allocs)
      reg(std::string("BM_Calloc/") + a.name + "/" + std::to_string(s), BM_Calloc, &a, s);
  const size_t aligned[][2] = {{64, 64}, {4096, 4096}, {1 << 20, 2 << 20}};
  for (auto& sa : aligned)
    for (const Alloc& a : g_allocs)
      reg(std::string("BM_Aligned/") + a.name + "/" + std::to_string(sa[0]) +
              "/align:" + std::to_string(sa[1]),
          BM_Aligned, &a, sa[0], sa[1]);
  for (int t : {1, 2, 16})
    for (const Alloc& a : g_allocs)
      reg(std::string("BM_MT_MallocFree/") + a.name, BM_MT_MallocFree, &a)
          ->Threads(t)
          ->UseRealTime();
  for (size_t i = 0; i < g_allocs.size(); i++)
    reg(std::string("BM_ProducerConsumer/") + g_allocs[i].name, BM_ProducerConsumer,
        &g_allocs[i], &g_rings[i])
        ->Threads(2)
        ->UseRealTime();
}

// ---- ratio summary ---------------------------------------------------------
// Wraps a reporter; remembers ns per item for each run and prints
// strata / min(mimalloc, glibc) per benchmark at the end.
template <class Base>
class RatioReporter : public Base {
 public:
  using Base::Base;
  bool to_stderr = false;

  void ReportRuns(const std::vector<benchmark::BenchmarkReporter::Run>& runs) override {
    Base::ReportRuns(runs);
    for (const auto& r : runs) {
      if (r.error_occurred) continue;
      bool median = r.run_type == benchmark::BenchmarkReporter::Run::RT_Aggregate &&
                    r.aggregate_name == "median";
      if (r.run_type != benchmark::BenchmarkReporter::Run::RT_Iteration && !median)
        continue;
      std::string name = r.run_name.str();
      for (int i = 0; i < 3; i++) {
        // The allocator is a whole path segment: ".../strata/..." or ".../strata".
        std::string tok = std::string("/") + kNames[i];
        size_t pos = name.find(tok + "/");
        if (pos == std::string::npos) {
          if (name.size() < tok.size() || name.compare(name.size() - tok.size(), tok.size(), tok) != 0)
            continue;
          pos = name.size() - tok.size();
        }
        std::string key = name.substr(0, pos) + name.substr(pos + tok.size());
        auto it = r.counters.find("items_per_second");
        double ns = it != r.counters.end() && it->second.value > 0
                        ? 1e9 / it->second.value
                        : r.GetAdjustedRealTime();  // fallback: time unit of run
        if (!rows_.count(key)) order_.push_back(key);
        Row& row = rows_[key];
        if (median || !row.from_median[i]) row.ns[i] = ns;
        row.from_median[i] = row.from_median[i] || median;
      }
    }
  }

  void Finalize() override {
    Base::Finalize();
    std::ostream& out = to_stderr ? this->GetErrorStream() : this->GetOutputStream();
    char line[256];
    out << "\nns per item (malloc+free pair, realloc, or object passed); "
           "ratio = strata / best of mimalloc, glibc\n";
    std::snprintf(line, sizeof line, "%-42s %10s %10s %10s %7s\n", "benchmark",
                  "strata", "mimalloc", "glibc", "ratio");
    out << line;
    for (const std::string& key : order_) {
      const Row& row = rows_[key];
      double best = 0;
      for (int i = 1; i < 3; i++)
        if (row.ns[i] > 0 && (best == 0 || row.ns[i] < best)) best = row.ns[i];
      char cells[3][16];
      for (int i = 0; i < 3; i++) {
        if (row.ns[i] > 0)
          std::snprintf(cells[i], sizeof cells[i], "%.1f", row.ns[i]);
        else
          std::snprintf(cells[i], sizeof cells[i], "-");
      }
      double ratio = row.ns[0] > 0 && best > 0 ? row.ns[0] / best : 0;
      std::snprintf(line, sizeof line, "%-42s %10s %10s %10s %7.2f%s\n", key.c_str(),
                    cells[0], cells[1], cells[2], ratio, ratio > 1.5 ? "  <-- slower" : "");
      out << line;
    }
    out.flush();
  }

 private:
  static constexpr const char* kNames[3] = {"strata", "mimalloc", "glibc"};
  struct Row {
    double ns[3] = {0, 0, 0};
    bool from_median[3] = {false, false, false};
  };
  std::map<std::string, Row> rows_;
  std::vector<std::string> order_;
};

}  // namespace

int main(int argc, char** argv) {
  bool have_mi = load_mimalloc();
  std::string libc = verify_glibc_malloc();
  if (!have_mi)
    std::fprintf(stderr, "strata_micro: mimalloc benchmarks skipped: %s\n",
                 g_mi.error.c_str());

  g_allocs = {
      {"strata", strata_malloc, strata_free, strata_calloc, strata_realloc,
       strata_aligned_alloc, true, nullptr},
      {"mimalloc", g_mi.malloc, g_mi.free, g_mi.calloc, g_mi.realloc,
       have_mi ? mi_aligned_adapter : nullptr, have_mi,
       "mimalloc not loaded (dlopen failed; see the message at start-up)"},
      {"glibc", ::malloc, ::free, ::calloc, ::realloc, ::aligned_alloc, true, nullptr},
  };
  init_sizes();
  register_all();

  benchmark::AddCustomContext("glibc_malloc", libc);
  benchmark::AddCustomContext("mimalloc", have_mi ? object_of(reinterpret_cast<void*>(g_mi.malloc))
                                                  : "not loaded: " + g_mi.error);

  std::string format = "console";
  for (int i = 1; i < argc; i++)
    if (std::strncmp(argv[i], "--benchmark_format=", 19) == 0) format = argv[i] + 19;

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (format == "console") {
    RatioReporter<benchmark::ConsoleReporter> rep(
        isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_Color
                              : benchmark::ConsoleReporter::OO_None);
    benchmark::RunSpecifiedBenchmarks(&rep);
  } else if (format == "json") {
    RatioReporter<benchmark::JSONReporter> rep;
    rep.to_stderr = true;
    benchmark::RunSpecifiedBenchmarks(&rep);
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return 0;
}
