/* realloc-growth: buffers grown by realloc.
 *
 * N buffers (default 4) are grown together, round robin, so that each one's
 * neighbour gets in the way of in-place growth.  Three passes, each starting
 * every buffer at 16 B:
 *   linear:   +16 B per realloc up to L KiB (1024)        (string appends)
 *   step:     +max(16 B, size/D) per realloc up to M MiB (D = 16, M = 64)
 *   doubling: x2 per realloc up to M MiB                 (vector growth)
 * After each realloc the new bytes are written with a position-dependent
 * pattern and a few old bytes are checked; the whole buffer is checked
 * (sampled) before it is freed.  The three passes are repeated R times.
 *
 * Metric: time_s for the fixed sequence of reallocs (ops); also moves (how
 * many reallocs returned a different address). */
#include "common.h"

static long g_bufs = 4, g_linear_kb = 1024, g_max_mb = 64, g_div = 16,
            g_reps = 2, g_seed = 1;

static inline unsigned char pat(size_t i, unsigned k) {
  return (unsigned char)((i ^ (i >> 9)) + k);
}

typedef struct {
  unsigned char *p;
  size_t size;
  unsigned key;
} gbuf;

static double g_reallocs, g_moves, g_bytes;

static void check_at(const gbuf *b, size_t i, const char *mode) {
  if (b->p[i] != pat(i, b->key))
    wl_die("realloc-growth (%s): buffer %p of %zu bytes: byte %zu is %u, "
           "expected %u", mode, (void *)b->p, b->size, i, b->p[i],
           pat(i, b->key));
}

static void grow(gbuf *b, size_t n, wl_rng *rng, const char *mode) {
  size_t old = b->size;
  unsigned char *q = (unsigned char *)wl_check_alloc(realloc(b->p, n), n,
                                                     "realloc");
  g_reallocs++;
  if (q != b->p) g_moves++;
  b->p = q;
  b->size = n;
  check_at(b, 0, mode);
  check_at(b, old - 1, mode);
  check_at(b, old / 2, mode);
  check_at(b, (size_t)wl_rng_below(rng, old), mode);
  for (size_t i = old; i < n; i++) q[i] = pat(i, b->key);
  g_bytes += (double)(n - old);
}

/* next size for each mode; returns 0 when the buffer is done */
static size_t next_size(int mode, size_t cur, size_t linear_max, size_t max) {
  size_t n;
  switch (mode) {
  case 0: n = cur + 16; return n <= linear_max ? n : 0;
  case 1: n = cur + (cur / (size_t)g_div > 16 ? cur / (size_t)g_div : 16); break;
  default: n = cur * 2; break;
  }
  if (cur >= max) return 0;
  return n < max ? n : max;
}

int main(int argc, char **argv) {
  const wl_opt opts[] = {
      {'n', &g_bufs, "buffers grown together"},
      {'l', &g_linear_kb, "limit of the +16 B pass in KiB"},
      {'M', &g_max_mb, "limit of the step and doubling passes in MiB"},
      {'d', &g_div, "step pass grows by size/D"},
      {'r', &g_reps, "repetitions of the three passes"},
      {'s', &g_seed, "PRNG seed"},
  };
  WL_PARSE(argc, argv, opts);
  if (g_bufs < 1 || g_linear_kb < 1 || g_max_mb < 1 || g_div < 1)
    wl_die("bad arguments");
  static const char *const names[] = {"linear", "step", "doubling"};
  const size_t linear_max = (size_t)g_linear_kb << 10;
  const size_t max = (size_t)g_max_mb << 20;
  gbuf *bufs = (gbuf *)calloc((size_t)g_bufs, sizeof(gbuf));
  if (!bufs) wl_die("out of memory");
  wl_rng rng;
  wl_rng_seed(&rng, (uint64_t)g_seed);
  double mode_time[3] = {0, 0, 0};

  double t0 = wl_now();
  for (long r = 0; r < g_reps; r++) {
    for (int mode = 0; mode < 3; mode++) {
      double tm = wl_now();
      for (long k = 0; k < g_bufs; k++) {
        gbuf *b = &bufs[k];
        b->key = (unsigned)(r * 1000 + mode * 100 + k);
        b->size = 16;
        b->p = (unsigned char *)wl_check_alloc(malloc(16), 16, "malloc");
        for (size_t i = 0; i < 16; i++) b->p[i] = pat(i, b->key);
      }
      for (long active = g_bufs; active > 0;) {
        active = 0;
        for (long k = 0; k < g_bufs; k++) {
          size_t n = next_size(mode, bufs[k].size, linear_max, max);
          if (n == 0) continue;
          grow(&bufs[k], n, &rng, names[mode]);
          active++;
        }
      }
      for (long k = 0; k < g_bufs; k++) {
        gbuf *b = &bufs[k];
        for (size_t i = 0; i < b->size; i += 4093) check_at(b, i, names[mode]);
        check_at(b, b->size - 1, names[mode]);
        free(b->p);
      }
      mode_time[mode] += wl_now() - tm;
    }
  }
  double t = wl_now() - t0;
  free(bufs);
  printf("reallocs=%.0f moves=%.0f bytes_written=%.0f linear_s=%.6f "
         "step_s=%.6f doubling_s=%.6f time_s=%.6f ops_per_sec=%.0f\n",
         g_reallocs, g_moves, g_bytes, mode_time[0], mode_time[1],
         mode_time[2], t, g_reallocs / t);
  return 0;
}
