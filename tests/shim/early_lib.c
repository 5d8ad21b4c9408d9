/* A library preloaded beside libstrata.so whose constructor allocates (and
 * starts a thread that allocates) before strata's own constructor may have
 * run: strata must initialise lazily on that first call. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void *early_block;
int early_thread_ok;

static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < 10000; ++i) {
    char *p = malloc((size_t)(i % 500) + 1);
    p[0] = 1;
    free(p);
  }
  early_thread_ok = 1;
  return NULL;
}

__attribute__((constructor(101))) static void early_init(void) {
  early_block = malloc(1000);
  memset(early_block, 7, 1000);
  void *p = calloc(10, 100);
  free(p);
  p = aligned_alloc(4096, 8192);
  free(p);
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) == 0) pthread_join(t, NULL);
}
