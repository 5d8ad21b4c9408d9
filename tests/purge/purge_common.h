/* Shared by the purge tests (tests/purge): resident-set measurement that
 * does not allocate, object sets allocated through the allocator under test
 * with their bookkeeping in mmap'd memory, and waiting (with a hang guard)
 * for freed memory to leave the resident set. See purge.c for what is
 * measured and why.
 */
#ifndef STRATA_TESTS_PURGE_COMMON_H
#define STRATA_TESTS_PURGE_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shim_check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { PAGE = 4096 };
#define MIB (1024.0 * 1024.0)

static const uint64_t kDeadlineMs = 20000; /* hang guard only */
static const long kPollMs = 50;
static const char *g_name = "purge";
static int g_lazy; /* STRATA_RELEASE=free: mincore cannot see returned pages */

/* ---- time ---- */

static inline uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- memory that does not come from the allocator under test ---- */

static inline void *raw_alloc(size_t bytes) {
  bytes = (bytes + PAGE - 1) & ~(size_t)(PAGE - 1);
  if (bytes == 0)
    bytes = PAGE;
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "%s: mmap(%zu) failed\n", g_name, bytes);
    exit(1);
  }
  memset(p, 0, bytes); /* resident now, before any baseline */
  return p;
}

/* Rss - LazyFree of the whole process, in bytes (exact: a page-table walk). */
static inline long long effective_rss(void) {
  if (read_proc("/proc/self/smaps_rollup") <= 0) {
    /* Old kernel: VmRSS (per-thread counters, may lag a little). */
    if (read_proc("/proc/self/status") <= 0)
      return -1;
    long long kb = proc_field("VmRSS");
    return kb < 0 ? -1 : kb * 1024;
  }
  long long rss = proc_field("Rss");
  long long lazy = proc_field("LazyFree");
  if (rss < 0)
    return -1;
  return (rss - (lazy > 0 ? lazy : 0)) * 1024;
}

/* ---- object sets and their pages ---- */

struct range {
  uintptr_t lo, hi; /* page-aligned, [lo, hi) */
};

struct objset {
  size_t n, cap;
  void **p;
  size_t *size;
  struct range *r; /* pages of the objects, sorted, merged */
  size_t nr;
  size_t bytes; /* sum of the sizes */
};

static inline void set_init(struct objset *s, size_t cap) {
  memset(s, 0, sizeof *s);
  s->cap = cap;
  s->p = raw_alloc(cap * sizeof *s->p);
  s->size = raw_alloc(cap * sizeof *s->size);
  s->r = raw_alloc(cap * sizeof *s->r);
}

static inline int range_less(const struct range *a, const struct range *b) {
  return a->lo < b->lo;
}

/* Heapsort: qsort may allocate, and the allocator is what is measured. */
static inline void sift(struct range *a, size_t i, size_t n) {
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      return;
    if (c + 1 < n && range_less(&a[c], &a[c + 1]))
      c++;
    if (!range_less(&a[i], &a[c]))
      return;
    struct range t = a[i];
    a[i] = a[c];
    a[c] = t;
    i = c;
  }
}

static inline void sort_ranges(struct range *a, size_t n) {
  for (size_t i = n / 2; i-- > 0;)
    sift(a, i, n);
  for (size_t end = n; end > 1; end--) {
    struct range t = a[0];
    a[0] = a[end - 1];
    a[end - 1] = t;
    sift(a, 0, end - 1);
  }
}

/* s->r := the pages the live objects of s cover, sorted and merged. */
static inline void set_compute_pages(struct objset *s) {
  size_t k = 0;
  for (size_t i = 0; i < s->n; i++) {
    uintptr_t a = (uintptr_t)s->p[i];
    s->r[k].lo = a & ~(uintptr_t)(PAGE - 1);
    s->r[k].hi = (a + s->size[i] + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
    k++;
  }
  sort_ranges(s->r, k);
  size_t m = 0;
  for (size_t i = 0; i < k; i++) {
    if (m > 0 && s->r[i].lo <= s->r[m - 1].hi) {
      if (s->r[i].hi > s->r[m - 1].hi)
        s->r[m - 1].hi = s->r[i].hi;
    } else {
      s->r[m++] = s->r[i];
    }
  }
  s->nr = m;
}

/* a->r := a->r minus b->r (both sorted and merged); tmp has room for
 * a->nr + b->nr ranges. */
static inline void set_subtract_pages(struct objset *a, const struct objset *b,
                                      struct range *tmp) {
  size_t out = 0, j = 0;
  for (size_t i = 0; i < a->nr; i++) {
    uintptr_t lo = a->r[i].lo, hi = a->r[i].hi;
    while (j < b->nr && b->r[j].hi <= lo)
      j++;
    for (size_t k = j; k < b->nr && b->r[k].lo < hi && lo < hi; k++) {
      if (b->r[k].lo > lo) { /* the piece before this hole */
        tmp[out].lo = lo;
        tmp[out].hi = b->r[k].lo;
        out++;
      }
      if (b->r[k].hi > lo)
        lo = b->r[k].hi;
    }
    if (lo < hi) {
      tmp[out].lo = lo;
      tmp[out].hi = hi;
      out++;
    }
  }
  memcpy(a->r, tmp, out * sizeof *tmp);
  a->nr = out;
}

static unsigned char *g_vec;
static size_t g_vec_pages;

/* Resident pages of the set's ranges (an unmapped page is not resident). */
static inline size_t set_resident(const struct objset *s) {
  size_t res = 0;
  for (size_t i = 0; i < s->nr; i++) {
    for (uintptr_t lo = s->r[i].lo; lo < s->r[i].hi;) {
      size_t pages = (s->r[i].hi - lo) / PAGE;
      if (pages > g_vec_pages)
        pages = g_vec_pages;
      if (mincore((void *)lo, pages * PAGE, g_vec) == 0) {
        for (size_t k = 0; k < pages; k++)
          res += g_vec[k] & 1;
      } else { /* a hole (unmapped): page by page */
        for (size_t k = 0; k < pages; k++)
          if (mincore((void *)(lo + k * PAGE), PAGE, g_vec) == 0)
            res += g_vec[0] & 1;
      }
      lo += pages * PAGE;
    }
  }
  return res;
}

static inline size_t small_size(uint64_t *rng) {
  /* 64..4000 bytes, more small ones than big ones */
  uint64_t r = shim_rand(rng);
  switch (r & 3) {
  case 0:
  case 1:
    return 64 + (size_t)((r >> 8) % 449); /* 64..512 */
  case 2:
    return 513 + (size_t)((r >> 8) % 1536); /* ..2048 */
  default:
    return 2049 + (size_t)((r >> 8) % 1952); /* ..4000 */
  }
}

static inline void fail_oom(size_t n) {
  fprintf(stderr, "%s: malloc(%zu) failed\n", g_name, n);
  exit(1);
}

/* One object of n bytes, filled and added to the set. */
static inline void set_add(struct objset *s, size_t n) {
  if (s->n == s->cap)
    fail_oom(0);
  void *p = malloc(n);
  if (!p)
    fail_oom(n);
  shim_fill(p, n, (unsigned)s->n);
  s->p[s->n] = p;
  s->size[s->n++] = n;
  s->bytes += n;
}

/* Allocates small objects until their sizes add up to `bytes`, plus
 * `nlarge` objects of `large` bytes, and fills every byte. */
static inline void set_alloc(struct objset *s, size_t bytes, size_t nlarge,
                             size_t large, uint64_t seed) {
  uint64_t rng = seed;
  for (size_t total = 0; total < bytes;) {
    size_t n = small_size(&rng);
    set_add(s, n);
    total += n;
  }
  for (size_t i = 0; i < nlarge; i++)
    set_add(s, large);
}

static inline size_t set_verify(const struct objset *s, const char *what) {
  size_t bad = 0;
  for (size_t i = 0; i < s->n; i++) {
    size_t at = shim_verify(s->p[i], s->size[i], (unsigned)i);
    if (at != (size_t)-1 && bad++ < 5)
      fprintf(stderr, "%s: %s: object %zu (%p, %zu bytes) wrong at byte %zu\n",
              g_name, what, i, s->p[i], s->size[i], at);
  }
  return bad;
}

/* Random order (after which patterns no longer match the indices). */
static inline void set_shuffle(struct objset *s, uint64_t seed) {
  for (size_t i = s->n; i > 1; i--) {
    size_t j = (size_t)(shim_rand(&seed) % i);
    void *p = s->p[i - 1];
    size_t n = s->size[i - 1];
    s->p[i - 1] = s->p[j];
    s->size[i - 1] = s->size[j];
    s->p[j] = p;
    s->size[j] = n;
  }
}

static inline void set_free(struct objset *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->p[i]);
}

/* ---- waiting for memory to come back ---- */

struct sample {
  long long rss; /* effective Rss, bytes */
  size_t pages;  /* resident pages of the watched set (mincore) */
};

static inline void take(struct sample *m, const struct objset *watch) {
  m->rss = effective_rss();
  m->pages = watch ? set_resident(watch) : 0;
}

static inline int returned(const struct sample *m, const struct sample *full,
                           long long added, const struct objset *watch) {
  if (m->rss > full->rss - added * 9 / 10)
    return 0;
  if (watch && !g_lazy && m->pages * 10 > full->pages)
    return 0;
  return 1;
}

/* Polls until 90% of `added` bytes (and of the watched set's resident
 * pages) have left the resident set; checks and reports. Returns ms. */
static inline uint64_t wait_returned(const char *what,
                                     const struct sample *full, long long added,
                                     const struct objset *watch,
                                     struct sample *out) {
  uint64_t t0 = now_ms(), t;
  for (;;) {
    take(out, watch);
    t = now_ms() - t0;
    if (returned(out, full, added, watch) || t > kDeadlineMs)
      break;
    sleep_ms(kPollMs);
  }
  long long back = full->rss - out->rss;
  int ok = returned(out, full, added, watch);
  printf("%s: %s: %.1f MiB added, %.1f MiB (%.1f%%) returned in %llu ms",
         g_name, what, added / MIB, back / MIB,
         added > 0 ? 100.0 * (double)back / (double)added : 0.0,
         (unsigned long long)t);
  if (watch && !g_lazy)
    printf("; resident pages of the freed objects %zu -> %zu", full->pages,
           out->pages);
  printf("\n");
  fflush(stdout);
  CHECKF(added > 0,
         "%s: the objects added nothing to the resident set "
         "(%lld bytes)",
         what, added);
  CHECKF(ok,
         "%s: after %llu ms only %lld of %lld bytes returned (Rss %lld "
         "-> %lld), resident pages %zu -> %zu",
         what, (unsigned long long)t, back, added, full->rss, out->rss,
         full->pages, out->pages);
  return t;
}

/* ---- options the modes need ---- */

static inline long long env_ll(const char *name, long long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtoll(v, NULL, 10) : dflt;
}

static inline void require_background(void) {
  long long decay = env_ll("STRATA_DECAY_MS", 500);
  long long bg = env_ll("STRATA_BACKGROUND", 1);
  CHECKF(decay > 0 && bg == 1,
         "this mode needs the background purger (STRATA_DECAY_MS > 0, "
         "STRATA_BACKGROUND=1), got %lld and %lld",
         decay, bg);
}

static inline void setup(const char *name, size_t max_range_pages) {
  g_name = name;
  shim_require_strata(name);
  const char *rel = getenv("STRATA_RELEASE");
  g_lazy = rel && strcmp(rel, "free") == 0;
  g_vec_pages = max_range_pages;
  g_vec = raw_alloc(g_vec_pages);
  fflush(stdout);
  if (effective_rss() < 0) {
    fprintf(stderr, "%s: cannot read the resident set size\n", name);
    exit(1);
  }
}

enum { SMALL_BYTES = 128 << 20, MAX_OBJECTS = 200000, VEC_PAGES = 8192 };

#endif /* STRATA_TESTS_PURGE_COMMON_H */
