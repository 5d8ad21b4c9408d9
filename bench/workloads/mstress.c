/* mstress: thread churn, abandoned memory, realloc and cross-thread passing.
 *
 * T threads each own an array of L slots; there is also a shared transfer
 * array of X slots.  Each operation picks a random local slot and either
 *   - swaps it with a random transfer slot (atomic exchange: objects move
 *     to whichever thread picks that transfer slot next),
 *   - reallocs it to another power-of-two size, checking the kept prefix,
 *   - or frees it and (half the time) allocates a new block into it.
 * Sizes are powers of two 16 B..8 KiB, with one allocation in G (default
 * 1000) a large power of two 64 KiB..4 MiB.  At the end of a round every
 * thread frees a random half of its slots and exits; the survivors are
 * inherited by a different thread of the next round (abandoned memory).
 * All threads are destroyed and recreated each round.
 *
 * Metric: ops_per_sec over all threads. */
#include "common.h"

#include <stdatomic.h>

static long g_threads = 2, g_rounds = 100, g_ops = 50000, g_local = 1000,
            g_xfer = 1024, g_large = 1000, g_seed = 1;
static void **g_locals;               /* g_threads * g_local */
static _Atomic(void *) *g_transfer;   /* g_xfer */

static size_t pick_size(wl_rng *rng) {
  if (g_large > 0 && wl_rng_below(rng, (uint64_t)g_large) == 0)
    return (size_t)1 << wl_rng_range(rng, 16, 22);
  return (size_t)1 << wl_rng_range(rng, 4, 13);
}

static void *new_block(wl_rng *rng) {
  size_t n = pick_size(rng);
  void *p = wl_check_alloc(malloc(n), n, "malloc");
  wl_hdr_put(p, n);
  return p;
}

typedef struct {
  long index, round;
} job;

static void *worker(void *arg) {
  const job *j = (const job *)arg;
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed * 7919u + (uint64_t)j->round * 131u +
                        (uint64_t)j->index);
  /* inherit the slots left behind by another thread of the last round */
  void **mine = g_locals + ((j->index + j->round) % g_threads) * g_local;
  for (long i = 0; i < g_ops; i++) {
    long k = (long)wl_rng_below(&rng, (uint64_t)g_local);
    unsigned action = (unsigned)wl_rng_below(&rng, 100);
    if (action < 10) {
      long x = (long)wl_rng_below(&rng, (uint64_t)g_xfer);
      void *got = atomic_exchange_explicit(&g_transfer[x], mine[k],
                                           memory_order_acq_rel);
      if (got) wl_hdr_check(got, "mstress: transfer");
      mine[k] = got;
    } else if (action < 20) {
      if (!mine[k]) {
        mine[k] = new_block(&rng);
        continue;
      }
      size_t old = wl_hdr_check(mine[k], "mstress: before realloc");
      size_t n = pick_size(&rng);
      unsigned char last = ((unsigned char *)mine[k])[old - 1];
      void *p = wl_check_alloc(realloc(mine[k], n), n, "realloc");
      const uint64_t *w = (const uint64_t *)p;
      if (w[0] != old || (n > old && ((unsigned char *)p)[old - 1] != last))
        wl_die("mstress: realloc %zu -> %zu lost content", old, n);
      wl_hdr_put(p, n);
      mine[k] = p;
    } else {
      if (mine[k]) {
        wl_hdr_check(mine[k], "mstress: before free");
        free(mine[k]);
        mine[k] = NULL;
        if (wl_rng_below(&rng, 2)) continue;
      }
      mine[k] = new_block(&rng);
    }
  }
  /* free a random half, abandon the rest to the next round */
  for (long k = 0; k < g_local; k++) {
    if (mine[k] && wl_rng_below(&rng, 2)) {
      wl_hdr_check(mine[k], "mstress: round end");
      free(mine[k]);
      mine[k] = NULL;
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'t', &g_threads, "threads"},
      {'r', &g_rounds, "rounds (threads are recreated each round)"},
      {'n', &g_ops, "operations per thread per round"},
      {'l', &g_local, "local slots per thread"},
      {'x', &g_xfer, "shared transfer slots"},
      {'g', &g_large, "one allocation in G is large (0: never)"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_threads < 1 || g_local < 1 || g_xfer < 1) wl_die("bad arguments");

  g_locals = (void **)calloc((size_t)(g_threads * g_local), sizeof(void *));
  g_transfer = (_Atomic(void *) *)calloc((size_t)g_xfer, sizeof(*g_transfer));
  pthread_t *tids = (pthread_t *)malloc((size_t)g_threads * sizeof(pthread_t));
  job *jobs = (job *)malloc((size_t)g_threads * sizeof(job));
  if (!g_locals || !g_transfer || !tids || !jobs) wl_die("out of memory");
  for (long x = 0; x < g_xfer; x++) atomic_init(&g_transfer[x], NULL);

  double t0 = wl_now();
  for (long r = 0; r < g_rounds; r++) {
    for (long k = 0; k < g_threads; k++) {
      jobs[k].index = k;
      jobs[k].round = r;
      wl_spawn(&tids[k], worker, &jobs[k]);
    }
    for (long k = 0; k < g_threads; k++) wl_join(tids[k]);
  }
  for (long i = 0; i < g_threads * g_local; i++)
    if (g_locals[i]) {
      wl_hdr_check(g_locals[i], "mstress: final");
      free(g_locals[i]);
    }
  for (long x = 0; x < g_xfer; x++) {
    void *p = atomic_load(&g_transfer[x]);
    if (p) {
      wl_hdr_check(p, "mstress: final transfer");
      free(p);
    }
  }
  double t = wl_now() - t0;

  double ops = (double)g_threads * (double)g_rounds * (double)g_ops;
  free(jobs);
  free(tids);
  free((void *)g_transfer);
  free(g_locals);
  printf("threads=%ld ops=%.0f time_s=%.6f ops_per_sec=%.0f\n", g_threads, ops,
         t, ops / t);
  return 0;
}
