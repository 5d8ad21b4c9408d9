/* cache-scratch: passive false sharing.
 *
 * The main thread allocates one small object (default 1 byte) per worker,
 * back to back, so they likely share a cache line, and hands one to each
 * worker.  Each worker frees its object, then I times: allocates an object
 * of the same size, writes it R times, checks it and frees it.  An allocator
 * that hands the freed object (or its neighbours) back to the worker makes
 * the workers write into one cache line from different cores.
 *
 * Metric: ops_per_sec, one op = one byte written. */
#include "common.h"

static long g_threads = 2, g_iters = 1000, g_reps = 1500000, g_size = 1;
static void **g_objs;
static pthread_barrier_t g_start;

static void *worker(void *arg) {
  long id = (long)(intptr_t)arg;
  void *first = g_objs[id];
  pthread_barrier_wait(&g_start);
  if (((unsigned char *)first)[0] != (unsigned char)(0xA0 + id))
    wl_die("cache-scratch: handed-over object %p corrupted", first);
  free(first);
  const size_t z = (size_t)g_size;
  for (long i = 0; i < g_iters; i++) {
    volatile unsigned char *p =
        (volatile unsigned char *)wl_check_alloc(malloc(z), z, "malloc");
    for (long r = 0; r < g_reps; r++)
      for (size_t k = 0; k < z; k++) p[k] = (unsigned char)(r + (long)k + id);
    for (size_t k = 0; k < z; k++)
      if (p[k] != (unsigned char)(g_reps - 1 + (long)k + id))
        wl_die("cache-scratch: object %p lost a write", (void *)p);
    free((void *)p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'t', &g_threads, "worker threads"},
      {'i', &g_iters, "allocations per worker"},
      {'r', &g_reps, "writes to each object"},
      {'z', &g_size, "object size in bytes"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_threads < 1 || g_size < 1 || g_reps < 1) wl_die("bad arguments");

  g_objs = (void **)malloc((size_t)g_threads * sizeof(void *));
  pthread_t *tids = (pthread_t *)malloc((size_t)g_threads * sizeof(pthread_t));
  if (!g_objs || !tids) wl_die("out of memory");
  for (long k = 0; k < g_threads; k++) {
    g_objs[k] = wl_check_alloc(malloc((size_t)g_size), (size_t)g_size, "malloc");
    memset(g_objs[k], 0xA0 + (int)k, (size_t)g_size);
  }
  pthread_barrier_init(&g_start, NULL, (unsigned)g_threads + 1);
  for (long k = 0; k < g_threads; k++)
    wl_spawn(&tids[k], worker, (void *)(intptr_t)k);
  double t0 = wl_now();
  pthread_barrier_wait(&g_start);
  for (long k = 0; k < g_threads; k++) wl_join(tids[k]);
  double t = wl_now() - t0;
  pthread_barrier_destroy(&g_start);

  double ops = (double)g_threads * (double)g_iters * (double)g_reps *
               (double)g_size;
  free(tids);
  free(g_objs);
  printf("threads=%ld writes=%.0f time_s=%.6f ops_per_sec=%.0f\n", g_threads,
         ops, t, ops / t);
  return 0;
}
