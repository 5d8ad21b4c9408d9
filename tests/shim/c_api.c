/* Black-box conformance test of the C allocation API that libstrata.so
 * exports, run under LD_PRELOAD=libstrata.so. Expected semantics are
 * glibc's (2.36) wherever glibc defines them. Built with -fno-builtin so the
 * compiler keeps every malloc/free pair.
 *
 * Checks that legitimately differ between glibc and strata are marked
 * "native:" in a comment; they are skipped or relaxed only when the test
 * runs natively (STRATA_TEST_ALLOW_NATIVE=1, no preload).
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* glibc exports these but declares none of them in a header. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

/* Not linkable against glibc 2.36 (cfree is a compat-only symbol there,
 * free_sized and free_aligned_sized do not exist), so they are looked up at
 * run time. native: absent under glibc, and their tests are skipped. */
typedef void (*cfree_fn)(void *);
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);
static cfree_fn p_cfree;
static free_sized_fn p_free_sized;
static free_aligned_sized_fn p_free_aligned_sized;

typedef size_t (*usable_fn)(const void *);
static usable_fn p_strata_usable_size;

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static size_t page_size;

/* strata_usable_size when strata is in effect; malloc_usable_size natively. */
static size_t usable(void *p) {
  if (p_strata_usable_size)
    return p_strata_usable_size(p);
  return malloc_usable_size(p);
}

static int aligned(const void *p, size_t a) {
  return ((uintptr_t)p & (a - 1)) == 0;
}

static size_t next_pow2(size_t v) {
  size_t a = 1;
  while (a < v)
    a <<= 1;
  return a;
}

static int all_bytes(const void *p, size_t n, unsigned char v) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != v)
      return 0;
  return 1;
}

#define NOT_FOUND ((size_t)-1)

/* ------------------------------------------------------------------ */

static void test_symbols(void) {
  static const char *const names[] = {
      "malloc", "free", "calloc", "realloc", "reallocarray", "memalign",
      "posix_memalign", "aligned_alloc", "valloc", "pvalloc",
      "malloc_usable_size", "cfree", "free_sized", "free_aligned_sized",
      "mallinfo", "mallinfo2", "malloc_trim", "malloc_stats", "mallopt",
      "malloc_info", "__libc_malloc", "__libc_calloc", "__libc_realloc",
      "__libc_free", "__libc_memalign", "__libc_valloc", "__libc_pvalloc"};
  static const char *const api[] = {
      "strata_malloc", "strata_free", "strata_calloc", "strata_realloc",
      "strata_aligned_alloc", "strata_usable_size", "strata_free_sized",
      "strata_release"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *where;
    int in_strata = shim_symbol_in_strata(names[i], &where);
    if (shim_native) {
      /* native: glibc 2.36 has no (default-version) cfree, free_sized or
       * free_aligned_sized. */
      if (strcmp(names[i], "cfree") && strcmp(names[i], "free_sized") &&
          strcmp(names[i], "free_aligned_sized"))
        CHECKF(dlsym(RTLD_DEFAULT, names[i]) != NULL, "%s not found",
               names[i]);
      continue;
    }
    CHECKF(in_strata, "symbol %s resolves to %s, expected libstrata.so",
           names[i], where);
  }
  if (!shim_native)
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
      const char *where;
      CHECKF(shim_symbol_in_strata(api[i], &where),
             "symbol %s resolves to %s", api[i], where);
    }
  if (!shim_native) {
    CHECK(p_cfree != NULL);
    CHECK(p_free_sized != NULL);
    CHECK(p_free_aligned_sized != NULL);
    CHECK(p_strata_usable_size != NULL);
  }
}

static void test_malloc_basic(void) {
  static const size_t sizes[] = {0,    1,    2,     7,     8,      15,
                                 16,   17,   24,    31,    32,     33,
                                 48,   63,   64,    65,    100,    127,
                                 128,  129,  255,   256,   257,    500,
                                 512,  1000, 1024,  2000,  4095,   4096,
                                 4097, 8192, 10000, 32768, 65535,  65536,
                                 65537, 100000, 131072, 131073, 262144,
                                 1000000, 4 * MiB, 4 * MiB + 1, 16 * MiB + 3};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    unsigned char *p = malloc(n);
    CHECKF(p != NULL, "malloc(%zu) returned NULL", n);
    if (!p)
      continue;
    CHECKF(aligned(p, 16), "malloc(%zu) = %p not 16-aligned", n, (void *)p);
    size_t u = malloc_usable_size(p);
    CHECKF(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
    CHECKF(usable(p) == u, "strata_usable_size %zu != malloc_usable_size %zu",
           usable(p), u);
    shim_fill(p, u, (unsigned)n);
    CHECKF(shim_verify(p, u, (unsigned)n) == NOT_FOUND, "malloc(%zu)", n);
    free(p);
  }
  CHECK(malloc_usable_size(NULL) == 0);
}

static void test_huge_requests(void) {
  static const size_t huge[] = {SIZE_MAX,
                                SIZE_MAX - 4095,
                                SIZE_MAX - 15,
                                SIZE_MAX / 2,
                                SIZE_MAX / 2 + 1,
                                (size_t)PTRDIFF_MAX,
                                (size_t)PTRDIFF_MAX + 1,
                                (size_t)1 << 62};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    size_t n = shim_opaque(huge[i]);
    errno = 0;
    void *p = malloc(n);
    int e = errno;
    CHECKF(p == NULL && e == ENOMEM, "malloc(%#zx) = %p, errno %d", n, p, e);
    free(p);

    errno = 0;
    p = __libc_malloc(n);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "__libc_malloc(%#zx) = %p, errno %d", n,
           p, e);
    free(p);

    errno = 0;
    p = realloc(NULL, n);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "realloc(NULL, %#zx) = %p, errno %d", n,
           p, e);
    free(p);

    errno = 0;
    p = calloc(1, n);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "calloc(1, %#zx) = %p, errno %d", n, p,
           e);
    free(p);

    errno = 0;
    p = aligned_alloc(64, n);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "aligned_alloc(64, %#zx) = %p, errno %d",
           n, p, e);
    free(p);

    errno = 0;
    p = memalign(4096, n);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "memalign(4096, %#zx) = %p, errno %d", n,
           p, e);
    free(p);

    errno = 0;
    p = valloc(n);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "valloc(%#zx) = %p, errno %d", n, p, e);
    free(p);

    errno = 0;
    p = pvalloc(n);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "pvalloc(%#zx) = %p, errno %d", n, p, e);
    free(p);

    void *sentinel = (void *)0x5a5a5a5a;
    void *mp = sentinel;
    int rc = posix_memalign(&mp, 64, n);
    CHECKF(rc == ENOMEM && mp == sentinel,
           "posix_memalign(&p, 64, %#zx) = %d, *memptr %p", n, rc, mp);
  }

  /* calloc: overflowing products and products too large to satisfy. */
  static const size_t cal[][2] = {
      {SIZE_MAX / 2 + 1, 2},
      {2, SIZE_MAX / 2 + 1},
      {SIZE_MAX, SIZE_MAX},
      {SIZE_MAX, 2},
      {(size_t)1 << 32, (size_t)1 << 32},
      {(size_t)1 << 33, (size_t)1 << 31},
      {((size_t)1 << 32) + 1, ((size_t)1 << 32) - 1},
      {(size_t)PTRDIFF_MAX / 2 + 1, 2},
      {SIZE_MAX, 1},
      {65536, (size_t)1 << 47},
  };
  for (size_t i = 0; i < sizeof cal / sizeof cal[0]; i++) {
    size_t a = shim_opaque(cal[i][0]), b = shim_opaque(cal[i][1]);
    errno = 0;
    void *p = calloc(a, b);
    int e = errno;
    CHECKF(p == NULL && e == ENOMEM, "calloc(%#zx, %#zx) = %p, errno %d", a, b,
           p, e);
    free(p);
    errno = 0;
    p = __libc_calloc(a, b);
    e = errno;
    CHECKF(p == NULL && e == ENOMEM, "__libc_calloc(%#zx, %#zx) = %p, errno %d",
           a, b, p, e);
    free(p);
  }

  /* realloc / reallocarray failures leave the original block intact. */
  static const size_t orig_sizes[] = {1, 100, 4000, 200000, 3 * MiB};
  for (size_t i = 0; i < sizeof orig_sizes / sizeof orig_sizes[0]; i++) {
    size_t n = orig_sizes[i];
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    if (!p)
      continue;
    size_t u = malloc_usable_size(p);
    shim_fill(p, n, 77);
    for (size_t j = 0; j < sizeof huge / sizeof huge[0]; j++) {
      size_t big = shim_opaque(huge[j]);
      errno = 0;
      void *q = realloc(p, big);
      int e = errno;
      CHECKF(q == NULL && e == ENOMEM,
             "realloc(malloc(%zu), %#zx) = %p, errno %d", n, big, q, e);
      if (q) { /* should not happen; keep going without leaking */
        p = q;
        continue;
      }
      errno = 0;
      q = __libc_realloc(p, big);
      e = errno;
      CHECKF(q == NULL && e == ENOMEM,
             "__libc_realloc(malloc(%zu), %#zx) = %p, errno %d", n, big, q, e);
      if (q) {
        p = q;
        continue;
      }
    }
    static const size_t ovf[][2] = {{SIZE_MAX / 2 + 1, 2},
                                    {(size_t)1 << 32, (size_t)1 << 32},
                                    {SIZE_MAX, SIZE_MAX},
                                    {3, SIZE_MAX / 3 + 1},
                                    {1, SIZE_MAX}};
    for (size_t j = 0; j < sizeof ovf / sizeof ovf[0]; j++) {
      size_t a = shim_opaque(ovf[j][0]), b = shim_opaque(ovf[j][1]);
      errno = 0;
      void *q = reallocarray(p, a, b);
      int e = errno;
      CHECKF(q == NULL && e == ENOMEM,
             "reallocarray(malloc(%zu), %#zx, %#zx) = %p, errno %d", n, a, b,
             q, e);
      if (q) {
        p = q;
        continue;
      }
    }
    CHECKF(shim_verify(p, n, 77) == NOT_FOUND,
           "block of %zu corrupted by failed realloc", n);
    CHECKF(malloc_usable_size(p) == u, "usable size changed %zu -> %zu", u,
           malloc_usable_size(p));
    /* still a live, resizable block */
    unsigned char *q = realloc(p, n + 1000);
    CHECK(q != NULL);
    if (q) {
      CHECK(shim_verify(q, n, 77) == NOT_FOUND);
      p = q;
    }
    free(p);
  }

  /* reallocarray success paths */
  unsigned char *r = reallocarray(NULL, 10, 10);
  CHECK(r != NULL && malloc_usable_size(r) >= 100);
  if (r) {
    shim_fill(r, 100, 5);
    unsigned char *r2 = reallocarray(r, 1000, 100);
    CHECK(r2 != NULL);
    if (r2) {
      CHECK(malloc_usable_size(r2) >= 100000);
      CHECK(shim_verify(r2, 100, 5) == NOT_FOUND);
      r = r2;
    }
    free(r);
  }
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static void test_zero_sizes(void) {
  enum { N = 1000 };
  static void *ps[N];
  for (int i = 0; i < N; i++) {
    switch (i % 4) {
    case 0: ps[i] = malloc(0); break;
    case 1: ps[i] = calloc(0, 16); break;
    case 2: ps[i] = calloc(16, 0); break;
    default: ps[i] = realloc(NULL, 0); break;
    }
    CHECKF(ps[i] != NULL, "zero-size allocation #%d (kind %d) returned NULL",
           i, i % 4);
  }
  qsort(ps, N, sizeof ps[0], cmp_ptr);
  int distinct = 1;
  for (int i = 1; i < N; i++)
    if (ps[i] && ps[i] == ps[i - 1])
      distinct = 0;
  CHECKF(distinct, "malloc(0)/calloc(0,x) pointers are not unique");
  for (int i = 0; i < N; i++)
    free(ps[i]);

  /* glibc returns a unique minimum-size block for the aligned forms too. */
  void *a = memalign(64, 0);
  CHECK(a != NULL && aligned(a, 64));
  free(a);
  a = aligned_alloc(256, 0);
  CHECK(a != NULL && aligned(a, 256));
  free(a);
  a = NULL;
  int rc = posix_memalign(&a, 128, 0);
  CHECK(rc == 0 && a != NULL && aligned(a, 128));
  free(a);
  a = valloc(0);
  CHECK(a != NULL && aligned(a, page_size));
  free(a);
}

static void test_posix_memalign(void) {
  void *const sentinel = (void *)0x1234567;
  static const size_t bad[] = {0,  1,  2,  3,  4,  5,  12, 24, 40,
                               48, 96, 100, 3 * 4096, SIZE_MAX,
                               SIZE_MAX / 2 + 3};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = sentinel;
    int rc = posix_memalign(&p, shim_opaque(bad[i]), 16);
    CHECKF(rc == EINVAL && p == sentinel,
           "posix_memalign(&p, %zu, 16) = %d, *memptr = %p (want EINVAL, "
           "untouched)", bad[i], rc, p);
  }
  /* valid alignment, impossible size or alignment: ENOMEM, untouched */
  static const size_t nomem[][2] = {{64, SIZE_MAX},
                                    {64, SIZE_MAX / 2},
                                    {4096, (size_t)PTRDIFF_MAX},
                                    {(size_t)1 << 20, SIZE_MAX - (1 << 19)},
                                    {SIZE_MAX / 2 + 1, 1}};
  for (size_t i = 0; i < sizeof nomem / sizeof nomem[0]; i++) {
    void *p = sentinel;
    size_t a = shim_opaque(nomem[i][0]), n = shim_opaque(nomem[i][1]);
    int rc = posix_memalign(&p, a, n);
    CHECKF(rc == ENOMEM && p == sentinel,
           "posix_memalign(&p, %#zx, %#zx) = %d, *memptr = %p (want ENOMEM, "
           "untouched)", a, n, rc, p);
    if (rc == 0)
      free(p);
  }

  for (size_t a = 8; a <= 64 * MiB; a <<= 1) {
    const size_t sizes[] = {1, a - 1, a, a + 1, 3 * a};
    for (size_t k = 0; k < 5; k++) {
      size_t n = sizes[k];
      void *p = sentinel;
      int rc = posix_memalign(&p, a, n);
      CHECKF(rc == 0, "posix_memalign(&p, %zu, %zu) = %d", a, n, rc);
      if (rc != 0)
        continue;
      CHECKF(p != sentinel && p != NULL && aligned(p, a),
             "posix_memalign(&p, %zu, %zu) gave %p", a, n, p);
      size_t u = malloc_usable_size(p);
      CHECKF(u >= n, "posix_memalign(%zu, %zu): usable %zu", a, n, u);
      CHECK(usable(p) == u);
      unsigned seed = (unsigned)(a + k);
      shim_fill(p, u, seed);
      size_t bad_at = shim_verify(p, u, seed);
      CHECKF(bad_at == NOT_FOUND, "posix_memalign(%zu, %zu) byte %zu", a, n,
             bad_at);
      if (k % 2 == 0) {
        free(p);
        continue;
      }
      /* realloc to bigger keeps the contents */
      unsigned char *q = realloc(p, u + 4097);
      CHECKF(q != NULL, "realloc(posix_memalign(%zu, %zu), %zu)", a, n,
             u + 4097);
      if (!q) {
        free(p);
        continue;
      }
      bad_at = shim_verify(q, u, seed);
      CHECKF(bad_at == NOT_FOUND,
             "realloc of posix_memalign(%zu, %zu) block lost byte %zu", a, n,
             bad_at);
      CHECK(malloc_usable_size(q) >= u + 4097);
      free(q);
    }
  }
}

static void test_memalign_aligned_alloc(void) {
  for (size_t a = 1; a <= 64 * MiB; a <<= 1) {
    const size_t sizes[] = {1, a, a + 1, 3 * a};
    for (size_t k = 0; k < 4; k++) {
      size_t n = sizes[k];
      for (int which = 0; which < 3; which++) {
        const char *fn =
            which == 0 ? "aligned_alloc" : which == 1 ? "memalign"
                                                      : "__libc_memalign";
        void *p = which == 0   ? aligned_alloc(a, n)
                  : which == 1 ? memalign(a, n)
                               : __libc_memalign(a, n);
        CHECKF(p != NULL && aligned(p, a), "%s(%zu, %zu) = %p", fn, a, n, p);
        if (!p)
          continue;
        size_t u = malloc_usable_size(p);
        CHECKF(u >= n, "%s(%zu, %zu): usable %zu", fn, a, n, u);
        /* write the whole usable area only for the smaller blocks: the
         * posix_memalign test already covers huge ones byte by byte */
        size_t w = u < 8 * MiB ? u : n;
        memset(p, 0xC3, w);
        CHECK(all_bytes(p, w, 0xC3));
        if (k == 3 && which == 1) {
          unsigned char *q = realloc(p, 2 * n + 1);
          CHECKF(q != NULL, "realloc(memalign(%zu, %zu))", a, n);
          if (q) {
            CHECK(all_bytes(q, w < n ? w : n, 0xC3));
            p = q;
          }
        }
        free(p);
      }
    }
  }

  /* glibc (2.36) rounds a non-power-of-two alignment up to the next power
   * of two, for memalign and for aligned_alloc (an alias of memalign there;
   * glibc 2.38 changed aligned_alloc to fail with EINVAL instead). strata
   * follows 2.36: round up. */
  static const size_t odd[][2] = {{3, 10},     {24, 10},    {48, 100},
                                  {100, 10},   {1000, 1},   {4097, 10},
                                  {5000, 5000}, {3 << 20, 1}, {12345, 777}};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    size_t a = odd[i][0], n = odd[i][1], want = next_pow2(a);
    void *p = aligned_alloc(a, n);
    CHECKF(p != NULL && aligned(p, want), "aligned_alloc(%zu, %zu) = %p, want "
           "%zu-aligned", a, n, p, want);
    if (p)
      CHECK(malloc_usable_size(p) >= n);
    free(p);
    p = memalign(a, n);
    CHECKF(p != NULL && aligned(p, want), "memalign(%zu, %zu) = %p, want "
           "%zu-aligned", a, n, p, want);
    if (p)
      CHECK(malloc_usable_size(p) >= n);
    free(p);
  }

  /* absurd alignments */
  static const size_t absurd[] = {SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 2,
                                  SIZE_MAX - 4095, SIZE_MAX};
  for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
    size_t a = shim_opaque(absurd[i]);
    errno = 0;
    void *p = memalign(a, 10);
    int e = errno;
    CHECKF(p == NULL && (e == EINVAL || e == ENOMEM),
           "memalign(%#zx, 10) = %p, errno %d", a, p, e);
    free(p);
    errno = 0;
    p = aligned_alloc(a, 10);
    e = errno;
    CHECKF(p == NULL && (e == EINVAL || e == ENOMEM),
           "aligned_alloc(%#zx, 10) = %p, errno %d", a, p, e);
    free(p);
  }
}

static void test_valloc_pvalloc(void) {
  const size_t ps = page_size;
  const size_t sizes[] = {1, 100, ps - 1, ps, ps + 1, 10 * ps + 3, MiB + 1,
                          5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    size_t rounded = (n + ps - 1) / ps * ps;
    for (int which = 0; which < 4; which++) {
      const char *fn = which == 0   ? "valloc"
                       : which == 1 ? "pvalloc"
                       : which == 2 ? "__libc_valloc"
                                    : "__libc_pvalloc";
      void *p = which == 0   ? valloc(n)
                : which == 1 ? pvalloc(n)
                : which == 2 ? __libc_valloc(n)
                             : __libc_pvalloc(n);
      CHECKF(p != NULL && aligned(p, ps), "%s(%zu) = %p", fn, n, p);
      if (!p)
        continue;
      size_t u = malloc_usable_size(p);
      size_t need = (which % 2) ? rounded : n;
      CHECKF(u >= need, "%s(%zu): usable %zu, want >= %zu", fn, n, u, need);
      memset(p, 0x5e, u);
      CHECK(all_bytes(p, u, 0x5e));
      free(p);
    }
  }
  /* pvalloc(0) gives one whole page. native: glibc 2.36 masks with
   * -(pagesize - 1) instead of -pagesize, so pvalloc(0) there yields a
   * 1-byte request (usable 24); only alignment is checked natively. */
  void *p = pvalloc(0);
  CHECKF(p != NULL && aligned(p, ps) &&
             (shim_native || malloc_usable_size(p) >= ps),
         "pvalloc(0) = %p, usable %zu", p, p ? malloc_usable_size(p) : 0);
  if (p)
    memset(p, 1, malloc_usable_size(p));
  free(p);
  p = __libc_pvalloc(0);
  CHECKF(p != NULL && aligned(p, ps) &&
             (shim_native || malloc_usable_size(p) >= ps),
         "__libc_pvalloc(0) = %p, usable %zu", p,
         p ? malloc_usable_size(p) : 0);
  if (p)
    memset(p, 1, malloc_usable_size(p));
  free(p);
}

static void test_calloc_zeroing(void) {
  static const size_t sizes[] = {16,    24,     40,     100,    256,
                                 1000,  4096,   10000,  65536,  100000,
                                 262144, 500000, 1 * MiB};
  enum { NS = sizeof sizes / sizeof sizes[0], PER = 8, ROUNDS = 12 };
  static void *blocks[NS * PER];
  for (int round = 0; round < ROUNDS; round++) {
    for (int i = 0; i < NS * PER; i++) {
      size_t n = sizes[i % NS];
      blocks[i] = malloc(n);
      CHECK(blocks[i] != NULL);
      if (blocks[i])
        memset(blocks[i], 0xAB, malloc_usable_size(blocks[i]));
    }
    for (int i = 0; i < NS * PER; i++)
      free(blocks[i]);
    for (int i = 0; i < NS * PER; i++) {
      size_t n = sizes[i % NS];
      void *p;
      switch ((i + round) % 4) {
      case 0: p = calloc(1, n); break;
      case 1: p = calloc(n, 1); break;
      case 2: n = n / 8 * 8; p = calloc(n / 8, 8); break;
      default: n = n / 4 * 4; p = __libc_calloc(n / 4, 4); break;
      }
      blocks[i] = p;
      CHECKF(p != NULL, "calloc for %zu bytes", n);
      if (p) {
        CHECKF(all_bytes(p, n, 0), "calloc(%zu bytes) not zeroed (round %d)",
               n, round);
        memset(p, 0xAB, n);
      }
    }
    for (int i = 0; i < NS * PER; i++)
      free(blocks[i]);
  }
  /* zeroing after realloc shrink leaves garbage in the tail of the old
   * block: calloc of that size class must still be clean */
  for (int i = 0; i < 200; i++) {
    unsigned char *p = malloc(4000);
    CHECK(p != NULL);
    if (!p)
      continue;
    memset(p, 0xAB, 4000);
    unsigned char *q = realloc(p, 100);
    CHECK(q != NULL);
    free(q ? q : p);
    unsigned char *c = calloc(1, 4000);
    CHECK(c != NULL && all_bytes(c, 4000, 0));
    free(c);
  }
}

static void test_realloc(void) {
  /* realloc(NULL, n) allocates */
  unsigned char *p = realloc(NULL, 100);
  CHECK(p != NULL && malloc_usable_size(p) >= 100);
  if (p)
    memset(p, 1, 100);
  /* realloc(p, 0) frees p and returns NULL (glibc) */
  void *z = realloc(p, 0);
  CHECKF(z == NULL, "realloc(p, 0) = %p, glibc returns NULL", z);
  free(z);
  p = malloc(5 * MiB);
  CHECK(p != NULL);
  z = realloc(p, 0);
  CHECKF(z == NULL, "realloc(5 MiB block, 0) = %p, want NULL", z);
  free(z);

  /* growth chain and shrink chain */
  static const size_t chain[] = {16,    17,     100,     1000,   4096,
                                 4097,  65536,  100000,  MiB,    3 * MiB + 5,
                                 8 * MiB, 3 * MiB, MiB - 1, 65535, 4000,
                                 100,   16,     1};
  p = malloc(chain[0]);
  CHECK(p != NULL);
  shim_fill(p, chain[0], 9);
  for (size_t i = 1; p && i < sizeof chain / sizeof chain[0]; i++) {
    size_t old = chain[i - 1], n = chain[i];
    unsigned char *q = realloc(p, n);
    CHECKF(q != NULL, "realloc(%zu -> %zu)", old, n);
    if (!q)
      break;
    size_t keep = old < n ? old : n;
    size_t bad = shim_verify(q, keep, (unsigned)(9 + i - 1));
    CHECKF(bad == NOT_FOUND, "realloc %zu -> %zu lost byte %zu", old, n, bad);
    CHECK(malloc_usable_size(q) >= n);
    shim_fill(q, n, (unsigned)(9 + i));
    p = q;
  }
  free(p);

  /* direct small -> large and large -> small */
  p = malloc(16);
  CHECK(p != NULL);
  if (p) {
    shim_fill(p, 16, 3);
    unsigned char *q = realloc(p, 8 * MiB);
    CHECK(q != NULL);
    if (q) {
      CHECK(shim_verify(q, 16, 3) == NOT_FOUND);
      shim_fill(q, 8 * MiB, 4);
      unsigned char *r = realloc(q, 16);
      CHECK(r != NULL);
      if (r) {
        CHECK(shim_verify(r, 16, 4) == NOT_FOUND);
        CHECK(malloc_usable_size(r) >= 16);
        q = r;
      }
      free(q);
    } else {
      free(p);
    }
  }

  /* realloc within the usable size returns the same pointer */
  static const size_t sizes[] = {1,    8,      24,     100,     1000,
                                 5000, 100000, 300000, MiB + 7, 8 * MiB + 1};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    p = malloc(n);
    CHECK(p != NULL);
    if (!p)
      continue;
    size_t u = malloc_usable_size(p);
    shim_fill(p, n, 11);
    const size_t targets[] = {u, n + (u - n) / 2, n, u};
    for (int t = 0; t < 4; t++) {
      unsigned char *q = realloc(p, targets[t]);
      CHECKF(q == p, "realloc(malloc(%zu) [usable %zu], %zu) moved %p -> %p",
             n, u, targets[t], (void *)p, (void *)q);
      if (!q)
        break;
      p = q;
    }
    CHECK(shim_verify(p, n, 11) == NOT_FOUND);
    free(p);
  }

  /* usable size is stable across the block's life and fully writable */
  static unsigned char *keep[64];
  static size_t keep_u[64];
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 64; i++) {
    size_t n = (size_t)1 << (shim_rand(&rng) % 22);
    n += shim_rand(&rng) % n;
    keep[i] = malloc(n);
    CHECK(keep[i] != NULL);
    keep_u[i] = keep[i] ? malloc_usable_size(keep[i]) : 0;
    if (keep[i])
      shim_fill(keep[i], keep_u[i], (unsigned)i);
  }
  for (int i = 0; i < 20000; i++) {
    size_t n = (size_t)1 << (shim_rand(&rng) % 18);
    n += shim_rand(&rng) % n;
    void *t = malloc(n);
    if (t)
      memset(t, 0xEE, n < 256 ? n : 256);
    if (i % 3 == 0) {
      void *t2 = calloc(1, n / 2 + 1);
      free(t2);
    }
    free(t);
  }
  for (int i = 0; i < 64; i++) {
    if (!keep[i])
      continue;
    CHECKF(malloc_usable_size(keep[i]) == keep_u[i],
           "usable size changed %zu -> %zu", keep_u[i],
           malloc_usable_size(keep[i]));
    size_t bad = shim_verify(keep[i], keep_u[i], (unsigned)i);
    CHECKF(bad == NOT_FOUND, "block %d (usable %zu) corrupted at byte %zu", i,
           keep_u[i], bad);
    free(keep[i]);
  }
}

static void test_free(void) {
  free(NULL);
  __libc_free(NULL);
  CHECK(1);
  static const size_t sizes[] = {0,      1,       100,     4096,    100000,
                                 MiB,    4 * MiB, 16 * MiB, 16 * MiB + 1,
                                 64 * MiB};
  for (int rep = 0; rep < 3; rep++)
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      size_t n = sizes[i];
      unsigned char *p = rep == 2 ? memalign(4096, n) : malloc(n);
      CHECK(p != NULL);
      if (p && n)
        memset(p, 0x11, n);
      int want = rep == 0 ? EBUSY : 1234;
      errno = want;
      free(p);
      int e = errno;
      CHECKF(e == want, "free(%zu-byte block) changed errno %d -> %d", n, want,
             e);
      errno = want;
      free(NULL);
      CHECK(errno == want);
    }
  /* after a batch of frees that may trigger trimming / unmapping */
  static void *batch[2000];
  for (int i = 0; i < 2000; i++)
    batch[i] = malloc((size_t)(i % 50 + 1) * 1000);
  errno = EBUSY;
  for (int i = 0; i < 2000; i++)
    free(batch[i]);
  CHECK(errno == EBUSY);
}

static void test_cfree_free_sized(void) {
  if (!p_cfree || !p_free_sized || !p_free_aligned_sized) {
    /* native: glibc 2.36 has none of them */
    printf("c_api: cfree/free_sized/free_aligned_sized not all present: "
           "%s%s%s%s\n", p_cfree ? "" : "cfree ",
           p_free_sized ? "" : "free_sized ",
           p_free_aligned_sized ? "" : "free_aligned_sized ",
           shim_native ? "(native run, skipped)" : "");
    if (!shim_native)
      CHECK(!"cfree, free_sized and free_aligned_sized must be exported");
  }
  if (p_cfree) {
    p_cfree(NULL);
    for (size_t n = 1; n <= 16 * MiB; n = n * 3 + 1) {
      void *p = malloc(n);
      CHECK(p != NULL);
      memset(p, 0x22, n);
      p_cfree(p);
    }
    CHECK(1);
  }
  if (p_free_sized) {
    p_free_sized(NULL, 0);
    p_free_sized(NULL, 100);
    for (size_t n = 0; n <= 16 * MiB; n = n * 3 + 1) {
      void *p = malloc(n);
      CHECK(p != NULL);
      if (n)
        memset(p, 0x33, n);
      int e0 = errno = EBUSY;
      p_free_sized(p, n);
      CHECKF(errno == e0, "free_sized changed errno");
      size_t k = n / 16 + 1;
      p = calloc(k, 16);
      CHECK(p != NULL);
      p_free_sized(p, k * 16);
      p = malloc(n / 2 + 1);
      void *q = realloc(p, n + 10);
      CHECK(q != NULL);
      p_free_sized(q ? q : p, q ? n + 10 : n / 2 + 1);
    }
  }
  if (p_free_aligned_sized) {
    p_free_aligned_sized(NULL, 64, 0);
    for (size_t a = 1; a <= 4 * MiB; a <<= 1) {
      const size_t sizes[] = {a, 2 * a, 5 * a};
      for (int k = 0; k < 3; k++) {
        void *p = aligned_alloc(a, sizes[k]);
        CHECKF(p != NULL && aligned(p, a), "aligned_alloc(%zu, %zu)", a,
               sizes[k]);
        if (!p)
          continue;
        memset(p, 0x44, sizes[k]);
        p_free_aligned_sized(p, a, sizes[k]);
      }
    }
  }
}

static void test_libc_aliases(void) {
  unsigned char *p = __libc_malloc(100);
  CHECK(p != NULL);
  if (p) {
    size_t u = usable(p);
    CHECKF(u >= 100, "strata_usable_size(__libc_malloc(100)) = %zu", u);
    memset(p, 0x77, u);
  }
  free(p);

  p = malloc(200);
  CHECK(p != NULL);
  __libc_free(p);

  unsigned char *c = __libc_calloc(10, 10);
  CHECK(c != NULL && all_bytes(c, 100, 0) && usable(c) >= 100);
  __libc_free(c);

  unsigned char *r = malloc(50);
  CHECK(r != NULL);
  if (r) {
    shim_fill(r, 50, 21);
    unsigned char *r2 = __libc_realloc(r, 5000);
    CHECK(r2 != NULL);
    if (r2) {
      CHECK(shim_verify(r2, 50, 21) == NOT_FOUND && usable(r2) >= 5000);
      r = r2;
    }
    r2 = __libc_realloc(r, 2 * MiB);
    CHECK(r2 != NULL);
    if (r2) {
      CHECK(shim_verify(r2, 50, 21) == NOT_FOUND && usable(r2) >= 2 * MiB);
      r = r2;
    }
    free(r);
  }
  r = __libc_realloc(NULL, 300);
  CHECK(r != NULL && usable(r) >= 300);
  __libc_free(r);

  void *m = __libc_memalign(4096, 100);
  CHECK(m != NULL && aligned(m, 4096) && usable(m) >= 100);
  free(m);
  m = __libc_memalign(64, 5000);
  CHECK(m != NULL && aligned(m, 64) && usable(m) >= 5000);
  __libc_free(m);

  void *v = __libc_valloc(100);
  CHECK(v != NULL && aligned(v, page_size) && usable(v) >= 100);
  free(v);
  v = __libc_pvalloc(100);
  CHECK(v != NULL && aligned(v, page_size) && usable(v) >= page_size);
  __libc_free(v);
}

static size_t inuse2(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static size_t inuse1(void) {
  struct mallinfo mi = mallinfo();
  return (size_t)(unsigned)mi.uordblks + (size_t)(unsigned)mi.hblkhd;
}
#pragma GCC diagnostic pop

static void test_mallinfo_trim(void) {
  int t = malloc_trim(0);
  CHECKF(t == 0 || t == 1, "malloc_trim(0) = %d", t);

  enum { BIG = 64, SMALL = 100000 };
  static void *big[BIG];
  static void *small[SMALL];
  size_t before2 = inuse2(), before1 = inuse1();
  for (int i = 0; i < BIG; i++) {
    big[i] = malloc(MiB);
    CHECK(big[i] != NULL);
    if (big[i])
      memset(big[i], 1, MiB);
  }
  for (int i = 0; i < SMALL; i++) {
    small[i] = malloc(16 + (size_t)(i % 7) * 8);
    if (!small[i])
      CHECK(small[i] != NULL);
  }
  size_t mid2 = inuse2(), mid1 = inuse1();
  const size_t want = 60 * MiB; /* 64 MiB requested; allow some slack */
  CHECKF(mid2 >= before2 + want,
         "mallinfo2 uordblks+hblkhd grew only %zd bytes (before %zu, after "
         "%zu) after allocating 64 MiB + 100k small blocks",
         (ssize_t)(mid2 - before2), before2, mid2);
  CHECKF(mid1 >= before1 + want,
         "mallinfo uordblks+hblkhd grew only %zd bytes (before %zu, after %zu)",
         (ssize_t)(mid1 - before1), before1, mid1);
  t = malloc_trim(0);
  CHECKF(t == 0 || t == 1, "malloc_trim(0) = %d", t);
  for (int i = 0; i < BIG; i++)
    free(big[i]);
  for (int i = 0; i < SMALL; i++)
    free(small[i]);
  size_t after2 = inuse2(), after1 = inuse1();
  CHECKF(after2 + want <= mid2,
         "mallinfo2 in-use did not drop after freeing: %zu -> %zu", mid2,
         after2);
  CHECKF(after1 + want <= mid1,
         "mallinfo in-use did not drop after freeing: %zu -> %zu", mid1,
         after1);
  t = malloc_trim(0);
  CHECKF(t == 0 || t == 1, "malloc_trim(0) = %d", t);
  t = malloc_trim(1 << 20);
  CHECKF(t == 0 || t == 1, "malloc_trim(1 MiB) = %d", t);
  printf("c_api: mallinfo2 in-use before %zu, with 64 MiB live %zu, after "
         "free %zu\n", before2, mid2, after2);
  /* allocator still works after trimming */
  void *p = malloc(3 * MiB);
  CHECK(p != NULL);
  if (p)
    memset(p, 2, 3 * MiB);
  free(p);
}

static void test_stats_info_opt(void) {
  /* malloc_stats writes to stderr: silence it */
  fflush(stderr);
  int saved = dup(2);
  int devnull = open("/dev/null", O_WRONLY);
  CHECK(saved >= 0 && devnull >= 0);
  if (saved >= 0 && devnull >= 0) {
    dup2(devnull, 2);
    malloc_stats();
    fflush(stderr);
    dup2(saved, 2);
  }
  if (devnull >= 0)
    close(devnull);
  if (saved >= 0)
    close(saved);
  CHECK(1); /* survived malloc_stats */

  FILE *f = tmpfile();
  CHECK(f != NULL);
  if (f) {
    int rc = malloc_info(0, f);
    CHECKF(rc == 0, "malloc_info(0, f) = %d", rc);
    fflush(f);
    long len = ftell(f);
    CHECKF(len > 0, "malloc_info wrote %ld bytes", len);
    rewind(f);
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    CHECKF(strchr(buf, '<') != NULL && strchr(buf, '>') != NULL,
           "malloc_info output is not XML-ish: '%.80s'", buf);
    fclose(f);
  }

  static const int params[][2] = {{M_TRIM_THRESHOLD, 128 * 1024},
                                  {M_TOP_PAD, 0},
                                  {M_MMAP_THRESHOLD, 128 * 1024},
                                  {M_MMAP_MAX, 65536},
                                  {M_ARENA_MAX, 8},
                                  {M_ARENA_TEST, 8},
                                  {M_PERTURB, 0},
                                  {M_CHECK_ACTION, 3},
                                  {M_MXFAST, 64},
                                  {12345, 1}};
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
    int rc = mallopt(params[i][0], params[i][1]);
    CHECKF(rc == 0 || rc == 1, "mallopt(%d, %d) = %d", params[i][0],
           params[i][1], rc);
  }
  void *p = malloc(1000);
  void *q = malloc(2 * MiB);
  CHECK(p != NULL && q != NULL);
  free(p);
  free(q);
}

/* Many live blocks of many sizes: patterns intact, no two overlap. */
enum { LIVE = 4000 };
static unsigned char *live_p[LIVE];
static size_t live_n[LIVE];
static unsigned live_seed[LIVE];

static size_t random_size(uint64_t *rng) {
  uint64_t r = shim_rand(rng) % 1000;
  if (r < 700)
    return shim_rand(rng) % 257;
  if (r < 900)
    return 257 + shim_rand(rng) % 8000;
  if (r < 990)
    return 8192 + shim_rand(rng) % (120 * 1024);
  return 128 * 1024 + shim_rand(rng) % (2 * MiB);
}

struct span {
  uintptr_t start, end;
};

static int cmp_span(const void *a, const void *b) {
  uintptr_t x = ((const struct span *)a)->start,
            y = ((const struct span *)b)->start;
  return x < y ? -1 : x > y;
}

static void check_no_overlap(const char *when) {
  static struct span s[LIVE];
  int k = 0;
  for (int i = 0; i < LIVE; i++)
    if (live_p[i]) {
      s[k].start = (uintptr_t)live_p[i];
      s[k].end = s[k].start + malloc_usable_size(live_p[i]);
      k++;
    }
  qsort(s, (size_t)k, sizeof s[0], cmp_span);
  int overlaps = 0;
  for (int i = 1; i < k; i++)
    if (s[i - 1].end > s[i].start) {
      if (overlaps < 5)
        fprintf(stderr, "overlap (%s): [%#lx, %#lx) and [%#lx, %#lx)\n", when,
                (unsigned long)s[i - 1].start, (unsigned long)s[i - 1].end,
                (unsigned long)s[i].start, (unsigned long)s[i].end);
      overlaps++;
    }
  CHECKF(overlaps == 0, "%d overlapping live blocks (%s, %d live)", overlaps,
         when, k);
}

static void verify_and_free(int i) {
  if (!live_p[i])
    return;
  size_t bad = shim_verify(live_p[i], live_n[i], live_seed[i]);
  if (bad != NOT_FOUND)
    CHECKF(bad == NOT_FOUND, "block of %zu bytes corrupted at %zu", live_n[i],
           bad);
  free(live_p[i]);
  live_p[i] = NULL;
}

static void alloc_slot(int i, uint64_t *rng, unsigned seed) {
  size_t n = random_size(rng);
  unsigned kind = (unsigned)(shim_rand(rng) % 10);
  unsigned char *p;
  if (kind == 0)
    p = calloc(1, n);
  else if (kind == 1)
    p = memalign((size_t)16 << (shim_rand(rng) % 9), n);
  else
    p = malloc(n);
  if (!p) {
    CHECKF(p != NULL, "allocation of %zu failed", n);
    return;
  }
  if (kind == 0 && !all_bytes(p, n, 0))
    CHECKF(0, "calloc(1, %zu) not zeroed", n);
  shim_fill(p, n, seed);
  live_p[i] = p;
  live_n[i] = n;
  live_seed[i] = seed;
}

static void test_many_blocks(void) {
  uint64_t rng = 0x1234567887654321ull;
  unsigned seed = 1;
  for (int i = 0; i < LIVE; i++)
    alloc_slot(i, &rng, seed++);
  check_no_overlap("initial");
  for (int op = 1; op <= 40000; op++) {
    int i = (int)(shim_rand(&rng) % LIVE);
    if (live_p[i] && shim_rand(&rng) % 4 == 0) {
      /* resize in place or move; contents must follow */
      size_t n = random_size(&rng);
      size_t keep = n < live_n[i] ? n : live_n[i];
      size_t bad = shim_verify(live_p[i], live_n[i], live_seed[i]);
      if (bad != NOT_FOUND)
        CHECKF(0, "block corrupted before realloc at %zu", bad);
      unsigned char *q = realloc(live_p[i], n ? n : 1);
      if (!q) {
        CHECKF(q != NULL, "realloc to %zu failed", n);
        continue;
      }
      bad = shim_verify(q, keep, live_seed[i]);
      if (bad != NOT_FOUND)
        CHECKF(0, "realloc %zu -> %zu lost byte %zu", live_n[i], n, bad);
      live_p[i] = q;
      shim_fill(q, n, ++seed);
      live_n[i] = n;
      live_seed[i] = seed;
    } else {
      verify_and_free(i);
      alloc_slot(i, &rng, ++seed);
    }
    if (op % 10000 == 0)
      check_no_overlap("churn");
  }
  for (int i = 0; i < LIVE; i++)
    verify_and_free(i);
  CHECK(1);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  shim_require_strata("c_api");
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  p_cfree = (cfree_fn)dlsym(RTLD_DEFAULT, "cfree");
  p_free_sized = (free_sized_fn)dlsym(RTLD_DEFAULT, "free_sized");
  p_free_aligned_sized =
      (free_aligned_sized_fn)dlsym(RTLD_DEFAULT, "free_aligned_sized");
  p_strata_usable_size = (usable_fn)dlsym(RTLD_DEFAULT, "strata_usable_size");
  if (shim_native) /* native: no strata_usable_size; use glibc's */
    p_strata_usable_size = NULL;

  test_symbols();
  test_malloc_basic();
  test_huge_requests();
  test_zero_sizes();
  test_posix_memalign();
  test_memalign_aligned_alloc();
  test_valloc_pvalloc();
  test_calloc_zeroing();
  test_realloc();
  test_free();
  test_cfree_free_sized();
  test_libc_aliases();
  test_mallinfo_trim();
  test_many_blocks();
  test_stats_info_opt(); /* last: mallopt may change tunables */
  return shim_finish();
}
