/* Run with LD_PRELOAD listing early_lib.so and libstrata.so (either order):
 * the block early_lib's constructor allocated must be intact and freeable,
 * and allocation must keep working. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  unsigned char *block = *(void **)dlsym(RTLD_DEFAULT, "early_block");
  int *thread_ok = dlsym(RTLD_DEFAULT, "early_thread_ok");
  size_t (*usable)(const void *) = (size_t (*)(const void *))dlsym(RTLD_DEFAULT, "strata_usable_size");
  if (block == NULL || thread_ok == NULL || usable == NULL) {
    fprintf(stderr, "FAIL: early_lib.so or libstrata.so not preloaded\n");
    return 1;
  }
  int failures = 0;
  for (int i = 0; i < 1000; ++i) failures += block[i] != 7;
  if (usable(block) < 1000) ++failures;  /* strata owns the early block */
  if (!*thread_ok) ++failures;
  free(block);
  void *p = dlopen("libm.so.6", RTLD_NOW);  /* the loader allocates too */
  if (p != NULL) dlclose(p);
  for (int i = 0; i < 100000; ++i) free(malloc((size_t)i % 4096));
  printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
  return failures != 0;
}
