/* malloc_loop: N pairs of malloc(SIZE) + free, for counting instructions.
 *
 *   malloc_loop SIZE N
 *
 * Used by `tools/strata bench` in two ways:
 *  - with N = 0 under each allocator's LD_PRELOAD, to check that the preload
 *    is really in effect (the first line names the library that `malloc` and
 *    `free` resolve to);
 *  - under `valgrind --tool=callgrind` with N and 2N pairs: the difference of
 *    the two instruction counts, divided by N, is the cost of one pair with
 *    start-up and exit cancelled out.
 *
 * Compile with -O2 -fno-builtin so the compiler cannot drop the pair.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define ANCHORS 8

static const char *lib_of(const char *name) {
  void *sym = dlsym(RTLD_DEFAULT, name);
  Dl_info info;
  if (sym != NULL && dladdr(sym, &info) != 0 && info.dli_fname != NULL) return info.dli_fname;
  return "?";
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: malloc_loop SIZE N\n");
    return 2;
  }
  size_t size = strtoul(argv[1], NULL, 10);
  long n = strtol(argv[2], NULL, 10);
  printf("malloc_lib=%s free_lib=%s\n", lib_of("malloc"), lib_of("free"));
  fflush(stdout);
  /* A few live neighbours of the same size, so that freeing the loop's object
   * never empties its page/span (which sends some allocators down a slow
   * "release the empty page" path on every pair, not the fast path). */
  void *keep[ANCHORS];
  for (int k = 0; k < ANCHORS; k++) keep[k] = malloc(size);
  for (long i = 0; i < n; i++) {
    char *p = malloc(size);
    if (p == NULL) abort();
    p[0] = (char)i; /* touch it, as a real caller would */
    free(p);
  }
  for (int k = 0; k < ANCHORS; k++) free(keep[k]);
  printf("pairs=%ld size=%zu\n", n, size);
  return 0;
}
