/* Under LD_PRELOAD=libstrata.so: prints strata_stats_json() on stdout, for
 * the JSON validity test. */
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  size_t (*stats_json)(char *, size_t) = (size_t (*)(char *, size_t))dlsym(RTLD_DEFAULT, "strata_stats_json");
  if (stats_json == NULL) {
    fprintf(stderr, "strata_stats_json not found: is libstrata.so preloaded?\n");
    return 1;
  }
  void *keep[1000];
  for (int i = 0; i < 1000; ++i) keep[i] = malloc((size_t)i * 7);
  void *big = malloc(3 << 20);
  static char buf[1 << 20];
  /* No allocation between the two calls: the figures must agree exactly. */
  struct mallinfo2 mi = mallinfo2();
  size_t n = stats_json(buf, sizeof buf);
  if (n >= sizeof buf) return 1;
  fputs(buf, stdout);
  /* mallinfo2 on stderr, for the test to compare with the JSON. */
  fprintf(stderr, "{\"uordblks\": %zu, \"hblkhd\": %zu, \"hblks\": %zu, \"arena\": %zu}\n", mi.uordblks,
          mi.hblkhd, mi.hblks, mi.arena);
  for (int i = 0; i < 1000; ++i) free(keep[i]);
  free(big);
  return 0;
}
