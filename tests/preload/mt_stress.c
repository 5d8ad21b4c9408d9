/* Multi-threaded allocation stress for the preload tests.
 *
 * NTHREADS threads each do OPS random operations on a private slot array:
 * malloc (sizes 1..4096, sometimes up to 1 MiB), calloc, realloc,
 * aligned_alloc and free. Every block is filled with a pattern derived from
 * its address and size and verified before it is freed or reallocated, so
 * overlapping blocks or corrupted memory are detected. Threads also hand
 * blocks to each other through a shared array guarded by a mutex: a block
 * allocated by one thread is often verified and freed by another.
 *
 * Prints "ok" and exits 0 on success; prints a diagnostic to stderr and exits
 * 1 on any corruption. Deterministic output, so it can be compared with a
 * native run. If PRELOAD_TEST_EXPECT_MAPPED=PATH is set, exits 3 unless PATH
 * is mapped into the process (proof that the preload is in effect).
 *
 * usage: mt_stress [threads [ops-per-thread]]   (defaults: 8 200000)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 1024
#define SHARED 256

struct block {
  unsigned char* p;
  size_t size;
};

static struct block shared_blocks[SHARED];
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static long ops_per_thread = 200000;

static uint64_t next_rand(uint64_t* s) {
  /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t pattern_seed(uintptr_t addr, size_t size) {
  uint64_t x = (uint64_t)addr * 0x9e3779b97f4a7c15ull ^ (uint64_t)size;
  return x ^ (x >> 29);
}

static void die(const char* what, const void* p, size_t size, size_t at) {
  fprintf(stderr, "mt_stress: %s: block %p size %zu offset %zu\n", what, p, size, at);
  fflush(stderr);
  exit(1);
}

/* The pattern of a block of `size` bytes at address `addr`: 8-byte words
 * (blocks are at least 8-aligned), then a byte tail. */
static uint64_t word_at(uint64_t s, size_t i) { return s ^ (i * 0xff51afd7ed558ccdull); }
static unsigned char tail_at(uint64_t s, size_t i) {
  return (unsigned char)((unsigned char)(s >> ((i & 7) * 8)) ^ (unsigned char)i);
}
static unsigned char byte_at(uint64_t s, size_t size, size_t i) {
  if (i < size / 8 * 8) return (unsigned char)(word_at(s, i / 8) >> ((i & 7) * 8)); /* little endian */
  return tail_at(s, i);
}

static void fill(unsigned char* p, size_t size) {
  uint64_t s = pattern_seed((uintptr_t)p, size);
  size_t words = size / 8, i;
  uint64_t* w = (uint64_t*)(void*)p;
  for (i = 0; i < words; i++) w[i] = word_at(s, i);
  for (i = words * 8; i < size; i++) p[i] = tail_at(s, i);
}

/* The first `len` bytes of p must hold the pattern of a block of `size`
 * bytes that was at address `addr` (after realloc, the old address). */
static void verify_prefix(const unsigned char* p, size_t len, size_t size, uintptr_t addr) {
  uint64_t s = pattern_seed(addr, size);
  size_t full = (len < size ? len : size) / 8, i;
  const uint64_t* w = (const uint64_t*)(const void*)p;
  if (full > size / 8) full = size / 8;
  for (i = 0; i < full; i++)
    if (w[i] != word_at(s, i)) die("pattern mismatch (overlapping or corrupted block)", p, size, i * 8);
  for (i = full * 8; i < len && i < size; i++)
    if (p[i] != byte_at(s, size, i)) die("pattern mismatch (overlapping or corrupted block)", p, size, i);
}

static void verify(const struct block* b) { verify_prefix(b->p, b->size, b->size, (uintptr_t)b->p); }

static void check_alignment(const void* p, size_t size, size_t align) {
  size_t need = align;
  if (need < 16 && size >= 16) need = 16; /* alignof(max_align_t) on x86-64 */
  if (need < 8) need = 8;
  if ((uintptr_t)p % need != 0) die("misaligned block", p, size, 0);
}

static size_t random_size(uint64_t* rng) {
  uint64_t r = next_rand(rng);
  if (r % 256 == 0) return 1 + (size_t)(next_rand(rng) % (1u << 20)); /* up to 1 MiB */
  if (r % 16 == 1) return 1 + (size_t)(next_rand(rng) % 65536);
  return 1 + (size_t)(next_rand(rng) % 4096);
}

static void release(struct block* b) {
  if (b->p == NULL) return;
  verify(b);
  free(b->p);
  b->p = NULL;
  b->size = 0;
}

static void* worker(void* arg) {
  uint64_t rng = 0x1234567ull + (uint64_t)(uintptr_t)arg * 0x51ed27ull;
  struct block* slots = calloc(SLOTS, sizeof *slots);
  long op;
  if (slots == NULL) die("calloc of the slot array failed", NULL, 0, 0);
  for (op = 0; op < ops_per_thread; op++) {
    struct block* b = &slots[next_rand(&rng) % SLOTS];
    unsigned kind = (unsigned)(next_rand(&rng) % 100);
    if (b->p != NULL && kind < 40) { /* free */
      release(b);
    } else if (b->p != NULL && kind < 55) { /* realloc, growing or shrinking */
      size_t n = random_size(&rng);
      uintptr_t old_addr = (uintptr_t)b->p;
      size_t old_size = b->size;
      unsigned char* q;
      verify(b);
      q = realloc(b->p, n);
      if (q == NULL) die("realloc failed", NULL, n, 0);
      check_alignment(q, n, 0);
      verify_prefix(q, n < old_size ? n : old_size, old_size, old_addr);
      b->p = q;
      b->size = n;
      fill(q, n);
    } else if (b->p != NULL && kind < 70) { /* hand over to another thread */
      struct block mine = *b, theirs;
      size_t i = (size_t)(next_rand(&rng) % SHARED);
      pthread_mutex_lock(&shared_lock);
      theirs = shared_blocks[i];
      shared_blocks[i] = mine;
      pthread_mutex_unlock(&shared_lock);
      b->p = NULL;
      b->size = 0;
      release(&theirs); /* often allocated by another thread */
    } else {
      size_t n;
      unsigned char* p;
      size_t align = 0;
      if (b->p != NULL) release(b);
      n = random_size(&rng);
      if (kind < 80) {
        size_t count = 1 + n / 16;
        size_t i;
        p = calloc(count, 16);
        if (p == NULL) die("calloc failed", NULL, count * 16, 0);
        for (i = 0; i < count * 16; i++)
          if (p[i] != 0) die("calloc memory not zeroed", p, count * 16, i);
        n = count * 16;
      } else if (kind < 85) {
        align = (size_t)64 << (next_rand(&rng) % 7); /* 64 .. 4096 */
        n = (n + align - 1) / align * align;
        p = aligned_alloc(align, n);
        if (p == NULL) die("aligned_alloc failed", NULL, n, align);
      } else {
        p = malloc(n);
        if (p == NULL) die("malloc failed", NULL, n, 0);
      }
      check_alignment(p, n, align);
      fill(p, n);
      b->p = p;
      b->size = n;
    }
  }
  for (op = 0; op < SLOTS; op++) release(&slots[op]);
  free(slots);
  return NULL;
}

static void check_mapped(const char* want) {
  char real[PATH_MAX];
  char line[PATH_MAX + 256];
  FILE* f;
  int found = 0;
  if (realpath(want, real) == NULL) {
    fprintf(stderr, "mt_stress: cannot resolve %s\n", want);
    exit(3);
  }
  f = fopen("/proc/self/maps", "r");
  if (f == NULL) {
    perror("mt_stress: /proc/self/maps");
    exit(3);
  }
  while (fgets(line, sizeof line, f) != NULL)
    if (strstr(line, real) != NULL) found = 1;
  fclose(f);
  if (!found) {
    fprintf(stderr, "mt_stress: %s is not mapped into this process\n", real);
    exit(3);
  }
}

int main(int argc, char** argv) {
  long nthreads = 8, i;
  pthread_t* threads;
  const char* want = getenv("PRELOAD_TEST_EXPECT_MAPPED");
  if (want != NULL && *want != '\0') check_mapped(want);
  if (argc > 1) nthreads = strtol(argv[1], NULL, 10);
  if (argc > 2) ops_per_thread = strtol(argv[2], NULL, 10);
  if (nthreads < 1 || nthreads > 1024 || ops_per_thread < 0) {
    fprintf(stderr, "usage: mt_stress [threads [ops-per-thread]]\n");
    return 2;
  }
  threads = malloc((size_t)nthreads * sizeof *threads);
  if (threads == NULL) die("malloc failed", NULL, 0, 0);
  for (i = 0; i < nthreads; i++)
    if (pthread_create(&threads[i], NULL, worker, (void*)(uintptr_t)i) != 0) {
      fprintf(stderr, "mt_stress: pthread_create failed\n");
      return 1;
    }
  for (i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
  for (i = 0; i < SHARED; i++) release(&shared_blocks[i]);
  free(threads);
  puts("ok");
  return 0;
}
