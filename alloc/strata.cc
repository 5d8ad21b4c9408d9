// The allocator's slow paths: initialisation, thread caches' life cycle,
// refills and overflows that cannot be served by the thread cache, large
// and aligned requests, realloc, release and fork.
#include "alloc/strata.h"

#include <pthread.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>

#include "alloc/stats/growth.h"
#include "alloc/stats/stats.h"

namespace strata {

constinit Heap g_heap;
STRATA_TLS ThreadCacheT t_cache;

namespace {

// 0: not initialised, 1: in progress, 2: done.
std::atomic<int> g_init{0};
STRATA_TLS bool t_in_init;
bool g_check = false;  // STRATA_CHECK: see "checking mode" below
pthread_key_t g_key;

// Registry of live thread caches, for statistics and budgets. Outermost
// of the allocator's locks (registry -> central -> mixed -> page heap ->
// large -> arena -> leaves); around fork(), glibc's stdio list lock and the
// shim's locks come before it (ForkPrepare, shim/report.cc).
SpinLock g_registry_lock;
ThreadCacheT* g_registry = nullptr;       // the newest
ThreadCacheT* g_registry_tail = nullptr;  // the oldest (see TakeBackStale)
size_t g_threads = 0;
ThreadTotals g_dead;  // folded-in counters of exited threads

// Objects allocated without a thread cache (during thread set-up, after
// teardown, or in checking mode), and page objects.
std::atomic<uint64_t> g_direct_allocs[kNumClasses];
std::atomic<uint64_t> g_direct_requested[kNumClasses];
std::atomic<uint64_t> g_page_objects{0};
std::atomic<uint64_t> g_page_object_frees{0};

// The background purger: a thread that returns idle free pages to the OS
// every quarter of the decay time. Started lazily, at a point where the
// calling thread holds no allocator lock, once the program frees memory
// after having handed out kBackgroundFromBytes at some point, and after
// strata's constructor ran (libc is fully up by then). After fork() the
// child has no such thread; it starts one again the same way.
//
// Why a bound. A thread of strata's makes a single-threaded program a
// threaded one: unshare(CLONE_NEWUSER) then fails with EINVAL, a sandbox's
// zygote that checks it has one thread refuses to go on, a debugger lists
// it, and glibc and libstdc++ drop their single-threaded shortcuts (stdio
// without locks, shared_ptr counts without atomics) for good. The programs
// most often run, shells and command-line tools, hand out 0.1-3 MiB at
// their peak (bash 0.08, git status 1.0, python3 -c pass 1.4, node -e 0
// 3.0): what the purger could return to the OS for them is at most that.
// So a program stays as it was until its heap has been worth purging.
// Its own thread blocks every signal (RealOs::StartThread).
//
// Parking. Once a pass finds nothing left to give back (no free page still
// resident, no cached large mapping, no batch in a transfer cache) for
// kParkAfterMs, the thread sleeps on a futex with no timeout: an idle
// program is not woken by its allocator, where it was woken every period
// before. The next free that may have given memory back
// (MaybeStartBackground) wakes it. No wake-up is lost: the purger
// publishes kParked, then looks for work under each owner's lock; a free
// that put memory there under that lock before the purger looked is seen,
// and one that did after reads kParked (the lock orders the two) and wakes
// it. The thread is parked rather than ended so that a program which goes
// idle often does not create a thread from inside free() each time (a
// pthread_create there costs tens of microseconds and takes the loader's
// TLS lock).
//
// A thread that cannot be created (RLIMIT_NPROC, a pids cgroup at its
// limit) is tried again kRetryStartMs later, not given up for good.
constexpr int64_t kBackgroundFromBytes = 8 << 20;
constexpr int64_t kParkAfterMs = 1000;
constexpr uint64_t kRetryStartMs = 1000;
enum BackgroundState : int { kBgNone = 0, kBgRunning = 1, kBgParked = 2 };
std::atomic<int> g_bg_state{kBgNone};
std::atomic<uint64_t> g_bg_retry_at_ms{0};  // no start before (after a failed one)
std::atomic<uint64_t> g_bg_passes{0};  // for the statistics
std::atomic<uint64_t> g_bg_parks{0};
bool g_constructed = false;

// Whether the options let the purger run at all.
bool PurgerEnabled() { return g_heap.options.background != 0 && g_heap.options.decay_ms > 0; }

// Whether the purger has work left, each part read under its owner's lock
// (see "Parking").
bool PurgerHasWork() {
  if (g_heap.pages.HoldsResidentFree() || g_heap.large.HoldsCached()) return true;
  for (size_t c = 1; c < kNumClasses; ++c) {
    if (g_heap.central[c].HoldsTransfer()) return true;
  }
  return false;
}

// Parks the purger until a free wakes it, or returns at once if work came
// in meanwhile.
void ParkPurger() {
  g_bg_state.store(kBgParked, std::memory_order_seq_cst);
  if (PurgerHasWork()) {
    int expected = kBgParked;  // a waker may have set kBgRunning already: fine
    g_bg_state.compare_exchange_strong(expected, kBgRunning, std::memory_order_acq_rel);
    return;
  }
  g_bg_parks.fetch_add(1, std::memory_order_relaxed);
  while (g_bg_state.load(std::memory_order_acquire) == kBgParked) {
    RealOs::WaitWhileEquals(&g_bg_state, kBgParked);
  }
}

bool ExchangeAllowed(bool threaded);

// Growth of the process past its peak that strata's own pages do not
// explain (alloc/stats/growth.h). While the peak grew in the last
// kWatchFastForMs, the purger looks every kWatchPollMs, and every
// kWatchEagerPollMs while eager (the RSS from /proc/self/statm and two
// loads: a few microseconds); otherwise every kWatchSlowMs, or at each
// pass if that is sooner. Each time it sees such growth, it gives back
// what strata holds (free for kEagerIdleMs or more) and turns eager for
// kEagerMs: at each look it gives back again what has been free (or
// cached) that long, central lists keep no empty span, freed large
// mappings are unmapped rather than cached, the pages inside free objects
// of 8 KiB and more go back once they were free at two sweeps
// kEagerIdleMs apart (CentralList::ReleaseInsideFreeObjects), and thread
// caches send their objects above 1 KiB back to their spans (ThreadCache::
// CollectIdle). The idle bound spares a program that churns while it
// grows: one that freed and reallocated 1-64 KiB blocks while it touched a
// mapping of its own ran 2.4 times slower when every free gave its block
// back at once (0.55 -> 1.33 s), 1.2 times with a bound of 0 (what
// happened to be free at each look), and as fast with 4 ms, or 2 ms looked
// at every millisecond; it ran 3.2 times slower when frees of blocks of
// 64 KiB and more released every free block at once, and 5% slower with
// the inside of free objects given back.
//
// cc1plus frees 4 MiB of 64 KiB buffers and a 1.5 MiB mapping in its
// last 10 ms while its own heap still grows: with eager for 50 ms after a
// growth step, 4 ms looks and the mapping cached, all of it was resident
// at its peak. g++'s peak with each change (5 interleaved reps, glibc
// 314.7): all three 315.1 MiB; eager for 50 ms 316.2; looks every 4 ms
// and a 4 ms bound 315.3; mappings cached while eager 315.5.
// Only while one thread allocates: elsewhere every madvise and munmap
// interrupts the other cores (see ExchangeOn below); a thread that comes
// along turns eager off at the next look at the latest, and the watch
// starts over once the process is back to one thread (its growth in
// between, thread stacks among it, is not weighed). Not with
// STRATA_RELEASE=free: pages given back with MADV_FREE stay in the RSS.
// The RSS rather than getrusage's ru_maxrss: that one carries the peak of
// the image before exec(), so a compiler run by a large build driver saw
// no growth until it passed its parent's peak.
//
// g++'s peak RSS against fee1f66 (no watch), 7 interleaved reps: 318.5 ->
// 315.8 MiB (glibc 314.8; with STRATA_DECAY_MS=0, 316.0); python3's 50.5 ->
// 49.5 (52.7), its time unchanged. Throw-away rules measured first (g++,
// 3 reps):
//  - release at once when the page heap handed out nothing for 2/5/10 ms:
//    316.9/318.6/318.6 MiB (cc1plus asks for spans every few ms to its end);
//  - release what has been free 2 ms whenever the peak grows by 64 KiB,
//    whoever grows it: 316.7, but python3's own growth set it off too:
//    +19,000 minor faults;
//  - the same with every free going back at once for 50 ms after: 316.1,
//    and python3 35% slower;
//  - growth by others only: python3 unchanged, 316.2; then giving back the
//    central lists' kept empty spans and transfer batches too: 315.5.
constexpr int64_t kWatchPollMs = 4;
constexpr int64_t kWatchEagerPollMs = 1;
constexpr int64_t kWatchSlowMs = 125;
constexpr uint64_t kEagerMs = 1000;
constexpr uint64_t kEagerIdleMs = 2;
constexpr uint64_t kWatchFastForMs = 1000;
std::atomic<uint64_t> g_growth_releases{0};  // for the statistics

// The purger's side of the watch; only the purger thread touches it.
struct Watch {
  GrowthWatch growth;
  uint64_t fast_until_ms = 0;
  uint64_t eager_until_ms = 0;
  uint64_t inside_swept_ms = 0;  // the last ReleaseInsideFreeObjects sweep
  bool restart = false;  // the process was threaded: start the watch over

  // The page heap keeps the flag (the central lists read it there).
  static bool Eager() { return g_heap.pages.eager(); }
  static void SetEager(bool on) { g_heap.pages.set_eager(on); }

  // Gives back what has been free (or cached) for kEagerIdleMs, and the
  // pages inside free objects of 8 KiB and more in spans with objects out
  // that were free at the previous sweep, kEagerIdleMs or more ago
  // (CentralList::ReleaseInsideFreeObjects; not in checking mode).
  void ReleaseIdleNow(uint64_t now) {
    if (!g_check && now >= inside_swept_ms + kEagerIdleMs) {
      inside_swept_ms = now;
      for (size_t c = 1; c < kNumClasses; ++c) g_heap.central[c].ReleaseInsideFreeObjects();
    }
    const uint64_t cutoff = now > kEagerIdleMs ? now - kEagerIdleMs : 0;
    g_heap.pages.ReleaseFree(cutoff);
    g_heap.large.Purge(cutoff);
  }

  // One look. Returns whether the next should come soon.
  bool Look(uint64_t now) {
    if (!ExchangeAllowed(g_heap.large.threaded()) || g_heap.options.release != 0) {
      if (Eager()) SetEager(false);
      restart = true;
      return false;
    }
    if (restart) {
      growth = GrowthWatch{};
      restart = false;
    }
    const uint64_t peak_before = growth.peak();
    const uint64_t own = g_heap.pages.fresh_bytes() + g_heap.large.fresh_bytes_total();
    if (growth.Sample(RealOs::ResidentBytes(), own)) {
      g_growth_releases.fetch_add(1, std::memory_order_relaxed);
      SetEager(true);
      if (g_heap.large.threaded()) SetEager(false);  // a thread came meanwhile
      eager_until_ms = now + kEagerMs;
      for (size_t c = 1; c < kNumClasses; ++c) g_heap.central[c].ReleaseEmpty();
      ReleaseIdleNow(now);
    } else if (Eager() && now >= eager_until_ms) {
      SetEager(false);
    } else if (Eager()) {
      ReleaseIdleNow(now);
    }
    if (growth.peak() > peak_before) fast_until_ms = now + kWatchFastForMs;
    return Eager() || now < fast_until_ms;
  }
};

STRATA_COLD void* BackgroundMain(void*) {
  g_heap.pages.set_purger(true);  // frees leave idle blocks to this thread
  int64_t decay = g_heap.options.decay_ms;
  int64_t period = decay / 4 > 10 ? decay / 4 : 10;
  const int64_t idle_passes_to_park = kParkAfterMs / period > 2 ? kParkAfterMs / period : 2;
  int64_t idle_passes = 0;
  Watch watch;
  uint64_t next_pass_ms = RealOs::NowMs() + uint64_t(period);
  bool soon = false;
  for (;;) {
    const uint64_t before = RealOs::NowMs();
    int64_t nap = before >= next_pass_ms ? 0 : int64_t(next_pass_ms - before);
    const int64_t watch_nap = !soon ? kWatchSlowMs : Watch::Eager() ? kWatchEagerPollMs : kWatchPollMs;
    if (nap > watch_nap) nap = watch_nap;
    struct timespec ts = {time_t(nap / 1000), long(nap % 1000) * 1000000L};
    nanosleep(&ts, nullptr);
    const uint64_t now = RealOs::NowMs();
    soon = watch.Look(now);
    if (now < next_pass_ms) continue;
    next_pass_ms = now + uint64_t(period);
    for (size_t c = 1; c < kNumClasses; ++c) g_heap.central[c].DrainIdle(false);
    g_heap.pages.ReleaseIdle();
    g_heap.large.PurgeIdle(RealOs::NowMs());
    g_bg_passes.fetch_add(1, std::memory_order_relaxed);
    if (PurgerHasWork()) {
      idle_passes = 0;
    } else if (++idle_passes >= idle_passes_to_park) {
      if (Watch::Eager()) Watch::SetEager(false);
      ParkPurger();
      idle_passes = 0;
      soon = false;
      next_pass_ms = RealOs::NowMs() + uint64_t(period);
    }
  }
  return nullptr;
}

STRATA_COLD void StartBackground() {
  const uint64_t retry_at = g_bg_retry_at_ms.load(std::memory_order_relaxed);
  if (retry_at != 0 && RealOs::NowMs() < retry_at) return;
  int expected = kBgNone;
  if (!g_bg_state.compare_exchange_strong(expected, kBgRunning, std::memory_order_acq_rel)) return;
  if (!RealOs::StartThread(BackgroundMain, 64 << 10)) {
    g_bg_retry_at_ms.store(RealOs::NowMs() + kRetryStartMs, std::memory_order_relaxed);
    g_bg_state.store(kBgNone, std::memory_order_release);
  }
}

STRATA_COLD void WakePurger() {
  int expected = kBgParked;
  if (g_bg_state.compare_exchange_strong(expected, kBgRunning, std::memory_order_acq_rel)) {
    RealOs::Wake(&g_bg_state);
  }
}

// A malloc slow path that may have given memory back (a thread cache's
// periodic collection empties spans) wakes a parked purger; it starts none.
STRATA_INLINE void WakeIfParked() {
  if (STRATA_UNLIKELY(g_bg_state.load(std::memory_order_relaxed) == kBgParked)) WakePurger();
}

// Called where memory may have gone back to the page heap, the large cache
// or a transfer cache, with no lock held: starts the purger, or wakes it.
STRATA_INLINE void MaybeStartBackground() {
  const int state = g_bg_state.load(std::memory_order_relaxed);
  if (STRATA_LIKELY(state == kBgRunning)) return;
  if (state == kBgParked) return WakePurger();
  if (g_constructed && PurgerEnabled() && g_heap.peak.peak() >= kBackgroundFromBytes) {
    StartBackground();
  }
}

__attribute__((constructor)) void MarkConstructed() {
  EnsureInit();
  g_constructed = true;
}

constexpr size_t kAllThreadsBudget = 64 << 20;
constexpr size_t kMinThreadBudget = 256 << 10;

void ThreadExit(void* arg);

// The bootstrap arena: if malloc is re-entered on the thread that is
// initialising the heap (a libc call made during initialisation that
// allocates), the request is served from here instead of deadlocking.
// Blocks carry a 16-byte header with their size; they are never reused, and
// free() of one does nothing.
alignas(64) char g_boot[64 << 10];
std::atomic<size_t> g_boot_used{0};

void* BootAlloc(size_t size, size_t align) {
  if (align < kMinAlign) align = kMinAlign;
  if (size > sizeof g_boot || align > kPageSize) return nullptr;
  size_t used = g_boot_used.load(std::memory_order_relaxed);
  for (;;) {
    uintptr_t start = AlignUp(uintptr_t(g_boot) + used + kMinAlign, align);
    size_t end = start + size - uintptr_t(g_boot);
    if (end > sizeof g_boot) return nullptr;
    if (g_boot_used.compare_exchange_weak(used, end, std::memory_order_relaxed)) {
      reinterpret_cast<size_t*>(start)[-1] = size;
      return reinterpret_cast<void*>(start);
    }
  }
}

// A class's objects are aligned to the largest power of two that divides
// its size (AlignedAlloc relies on it): so is one from the bootstrap
// arena, up to a page.
size_t BootAlign(size_t class_size) {
  const size_t low = class_size & (~class_size + 1);
  return low < kPageSize ? low : kPageSize;
}

bool InBoot(const void* p) {
  return uintptr_t(p) >= uintptr_t(g_boot) && uintptr_t(p) < uintptr_t(g_boot) + sizeof g_boot;
}

size_t BootSize(const void* p) { return static_cast<const size_t*>(p)[-1]; }

// Returns false only when called again, recursively, by the thread that is
// initialising: the caller then uses the bootstrap arena.
STRATA_COLD bool InitSlow() {
  int expected = 0;
  if (g_init.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    t_in_init = true;
    if (getauxval(AT_PAGESZ) != kPageSize) Fatal("unsupported page size (strata needs 4 KiB pages)");
    g_heap.map.set_os(&g_heap.os);
    g_heap.arena.set_os(&g_heap.os);
    g_heap.pages.Bind(&g_heap.os, &g_heap.map, &g_heap.arena);
    g_heap.large.Bind(&g_heap.os, &g_heap.map, &g_heap.arena, &g_heap.peak);
    for (size_t c = 1, at = 0; c < kNumClasses; at += CentralList<RealOs>::TransferRestPointers(c), ++c) {
      g_heap.central[c].Init(uint8_t(c), &g_heap.pages, &g_heap.transfer[at], &g_heap.peak, &g_heap.mixed,
                             g_heap.transfer_first[c]);
    }
    g_heap.mixed.Bind(&g_heap.map, &g_heap.arena);
    g_heap.map.NoHugeRoot();
    ReadOptions(&g_heap.options);
    g_check = g_heap.options.check != 0;
    // Checking mode looks objects up in their spans' free lists, which a
    // mixed span does not have.
    g_heap.mixed.set_enabled(!g_check);
    g_heap.pages.set_use_brk(g_heap.options.source == 1);
    g_heap.pages.set_decay_ms(g_heap.options.decay_ms);
    g_heap.pages.set_lazy_release(g_heap.options.release == 1);
    g_heap.large.set_decay_ms(g_heap.options.decay_ms);
    if (pthread_key_create(&g_key, ThreadExit) != 0) Fatal("cannot create the thread-exit key");
    t_in_init = false;
    g_init.store(2, std::memory_order_release);
    // May allocate: only now that the heap works.
    pthread_atfork(ForkPrepare, ForkParent, ForkChild);
    return true;
  }
  if (t_in_init) return false;
  for (unsigned spins = 0; g_init.load(std::memory_order_acquire) != 2; ++spins) {
    if (spins < 100) __builtin_ia32_pause(); else RealOs::Yield();
  }
  return true;
}

size_t BudgetFor(size_t threads) {
  size_t budget = size_t(g_heap.options.thread_cache_bytes);
  size_t share = kAllThreadsBudget / (threads ? threads : 1);
  if (share < kMinThreadBudget) share = kMinThreadBudget;
  return budget < share ? budget : share;
}

// Whether the exchange between the page heap and the large cache may run
// (see ExchangeOn): decay returns memory by itself, and one thread
// allocates.
bool ExchangeAllowed(bool threaded) { return g_heap.options.decay_ms > 0 && !threaded; }

// Whether the central lists were last told of more than one thread (they
// start so: CentralList::Init). Registry lock.
bool g_central_threaded = true;

// The number of threads with a cache changed (registry lock held). With
// more than one, the large cache keeps a higher floor and the exchange is
// off, so the page heap stops counting the pages it would trade; with one,
// the transfer caches keep less (CentralList::SetThreaded).
void NoteThreads(size_t threads) {
  const bool threaded = threads > 1;
  g_heap.large.set_threaded(threaded);
  g_heap.pages.set_count_faulting(ExchangeAllowed(threaded));
  if (threaded != g_central_threaded) {
    g_central_threaded = threaded;
    for (size_t c = 1; c < kNumClasses; ++c) g_heap.central[c].SetThreaded(threaded);
  }
}

// A thread whose first malloc or free came in the last round of pthread
// key destructors (another library's destructor that set its key again
// three times) registered its cache, and glibc ran no further round:
// ThreadExit never took it out. When glibc gives that thread's stack, TLS
// included, to a new thread, the cache's links are zeroed while its
// neighbours still point to it, and linking it again made the registry a
// cycle (every statistics snapshot, mallinfo2 among them, looped for ever).
// Before tc is linked, an old entry at its address is spliced out: its
// predecessor is found from the head, its successor from the tail (the
// zeroed links name neither). What that thread had cached is lost, as its
// TLS was. Registry lock held; O(threads), once per thread.
void TakeBackStale(ThreadCacheT* tc) {
  ThreadCacheT* prev = nullptr;
  bool found = g_registry == tc;
  for (ThreadCacheT* r = g_registry; r != nullptr && !found; r = r->reg_next) {
    if (r->reg_next == tc) {
      prev = r;
      found = true;
    }
  }
  if (!found) return;
  ThreadCacheT* next = nullptr;
  if (g_registry_tail != tc) {
    for (ThreadCacheT* r = g_registry_tail; r != nullptr; r = r->reg_prev) {
      if (r->reg_prev == tc) {
        next = r;
        break;
      }
    }
  }
  if (prev != nullptr) prev->reg_next = next; else g_registry = next;
  if (next != nullptr) next->reg_prev = prev; else g_registry_tail = prev;
  --g_threads;
}

void ThreadInit(ThreadCacheT* tc) {
  tc->state = CacheState::kInitializing;
  // pthread_setspecific may call calloc: served directly (state above).
  if (pthread_setspecific(g_key, tc) != 0) {
    tc->state = CacheState::kDead;  // no destructor would flush it: go without
    return;
  }
  size_t threads;
  {
    LockGuard g(g_registry_lock);
    TakeBackStale(tc);
    tc->reg_prev = nullptr;
    tc->reg_next = g_registry;
    if (g_registry != nullptr) g_registry->reg_prev = tc; else g_registry_tail = tc;
    g_registry = tc;
    threads = ++g_threads;
    NoteThreads(threads);
  }
  // Checking mode: no object checks in the lists, so every free reaches
  // the slow path (and lists stay empty, so every malloc does too).
  tc->Activate(BudgetFor(threads), /*checks=*/!g_check);
}

// Takes tc out of the registry, its counters into g_dead (registry lock
// held; the caller then calls NoteThreads).
void Unregister(ThreadCacheT* tc) {
  if (tc->reg_prev != nullptr) tc->reg_prev->reg_next = tc->reg_next; else g_registry = tc->reg_next;
  if (tc->reg_next != nullptr) tc->reg_next->reg_prev = tc->reg_prev; else g_registry_tail = tc->reg_prev;
  --g_threads;
  g_dead.Add(*tc);
}

void ThreadExit(void* arg) {
  ThreadCacheT* tc = static_cast<ThreadCacheT*>(arg);
  if (tc->state != CacheState::kActive) return;
  tc->FlushAll(g_heap);
  // From now on frees fail the fast path's check and go to the central
  // lists; mallocs find empty lists and are served directly.
  tc->state = CacheState::kDead;
  tc->Disable();
  {
    LockGuard g(g_registry_lock);
    Unregister(tc);
    NoteThreads(g_threads);
  }
  MaybeStartBackground();  // what it held may have emptied spans
}

bool ReclaimAddressSpace();

// Every allocation path: `alloc()` (a pointer, nullptr when out of
// memory), retried once after reclaiming address space.
template <class F>
STRATA_INLINE auto RetryAfterReclaim(F alloc) {
  auto p = alloc();
  if (STRATA_UNLIKELY(p == nullptr) && ReclaimAddressSpace()) p = alloc();
  return p;
}

// One object of class cls straight from the central list (no thread
// cache), counted; nullptr when out of memory.
void* TakeDirect(size_t cls, size_t size) {
  void* head = RetryAfterReclaim([cls] {
    void* h;
    void* t;
    return g_heap.central[cls].RemoveRange(&h, &t, 1) == 1 ? h : nullptr;
  });
  if (head == nullptr) return nullptr;
  g_direct_allocs[cls].fetch_add(1, std::memory_order_relaxed);
  g_direct_requested[cls].fetch_add(size, std::memory_order_relaxed);
  return head;
}

STRATA_NOINLINE void* AllocDirect(size_t cls, size_t size) {
  if (!EnsureInit()) return BootAlloc(Info(cls).size, kMinAlign);
  return TakeDirect(cls, size);
}

// ---- checking mode (STRATA_CHECK=1) ----
// Thread caches keep no objects and hold no object checks, so every malloc
// and free reaches the slow path below; the fast path costs the same as
// without checking. Freed objects are filled with kFreedByte after a
// marker word, and the fill is verified when the object is handed out
// again, which catches writes after free.
constexpr uint64_t kFreedMarker = 0x5354524154414621ull;  // "STRATAF!"
constexpr unsigned char kFreedByte = 0xdf;
std::atomic<uint64_t> g_checked_frees{0};

[[noreturn]] STRATA_COLD void InvalidPointer(const char* op, const void* p);

// The checks of the free fast path, for the other ways a small object is
// given back (realloc, and frees the fast path could not take): fatal
// unless p is an object's start and not the object freed last.
void CheckFreeable(const char* op, void* p, size_t cls) {
  if (!IsObjectStart(uintptr_t(p), cls) || p == t_cache.lists[cls].head) BadSmallFree(op, p, cls);
}

// Fatal unless p is a live object of class cls.
void CheckLiveSmall(const char* op, void* p, size_t cls) {
  if (!IsObjectStart(uintptr_t(p), cls)) BadSmallFree(op, p, cls);
  switch (g_heap.central[cls].StateOf(p)) {
    case CentralList<RealOs>::ObjectState::kLive: return;
    case CentralList<RealOs>::ObjectState::kFree:
      Fatalf("%s(): %p was already freed (double free or use after free; size class %zu, %u bytes)", op, p, cls,
             unsigned(Info(cls).size));
    case CentralList<RealOs>::ObjectState::kNeverHandedOut:
      Fatalf("%s(): invalid pointer %p: never allocated (size class %zu)", op, p, cls);
  }
}

// The marker a freed object carries: it names the object, its class and
// its span's life (NewSpanGeneration, unique across classes), so that fill
// left on recycled pages by an earlier life of the same pages (or by
// another class or place) does not count; such pages may also have been
// returned to the OS in part and come back zeroed.
uint64_t FreedMarker(void* p, size_t cls) {
  return kFreedMarker ^ uintptr_t(p) ^ cls ^ (uint64_t(g_heap.map.SpanOf(uintptr_t(p))->generation) << 32);
}

STRATA_COLD void* MallocChecked(size_t cls, size_t size) {
  void* head = TakeDirect(cls, size);
  if (head == nullptr) return nullptr;
  uint64_t* w = static_cast<uint64_t*>(head);
  size_t bytes = Info(cls).size;
  if (bytes >= 16 && w[1] == FreedMarker(head, cls)) {
    const unsigned char* b = static_cast<const unsigned char*>(head);
    for (size_t i = 16; i < bytes; ++i) {
      if (b[i] != kFreedByte) {
        Fatalf("write after free detected in %p at offset %zu (size class %zu, %zu bytes)", head, i, cls, bytes);
      }
    }
  }
  return head;
}

STRATA_COLD void FreeChecked(void* p, size_t cls) {
  CheckLiveSmall("free", p, cls);
  size_t bytes = Info(cls).size;
  if (bytes >= 16) {
    static_cast<uint64_t*>(p)[1] = FreedMarker(p, cls);
    memset(static_cast<char*>(p) + 16, kFreedByte, bytes - 16);
  }
  g_heap.central[cls].InsertRange(p, 1);
  if ((g_checked_frees.fetch_add(1, std::memory_order_relaxed) & 1023) == 0) {
    const char* why = nullptr;
    if (!g_heap.pages.Check(&why)) Fatalf("heap corruption detected by the page heap check: %s", why);
  }
  MaybeStartBackground();
}

// Everything free goes back to the OS now: the calling thread's cache (its
// objects may pin spans), empty spans, cached large mappings, free pages
// (with STRATA_SOURCE=brk, a free top of the break too). Returns bytes.
STRATA_COLD size_t ReturnFreeMemory() {
  ThreadCacheT& tc = t_cache;
  if (tc.state == CacheState::kActive) tc.FlushAll(g_heap);
  for (size_t c = 1; c < kNumClasses; ++c) g_heap.central[c].ReleaseEmpty();
  size_t released = g_heap.large.Purge(UINT64_MAX);
  return released + g_heap.pages.ReleaseAll();
}

// After an allocation failed: all of the above, and the address space of
// whole free chunks too (under an address-space limit released pages still
// count), so that a retry can succeed. True if anything was freed.
STRATA_COLD bool ReclaimAddressSpace() {
  size_t freed = ReturnFreeMemory();
  freed += g_heap.pages.UnmapFreeChunks();  // address space, not only pages
  return freed > 0;
}

// The exchange between the page heap and the large-object cache. Large
// objects above 1 MiB (and smaller ones when the page heap has no free
// block) have mappings of their own, so free pages of the page heap cannot
// serve them, nor cached large mappings small objects: a program whose
// phases alternate between the two paid twice, for memory that sat free on
// one side while the other side faulted in new pages. So when one side
// grows (the large heap maps or mremaps new bytes; the page heap hands out
// pages that are not resident), the other gives back as many bytes of what
// it holds idle for kExchangeIdleMs: the page heap its largest free
// blocks, the large cache its oldest mappings. RSS then follows what is
// live instead of the sum of both sides' peaks (python3: the previous
// round's free pages stayed resident while json.dumps mapped its buffers
// anew, and json.dumps's freed buffers while the next phase grew the page
// heap; peak RSS 54.1 -> 51.0 MiB, glibc 52.3, mimalloc 48.5).
//
// Only in a process where a single thread allocates, as for the large
// cache's low floor: elsewhere every madvise and munmap interrupts the
// other cores to flush their TLBs (see alloc/large/large.h). Not with
// STRATA_DECAY_MS=-1 (memory is never returned by itself) or 0 (free pages
// are returned at once anyway). The idle bound keeps a span just emptied,
// or a mapping just freed, for the allocation that is about to reuse it;
// with it, memory moves between the sides at most once per 50 ms.
constexpr uint64_t kExchangeIdleMs = 50;

bool ExchangeOn(uint64_t* cutoff) {
  if (!ExchangeAllowed(g_heap.large.threaded())) return false;
  const int64_t decay = g_heap.options.decay_ms;
  const int64_t idle = decay < int64_t(kExchangeIdleMs) ? decay : int64_t(kExchangeIdleMs);
  return DecayCutoff(idle, RealOs::NowMs(), cutoff);
}

STRATA_COLD void ExchangeForLarge() {
  size_t fresh = g_heap.large.TakeFreshBytes();
  uint64_t cutoff;
  if (fresh != 0 && ExchangeOn(&cutoff)) g_heap.pages.ReleaseIdleBytes(fresh, cutoff);
}

STRATA_COLD void ExchangeForPagesSlow(size_t pages) {
  uint64_t cutoff;
  if (ExchangeOn(&cutoff)) g_heap.large.PurgeBytes(pages << kPageShift, cutoff);
}
STRATA_INLINE void ExchangeForPages() {
  size_t pages = g_heap.pages.TakeFaultingPages();
  if (STRATA_UNLIKELY(pages != 0)) ExchangeForPagesSlow(pages);
}

// A large object, retried once after reclaiming address space.
void* LargeAlloc(size_t size, size_t align, size_t* dirty) {
  void* p = RetryAfterReclaim([=] { return g_heap.large.Alloc(size, align, dirty); });
  ExchangeForLarge();
  // A cached mapping split for this request puts its rest back in the
  // cache: a purger that looked while it was out may have parked.
  WakeIfParked();
  return p;
}

std::atomic<const ForeignAllocator*> g_foreign{nullptr};  // SetForeignAllocator

// The allocator that pointers strata does not own go to; nullptr: none.
const ForeignAllocator* Foreign() { return g_foreign.load(std::memory_order_acquire); }

// realloc of a foreign block: moved into a block of strata's.
STRATA_COLD void* ReallocForeign(const ForeignAllocator* f, void* p, size_t size) {
  void* q = Malloc(size);
  if (q == nullptr) return nullptr;  // p is intact
  const size_t old_size = f->usable_size(p);
  memcpy(q, p, old_size < size ? old_size : size);
  f->free(p);
  return q;
}

[[noreturn]] STRATA_COLD void InvalidPointer(const char* op, const void* p) {
  Fatalf("%s(): invalid pointer %p: not a block allocated by strata (foreign, interior, or already freed)",
         op, p);
}

// The span of a block that is not a small object: a large object or a page
// object, starting exactly at p. nullptr otherwise.
Span* WholeSpanOf(const void* p) {
  Span* s = g_heap.map.SpanOf(uintptr_t(p));
  if (s == nullptr || s->start != uintptr_t(p)) return nullptr;
  // Atomic: the first object of a span being handed to the mixed pool
  // reaches here while its state changes (either value gives nullptr).
  const SpanState st = s->LoadState();
  if (st == SpanState::kLarge || st == SpanState::kPageObject) return s;
  return nullptr;
}

// The mixed span that holds p (alloc/middle/mixed.h), nullptr if none. The
// caller read class 0 for p's page: the fence pairs with the release that
// cleared it, so a span just handed to the pool reads as mixed.
Span* MixedSpanOf(const void* p) {
  Span* s = g_heap.map.SpanOf(uintptr_t(p));
  std::atomic_thread_fence(std::memory_order_acquire);
  // Acquire (besides the fence, which ThreadSanitizer does not model): the
  // span's map, written before its state became kMixed, is read next.
  if (s == nullptr || s->LoadStateAcquire() != SpanState::kMixed) return nullptr;
  if (uintptr_t(p) < s->start || uintptr_t(p) >= s->end()) return nullptr;
  return s;
}

// The bytes of p, an object of mixed span s; fatal unless p is the start of
// a live object there.
size_t MixedObjectBytes(const char* op, const void* p, const Span* s) {
  const size_t bytes = s != nullptr ? MixedPool<RealOs>::ObjectBytes(s, uintptr_t(p)) : 0;
  if (bytes == 0) {
    if (s != nullptr && MixedPool<RealOs>::IsInterior(s, uintptr_t(p))) {
      Fatalf("%s(): invalid pointer %p: inside an object of a mixed span, not at its start", op, p);
    }
    Fatalf("%s(): %p is not a live object (double free or use after free, or never allocated; a mixed span)", op, p);
  }
  return bytes;
}

// Frees p, an object of mixed span s: straight back into its span, not
// onto the thread's list. Cached, it would come back from the next malloc of
// its class and be freed by this slow path again and again (a malloc/free
// loop of 208-byte objects after frag: 2-3x slower); back in its span, its
// class stops carving once it sees its objects return as fast as it carves
// them (CentralList::ChurnsInPoolLocked) and takes spans of its own. A
// double free is then caught exactly: the map says the object is free.
void FreeMixed(void* p, const Span* s) {
  const size_t cls = SizeToClass(MixedObjectBytes("free", p, s));
  *static_cast<void**>(p) = nullptr;
  g_heap.central[cls].InsertRange(p, 1);
}

Order PageObjectOrder(size_t bytes) { return OrderFor(Pages{AlignUp(bytes, kPageSize) >> kPageShift}); }

// A block just taken from the page heap for one object (nullptr: none).
void* PageObjectTaken(Span* s, Order order) {
  ExchangeForPages();
  if (s == nullptr) return nullptr;
  s->bytes = order.bytes();
  g_page_objects.fetch_add(1, std::memory_order_relaxed);
  g_heap.peak.Add(int64_t(s->bytes));
  return reinterpret_cast<void*>(s->start);
}

void* AllocPageObject(size_t bytes) {
  if (!EnsureInit()) return BootAlloc(bytes, kPageSize);
  const Order order = PageObjectOrder(bytes);
  Span* s = RetryAfterReclaim([order] { return g_heap.pages.Alloc(order, SpanState::kPageObject, 0); });
  return PageObjectTaken(s, order);
}

// Large objects up to kLargeFromPagesMax take a free block of the page heap
// when it has one, and their own mapping only when it has none (the heap
// does not grow for them). Mapped apart, they could not use the pages that
// small objects had just freed, nor small objects theirs, and every large
// buffer faulted in fresh pages while free ones sat in the heap (python3's
// json buffers of 270 KiB-1 MiB, grown by realloc: the exchange below then
// released the heap's idle blocks, and the next round faulted them in
// again: 33,500 minor faults -> 19,700, 0.10 -> 0.06 s of system time,
// peak RSS 50.7 -> 51.2 MiB, glibc's 52.1). The block is a power of two:
// up to twice the request in address space, of which only what the object
// touches costs memory; a realloc within the block keeps the address.
// Releasing the block's untouched tail at once (madvise) saved 0.1 MiB of
// that peak for 3,000 more faults, and taking the heap's blocks only when
// the request fills 3/4 of one lost the whole gain: not kept.
constexpr size_t kLargeFromPagesMax = size_t{1} << 20;

void* LargeFromFreePages(size_t size) {
  const Order order = PageObjectOrder(size);
  return PageObjectTaken(g_heap.pages.Alloc(order, SpanState::kPageObject, 0, /*may_grow=*/false), order);
}

// A large object aligned to `align`: a free block of the page heap up to
// kLargeFromPagesMax (a block is aligned to its size), else a mapping of
// its own (at least page-aligned).
void* LargeObject(size_t size, size_t align) {
  if (size <= kLargeFromPagesMax && align <= kLargeFromPagesMax) {
    if (void* p = LargeFromFreePages(size > align ? size : align)) return p;
  }
  return LargeAlloc(size, align, nullptr);
}

}  // namespace

bool EnsureInit() {
  if (STRATA_LIKELY(g_init.load(std::memory_order_acquire) == 2)) return true;
  return InitSlow();
}

void* MallocSlow(size_t cls, size_t size) {
  if (STRATA_UNLIKELY(g_check)) {
    if (!EnsureInit()) return BootAlloc(Info(cls).size, BootAlign(Info(cls).size));
    return MallocChecked(cls, size);
  }
  ThreadCacheT& tc = t_cache;
  if (STRATA_LIKELY(tc.state == CacheState::kActive)) {
    void* p = RetryAfterReclaim([&] { return tc.Refill(cls, size, g_heap); });
    ExchangeForPages();
    WakeIfParked();
    return p;
  }
  if (tc.state == CacheState::kUninit) {
    if (!EnsureInit()) return BootAlloc(Info(cls).size, BootAlign(Info(cls).size));
    ThreadInit(&tc);
    if (tc.state == CacheState::kActive) return tc.Refill(cls, size, g_heap);
  }
  return AllocDirect(cls, size);
}

void FreeOverflow(void* p) {
  // Only an active cache has the object checks that let a free this far.
  size_t cls = g_heap.map.ClassOf(uintptr_t(p));
  // Its span went to the mixed pool since the fast path read its class.
  if (STRATA_UNLIKELY(cls == 0)) cls = SizeToClass(MixedObjectBytes("free", p, MixedSpanOf(p)));
  t_cache.Overflow(cls, g_heap);
  MaybeStartBackground();
}

void FreeUnchecked(void* p) {
  size_t cls = g_heap.map.ClassOf(uintptr_t(p));
  if (cls == 0) return FreeSlow(p);
  ThreadCacheT& tc = t_cache;
  // The fast path's checks, with the class's own check (the list's copy
  // may be unset).
  CheckFreeable("free", p, cls);
  if (STRATA_UNLIKELY(g_check)) return FreeChecked(p, cls);
  if (tc.state == CacheState::kUninit) {
    EnsureInit();
    ThreadInit(&tc);
    if (tc.state == CacheState::kActive) return Free(p);  // the fast path takes it now
  }
  // No cache (set-up in progress, or the thread is exiting): straight to
  // the central list.
  g_heap.central[cls].InsertRange(p, 1);
  MaybeStartBackground();
}

void FreeSlow(void* p) {
  if (p == nullptr || InBoot(p)) return;
  Span* s = WholeSpanOf(p);
  if (s == nullptr) {
    if (const Span* m = MixedSpanOf(p)) {
      FreeMixed(p, m);
      return MaybeStartBackground();
    }
    if (const ForeignAllocator* f = Foreign()) return f->free(p);
    InvalidPointer("free", p);
  }
  if (s->state == SpanState::kLarge) {
    // May be cached (someone must purge it); not while eager (see Watch).
    g_heap.large.Free(s, RealOs::NowMs(), /*may_cache=*/!g_heap.pages.eager());
  } else {
    g_page_object_frees.fetch_add(1, std::memory_order_relaxed);
    g_heap.peak.Add(-int64_t(s->bytes));
    g_heap.pages.Free(s);
  }
  MaybeStartBackground();
}

void* MallocLarge(size_t size) {
  if (!EnsureInit()) return BootAlloc(size, kMinAlign);
  return LargeObject(size, kPageSize);
}

void* Calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return nullptr;
  if (total > kMaxSmall) {
    if (!EnsureInit()) return BootAlloc(total, kMinAlign);  // static: zero
    size_t dirty = 0;
    void* p = LargeAlloc(total, kPageSize, &dirty);
    if (p != nullptr) memset(p, 0, dirty < total ? dirty : total);  // a reused mapping
    return p;
  }
  void* p = Malloc(total);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

size_t UsableSize(const void* p) {
  if (p == nullptr) return 0;
  size_t cls = g_heap.map.ClassOf(uintptr_t(p));
  if (cls != 0) {
    if (STRATA_UNLIKELY(g_check)) CheckLiveSmall("malloc_usable_size", const_cast<void*>(p), cls);
    return Info(cls).size;
  }
  if (InBoot(p)) return BootSize(p);
  Span* s = WholeSpanOf(p);
  if (s == nullptr) {
    if (const Span* m = MixedSpanOf(p)) return MixedObjectBytes("malloc_usable_size", p, m);
    if (const ForeignAllocator* f = Foreign()) {
      return f->usable_size(const_cast<void*>(p));
    }
    InvalidPointer("malloc_usable_size", p);
  }
  return s->bytes;
}

// Whether realloc of a small object of class `cls` down to `size` moves it
// to a smaller class: when that class is at most 3/4 of the old one, so a
// block shrunk in place wastes less than a quarter beyond class rounding.
// Never keeping it is what bloated python3 (PYTHONMALLOC=malloc): its
// string formatting allocates ~160 bytes and shrinks the result to ~50, and
// 80,000 such strings kept 160-byte blocks (peak RSS 62.4 -> 54.2 MiB with
// the move; glibc shrinks in place, mimalloc and tcmalloc move below half).
// A smaller saving is not worth a copy, and a move between neighbouring
// classes could ping-pong with a buffer resized up and down around a class
// boundary.
static bool ShrinkMoves(size_t cls, size_t size) {
  return Info(SizeToClass(size)).size <= Info(cls).size / 4 * 3;
}

// Whether realloc of an object of whole pages (`bytes` of mapping or
// buddy block) down to `size` moves it into a size class: when the size is
// small and at most half of what it holds.
static bool ShrinkMovesIntoAClass(size_t bytes, size_t size) { return size <= kMaxSmall && size <= bytes / 2; }

void* Realloc(void* p, size_t size) {
  if (p == nullptr) return Malloc(size);
  if (size == 0) {
    Free(p);
    return nullptr;
  }
  size_t cls = g_heap.map.ClassOf(uintptr_t(p));
  size_t old_size;
  bool shrink_moves = false;  // boot objects never move on a shrink
  if (cls != 0) {
    // The same cheap checks as free(); checking mode looks deeper.
    CheckFreeable("realloc", p, cls);
    if (STRATA_UNLIKELY(g_check)) CheckLiveSmall("realloc", p, cls);
    old_size = Info(cls).size;
    shrink_moves = size <= old_size && ShrinkMoves(cls, size);
  } else if (InBoot(p)) {
    old_size = BootSize(p);
  } else if (Span* s = WholeSpanOf(p); s == nullptr) {
    // Not a block of its own: an object of a mixed span (a small object
    // like any other), or not ours.
    const Span* m = MixedSpanOf(p);
    if (m == nullptr) {
      if (const ForeignAllocator* f = Foreign()) {
        return ReallocForeign(f, p, size);
      }
      InvalidPointer("realloc", p);
    }
    old_size = MixedObjectBytes("realloc", p, m);
    cls = SizeToClass(old_size);
    if (p == t_cache.lists[cls].head) {
      Fatalf("realloc(): %p was already freed (use after free; size class %zu, %u bytes)", p, cls,
             unsigned(Info(cls).size));
    }
    shrink_moves = size <= old_size && ShrinkMoves(cls, size);
  } else {
    if (s->state == SpanState::kLarge) {
      // Shrunk to a small size, it moves into its class: a copy of at most
      // kMaxSmall bytes, and the mapping goes to the large cache for the
      // next large request (or is unmapped, if the cache does not take it:
      // aligned, over 64 MiB, or decay 0). An mremap would interrupt every
      // other core to flush its TLB, and leave a mapping of a few pages per
      // object (mstress: 375 such mremaps, -25% ops/s for 1 large block in
      // 1000).
      if (ShrinkMovesIntoAClass(s->bytes, size)) {
        if (void* q = Malloc(size)) {
          memcpy(q, p, size);
          Free(p);
          return q;
        }
      }
      // Otherwise it resizes its own mapping (mremap: no copy, and a
      // shrink keeps the address).
      void* q = g_heap.large.Realloc(s, size);
      ExchangeForLarge();
      return q;
    }
    old_size = s->bytes;
    // A page object (a large object in a page-heap block, or an aligned
    // one) shrunk to a small size and to half its block or less moves into
    // its class, as a mapped large object does. Above kMaxSmall it stays:
    // a smaller block would leave it no room, and a buffer resized up and
    // down around half a block would be copied each time.
    shrink_moves = ShrinkMovesIntoAClass(old_size, size);
  }
  const bool shrink = size <= old_size;
  if (shrink && !shrink_moves) return p;
  void* q = Malloc(size);
  // A shrink that finds no room keeps the block: still a valid answer.
  if (q == nullptr) return shrink ? p : nullptr;
  memcpy(q, p, shrink ? size : old_size);
  Free(p);
  return q;
}

void* AlignedAlloc(size_t align, size_t size) {
  if (align <= kMinAlign) return Malloc(size);
  if (size <= kMaxSmall && align <= kPageSize) {
    // Objects of a span start at multiples of the class size from a
    // page-aligned start: a class whose size is a multiple of `align`
    // gives aligned objects. Power-of-two classes always exist.
    size_t want = AlignUp(size == 0 ? 1 : size, align);
    if (want <= kMaxSmall) {
      size_t cls = SizeToClass(want);
      while (Info(cls).size % align != 0) ++cls;
      void* p = Pop(t_cache.lists[cls], size);
      return p != nullptr ? p : MallocSlow(cls, size);
    }
  }
  // During initialisation (a call from inside it): the bootstrap arena,
  // which aligns up to a page and fails above.
  if (!EnsureInit()) return BootAlloc(size, align);
  if (size <= kMaxSmall && align <= kMaxSmall) {
    // A buddy block is aligned to its own size (chunks are aligned to
    // theirs), so a block of at least `align` bytes is aligned enough.
    return AllocPageObject(size > align ? size : align);
  }
  return LargeObject(size, align);
}

void FreeSized(void* p, size_t size) {
  if (STRATA_UNLIKELY(g_check) && p != nullptr) {
    size_t cls = g_heap.map.ClassOf(uintptr_t(p));
    size_t usable = cls != 0 ? Info(cls).size : UsableSize(p);
    // Any size up to the usable size is valid (a block shrunk in place by
    // realloc, or aligned, keeps a larger class); more is not.
    if (size > usable) {
      Fatalf("free_sized(): size %zu does not match the block %p (%zu usable bytes)", size, p, usable);
    }
  }
  Free(p);
}

void BadSmallFree(const char* op, void* p, size_t cls) {
  if (!IsObjectStart(uintptr_t(p), cls)) {
    Fatalf("%s(): invalid pointer %p: inside a %u-byte object (size class %zu), not at its start", op, p,
           unsigned(Info(cls).size), cls);
  }
  if (op[0] == 'f') Fatalf("%s(): double free of %p (size class %zu, %u bytes)", op, p, cls, unsigned(Info(cls).size));
  Fatalf("%s(): %p was already freed (use after free; size class %zu, %u bytes)", op, p, cls,
         unsigned(Info(cls).size));
}

void SetForeignAllocator(const ForeignAllocator* f) { g_foreign.store(f, std::memory_order_release); }

bool Owns(const void* p) {
  if (p == nullptr) return false;
  if (g_heap.map.ClassOf(uintptr_t(p)) != 0 || InBoot(p)) return true;
  return WholeSpanOf(p) != nullptr || MixedSpanOf(p) != nullptr;
}

size_t ReleaseMemory() {
  EnsureInit();
  return ReturnFreeMemory();
}

// ---- fork: every lock, in the documented order, around fork() ----

// glibc's stdio list lock (exported by libc.so.6; weak, so that a static
// link or another libc goes without). glibc's fork() takes it after the
// atfork handlers ran, and its own malloc's locks only after it, because
// code that holds a stream's lock allocates (getdelim growing its line,
// a stream's first buffer): a thread in fflush(NULL) holds the list lock
// and waits for a stream's lock, whose holder waits in malloc for a lock
// the forking thread took in ForkPrepare, and fork() waits for the list
// lock. Taking it first here keeps glibc's order. It is recursive: fork()
// takes it again, and in the child glibc resets it (when it took it; we
// reset it in any case). glibc's name-service lock, taken there too, is
// not exported: a thread reloading nsswitch.conf while another forks can
// still deadlock (README, "Preload behaviour").
extern "C" __attribute__((weak)) void _IO_list_lock();
extern "C" __attribute__((weak)) void _IO_list_unlock();
extern "C" __attribute__((weak)) void _IO_list_resetlock();

void UnlockAllForFork() {
  g_heap.map.leaf_lock().Unlock();
  g_heap.arena.lock().Unlock();
  g_heap.large.lock().Unlock();
  g_heap.pages.lock().Unlock();
  g_heap.mixed.lock().Unlock();
  for (size_t c = kNumClasses; c-- > 1;) g_heap.central[c].lock().Unlock();
  g_registry_lock.Unlock();
}

void ForkPrepare() {
  if (_IO_list_lock != nullptr) _IO_list_lock();
  g_registry_lock.Lock();
  for (size_t c = 1; c < kNumClasses; ++c) g_heap.central[c].lock().Lock();
  g_heap.mixed.lock().Lock();
  g_heap.pages.lock().Lock();
  g_heap.large.lock().Lock();
  g_heap.arena.lock().Lock();
  g_heap.map.leaf_lock().Lock();
}

void ForkParent() {
  UnlockAllForFork();
  if (_IO_list_unlock != nullptr) _IO_list_unlock();
}

void ForkChild() {
  // Only the forking thread exists in the child; it holds every lock. The
  // background purger did not survive the fork: let the child start its own.
  UnlockAllForFork();
  if (_IO_list_resetlock != nullptr) _IO_list_resetlock();
  g_bg_state.store(kBgNone, std::memory_order_relaxed);
  // A thread that was giving free pages back to the OS did not either.
  g_heap.pages.ReturnDetachedAfterFork();
  g_heap.pages.set_purger(false);
  // Nor will it end the eager spell its growth watch began (if any): the
  // child's own purger watches the child.
  g_heap.pages.set_eager(false);
  // Nor did the other threads. Their caches leave the registry:
  //  - glibc gives their stacks, and the TLS in them, to the child's next
  //    threads, whose caches would then be linked into the registry a
  //    second time (a cycle: the next statistics snapshot never ended);
  //  - the child's thread count, and what depends on it (the transfer
  //    caches' and the large cache's bounds, statistics), is its own.
  // What they hold is left where it is: the fork may have come in the
  // middle of one's fast path, so their lists cannot be trusted (glibc's
  // tcaches are lost the same way).
  ThreadCacheT* self = &t_cache;
  LockGuard g(g_registry_lock);
  for (ThreadCacheT* tc = g_registry; tc != nullptr;) {
    ThreadCacheT* next = tc->reg_next;
    if (tc != self) Unregister(tc);
    tc = next;
  }
  NoteThreads(g_threads);
}

// ---- statistics gathering (the writers are in alloc/stats) ----

void ThreadTotals::Add(const ThreadCacheT& tc) {
  for (size_t c = 1; c < kNumClasses; ++c) {
    allocs[c] += tc.lists[c].allocs;
    requested[c] += tc.lists[c].requested;
  }
  misses += tc.misses;
  flushes += tc.flushes;
}

STRATA_COLD void TakeSnapshot(Snapshot* snap) {
  EnsureInit();
  *snap = Snapshot{};
  {
    LockGuard g(g_registry_lock);
    snap->threads = g_dead;
    snap->live_threads = g_threads;
    for (ThreadCacheT* tc = g_registry; tc != nullptr; tc = tc->reg_next) {
      snap->threads.Add(*tc);
      snap->cached_bytes += tc->CachedBytes();
      for (size_t c = 1; c < kNumClasses; ++c) snap->cached_objects[c] += tc->lists[c].length();
    }
  }
  for (size_t c = 1; c < kNumClasses; ++c) {
    snap->threads.allocs[c] += g_direct_allocs[c].load(std::memory_order_relaxed);
    snap->threads.requested[c] += g_direct_requested[c].load(std::memory_order_relaxed);
    snap->central[c] = g_heap.central[c].Stats();
  }
  snap->mixed = g_heap.mixed.Stats();
  snap->pages = g_heap.pages.Stats();
  snap->large = g_heap.large.Stats();
  snap->page_objects = g_page_objects.load(std::memory_order_relaxed);
  snap->page_object_frees = g_page_object_frees.load(std::memory_order_relaxed);
  snap->metadata_bytes = g_heap.arena.mapped_bytes() + g_heap.map.leaf_bytes();
  snap->resident_bytes = RealOs::ResidentBytes();
  snap->time_ms = RealOs::NowMs();
  snap->options = &g_heap.options;
  if (PurgerEnabled()) {
    const int bg = g_bg_state.load(std::memory_order_relaxed);
    snap->purger_state = bg == kBgRunning  ? PurgerState::kRunning
                         : bg == kBgParked ? PurgerState::kParked
                                           : PurgerState::kNotStarted;
  }
  snap->purger_passes = g_bg_passes.load(std::memory_order_relaxed);
  snap->purger_parks = g_bg_parks.load(std::memory_order_relaxed);
  snap->purger_growth_releases = g_growth_releases.load(std::memory_order_relaxed);
  Finish(snap);
  // The tracker hears of each class's objects out in steps (CentralList::
  // CountOutLocked); the snapshot counts them exactly, thread caches
  // included, and the peak is at least that.
  uint64_t out = snap->large.live_bytes + snap->page_object_bytes;
  for (size_t c = 1; c < kNumClasses; ++c) out += snap->central[c].objects_out * Info(c).size;
  g_heap.peak.Observe(int64_t(out));
  snap->peak_allocated_bytes = uint64_t(g_heap.peak.peak());
}

}  // namespace strata
