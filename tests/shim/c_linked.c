/* A C program linked directly against libstrata.so (no LD_PRELOAD) that
 * uses the strata_* API from <strata/strata.h>. Linking the library also
 * replaces malloc for the whole process, which is checked too.
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <strata/strata.h>

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)
#define NOT_FOUND ((size_t)-1)

static int aligned(const void *p, size_t a) {
  return ((uintptr_t)p & (a - 1)) == 0;
}

static int all_zero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static void test_linkage(void) {
  CHECK(STRATA_VERSION_MAJOR == 0 || STRATA_VERSION_MAJOR > 0);
  static const char *const names[] = {"strata_malloc", "strata_free",
                                      "strata_calloc", "strata_realloc",
                                      "strata_aligned_alloc",
                                      "strata_usable_size",
                                      "strata_free_sized", "strata_release",
                                      "malloc", "free"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *where;
    CHECKF(shim_symbol_in_strata(names[i], &where), "%s resolves to %s",
           names[i], where);
  }
}

static void test_malloc_free(void) {
  static const size_t sizes[] = {0,      1,      8,      15,     16,
                                 17,     100,    1000,   4096,   5000,
                                 65536,  100000, 262145, MiB,    4 * MiB + 1,
                                 32 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    unsigned char *p = strata_malloc(n);
    CHECKF(p != NULL && aligned(p, 16), "strata_malloc(%zu) = %p", n,
           (void *)p);
    if (!p)
      continue;
    size_t u = strata_usable_size(p);
    CHECKF(u >= n, "strata_usable_size(strata_malloc(%zu)) = %zu", n, u);
    shim_fill(p, u, (unsigned)i);
    CHECK(shim_verify(p, u, (unsigned)i) == NOT_FOUND);
    CHECK(strata_usable_size(p) == u);
    if (i % 2)
      strata_free(p);
    else
      strata_free_sized(p, n);
  }
  strata_free(NULL);
  CHECK(strata_usable_size(NULL) == 0);

  /* size 0: unique, freeable pointers */
  enum { N = 500 };
  static void *z[N];
  for (int i = 0; i < N; i++) {
    z[i] = strata_malloc(0);
    CHECK(z[i] != NULL);
  }
  qsort(z, N, sizeof z[0], cmp_ptr);
  int distinct = 1;
  for (int i = 1; i < N; i++)
    if (z[i] == z[i - 1])
      distinct = 0;
  CHECKF(distinct, "strata_malloc(0) pointers not unique");
  for (int i = 0; i < N; i++)
    strata_free(z[i]);

  /* free_sized with any size between the request and the usable size */
  for (size_t n = 1; n < 8 * MiB; n = n * 5 + 3) {
    void *p = strata_malloc(n);
    CHECK(p != NULL);
    if (p)
      strata_free_sized(p, strata_usable_size(p));
  }

  /* failures return NULL */
  CHECK(strata_malloc(shim_opaque(SIZE_MAX)) == NULL);
  CHECK(strata_malloc(shim_opaque(SIZE_MAX / 2 + 1)) == NULL);
  CHECK(strata_malloc(shim_opaque((size_t)PTRDIFF_MAX + 1)) == NULL);
}

static void test_calloc(void) {
  for (int round = 0; round < 4; round++) {
    static const size_t sizes[] = {1, 16, 100, 4096, 70000, 2 * MiB};
    void *blocks[6];
    for (int i = 0; i < 6; i++) {
      blocks[i] = strata_malloc(sizes[i]);
      CHECK(blocks[i] != NULL);
      if (blocks[i])
        memset(blocks[i], 0xAB, strata_usable_size(blocks[i]));
    }
    for (int i = 0; i < 6; i++)
      strata_free(blocks[i]);
    for (int i = 0; i < 6; i++) {
      unsigned char *c = strata_calloc(sizes[i], 1);
      CHECKF(c != NULL && all_zero(c, sizes[i]), "strata_calloc(%zu, 1)",
             sizes[i]);
      strata_free(c);
    }
  }
  CHECK(strata_calloc(shim_opaque(SIZE_MAX / 2 + 1), 2) == NULL);
  CHECK(strata_calloc(shim_opaque((size_t)1 << 32),
                      shim_opaque((size_t)1 << 32)) == NULL);
  CHECK(strata_calloc(shim_opaque(SIZE_MAX), shim_opaque(SIZE_MAX)) == NULL);
  void *c = strata_calloc(0, 10);
  CHECK(c != NULL);
  strata_free(c);
}

static void test_realloc(void) {
  unsigned char *p = strata_realloc(NULL, 100);
  CHECK(p != NULL && strata_usable_size(p) >= 100);
  if (!p)
    return;
  shim_fill(p, 100, 1);
  static const size_t chain[] = {200, 5000, 100000, 8 * MiB, 1000, 16, 3};
  size_t prev = 100;
  unsigned seed = 1;
  for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
    unsigned char *q = strata_realloc(p, chain[i]);
    CHECKF(q != NULL, "strata_realloc(%zu -> %zu)", prev, chain[i]);
    if (!q)
      break;
    size_t keep = prev < chain[i] ? prev : chain[i];
    CHECKF(shim_verify(q, keep, seed) == NOT_FOUND,
           "strata_realloc %zu -> %zu lost data", prev, chain[i]);
    CHECK(strata_usable_size(q) >= chain[i]);
    p = q;
    prev = chain[i];
    shim_fill(p, prev, ++seed);
  }
  /* failure leaves the block intact */
  unsigned char *q = strata_realloc(p, shim_opaque(SIZE_MAX));
  CHECK(q == NULL);
  CHECK(shim_verify(p, prev, seed) == NOT_FOUND);
  /* realloc(p, 0) frees and returns NULL */
  q = strata_realloc(p, 0);
  CHECK(q == NULL);
  strata_free(q);
}

static void test_aligned_alloc(void) {
  /* any power of two up to 1 GiB */
  for (size_t a = 1; a <= ((size_t)1 << 30); a <<= 1) {
    size_t n = a <= 16 * MiB ? a + 1 : 64;
    void *p = strata_aligned_alloc(a, n);
    CHECKF(p != NULL && aligned(p, a), "strata_aligned_alloc(%zu, %zu) = %p",
           a, n, p);
    if (!p)
      continue;
    CHECK(strata_usable_size(p) >= n);
    memset(p, 0x5C, n);
    if (a % 2)
      strata_free(p);
    else
      strata_free_sized(p, n);
  }
  void *p = strata_aligned_alloc(64, shim_opaque(SIZE_MAX));
  CHECK(p == NULL);
}

static void test_release(void) {
  void *big[16];
  for (int i = 0; i < 16; i++) {
    big[i] = strata_malloc(4 * MiB);
    CHECK(big[i] != NULL);
    if (big[i])
      memset(big[i], 1, 4 * MiB);
  }
  for (int i = 0; i < 16; i++)
    strata_free(big[i]);
  size_t released = strata_release();
  printf("c_linked: strata_release() released %zu bytes\n", released);
  (void)strata_release();
  /* still fully functional */
  unsigned char *q = strata_malloc(3 * MiB);
  CHECK(q != NULL);
  if (q) {
    memset(q, 2, 3 * MiB);
    strata_free(q);
  }
  CHECK(1);
}

static void test_process_malloc(void) {
  /* malloc of the process is strata's too */
  void *p = malloc(1234);
  CHECK(p != NULL && strata_usable_size(p) >= 1234);
  free(p);
  errno = 0;
  p = malloc(shim_opaque(SIZE_MAX));
  CHECK(p == NULL && errno == ENOMEM);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  shim_require_strata("c_linked");
  if (shim_native) {
    fprintf(stderr, "c_linked: cannot run without libstrata.so\n");
    return 1;
  }
  test_linkage();
  test_malloc_free();
  test_calloc();
  test_realloc();
  test_aligned_alloc();
  test_release();
  test_process_malloc();
  return shim_finish();
}
