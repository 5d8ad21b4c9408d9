/* alloc-test: sustained churn at random positions.
 *
 * Each thread owns N slots (default 8192).  Each operation picks a random
 * slot: if it holds a block, the block is checked and freed; if it is empty,
 * a block of random size is allocated into it (3 in 4 sizes are 1..128 B,
 * the rest 1..M B, M = 1024 by default).  Occupancy settles around one half,
 * and the order of frees is unrelated to the order of allocations.
 *
 * Metric: ops_per_sec over all threads, one op = one malloc or one free. */
#include "common.h"

static long g_threads = 2, g_iters = 40000000, g_slots = 8192, g_max = 1024,
            g_seed = 1;
static pthread_barrier_t g_start;

typedef struct {
  void *p;
  size_t size;
} block;

static void *worker(void *arg) {
  long id = (long)(intptr_t)arg;
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed * 15485863u + (uint64_t)id);
  block *s = (block *)calloc((size_t)g_slots, sizeof(block));
  if (!s) wl_die("out of memory");
  const uint64_t tagbase = (uint64_t)id << 32;
  const uint64_t small_max = g_max < 128 ? (uint64_t)g_max : 128;
  pthread_barrier_wait(&g_start);
  for (long it = 0; it < g_iters; it++) {
    uint64_t r = wl_rng_next(&rng);
    long i = (long)(((unsigned __int128)r * (uint64_t)g_slots) >> 64);
    if (s[i].p) {
      wl_verify_or_die(s[i].p, s[i].size, tagbase + (uint64_t)i, "alloc-test");
      free(s[i].p);
      s[i].p = NULL;
    } else {
      size_t n = (r & 3) ? (size_t)wl_rng_range(&rng, 1, small_max)
                         : (size_t)wl_rng_range(&rng, 1, (uint64_t)g_max);
      void *p = wl_check_alloc(malloc(n), n, "malloc");
      wl_stamp(p, n, tagbase + (uint64_t)i);
      s[i].p = p;
      s[i].size = n;
    }
  }
  for (long i = 0; i < g_slots; i++)
    if (s[i].p) {
      wl_verify_or_die(s[i].p, s[i].size, tagbase + (uint64_t)i, "alloc-test");
      free(s[i].p);
    }
  free(s);
  return NULL;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'t', &g_threads, "threads"},
      {'i', &g_iters, "malloc-or-free operations per thread"},
      {'n', &g_slots, "slots per thread"},
      {'M', &g_max, "maximum block size"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_threads < 1 || g_slots < 1 || g_max < 1) wl_die("bad arguments");
  double t = wl_run_threads(g_threads, worker, &g_start);
  double ops = (double)g_threads * (double)g_iters;
  printf("threads=%ld ops=%.0f time_s=%.6f ops_per_sec=%.0f\n", g_threads, ops,
         t, ops / t);
  return 0;
}
