/* A thread whose first malloc comes in the last round of pthread key
 * destructors, run under LD_PRELOAD=libstrata.so.
 *
 * glibc runs key destructors for at most PTHREAD_DESTRUCTOR_ITERATIONS (4)
 * rounds. A destructor that sets its key again three times, then
 * allocates, gives that thread its first malloc in the last round: strata
 * registers its cache and sets its own key, and glibc runs no further
 * round, so the cache is never taken out of the registry. The next thread
 * gets the same stack, TLS included (glibc caches stacks), with its links
 * zeroed. strata linked it in again: a cycle, and mallinfo2() (any
 * statistics snapshot) looped for ever. alarm(10) turns a hang into a
 * failure. Several rounds, with other threads alive around them.
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_key_t key;
static __thread int rounds;

static void dtor(void *v) {
  if (++rounds < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(key, v);
    return;
  }
  void *volatile p = malloc(32); /* this thread's first malloc: round 4 */
  free(p);
}

static void *late(void *arg) {
  (void)arg;
  pthread_setspecific(key, (void *)1);
  return NULL;
}

static void *normal(void *arg) {
  (void)arg;
  void *volatile p = malloc(32);
  free(p);
  return NULL;
}

static atomic_int stop;
static void *background(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    void *volatile p = malloc(64);
    free(p);
    usleep(100);
  }
  return NULL;
}

int main(void) {
  shim_require_strata("shim_tsd_last_round");
  shim_hang_guard(10, "shim_tsd_last_round: HANG: mallinfo2() loops over "
                      "the thread registry\n");
  CHECK(pthread_key_create(&key, dtor) == 0);
  pthread_t bg[2];
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&bg[i], NULL, background, NULL) == 0);
  for (int round = 0; round < 8; round++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, late, NULL) == 0);
    pthread_join(t, NULL);
    CHECK(pthread_create(&t, NULL, normal, NULL) == 0); /* the same stack */
    pthread_join(t, NULL);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.uordblks > 0);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++)
    pthread_join(bg[i], NULL);
  struct mallinfo2 mi = mallinfo2();
  CHECK(mi.uordblks > 0);
  malloc_stats();
  alarm(0);
  return shim_finish();
}
