/* xmalloc-test: one-way cross-thread traffic.
 *
 * P producer threads malloc batches of B objects of Z bytes (default 64) and
 * push each batch onto a bounded queue (a ring of Q batches protected by a
 * mutex and two condition variables).  C consumer threads pop batches, check
 * every object and free it.  Every object is therefore freed by a thread
 * other than the one that allocated it.  -t is the total thread count; it is
 * split into t/2 producers and the rest consumers (at least one of each).
 *
 * Metric: ops_per_sec, one op = one object malloc'd by a producer and
 * freed by a consumer. */
#include "common.h"

static long g_threads = 2, g_batches = 200000, g_batch = 100, g_size = 64,
            g_queue = 64, g_seed = 1;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_not_empty = PTHREAD_COND_INITIALIZER;
static void **g_ring;            /* g_queue * g_batch pointers */
static long g_head, g_count;     /* ring position and fill, in batches */
static long g_left_to_pop;       /* batches not yet popped by any consumer */

static void *producer(void *arg) {
  (void)arg;
  void **local = (void **)malloc((size_t)g_batch * sizeof(void *));
  if (!local) wl_die("out of memory");
  const uint64_t seed = (uint64_t)g_seed;
  for (long b = 0; b < g_batches; b++) {
    for (long i = 0; i < g_batch; i++) {
      void *p = wl_check_alloc(malloc((size_t)g_size), (size_t)g_size,
                               "malloc");
      wl_stamp(p, (size_t)g_size, seed);
      local[i] = p;
    }
    pthread_mutex_lock(&g_lock);
    while (g_count == g_queue) pthread_cond_wait(&g_not_full, &g_lock);
    long slotno = (g_head + g_count) % g_queue;
    memcpy(g_ring + slotno * g_batch, local, (size_t)g_batch * sizeof(void *));
    g_count++;
    pthread_cond_signal(&g_not_empty);
    pthread_mutex_unlock(&g_lock);
  }
  free(local);
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  void **local = (void **)malloc((size_t)g_batch * sizeof(void *));
  if (!local) wl_die("out of memory");
  const uint64_t seed = (uint64_t)g_seed;
  for (;;) {
    pthread_mutex_lock(&g_lock);
    while (g_count == 0 && g_left_to_pop > 0)
      pthread_cond_wait(&g_not_empty, &g_lock);
    if (g_left_to_pop == 0) {
      pthread_mutex_unlock(&g_lock);
      break;
    }
    memcpy(local, g_ring + g_head * g_batch, (size_t)g_batch * sizeof(void *));
    g_head = (g_head + 1) % g_queue;
    g_count--;
    g_left_to_pop--;
    if (g_left_to_pop == 0) pthread_cond_broadcast(&g_not_empty);
    pthread_cond_signal(&g_not_full);
    pthread_mutex_unlock(&g_lock);
    for (long i = 0; i < g_batch; i++) {
      wl_verify_or_die(local[i], (size_t)g_size, seed, "xmalloc-test");
      free(local[i]);
    }
  }
  free(local);
  return NULL;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'t', &g_threads, "total threads (half producers, half consumers)"},
      {'n', &g_batches, "batches per producer"},
      {'b', &g_batch, "objects per batch"},
      {'z', &g_size, "object size in bytes"},
      {'q', &g_queue, "queue capacity in batches"},
      {'s', &g_seed, "seed for the content pattern"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_batch < 1 || g_size < 1 || g_queue < 1) wl_die("bad arguments");
  long producers = g_threads / 2 > 0 ? g_threads / 2 : 1;
  long consumers = g_threads - producers > 0 ? g_threads - producers : 1;

  g_ring = (void **)malloc((size_t)g_queue * (size_t)g_batch * sizeof(void *));
  pthread_t *tids =
      (pthread_t *)malloc((size_t)(producers + consumers) * sizeof(pthread_t));
  if (!g_ring || !tids) wl_die("out of memory");
  g_left_to_pop = producers * g_batches;

  double t0 = wl_now();
  for (long c = 0; c < consumers; c++)
    wl_spawn(&tids[c], consumer, (void *)(intptr_t)c);
  for (long p = 0; p < producers; p++)
    wl_spawn(&tids[consumers + p], producer, (void *)(intptr_t)p);
  for (long i = 0; i < producers + consumers; i++) wl_join(tids[i]);
  double t = wl_now() - t0;

  if (g_count != 0 || g_left_to_pop != 0) wl_die("queue not drained");
  double ops = (double)producers * (double)g_batches * (double)g_batch;
  free(tids);
  free(g_ring);
  printf("producers=%ld consumers=%ld ops=%.0f time_s=%.6f ops_per_sec=%.0f\n",
         producers, consumers, ops, t, ops / t);
  return 0;
}
