/* glibc-simple: the single-threaded fast path.
 *
 * For each block count n in {25, 100, 400, 1600} and each size in
 * {16, 64, 256, 1024} bytes: repeatedly malloc n objects of that size, then
 * free all n (alternately in allocation order and in reverse order), until
 * I objects have been allocated for that configuration.
 *
 * Metric: ops_per_sec, one op = one malloc + one free. */
#include "common.h"

static long g_iters = 3000000, g_seed = 1;

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'i', &g_iters, "allocations per (count, size) configuration"},
      {'s', &g_seed, "seed for the content pattern"},
  };
  WL_PARSE(argc, argv, opts);
  static const long counts[] = {25, 100, 400, 1600};
  static const size_t sizes[] = {16, 64, 256, 1024};
  void **ptrs = (void **)malloc(1600 * sizeof(void *));
  if (!ptrs) wl_die("out of memory");

  double ops = 0;
  double t0 = wl_now();
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    const long n = counts[c];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      const size_t z = sizes[s];
      const long reps = g_iters / n;
      for (long r = 0; r < reps; r++) {
        uint64_t mark = (uint64_t)g_seed + (uint64_t)r * 0x9E3779B97F4A7C15ull;
        for (long i = 0; i < n; i++) {
          uint64_t *p = (uint64_t *)wl_check_alloc(malloc(z), z, "malloc");
          p[0] = mark + (uint64_t)i;
          ptrs[i] = p;
        }
        if (r & 1) {
          for (long i = n - 1; i >= 0; i--) {
            if (*(uint64_t *)ptrs[i] != mark + (uint64_t)i)
              wl_die("glibc-simple: block %p corrupted", ptrs[i]);
            free(ptrs[i]);
          }
        } else {
          for (long i = 0; i < n; i++) {
            if (*(uint64_t *)ptrs[i] != mark + (uint64_t)i)
              wl_die("glibc-simple: block %p corrupted", ptrs[i]);
            free(ptrs[i]);
          }
        }
      }
      ops += (double)reps * (double)n;
    }
  }
  double t = wl_now() - t0;
  free(ptrs);
  printf("ops=%.0f time_s=%.6f ns_per_op=%.2f ops_per_sec=%.0f\n", ops, t,
         t * 1e9 / ops, ops / t);
  return 0;
}
