/* Multithreaded soak test, run under LD_PRELOAD=libstrata.so.
 *
 *   soak [SECONDS [THREADS [SEED]]]      (defaults: 60 s, 8 threads, 1)
 *
 * THREADS workers do random operations for SECONDS: malloc, calloc (zero
 * checked), realloc (prefix checked), aligned_alloc / posix_memalign /
 * memalign (alignment checked), malloc_usable_size, free. Sizes are mostly
 * small, some medium, a few large (up to 8 MiB). Every block is filled with
 * a pattern derived from its seed, and the whole block is verified before
 * every free and realloc.
 *
 *  - Cross-thread frees: workers swap blocks through shared slots (an
 *    atomic exchange); whatever comes out of a slot, allocated by any
 *    thread, possibly one that has exited, is verified and freed.
 *  - Thread churn: each worker exits after a random number of operations,
 *    leaving blocks in the slots and a block in a pthread key whose
 *    destructor frees it (and allocates again) after strata's own
 *    per-thread teardown; the main thread starts a new worker in its place.
 *  - fork(): every ~250 ms the main thread forks while the workers run; the
 *    child verifies and frees blocks inherited through the slots, allocates
 *    and frees on its own and in a new thread, and _exits with its verdict.
 *    A child that has not exited after 20 s is reported (a lock held across
 *    fork) and killed.
 *
 * At the end every slot is drained and verified. RSS is printed every 10 s
 * and at the end, and must stay under a generous bound (a leak check).
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <errno.h>
#include <stdarg.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum {
  MAX_THREADS = 64,
  LOCAL_BLOCKS = 128,
  SLOTS = 1024,
  FORK_EVERY_MS = 250,
  CHILD_TIMEOUT_MS = 20000,
};
#define RSS_LIMIT (2048 * MiB)

struct blk {
  unsigned char *p;
  size_t n;
  uint64_t seed;
};

static _Atomic(struct blk *) slots[SLOTS];
static atomic_int stop;
static atomic_long errors, ops, cross_frees, dtor_frees, threads_started, threads_exited;
static pthread_key_t dtor_key;

/* ---- errors: printed with write(2) (also safe in a forked child) ---- */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  long n = atomic_fetch_add(&errors, 1);
  if (n >= 50) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (len < 0) return;
  if (len > (int)sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  ssize_t w = write(2, buf, (size_t)len);
  (void)w;
}

/* ---- the pattern: 8-byte words seed-derived, offset-dependent ---- */

#define STEP 0xd6e8feb86659fd93ull
static inline uint64_t base_of(uint64_t seed) { return (seed + 1) * 0x9e3779b97f4a7c15ull; }
static inline unsigned char pat_byte(uint64_t seed, size_t i) {
  return (unsigned char)((base_of(seed) + (i / 8) * STEP) >> (8 * (i % 8)));
}

static void fill(unsigned char *p, size_t from, size_t to, uint64_t seed) {
  size_t i = from;
  for (; i < to && i % 8 != 0; i++)
    p[i] = pat_byte(seed, i);
  uint64_t w = base_of(seed) + (i / 8) * STEP;
  for (; i + 8 <= to; i += 8, w += STEP)
    memcpy(p + i, &w, 8);
  for (; i < to; i++)
    p[i] = pat_byte(seed, i);
}

/* Index of the first wrong byte in [0, n), or (size_t)-1. */
static size_t first_bad(const unsigned char *p, size_t n, uint64_t seed) {
  size_t i = 0;
  uint64_t w = base_of(seed);
  for (; i + 8 <= n; i += 8, w += STEP) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    if (v != w) break;
  }
  for (; i < n; i++)
    if (p[i] != pat_byte(seed, i)) return i;
  return (size_t)-1;
}

static int verify(const struct blk *b, const char *op) {
  size_t bad = first_bad(b->p, b->n, b->seed);
  if (bad != (size_t)-1) {
    fail("before %s: block %p (%zu bytes, seed %llu) has a wrong byte at %zu", op, (void *)b->p, b->n,
         (unsigned long long)b->seed, bad);
    return 0;
  }
  return 1;
}

static void release(struct blk *b, const char *op) {
  if (!b->p) return;
  verify(b, op);
  free(b->p);
  b->p = NULL;
}

/* ---- random sizes and allocations ---- */

static size_t random_size(uint64_t *rng) {
  uint64_t r = shim_rand(rng);
  unsigned pick = (unsigned)(r % 1000);
  r >>= 10;
  if (pick < 700) return r % 1025;              /* small */
  if (pick < 960) return r % (32 * KiB);        /* medium */
  if (pick < 997) return r % MiB;               /* up to 1 MiB: small and large */
  return r % (8 * MiB);                         /* large */
}

/* A new block of a random kind into *b (b->p NULL on failure). */
static void random_alloc(struct blk *b, uint64_t *rng, uint64_t seed) {
  size_t n = random_size(rng);
  unsigned kind = (unsigned)(shim_rand(rng) % 16);
  void *p = NULL;
  size_t align = 16;
  if (kind < 10) {
    p = malloc(n);
  } else if (kind < 12) {
    size_t each = 1 + shim_rand(rng) % 8, cnt = n / each + 1;
    n = cnt * each;
    p = calloc(cnt, each);
    if (p) {
      const unsigned char *c = p;
      for (size_t i = 0; i < n; i++)
        if (c[i]) {
          fail("calloc(%zu, %zu) = %p: byte %zu is not zero", cnt, each, p, i);
          break;
        }
    }
  } else if (kind < 13) {
    align = (size_t)1 << (shim_rand(rng) % 17); /* up to 64 KiB */
    if (align < sizeof(void *)) align = sizeof(void *);
    int rc = posix_memalign(&p, align, n);
    if (rc != 0) p = NULL;
  } else if (kind < 14) {
    align = (size_t)1 << (shim_rand(rng) % 21); /* up to 1 MiB */
    p = aligned_alloc(align, n);
  } else if (kind < 15) {
    align = (size_t)1 << (shim_rand(rng) % 13);
    p = memalign(align, n);
  } else {
    p = realloc(NULL, n);
  }
  if (!p) {
    fail("allocation of %zu bytes (kind %u, align %zu) failed: %s", n, kind, align, strerror(errno));
    b->p = NULL;
    return;
  }
  if (align < 16) align = 16;
  if ((uintptr_t)p % align != 0) fail("block %p of %zu bytes is not aligned to %zu", p, n, align);
  size_t usable = malloc_usable_size(p);
  if (usable < n) fail("block %p: usable size %zu < %zu", p, usable, n);
  b->p = p;
  b->n = n;
  b->seed = seed;
  fill(b->p, 0, n, seed);
}

static void random_realloc(struct blk *b, uint64_t *rng) {
  if (!b->p) return;
  if (!verify(b, "realloc")) {
    b->p = NULL; /* leak it: do not free a corrupt block */
    return;
  }
  size_t n = random_size(rng);
  if (n == 0) n = 1;
  unsigned char *q = realloc(b->p, n);
  if (!q) {
    fail("realloc(%p, %zu) failed: %s", (void *)b->p, n, strerror(errno));
    return;
  }
  size_t keep = b->n < n ? b->n : n;
  size_t bad = first_bad(q, keep, b->seed);
  if (bad != (size_t)-1) fail("realloc(%p, %zu -> %zu) = %p lost byte %zu", (void *)b->p, b->n, n, (void *)q, bad);
  b->p = q;
  b->n = n;
  fill(q, keep, n, b->seed);
}

/* Puts *b in a random shared slot; frees what was there. */
static void exchange(struct blk *b, uint64_t *rng) {
  struct blk *rec = malloc(sizeof *rec);
  if (!rec) {
    fail("malloc(%zu) for a slot record failed", sizeof *rec);
    return;
  }
  *rec = *b;
  b->p = NULL;
  struct blk *old = atomic_exchange(&slots[shim_rand(rng) % SLOTS], rec);
  if (old) {
    release(old, "cross-thread free");
    free(old);
    atomic_fetch_add(&cross_frees, 1);
  }
}

/* ---- workers ---- */

static void dtor(void *arg) {
  struct blk *b = arg;
  release(b, "free in a TLS destructor");
  free(b);
  /* and allocate again after the allocator's own teardown */
  void *p = malloc(100);
  if (!p) fail("malloc in a TLS destructor failed");
  free(p);
  atomic_fetch_add(&dtor_frees, 1);
}

struct worker {
  pthread_t t;
  atomic_int done;
  int used;
  uint64_t seed;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  uint64_t rng = w->seed | 1;
  uint64_t serial = w->seed << 20;
  struct blk local[LOCAL_BLOCKS];
  memset(local, 0, sizeof local);
  long budget = 2000 + (long)(shim_rand(&rng) % 30000);
  long n = 0;

  if (shim_rand(&rng) % 2) {
    struct blk *b = malloc(sizeof *b);
    if (b) {
      random_alloc(b, &rng, ++serial);
      if (!b->p || pthread_setspecific(dtor_key, b) != 0) {
        release(b, "free");
        free(b);
      }
    }
  }

  for (; n < budget && !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
    struct blk *b = &local[shim_rand(&rng) % LOCAL_BLOCKS];
    unsigned op = (unsigned)(shim_rand(&rng) % 100);
    if (op < 40) {
      release(b, "free");
      random_alloc(b, &rng, ++serial);
    } else if (op < 55) {
      release(b, "free");
    } else if (op < 70) {
      random_realloc(b, &rng);
    } else if (op < 85) {
      if (b->p) exchange(b, &rng);
    } else if (op < 95) {
      if (b->p) {
        size_t u = malloc_usable_size(b->p);
        if (u < b->n) fail("malloc_usable_size(%p) = %zu < %zu", (void *)b->p, u, b->n);
        verify(b, "malloc_usable_size");
      }
    } else {
      /* A burst of short-lived small blocks. */
      void *tmp[32];
      for (int i = 0; i < 32; i++) {
        tmp[i] = malloc(1 + shim_rand(&rng) % 512);
        if (tmp[i]) memset(tmp[i], i, 1);
      }
      for (int i = 31; i >= 0; i--)
        free(tmp[i]);
    }
  }
  atomic_fetch_add(&ops, n);
  /* Exit: free half, leave the rest to other threads through the slots. */
  for (int i = 0; i < LOCAL_BLOCKS; i++) {
    if (!local[i].p) continue;
    if (i % 2)
      release(&local[i], "free at thread exit");
    else
      exchange(&local[i], &rng);
  }
  atomic_fetch_add(&threads_exited, 1);
  atomic_store(&w->done, 1);
  return NULL;
}

static int start_worker(struct worker *w, uint64_t seed) {
  w->seed = seed;
  atomic_store(&w->done, 0);
  int rc = pthread_create(&w->t, NULL, worker_main, w);
  if (rc != 0) {
    fail("pthread_create: %s", strerror(rc));
    return 0;
  }
  w->used = 1;
  atomic_fetch_add(&threads_started, 1);
  return 1;
}

/* ---- fork ---- */

static void *child_thread(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg;
  struct blk b[64];
  for (int i = 0; i < 64; i++)
    random_alloc(&b[i], &rng, 1000 + i);
  for (int i = 0; i < 64; i++)
    release(&b[i], "free in the child's thread");
  return NULL;
}

static void child(uint64_t seed) {
  uint64_t rng = seed | 1;
  /* Blocks inherited from the parent, allocated by any of its threads. */
  for (int i = 0; i < 64; i++) {
    size_t s = shim_rand(&rng) % SLOTS;
    struct blk *rec = atomic_load(&slots[s]);
    if (!rec) continue;
    atomic_store(&slots[s], NULL);
    release(rec, "free in the child");
    free(rec);
  }
  struct blk b[256];
  memset(b, 0, sizeof b);
  for (int i = 0; i < 1000; i++) {
    struct blk *x = &b[shim_rand(&rng) % 256];
    release(x, "free in the child");
    random_alloc(x, &rng, (uint64_t)i << 8);
  }
  for (int i = 0; i < 256; i++)
    release(&b[i], "free in the child");
  pthread_t t;
  if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(seed * 3 + 1)) == 0)
    pthread_join(t, NULL);
  else
    fail("child: pthread_create failed");
  _exit(atomic_load(&errors) ? 1 : 0);
}

static long forks_done;

static void do_fork(uint64_t seed) {
  long errors_before = atomic_load(&errors);
  pid_t pid = fork();
  if (pid < 0) {
    fail("fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    atomic_store(&errors, 0);
    child(seed);
  }
  (void)errors_before;
  int status = 0;
  for (int waited = 0;; waited += 10) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) {
      fail("waitpid: %s", strerror(errno));
      return;
    }
    if (waited >= CHILD_TIMEOUT_MS) {
      fail("fork child %d still running after %d ms (deadlock after fork?): killed", (int)pid, waited);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return;
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (WIFSIGNALED(status))
    fail("fork child died of signal %d", WTERMSIG(status));
  else if (WEXITSTATUS(status) != 0)
    fail("fork child found errors (exit %d)", WEXITSTATUS(status));
  forks_done++;
}

/* ---- main ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (size_t)sysconf(_SC_PAGESIZE);
}

int main(int argc, char **argv) {
  shim_require_strata("soak");
  setvbuf(stdout, NULL, _IOLBF, 0);
  double seconds = argc > 1 ? atof(argv[1]) : 60;
  int nthreads = argc > 2 ? atoi(argv[2]) : 8;
  uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
  if (nthreads < 1) nthreads = 1;
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  printf("soak: %.0f s, %d threads, seed %llu\n", seconds, nthreads, (unsigned long long)seed);
  CHECK(pthread_key_create(&dtor_key, dtor) == 0);

  static struct worker workers[MAX_THREADS];
  uint64_t next_seed = seed * 1000003;
  for (int i = 0; i < nthreads; i++)
    start_worker(&workers[i], ++next_seed);

  size_t peak_rss = 0;
  double start = now_s(), last_fork = start, last_report = start;
  while (now_s() - start < seconds && atomic_load(&errors) < 50) {
    for (int i = 0; i < nthreads; i++) {
      if (workers[i].used && atomic_load(&workers[i].done)) {
        pthread_join(workers[i].t, NULL);
        workers[i].used = 0;
        start_worker(&workers[i], ++next_seed);
      }
    }
    double t = now_s();
    if ((t - last_fork) * 1000 >= FORK_EVERY_MS) {
      do_fork(++next_seed);
      last_fork = now_s();
    }
    size_t rss = rss_bytes();
    if (rss > peak_rss) peak_rss = rss;
    if (t - last_report >= 10) {
      printf("  %5.0f s: %ld ops by exited threads, %ld threads started, %ld forks, %ld cross-thread "
             "frees, RSS %zu MiB\n",
             t - start, atomic_load(&ops), atomic_load(&threads_started), forks_done,
             atomic_load(&cross_frees), rss / MiB);
      last_report = t;
    }
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < nthreads; i++)
    if (workers[i].used) pthread_join(workers[i].t, NULL);

  size_t drained = 0;
  for (int i = 0; i < SLOTS; i++) {
    struct blk *rec = atomic_exchange(&slots[i], NULL);
    if (!rec) continue;
    release(rec, "final drain");
    free(rec);
    drained++;
  }
  malloc_trim(0);
  size_t rss_end = rss_bytes();
  printf("soak: %.1f s, %ld operations, %ld threads started (%ld exited), %ld forks, %ld cross-thread frees, "
         "%ld TLS-destructor frees, %zu blocks drained; RSS peak %zu MiB, at the end %zu MiB\n",
         now_s() - start, atomic_load(&ops), atomic_load(&threads_started), atomic_load(&threads_exited),
         forks_done, atomic_load(&cross_frees), atomic_load(&dtor_frees), drained, peak_rss / MiB,
         rss_end / MiB);
  CHECKF(atomic_load(&errors) == 0, "%ld errors (the first ones are printed above)", atomic_load(&errors));
  CHECKF(peak_rss < RSS_LIMIT, "RSS peaked at %zu MiB", peak_rss / MiB);
  CHECK(forks_done > 0 || seconds < 1);
  CHECK(atomic_load(&threads_started) > nthreads || seconds < 10);
  return shim_finish();
}
