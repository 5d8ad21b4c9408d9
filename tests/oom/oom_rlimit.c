/* Out of memory under LD_PRELOAD=libstrata.so.
 *
 *   oom_rlimit [--strict-reuse] [BUDGET_MIB]
 *
 * The address space is limited (RLIMIT_AS) to what the process uses at the
 * start plus BUDGET_MIB (default 256). Then, for each
 * kind of allocation (small, medium and top-class small objects, large
 * objects, calloc small and large, realloc, aligned_alloc on each of its
 * paths, posix_memalign, and a random mix), several rounds of:
 *
 *   1. allocate until the allocator says no: every NULL must come with
 *      errno == ENOMEM (posix_memalign: returns ENOMEM, *out untouched);
 *   2. at the limit: a realloc that cannot be served returns NULL with
 *      ENOMEM and leaves the block intact (small and large blocks, and the
 *      failed realloc of kind "realloc" itself); calloc fails cleanly; a
 *      thread started now (its thread cache is set up on its first malloc)
 *      gets NULL or usable memory, never a crash;
 *   3. free everything (each block's header verified first), and check
 *      that allocation works again: 10,000 mallocs of mixed small sizes
 *      must all succeed.
 *
 * With --strict-reuse, step 3 also requires that an allocation of the
 * same kind succeeds again after everything was freed: memory that small
 * objects held must be usable by large ones (their own mappings) again,
 * which needs strata to give the address space of free chunks and cached
 * mappings back when an allocation fails (under RLIMIT_AS, pages returned
 * with madvise still count). Without it, a large kind that fails there only
 * prints a NOTE.
 *
 * Every block carries a header (link, kind, serial, size) that is checked
 * before it is freed; calloc'ed blocks are checked for zero at both ends.
 * The amount each fill reached is printed, so a regression in how much
 * memory strata can hand out under a limit shows in the log.
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { ROUNDS = 3, RECOVERY_MALLOCS = 10000, MAX_BLOCKS = 16 << 20 };

/* The first 32 bytes of every block. */
struct header {
  struct header *next;
  uint64_t magic; /* MAGIC ^ serial */
  uint64_t serial;
  uint64_t size;
};
#define MAGIC 0x4f4f4d5f54455354ull /* "OOM_TEST" */

enum kind {
  K_SMALL,       /* malloc(64) */
  K_MEDIUM,      /* malloc(3000) */
  K_TOP_SMALL,   /* malloc(200 KiB): the largest small classes */
  K_LARGE,       /* malloc(1 MiB + 123): one mapping each */
  K_HUGE,        /* malloc(24 MiB): large, and too big for the reuse cache */
  K_CALLOC,      /* calloc(10, 4000) */
  K_CALLOC_BIG,  /* calloc(4, 600 KiB) */
  K_REALLOC,     /* malloc(40) grown by realloc to 300 KiB */
  K_ALIGNED_SMALL, /* aligned_alloc(4096, 10000): an aligned small class */
  K_ALIGNED_PAGE,  /* aligned_alloc(64 KiB, 100000): a page-heap block */
  K_ALIGNED_LARGE, /* aligned_alloc(1 MiB, 3 MiB): an aligned mapping */
  K_MEMALIGN,    /* posix_memalign(64, 5000) */
  K_MEMALIGN_BIG, /* posix_memalign(8192, 300000) */
  K_MIXED,       /* any of the above at random */
  K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "malloc 64", "malloc 3000", "malloc 200K", "malloc 1M+123", "malloc 24M",
    "calloc 10x4000", "calloc 4x600K", "realloc 40->300K", "aligned 4K/10000",
    "aligned 64K/100000", "aligned 1M/3M", "posix_memalign 64/5000",
    "posix_memalign 8K/300000", "mixed"};

static int strict_reuse;
static uint64_t serial;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void stamp(void *p, size_t size, struct header **list) {
  struct header *h = p;
  h->next = *list;
  h->serial = ++serial;
  h->magic = MAGIC ^ h->serial;
  h->size = size;
  *list = h;
}

/* One allocation of kind k. Returns NULL on failure; *size gets the
 * requested size. Checks errno / the return value of a failure. */
static void *alloc_one(enum kind k, size_t *size) {
  void *p = NULL;
  if (k == K_MIXED) k = (enum kind)(shim_rand(&rng) % K_MIXED);
  errno = 0;
  switch (k) {
  case K_SMALL: *size = 64; p = malloc(*size); break;
  case K_MEDIUM: *size = 3000; p = malloc(*size); break;
  case K_TOP_SMALL: *size = 200 * KiB; p = malloc(*size); break;
  case K_LARGE: *size = MiB + 123; p = malloc(*size); break;
  case K_HUGE: *size = 24 * MiB; p = malloc(*size); break;
  case K_CALLOC:
  case K_CALLOC_BIG: {
    size_t n = k == K_CALLOC ? 10 : 4, each = k == K_CALLOC ? 4000 : 600 * KiB;
    *size = n * each;
    p = calloc(n, each);
    if (p) {
      const unsigned char *b = p;
      int zero = 1;
      for (size_t i = 0; i < 64; i++)
        zero &= b[i] == 0 && b[*size - 1 - i] == 0;
      CHECKF(zero, "calloc(%zu, %zu) = %p is not zeroed", n, each, p);
    }
    break;
  }
  case K_REALLOC: {
    *size = 300 * KiB;
    void *q = malloc(40);
    if (!q) break;
    memset(q, 0xab, 40);
    errno = 0;
    p = realloc(q, *size);
    if (!p) {
      int e = errno;
      CHECKF(e == ENOMEM, "failed realloc(%p, %zu): errno %d", q, *size, e);
      const unsigned char *b = q;
      int intact = 1;
      for (int i = 0; i < 40; i++)
        intact &= b[i] == 0xab;
      CHECKF(intact, "failed realloc(%p, %zu) changed the block", q, *size);
      free(q);
      errno = e;
      return NULL;
    }
    const unsigned char *b = p;
    int kept = 1;
    for (int i = 8; i < 40; i++)
      kept &= b[i] == 0xab;
    CHECKF(kept, "realloc(%p, %zu) = %p lost the old contents", q, *size, p);
    break;
  }
  case K_ALIGNED_SMALL:
  case K_ALIGNED_PAGE:
  case K_ALIGNED_LARGE: {
    size_t align = k == K_ALIGNED_SMALL ? 4096 : k == K_ALIGNED_PAGE ? 64 * KiB : MiB;
    *size = k == K_ALIGNED_SMALL ? 10000 : k == K_ALIGNED_PAGE ? 100000 : 3 * MiB;
    p = aligned_alloc(align, *size);
    if (p)
      CHECKF((uintptr_t)p % align == 0, "aligned_alloc(%zu, %zu) = %p", align, *size, p);
    break;
  }
  case K_MEMALIGN:
  case K_MEMALIGN_BIG: {
    size_t align = k == K_MEMALIGN ? 64 : 8192;
    *size = k == K_MEMALIGN ? 5000 : 300000;
    void *out = (void *)0x1234;
    int rc = posix_memalign(&out, align, *size);
    if (rc != 0) {
      CHECKF(rc == ENOMEM, "posix_memalign(%zu, %zu) returned %d", align, *size, rc);
      CHECKF(out == (void *)0x1234, "failed posix_memalign wrote %p", out);
      errno = ENOMEM; /* for the common check below */
      return NULL;
    }
    p = out;
    CHECKF((uintptr_t)p % align == 0, "posix_memalign(%zu, %zu) = %p", align, *size, p);
    break;
  }
  default: break;
  }
  if (!p) {
    int e = errno;
    CHECKF(e == ENOMEM, "%s: NULL with errno %d (%s), not ENOMEM", kind_names[k], e, strerror(e));
  }
  return p;
}

static size_t free_list(struct header *list) {
  size_t n = 0;
  while (list) {
    struct header *next = list->next;
    CHECKF(list->magic == (MAGIC ^ list->serial), "block %p: header overwritten", (void *)list);
    CHECKF(malloc_usable_size(list) >= list->size, "block %p: usable %zu < %zu", (void *)list,
           malloc_usable_size(list), (size_t)list->size);
    free(list);
    list = next;
    n++;
  }
  return n;
}

/* ---- a thread started at the limit ---- */

struct thread_result {
  int got, failed, bad;
};

static void *late_thread(void *arg) {
  struct thread_result *r = arg;
  static const size_t sizes[] = {16, 64, 200, 1000, 5000, 40000, 200000, 2 * MiB};
  void *held[sizeof sizes / sizeof sizes[0]];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    held[i] = malloc(sizes[i]);
    if (held[i]) {
      memset(held[i], 0x5a, sizes[i]);
      r->got++;
    } else {
      r->failed++;
      if (errno != ENOMEM) r->bad++;
    }
  }
  void *c = calloc(3, 100);
  if (c) {
    r->got++;
    for (int i = 0; i < 300; i++)
      if (((unsigned char *)c)[i]) r->bad++;
    free(c);
  } else {
    r->failed++;
  }
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    free(held[i]);
  return NULL;
}

static void thread_at_limit(const char *when) {
  struct thread_result r = {0, 0, 0};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * KiB);
  pthread_t t;
  int rc = pthread_create(&t, &attr, late_thread, &r);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    /* glibc could not get a stack or its TLS block: fine at the limit. */
    printf("  %s: pthread_create failed (%s), as it may at the limit\n", when, strerror(rc));
    return;
  }
  pthread_join(t, NULL);
  CHECKF(r.bad == 0, "%s: thread started at the limit: %d bad results", when, r.bad);
  printf("  %s: thread at the limit: %d allocations served, %d refused\n", when, r.got, r.failed);
}

/* ---- at the limit: failed reallocs keep the block ---- */

struct keeper {
  unsigned char *p;
  size_t n;
  unsigned seed;
};

static void keeper_new(struct keeper *k, size_t n, unsigned seed) {
  k->p = malloc(n);
  k->n = n;
  k->seed = seed;
  if (k->p) shim_fill(k->p, n, seed);
}

static void realloc_fails_cleanly(struct keeper *k, size_t to, const char *what) {
  if (!k->p) return;
  errno = 0;
  void *q = realloc(k->p, to);
  if (q == NULL) {
    CHECKF(errno == ENOMEM, "%s: failed realloc(%zu -> %zu): errno %d", what, k->n, to, errno);
    size_t bad = shim_verify(k->p, k->n, k->seed);
    CHECKF(bad == (size_t)-1, "%s: failed realloc(%zu -> %zu) damaged byte %zu", what, k->n, to, bad);
  } else {
    /* It may fit after all (the limit is not exact): must be intact. */
    size_t bad = shim_verify(q, k->n, k->seed);
    CHECKF(bad == (size_t)-1, "%s: realloc(%zu -> %zu) lost byte %zu", what, k->n, to, bad);
    printf("  %s: realloc to %zu MiB succeeded at the limit\n", what, to / MiB);
    k->p = q;
    k->n = k->n < to ? k->n : to;
    shim_fill(k->p, k->n, k->seed);
  }
}

static void keeper_check_free(struct keeper *k, const char *what) {
  if (!k->p) return;
  size_t bad = shim_verify(k->p, k->n, k->seed);
  CHECKF(bad == (size_t)-1, "%s: keeper block damaged at byte %zu", what, bad);
  free(k->p);
  k->p = NULL;
}

/* ---- recovery ---- */

static void recovery(const char *after) {
  static void *blocks[RECOVERY_MALLOCS];
  int failed = 0;
  for (int i = 0; i < RECOVERY_MALLOCS; i++) {
    size_t n = 1 + shim_rand(&rng) % 4096;
    blocks[i] = malloc(n);
    if (!blocks[i])
      failed++;
    else
      memset(blocks[i], i, n < 64 ? n : 64);
  }
  CHECKF(failed == 0, "after %s was freed: %d of %d mallocs failed", after, failed, RECOVERY_MALLOCS);
  for (int i = 0; i < RECOVERY_MALLOCS; i++)
    free(blocks[i]);
}

static size_t vm_size(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
  }
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

int main(int argc, char **argv) {
  shim_require_strata("oom_rlimit");
  setvbuf(stdout, NULL, _IOLBF, 0);
  size_t budget = 256 * MiB;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--strict-reuse") == 0)
      strict_reuse = 1;
    else
      budget = (size_t)strtoul(argv[i], NULL, 10) * MiB;
  }

  /* Warm up what the test itself needs (stdio, a thread's first
   * allocation) before the limit, so only strata runs into it. */
  thread_at_limit("before the limit");
  size_t start = vm_size();
  CHECK(start > 0);
  struct rlimit rl = {start + budget, start + budget};
  CHECKF(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS): %s", strerror(errno));
  printf("address space limited to %zu MiB (%zu MiB in use + %zu MiB)\n", (start + budget) / MiB,
         start / MiB, budget / MiB);

  for (int round = 0; round < ROUNDS; round++) {
    for (int k = 0; k < K_COUNT; k++) {
      char what[96];
      snprintf(what, sizeof what, "round %d, %s", round + 1, kind_names[k]);
      struct keeper small_keeper, large_keeper;
      keeper_new(&small_keeper, 1000, 11u + (unsigned)k);
      keeper_new(&large_keeper, 2 * MiB, 23u + (unsigned)k);

      struct header *list = NULL;
      size_t n = 0, bytes = 0, size = 0;
      for (; n < MAX_BLOCKS; n++) {
        void *p = alloc_one((enum kind)k, &size);
        if (!p) break;
        stamp(p, size, &list);
        bytes += size;
      }
      CHECKF(n < MAX_BLOCKS, "%s: never ran out after %zu blocks", what, n);
      printf("%s: %zu blocks, %zu MiB before the first NULL\n", what, n, bytes / MiB);

      /* At the limit. */
      errno = 0;
      void *c = calloc(1, 64 * MiB);
      CHECKF(c == NULL && errno == ENOMEM, "%s: calloc(64 MiB) at the limit = %p, errno %d", what, c, errno);
      free(c);
      realloc_fails_cleanly(&small_keeper, 64 * MiB, what);
      realloc_fails_cleanly(&large_keeper, 200 * MiB, what);
      if (k == K_SMALL || k == K_LARGE || k == K_MIXED) thread_at_limit(what);

      size_t freed = free_list(list);
      CHECKF(freed == n, "%s: freed %zu of %zu blocks", what, freed, n);
      keeper_check_free(&small_keeper, what);
      keeper_check_free(&large_keeper, what);
      recovery(what);
      /* What was freed must be usable by the same kind again. */
      size_t again_size;
      void *again = alloc_one((enum kind)k, &again_size);
      int large = k == K_LARGE || k == K_HUGE || k == K_CALLOC_BIG || k == K_REALLOC ||
                  k == K_ALIGNED_LARGE || k == K_MEMALIGN_BIG || k == K_MIXED;
      if (again == NULL && large && !strict_reuse)
        printf("  NOTE: %s: cannot allocate again after freeing everything (the page heap keeps "
               "the address space of freed small objects)\n", what);
      else
        CHECKF(again != NULL, "%s: cannot allocate again after freeing everything", what);
      free(again);
    }
  }
  thread_at_limit("after the rounds");
  return shim_finish();
}
