/* mleak: memory of dead threads.
 *
 * R rounds; each round starts T short-lived threads.  Each thread allocates
 * exactly one block (random size 16 B..M, default 16 KiB), writes it, and
 * then either frees it itself (1 - P/100 of the time) or parks it in a
 * random slot of a shared array of K slots, freeing the block it displaces
 * (which was allocated by a thread of an earlier round that has exited).
 * The thread then exits.  An allocator that keeps per-thread state for
 * dead threads grows here.
 *
 * Metric: threads_per_sec; also RSS with only the parked blocks live
 * (rss_end_kb) and after freeing them (rss_after_free_kb). */
#include "common.h"

#include <stdatomic.h>

static long g_rounds = 5000, g_threads = 2, g_keep = 256, g_pct = 50,
            g_max = 16384, g_seed = 1;
static _Atomic(void *) *g_kept;

typedef struct {
  long round, index;
} job;

static void *worker(void *arg) {
  const job *j = (const job *)arg;
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed * 2654435761u +
                        (uint64_t)j->round * 64u + (uint64_t)j->index);
  size_t n = (size_t)wl_rng_range(&rng, 16, (uint64_t)g_max);
  void *p = wl_check_alloc(malloc(n), n, "malloc");
  wl_hdr_put(p, n);
  if ((long)wl_rng_below(&rng, 100) < g_pct) {
    long k = (long)wl_rng_below(&rng, (uint64_t)g_keep);
    void *old = atomic_exchange(&g_kept[k], p);
    if (old) {
      wl_hdr_check(old, "mleak: parked block");
      free(old);
    }
  } else {
    wl_hdr_check(p, "mleak: own block");
    free(p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'r', &g_rounds, "rounds"},
      {'t', &g_threads, "threads per round"},
      {'k', &g_keep, "parking slots"},
      {'p', &g_pct, "percent of threads that park their block"},
      {'M', &g_max, "maximum block size (>= 16)"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_threads < 1 || g_keep < 1 || g_max < 16) wl_die("bad arguments");
  g_kept = (_Atomic(void *) *)calloc((size_t)g_keep, sizeof(*g_kept));
  pthread_t *tids = (pthread_t *)malloc((size_t)g_threads * sizeof(pthread_t));
  job *jobs = (job *)malloc((size_t)g_threads * sizeof(job));
  if (!g_kept || !tids || !jobs) wl_die("out of memory");
  for (long k = 0; k < g_keep; k++) atomic_init(&g_kept[k], NULL);

  double t0 = wl_now();
  for (long r = 0; r < g_rounds; r++) {
    for (long i = 0; i < g_threads; i++) {
      jobs[i].round = r;
      jobs[i].index = i;
      wl_spawn(&tids[i], worker, &jobs[i]);
    }
    for (long i = 0; i < g_threads; i++) wl_join(tids[i]);
  }
  double t = wl_now() - t0;
  long rss_end = wl_rss_kb();
  long parked = 0;
  for (long k = 0; k < g_keep; k++) {
    void *p = atomic_load(&g_kept[k]);
    if (p) {
      wl_hdr_check(p, "mleak: final");
      free(p);
      parked++;
    }
  }
  long rss_after = wl_rss_kb();
  free(jobs);
  free(tids);
  free((void *)g_kept);
  double threads = (double)g_rounds * (double)g_threads;
  printf("threads=%.0f parked=%ld rss_end_kb=%ld rss_after_free_kb=%ld "
         "time_s=%.6f threads_per_sec=%.0f\n",
         threads, parked, rss_end, rss_after, t, threads / t);
  return 0;
}
