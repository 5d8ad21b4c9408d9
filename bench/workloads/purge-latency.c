/* purge-latency: the longest malloc or free while the allocator gives
 * memory back to the kernel.
 *
 * 1. fill V MiB (default 512) with objects of S bytes (64 KiB), writing
 *    one byte in each of their pages, then free them all;
 * 2. for D ms (1500), allocate groups of G (16) blocks of 128-320 KiB
 *    (page-level allocations in every allocator), write their first byte,
 *    free them, and pause P us (100) between groups; every malloc and every
 *    free is timed.
 *
 * An allocator that returns the freed volume during phase 2 (a background
 * thread, or a decay step taken inside a malloc or free) and holds a lock
 * that phase 2's calls need while its madvise calls run makes them wait
 * for the whole release: strata's page heap once held its lock for 40 ms
 * while giving back 512 MiB.
 *
 * Metrics: max_us (the longest call), p999_us, p50_us, calls, rss_fill_kb
 * (after step 1's writes) and rss_end_kb (at the end, pointer arrays
 * excluded). time_s is phase 2's length. */
#include "common.h"

#include <sys/mman.h>

static long g_mib = 512, g_size = 65536, g_ms = 1500, g_group = 16, g_pause_us = 100;

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'m', &g_mib, "volume to fill and free, MiB"},
      {'s', &g_size, "size of the objects that fill it"},
      {'d', &g_ms, "length of the timed phase, ms"},
      {'g', &g_group, "blocks allocated and freed per group"},
      {'p', &g_pause_us, "pause between groups, us"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_mib < 1 || g_size < 16 || g_ms < 1 || g_group < 1 || g_group > 1024) wl_die("bad arguments");
  const size_t n = ((size_t)g_mib << 20) / (size_t)g_size;
  const size_t page = 4096;

  const long rss_base = wl_rss_kb();
  void **objs = (void **)wl_map_array(n * sizeof(void *), 1);
  const long arrays_kb = wl_rss_kb() - rss_base;
  /* Room for one call per microsecond of the phase, more than any
   * allocator makes with the pauses; only what is written becomes
   * resident (2 MiB for 250,000 calls, after the RSS readings). */
  const size_t cap = (size_t)g_ms * 1000;
  double *lat = (double *)wl_map_array(cap * sizeof(double), 0);

  for (size_t i = 0; i < n; i++) {
    unsigned char *p = (unsigned char *)wl_check_alloc(malloc((size_t)g_size), (size_t)g_size, "malloc");
    for (size_t off = 0; off < (size_t)g_size; off += page) p[off] = (unsigned char)i;
    objs[i] = p;
  }
  const long rss_fill = wl_rss_kb() - arrays_kb;
  for (size_t i = 0; i < n; i++) {
    if (((unsigned char *)objs[i])[0] != (unsigned char)i) wl_die("object %zu was overwritten", i);
    free(objs[i]);
  }

  void *group[1024];
  size_t calls = 0;
  const double t0 = wl_now(), end = t0 + (double)g_ms / 1000.0;
  const struct timespec pause = {0, g_pause_us * 1000L};
  while (wl_now() < end && calls + 2 * (size_t)g_group <= cap) {
    for (long i = 0; i < g_group; i++) {
      const size_t sz = (size_t)(128 + 64 * (i % 4)) << 10;
      const double a = wl_now();
      unsigned char *p = (unsigned char *)malloc(sz);
      lat[calls++] = wl_now() - a;
      wl_check_alloc(p, sz, "malloc");
      p[0] = (unsigned char)i;
      group[i] = p;
    }
    for (long i = 0; i < g_group; i++) {
      if (((unsigned char *)group[i])[0] != (unsigned char)i) wl_die("block %ld was overwritten", i);
      const double a = wl_now();
      free(group[i]);
      lat[calls++] = wl_now() - a;
    }
    if (g_pause_us > 0) nanosleep(&pause, NULL);
  }
  const double t = wl_now() - t0;
  const long rss_end = wl_rss_kb() - arrays_kb - (long)(calls * sizeof(double) / 1024);

  if (calls == 0) wl_die("no call was timed");
  qsort(lat, calls, sizeof(double), cmp_double);
  printf("objects=%zu calls=%zu p50_us=%.3f p999_us=%.1f max_us=%.0f rss_fill_kb=%ld rss_end_kb=%ld "
         "time_s=%.6f\n",
         n, calls, lat[calls / 2] * 1e6, lat[calls * 999 / 1000] * 1e6, lat[calls - 1] * 1e6, rss_fill, rss_end,
         t);
  munmap(objs, n * sizeof(void *));
  munmap(lat, cap * sizeof(double));
  return 0;
}
