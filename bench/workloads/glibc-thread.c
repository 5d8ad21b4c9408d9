/* glibc-thread: the multithreaded fast path with a mixed working set.
 *
 * Each thread keeps a private working set of W blocks (default 1024) whose
 * sizes are drawn log-uniformly from 4 B..32 KiB (so small sizes dominate by
 * count).  Each operation frees a random block of the set (after checking
 * it) and allocates a new block of a fresh random size in its place.  No
 * memory crosses threads.
 *
 * Metric: ops_per_sec over all threads, one op = one free + one malloc. */
#include "common.h"

static long g_threads = 2, g_iters = 10000000, g_ws = 1024, g_seed = 1;
static pthread_barrier_t g_start;

typedef struct {
  void *p;
  size_t size;
} block;

static size_t pick_size(wl_rng *rng) {
  unsigned e = (unsigned)wl_rng_range(rng, 2, 14);           /* 4 .. 16 Ki */
  return (size_t)wl_rng_range(rng, (uint64_t)1 << e, ((uint64_t)2 << e) - 1);
}

static void *worker(void *arg) {
  long id = (long)(intptr_t)arg;
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed * 104729u + (uint64_t)id);
  block *set = (block *)malloc((size_t)g_ws * sizeof(block));
  if (!set) wl_die("out of memory");
  const uint64_t tagbase = (uint64_t)id << 32;
  for (long i = 0; i < g_ws; i++) {
    size_t n = pick_size(&rng);
    set[i].p = wl_check_alloc(malloc(n), n, "malloc");
    set[i].size = n;
    wl_stamp(set[i].p, n, tagbase + (uint64_t)i);
  }
  pthread_barrier_wait(&g_start);
  for (long it = 0; it < g_iters; it++) {
    long i = (long)wl_rng_below(&rng, (uint64_t)g_ws);
    wl_verify_or_die(set[i].p, set[i].size, tagbase + (uint64_t)i,
                     "glibc-thread");
    free(set[i].p);
    size_t n = pick_size(&rng);
    set[i].p = wl_check_alloc(malloc(n), n, "malloc");
    set[i].size = n;
    wl_stamp(set[i].p, n, tagbase + (uint64_t)i);
  }
  for (long i = 0; i < g_ws; i++) {
    wl_verify_or_die(set[i].p, set[i].size, tagbase + (uint64_t)i,
                     "glibc-thread");
    free(set[i].p);
  }
  free(set);
  return NULL;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'t', &g_threads, "threads"},
      {'i', &g_iters, "free+malloc operations per thread"},
      {'w', &g_ws, "working-set blocks per thread"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_threads < 1 || g_ws < 1) wl_die("bad arguments");
  double t = wl_run_threads(g_threads, worker, &g_start);
  double ops = (double)g_threads * (double)g_iters;
  printf("threads=%ld ops=%.0f time_s=%.6f ops_per_sec=%.0f\n", g_threads, ops,
         t, ops / t);
  return 0;
}
