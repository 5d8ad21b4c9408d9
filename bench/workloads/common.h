/* Shared helpers for the strata benchmark workloads.
 *
 * Every workload is a standalone program that uses only the plain C
 * allocation interface (malloc/free/realloc/calloc), so it can be run under
 * LD_PRELOAD for any allocator.  These helpers never allocate from the heap
 * themselves (the RSS readers use open/read on a stack buffer).
 *
 * Output convention: the LAST line on stdout is `key=value key=value ...`,
 * always including time_s.  Errors go to stderr and exit with status 1. */
#ifndef STRATA_BENCH_WORKLOADS_COMMON_H
#define STRATA_BENCH_WORKLOADS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- failure ---- */
static inline void wl_die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));
static inline void wl_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("FAIL: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stdout);
  exit(1);
}

static inline void *wl_check_alloc(void *p, size_t n, const char *what) {
  if (p == NULL && n != 0) wl_die("%s(%zu) returned NULL", what, n);
  return p;
}

/* ---- deterministic PRNG: splitmix64 seeding, xoshiro-like xorshift64* ---- */
typedef struct { uint64_t s; } wl_rng;

static inline uint64_t wl_splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
static inline void wl_rng_seed(wl_rng *r, uint64_t seed) {
  r->s = wl_splitmix(seed) | 1u;
}
static inline uint64_t wl_rng_next(wl_rng *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545F4914F6CDD1Dull;
}
/* uniform in [0, n) (n > 0); multiply-shift, no modulo bias worth noting */
static inline uint64_t wl_rng_below(wl_rng *r, uint64_t n) {
  return (uint64_t)(((unsigned __int128)wl_rng_next(r) * n) >> 64);
}
/* uniform in [lo, hi] */
static inline uint64_t wl_rng_range(wl_rng *r, uint64_t lo, uint64_t hi) {
  return lo + wl_rng_below(r, hi - lo + 1);
}

/* ---- arrays outside the heap under test ---- */
/* An array the harness keeps its own pointers or numbers in: mmap'd, so it
 * is not the allocator's, and off huge pages, so that its RSS grows 4 KiB
 * at a time as it is written. With `touch`, every page is written now, so
 * that it is resident before RSS readings that subtract it. */
static inline void *wl_map_array(size_t bytes, int touch) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) wl_die("mmap(%zu) failed", bytes);
  (void)madvise(p, bytes, MADV_NOHUGEPAGE);
  if (touch) memset(p, 0, bytes);
  return p;
}

/* ---- time ---- */
static inline double wl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- content checks ----
 * A block is stamped with a tag derived from (seed, size) in its first word
 * (or first bytes when smaller than 8) and its last byte. */
static inline uint64_t wl_tag(uint64_t seed, size_t size) {
  return wl_splitmix(seed * 0x100000001B3ull + size);
}
static inline void wl_stamp(void *p, size_t size, uint64_t seed) {
  uint64_t t = wl_tag(seed, size);
  unsigned char *c = (unsigned char *)p;
  if (size >= 8) {
    memcpy(c, &t, 8);
  } else {
    for (size_t i = 0; i < size; i++) c[i] = (unsigned char)(t >> (8 * i));
  }
  if (size > 0) c[size - 1] = (unsigned char)(t >> 56) ^ 0x5A;
}
static inline int wl_verify(const void *p, size_t size, uint64_t seed) {
  uint64_t t = wl_tag(seed, size);
  const unsigned char *c = (const unsigned char *)p;
  if (size > 0 && c[size - 1] != (unsigned char)((t >> 56) ^ 0x5A)) return 0;
  if (size >= 8) {
    uint64_t got;
    memcpy(&got, c, 8);
    if (size == 8) { /* last byte overwritten the top byte of the word */
      got &= 0x00FFFFFFFFFFFFFFull;
      t &= 0x00FFFFFFFFFFFFFFull;
    }
    return got == t;
  }
  for (size_t i = 0; i + 1 < size; i++)
    if (c[i] != (unsigned char)(t >> (8 * i))) return 0;
  return 1;
}
static inline void wl_verify_or_die(const void *p, size_t size, uint64_t seed,
                                    const char *where) {
  if (!wl_verify(p, size, seed))
    wl_die("%s: content mismatch in block %p of %zu bytes (seed %llu)", where,
           p, size, (unsigned long long)seed);
}

/* Self-describing blocks (size >= 16): word 0 = size, word 1 = check of
 * the size, and when size > 16 the last byte = f(size).  wl_hdr_check returns the size. */
static inline void wl_hdr_put(void *p, size_t size) {
  uint64_t w[2] = {size, wl_splitmix(size ^ 0x6D73747265737321ull)};
  memcpy(p, w, sizeof w);
  if (size > 16) ((unsigned char *)p)[size - 1] = (unsigned char)(size * 31u + 7u);
}
static inline size_t wl_hdr_check(const void *p, const char *where) {
  uint64_t w[2];
  memcpy(w, p, sizeof w);
  size_t size = (size_t)w[0];
  if (size < 16 || size > ((size_t)1 << 40) ||
      w[1] != wl_splitmix(size ^ 0x6D73747265737321ull) ||
      (size > 16 && ((const unsigned char *)p)[size - 1] !=
                         (unsigned char)(size * 31u + 7u)))
    wl_die("%s: corrupt block %p", where, p);
  return size;
}

/* ---- RSS (no heap use) ---- */
static inline long wl_read_file(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t got = 0;
  while (got + 1 < cap) {
    ssize_t n = read(fd, buf + got, cap - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  buf[got] = '\0';
  return (long)got;
}
/* value in kB of a "Key:   123 kB" line of /proc/self/status, or -1 */
static inline long wl_status_kb(const char *key) {
  char buf[8192];
  if (wl_read_file("/proc/self/status", buf, sizeof buf) <= 0) return -1;
  size_t klen = strlen(key);
  for (char *line = buf; line && *line;) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':')
      return strtol(line + klen + 1, NULL, 10);
    line = strchr(line, '\n');
    if (line) line++;
  }
  return -1;
}
static inline long wl_rss_kb(void) { return wl_status_kb("VmRSS"); }
static inline long wl_hwm_kb(void) { return wl_status_kb("VmHWM"); }

/* ---- arguments: -k value pairs; unknown options are fatal ---- */
static inline long wl_arg_long(const char *opt, const char *val) {
  char *end = NULL;
  errno = 0;
  long v = strtol(val, &end, 0);
  if (errno || end == val || *end != '\0' || v < 0)
    wl_die("bad value '%s' for %s", val, opt);
  return v;
}

/* ---- threads ---- */
static inline void wl_spawn(pthread_t *t, void *(*fn)(void *), void *arg) {
  int e = pthread_create(t, NULL, fn, arg);
  if (e != 0) wl_die("pthread_create: %s", strerror(e));
}
static inline void wl_join(pthread_t t) {
  int e = pthread_join(t, NULL);
  if (e != 0) wl_die("pthread_join: %s", strerror(e));
}

/* Starts n threads running fn((void *)k), all waiting on *start; releases
 * them together and joins them. Returns the seconds from the release to the
 * last join. */
static inline double wl_run_threads(long n, void *(*fn)(void *), pthread_barrier_t *start) {
  pthread_t *tids = (pthread_t *)malloc((size_t)n * sizeof(pthread_t));
  if (!tids) wl_die("out of memory");
  pthread_barrier_init(start, NULL, (unsigned)n + 1);
  for (long k = 0; k < n; k++) wl_spawn(&tids[k], fn, (void *)(intptr_t)k);
  pthread_barrier_wait(start);
  double t0 = wl_now();
  for (long k = 0; k < n; k++) wl_join(tids[k]);
  double t = wl_now() - t0;
  pthread_barrier_destroy(start);
  free(tids);
  return t;
}

/* Options table: each entry binds "-c <number>" to a long. */
typedef struct {
  char opt;
  long *dst;
  const char *help;
} wl_opt;

static inline void wl_usage(const char *prog, const wl_opt *opts, size_t n,
                            FILE *out) {
  fprintf(out, "usage: %s", prog);
  for (size_t i = 0; i < n; i++) fprintf(out, " [-%c N]", opts[i].opt);
  fputc('\n', out);
  for (size_t i = 0; i < n; i++)
    fprintf(out, "  -%c N  %s (default %ld)\n", opts[i].opt, opts[i].help,
            *opts[i].dst);
}

static inline void wl_parse(int argc, char **argv, const wl_opt *opts,
                            size_t n) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      wl_usage(argv[0], opts, n, stdout);
      exit(0);
    }
    size_t k = 0;
    if (a[0] == '-' && a[1] != '\0' && a[2] == '\0')
      for (; k < n; k++)
        if (opts[k].opt == a[1]) break;
    if (a[0] != '-' || a[1] == '\0' || a[2] != '\0' || k == n) {
      wl_usage(argv[0], opts, n, stderr);
      wl_die("unknown argument '%s'", a);
    }
    if (i + 1 >= argc) wl_die("missing value for %s", a);
    *opts[k].dst = wl_arg_long(a, argv[++i]);
  }
}
#define WL_PARSE(argc, argv, opts) \
  wl_parse((argc), (argv), (opts), sizeof(opts) / sizeof((opts)[0]))

#endif
