/* larson: a server-like workload.
 *
 * There are T arrays of S slots, each holding a live block of random size
 * (default 8..1000 bytes).  The main thread fills every slot.  Then, for R
 * rounds, T fresh threads are started; in round r thread k works on array
 * (k + r) mod T, so the blocks it frees were allocated by another thread
 * (the main thread, or a thread of the previous round that has since exited)
 * and the blocks it allocates are freed by a thread of the next round.
 * Each thread does I operations: free a random slot (after checking its
 * content) and allocate a new random-size block into it.
 *
 * Metric: ops_per_sec, one op = one free + one malloc. */
#include "common.h"

typedef struct {
  void *p;
  size_t size;
} slot;

static long g_threads = 2, g_slots = 1000, g_rounds = 10, g_iters = 3000000,
            g_min = 8, g_max = 1000, g_seed = 1;
static slot *g_arrays; /* g_threads * g_slots */

typedef struct {
  long array;
  long round;
  long index;
} job;

static void *worker(void *arg) {
  const job *j = (const job *)arg;
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed * 1000003u + (uint64_t)j->round * 4099u +
                        (uint64_t)j->index);
  slot *a = g_arrays + j->array * g_slots;
  const uint64_t base = (uint64_t)j->array * (uint64_t)g_slots;
  for (long i = 0; i < g_iters; i++) {
    long k = (long)wl_rng_below(&rng, (uint64_t)g_slots);
    slot *s = &a[k];
    wl_verify_or_die(s->p, s->size, base + (uint64_t)k, "larson");
    free(s->p);
    size_t n = (size_t)wl_rng_range(&rng, (uint64_t)g_min, (uint64_t)g_max);
    void *p = wl_check_alloc(malloc(n), n, "malloc");
    wl_stamp(p, n, base + (uint64_t)k);
    s->p = p;
    s->size = n;
  }
  return NULL;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'t', &g_threads, "threads"},
      {'n', &g_slots, "slots per thread"},
      {'r', &g_rounds, "rounds (threads are recreated each round)"},
      {'i', &g_iters, "free+malloc operations per thread per round"},
      {'m', &g_min, "minimum block size"},
      {'M', &g_max, "maximum block size"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_threads < 1 || g_slots < 1 || g_min < 1 || g_max < g_min)
    wl_die("bad arguments");

  const size_t nslots = (size_t)g_threads * (size_t)g_slots;
  g_arrays = (slot *)wl_check_alloc(calloc(nslots, sizeof(slot)),
                                    nslots * sizeof(slot), "calloc");
  pthread_t *tids = (pthread_t *)malloc((size_t)g_threads * sizeof(pthread_t));
  job *jobs = (job *)malloc((size_t)g_threads * sizeof(job));
  if (!tids || !jobs) wl_die("out of memory");

  double t0 = wl_now();
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed);
  for (size_t i = 0; i < nslots; i++) {
    size_t n = (size_t)wl_rng_range(&rng, (uint64_t)g_min, (uint64_t)g_max);
    void *p = wl_check_alloc(malloc(n), n, "malloc");
    wl_stamp(p, n, (uint64_t)i);
    g_arrays[i].p = p;
    g_arrays[i].size = n;
  }
  for (long r = 0; r < g_rounds; r++) {
    for (long k = 0; k < g_threads; k++) {
      jobs[k].array = (k + r) % g_threads;
      jobs[k].round = r;
      jobs[k].index = k;
      wl_spawn(&tids[k], worker, &jobs[k]);
    }
    for (long k = 0; k < g_threads; k++) wl_join(tids[k]);
  }
  for (size_t i = 0; i < nslots; i++) {
    wl_verify_or_die(g_arrays[i].p, g_arrays[i].size, (uint64_t)i, "larson");
    free(g_arrays[i].p);
  }
  double t = wl_now() - t0;

  double ops = (double)g_threads * (double)g_rounds * (double)g_iters;
  free(jobs);
  free(tids);
  free(g_arrays);
  printf("threads=%ld ops=%.0f time_s=%.6f ops_per_sec=%.0f\n", g_threads, ops,
         t, ops / t);
  return 0;
}
