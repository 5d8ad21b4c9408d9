/* malloc-large: large objects and purging.
 *
 * N live buffers (default 20) of random size between 5 and 25 MiB.  Each
 * operation picks one at random, checks a few of its pages, frees it,
 * allocates a new buffer of a fresh random size and writes one word in
 * every 4 KiB page of it.  An allocator that returns every freed buffer to
 * the kernel pays a page fault per page; one that keeps it pays nothing.
 *
 * Metric: time_s for a fixed number of replacements (ops). */
#include "common.h"

static long g_live = 20, g_iters = 400, g_min_mb = 5, g_max_mb = 25,
            g_seed = 1;

typedef struct {
  unsigned char *p;
  size_t size;
  uint64_t gen;
} buf;

static const size_t kPage = 4096;

static uint64_t page_word(uint64_t gen, size_t page) {
  return wl_splitmix(gen * 0x100000001B3ull ^ page);
}
/* one word at the start of every page that has room for it before the
 * last byte, which holds its own marker */
static void touch(buf *b) {
  for (size_t off = 0; off + sizeof(uint64_t) < b->size; off += kPage) {
    uint64_t v = page_word(b->gen, off / kPage);
    memcpy(b->p + off, &v, sizeof v);
  }
  b->p[b->size - 1] = (unsigned char)b->gen;
}
static void check_page(const buf *b, size_t page) {
  size_t off = page * kPage;
  if (off + sizeof(uint64_t) >= b->size) return;
  uint64_t v = page_word(b->gen, page), got;
  memcpy(&got, b->p + off, sizeof got);
  if (got != v)
    wl_die("malloc-large: buffer %p (%zu bytes) page %zu corrupted",
           (void *)b->p, b->size, page);
}
static void check(const buf *b) {
  size_t pages = (b->size + kPage - 1) / kPage;
  check_page(b, 0);
  check_page(b, pages / 2);
  check_page(b, pages - 1);
  if (b->p[b->size - 1] != (unsigned char)b->gen)
    wl_die("malloc-large: buffer %p last byte corrupted", (void *)b->p);
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'n', &g_live, "live buffers"},
      {'i', &g_iters, "replacements"},
      {'m', &g_min_mb, "minimum buffer size in MiB"},
      {'M', &g_max_mb, "maximum buffer size in MiB"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_live < 1 || g_min_mb < 1 || g_max_mb < g_min_mb)
    wl_die("bad arguments");
  const uint64_t lo = (uint64_t)g_min_mb << 20, hi = (uint64_t)g_max_mb << 20;
  buf *bufs = (buf *)calloc((size_t)g_live, sizeof(buf));
  if (!bufs) wl_die("out of memory");
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed);
  uint64_t gen = 0;

  double t0 = wl_now();
  for (long i = 0; i < g_live; i++) {
    bufs[i].size = (size_t)wl_rng_range(&rng, lo, hi);
    bufs[i].p = (unsigned char *)wl_check_alloc(malloc(bufs[i].size),
                                                bufs[i].size, "malloc");
    bufs[i].gen = ++gen;
    touch(&bufs[i]);
  }
  for (long it = 0; it < g_iters; it++) {
    buf *b = &bufs[wl_rng_below(&rng, (uint64_t)g_live)];
    check(b);
    free(b->p);
    b->size = (size_t)wl_rng_range(&rng, lo, hi);
    b->p = (unsigned char *)wl_check_alloc(malloc(b->size), b->size, "malloc");
    b->gen = ++gen;
    touch(b);
  }
  for (long i = 0; i < g_live; i++) {
    check(&bufs[i]);
    free(bufs[i].p);
  }
  double t = wl_now() - t0;
  long rss_after = wl_rss_kb();
  free(bufs);
  printf("ops=%ld time_s=%.6f ops_per_sec=%.1f rss_after_free_kb=%ld\n",
         g_iters, t, (double)g_iters / t, rss_after);
  return 0;
}
