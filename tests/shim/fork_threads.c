/* fork() while other threads allocate, run under LD_PRELOAD=libstrata.so.
 *
 * Three worker threads allocate and free continuously (random sizes up to
 * 64 KiB, some blocks freed by another thread through a mutex-guarded shared
 * array) while the main thread forks 200 times. Each child arms alarm(10)
 * so a deadlocked allocator kills it with SIGALRM, then allocates and frees
 * a few thousand blocks (one of 4 MiB), frees blocks its parent allocated
 * before the fork, runs one thread of its own, checks that strata counts
 * one thread with a cache (the parent's workers did not come along), and
 * _exit()s with 0 only if everything checked out. The parent requires exit status 0 every time.
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { WORKERS = 3, FORKS = 200, SLOTS = 256, SHARED = 1024 };

static atomic_int stop_flag;
static atomic_long worker_ops;
static atomic_long cross_frees;
static atomic_long worker_errors;

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *shared_p[SHARED];

/* Every block carries its size and a tag in its first bytes, and a tag in
 * its last byte, so any thread can verify it. */
struct hdr {
  size_t n;
  uint64_t tag;
};

static unsigned char *make_block(size_t n, uint64_t tag) {
  if (n < sizeof(struct hdr) + 1)
    n = sizeof(struct hdr) + 1;
  unsigned char *p = malloc(n);
  if (!p)
    return NULL;
  struct hdr h = {n, tag};
  memcpy(p, &h, sizeof h);
  p[n - 1] = (unsigned char)tag;
  return p;
}

static int block_ok(const unsigned char *p) {
  struct hdr h;
  memcpy(&h, p, sizeof h);
  return h.n >= sizeof h + 1 && h.n <= 64 * 1024 + 64 &&
         p[h.n - 1] == (unsigned char)h.tag &&
         malloc_usable_size((void *)p) >= h.n;
}

static void *worker(void *arg) {
  uint64_t rng = 0x51ed2701u + (uint64_t)(uintptr_t)arg * 7919u;
  unsigned char *slots[SLOTS] = {0};
  long ops = 0;
  while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
    uint64_t r = shim_rand(&rng);
    int i = (int)(r % SLOTS);
    if (slots[i]) {
      if (!block_ok(slots[i]))
        atomic_fetch_add(&worker_errors, 1);
      if ((r >> 20) % 8 == 0) {
        /* hand it to whoever takes it from the shared array */
        pthread_mutex_lock(&shared_lock);
        int j = (int)((r >> 32) % SHARED);
        unsigned char *old = shared_p[j];
        shared_p[j] = slots[i];
        pthread_mutex_unlock(&shared_lock);
        if (old) { /* frees a block allocated by some thread */
          if (!block_ok(old))
            atomic_fetch_add(&worker_errors, 1);
          free(old);
          atomic_fetch_add_explicit(&cross_frees, 1, memory_order_relaxed);
        }
      } else {
        free(slots[i]);
      }
      slots[i] = NULL;
    } else {
      size_t n = (size_t)(shim_rand(&rng) % (64 * 1024)) + 1;
      if ((r >> 40) % 4 != 0)
        n = n % 512 + 1; /* mostly small */
      slots[i] = make_block(n, r);
      if (!slots[i])
        atomic_fetch_add(&worker_errors, 1);
    }
    if ((++ops & 1023) == 0)
      atomic_fetch_add_explicit(&worker_ops, 1024, memory_order_relaxed);
  }
  for (int i = 0; i < SLOTS; i++)
    free(slots[i]);
  return NULL;
}

/* ---- child side: only _exit() codes, no stdio ---- */

enum { CHILD_OK = 0, CHILD_ALLOC = 2, CHILD_CORRUPT = 3, CHILD_CALLOC = 4,
       CHILD_THREAD = 5, CHILD_PREFORK = 6, CHILD_THREADS = 7 };

/* The number of threads with a cache in strata's statistics
 * ("thread_cache": {... "threads": N}), or -1. */
static long long strata_cache_threads(void) {
  static char buf[1 << 18];
  if (shim_stats_json(buf, sizeof buf) >= sizeof buf) /* (size_t)-1 too */
    return -1;
  return shim_json_number(strstr(buf, "\"thread_cache\""), "threads");
}

static int child_alloc_round(uint64_t seed, int N) {
  enum { MAXN = 3000 };
  static unsigned char *p[MAXN];
  static size_t n[MAXN];
  uint64_t rng = seed | 1;
  for (int i = 0; i < N; i++) {
    uint64_t r = shim_rand(&rng);
    n[i] = (r % 8 == 0) ? (size_t)(r >> 8) % (64 * 1024) + 1
                        : (size_t)(r >> 8) % 600 + 1;
    if (i == N / 2)
      n[i] = 4u << 20; /* one 4 MiB block */
    if (i % 10 == 0) {
      p[i] = calloc(1, n[i]);
      if (p[i]) {
        for (size_t k = 0; k < n[i]; k++)
          if (p[i][k])
            return CHILD_CALLOC;
      }
    } else {
      p[i] = malloc(n[i]);
    }
    if (!p[i])
      return CHILD_ALLOC;
    shim_fill(p[i], n[i] < 4096 ? n[i] : 4096, (unsigned)i);
    if (i % 3 == 0 && i > 0) { /* free some as we go */
      int j = i - 1;
      if (shim_verify(p[j], n[j] < 4096 ? n[j] : 4096, (unsigned)j) !=
          (size_t)-1)
        return CHILD_CORRUPT;
      free(p[j]);
      p[j] = NULL;
    }
  }
  for (int i = 0; i < N; i++) {
    if (!p[i])
      continue;
    if (shim_verify(p[i], n[i] < 4096 ? n[i] : 4096, (unsigned)i) !=
        (size_t)-1)
      return CHILD_CORRUPT;
    if (i % 7 == 0) {
      unsigned char *q = realloc(p[i], n[i] * 2 + 1);
      if (!q)
        return CHILD_ALLOC;
      p[i] = q;
    }
    free(p[i]);
    p[i] = NULL;
  }
  return CHILD_OK;
}

static void *child_thread(void *arg) {
  return (void *)(intptr_t)child_alloc_round((uint64_t)(uintptr_t)arg, 500);
}

static void run_child(unsigned char **pre, const size_t *pre_n, int npre,
                      int iter) {
  alarm(10);
  for (int i = 0; i < npre; i++)
    if (shim_verify(pre[i], pre_n[i], (unsigned)(iter + i)) != (size_t)-1)
      _exit(CHILD_PREFORK);
  int rc = child_alloc_round((uint64_t)iter * 1000003u, 3000);
  if (rc != CHILD_OK)
    _exit(rc);
  for (int i = 0; i < npre; i++)
    free(pre[i]); /* allocated by the parent before the fork */
  pthread_t t;
  if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(iter + 77)))
    _exit(CHILD_THREAD);
  void *trc = NULL;
  pthread_join(t, &trc);
  if ((intptr_t)trc != CHILD_OK)
    _exit((int)(intptr_t)trc);
  /* The parent's workers did not come along: this is the one thread left. */
  if (strata_cache_threads() != 1)
    _exit(CHILD_THREADS);
  _exit(CHILD_OK);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  shim_require_strata("fork_threads");

  pthread_t th[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    CHECK(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1)) ==
          0);
  usleep(20000); /* let the workers get going */

  int bad_children = 0;
  for (int iter = 0; iter < FORKS; iter++) {
    /* blocks live across the fork, freed on both sides */
    static const size_t sizes[] = {24, 1000, 70000, 1 << 20};
    enum { NPRE = 4 };
    unsigned char *pre[NPRE];
    size_t pre_n[NPRE];
    for (int i = 0; i < NPRE; i++) {
      pre_n[i] = sizes[i];
      pre[i] = i == 2 ? memalign(4096, sizes[i]) : malloc(sizes[i]);
      if (!pre[i]) {
        CHECK(pre[i] != NULL);
        pre_n[i] = 0;
        continue;
      }
      shim_fill(pre[i], pre_n[i], (unsigned)(iter + i));
    }
    pid_t pid = fork();
    if (pid == 0)
      run_child(pre, pre_n, NPRE, iter);
    CHECKF(pid > 0, "fork #%d failed: %s", iter, strerror(errno));
    for (int i = 0; i < NPRE; i++) {
      if (pre[i] &&
          shim_verify(pre[i], pre_n[i], (unsigned)(iter + i)) != (size_t)-1)
        CHECKF(0, "parent block %d corrupted across fork #%d", i, iter);
      free(pre[i]);
    }
    if (pid <= 0)
      continue;
    int status = 0;
    pid_t w;
    do
      w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    CHECKF(w == pid, "waitpid #%d: %s", iter, strerror(errno));
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
      bad_children++;
    if (WIFSIGNALED(status))
      CHECKF(ok, "child #%d killed by signal %d (%s)%s", iter,
             WTERMSIG(status), strsignal(WTERMSIG(status)),
             WTERMSIG(status) == SIGALRM ? " -- deadlock after fork?" : "");
    else
      CHECKF(ok, "child #%d exited with status %d (2 alloc failed, 3 "
                 "corruption, 4 calloc not zero, 5 pthread_create, 6 "
                 "pre-fork block corrupt, 7 strata counts threads that "
                 "did not survive the fork)", iter, WEXITSTATUS(status));
  }

  atomic_store(&stop_flag, 1);
  for (int i = 0; i < WORKERS; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < SHARED; i++)
    free(shared_p[i]);
  long errs = atomic_load(&worker_errors);
  CHECKF(errs == 0, "%ld worker block verification/allocation errors", errs);
  CHECKF(atomic_load(&worker_ops) > 0, "workers made no progress");
  printf("fork_threads: %d forks, %d failed children, ~%ld worker ops, %ld "
         "cross-thread frees\n", FORKS, bad_children,
         atomic_load(&worker_ops), atomic_load(&cross_frees));
  return shim_finish();
}
