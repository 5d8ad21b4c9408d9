/* frag: fragmentation and returning memory to the kernel.
 *
 * 1. fill:   allocate V MiB (default 256) of objects of size A (64 B), writing
 *            each one;
 * 2. free F% (90) of them, chosen at random, in random order;
 * 3. refill: allocate objects of size B (200 B) until their volume equals the
 *            volume just freed;
 * 4. free everything; read RSS at once and again after W ms (1000).
 * RSS (VmRSS) is read after each phase.  The harness's own pointer arrays are
 * mmap'd and pre-touched, and their size is subtracted from the readings
 * taken while they exist, so every value is "RSS of the program and its
 * heap".  time_s covers phases 1-4 without the final sleep.
 *
 * Metrics: rss_peak_kb (the fragmentation cost of the refill),
 * rss_after_free_kb, rss_1s_after_free_kb and rss_1s_after_free_pct =
 * 100 * rss_1s_after_free / rss_peak (memory given back). */
#include "common.h"

#include <sys/mman.h>

static long g_mib = 256, g_a = 64, g_b = 200, g_free_pct = 90, g_wait_ms = 1000,
            g_seed = 1;

static long max_l(long a, long b) { return a > b ? a : b; }

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'m', &g_mib, "volume to fill in MiB"},
      {'a', &g_a, "size of the first objects"},
      {'b', &g_b, "size of the refill objects"},
      {'f', &g_free_pct, "percent of the first objects freed at random"},
      {'w', &g_wait_ms, "wait before the last RSS reading, ms"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_mib < 1 || g_a < 1 || g_b < 1 || g_free_pct > 100)
    wl_die("bad arguments");
  const size_t vol = (size_t)g_mib << 20;
  const size_t n1 = vol / (size_t)g_a;
  const size_t nfree = n1 * (size_t)g_free_pct / 100;
  const size_t n2 = nfree * (size_t)g_a / (size_t)g_b;
  if (n1 > UINT32_MAX) wl_die("too many objects");

  const long rss_base = wl_rss_kb();
  void **p1 = (void **)wl_map_array(n1 * sizeof(void *), 1);
  uint32_t *perm = (uint32_t *)wl_map_array(n1 * sizeof(uint32_t), 1);
  void **p2 = (void **)wl_map_array((n2 + 1) * sizeof(void *), 1);
  const long arrays_kb = wl_rss_kb() - rss_base;

  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed);
  for (size_t i = 0; i < n1; i++) perm[i] = (uint32_t)i;
  for (size_t i = n1 - 1; i > 0; i--) {
    size_t j = (size_t)wl_rng_below(&rng, (uint64_t)i + 1);
    uint32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }

  double t0 = wl_now();
  /* 1. fill */
  for (size_t i = 0; i < n1; i++) {
    p1[i] = wl_check_alloc(malloc((size_t)g_a), (size_t)g_a, "malloc");
    wl_stamp(p1[i], (size_t)g_a, i);
  }
  const long rss_fill = wl_rss_kb() - arrays_kb;
  const double t1 = wl_now();
  /* 2. free F% at random */
  for (size_t j = 0; j < nfree; j++) {
    size_t i = perm[j];
    wl_verify_or_die(p1[i], (size_t)g_a, i, "frag (random free)");
    free(p1[i]);
    p1[i] = NULL;
  }
  const long rss_random_free = wl_rss_kb() - arrays_kb;
  const double t2 = wl_now();
  /* 3. refill with the other size */
  for (size_t i = 0; i < n2; i++) {
    p2[i] = wl_check_alloc(malloc((size_t)g_b), (size_t)g_b, "malloc");
    wl_stamp(p2[i], (size_t)g_b, i ^ 0x80000000u);
  }
  const long rss_refill = wl_rss_kb() - arrays_kb;
  const double t3 = wl_now();
  /* 4. free everything */
  for (size_t i = 0; i < n1; i++)
    if (p1[i]) {
      wl_verify_or_die(p1[i], (size_t)g_a, i, "frag (final free)");
      free(p1[i]);
    }
  for (size_t i = 0; i < n2; i++) {
    wl_verify_or_die(p2[i], (size_t)g_b, i ^ 0x80000000u, "frag (final free)");
    free(p2[i]);
  }
  const double t4 = wl_now();
  const double t = t4 - t0;
  const long hwm = wl_hwm_kb() - arrays_kb;
  munmap(p1, n1 * sizeof(void *));
  munmap(perm, n1 * sizeof(uint32_t));
  munmap(p2, (n2 + 1) * sizeof(void *));
  const long rss_after_free = wl_rss_kb();
  struct timespec ts = {g_wait_ms / 1000, (g_wait_ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  const long rss_1s = wl_rss_kb();

  const long peak =
      max_l(hwm, max_l(rss_fill, max_l(rss_random_free, rss_refill)));
  printf("objects_a=%zu freed_a=%zu objects_b=%zu rss_base_kb=%ld "
         "rss_fill_kb=%ld rss_after_random_free_kb=%ld rss_refill_kb=%ld "
         "rss_peak_kb=%ld rss_after_free_kb=%ld rss_1s_after_free_kb=%ld "
         "rss_after_free_pct=%.1f rss_1s_after_free_pct=%.1f fill_s=%.3f "
         "random_free_s=%.3f refill_s=%.3f free_s=%.3f time_s=%.6f\n",
         n1, nfree, n2, rss_base, rss_fill, rss_random_free, rss_refill, peak,
         rss_after_free, rss_1s, 100.0 * (double)rss_after_free / (double)peak,
         100.0 * (double)rss_1s / (double)peak, t1 - t0, t2 - t1, t3 - t2,
         t4 - t3, t);
  return 0;
}
