/* A libc function that fails, preloaded before libstrata.so so that
 * strata's call binds to it: the failures strata cannot recover from (or
 * warns about) without a machine that really fails that way.
 * Built once per FAKE_* definition (tests/misuse/CMakeLists.txt):
 *
 *   FAKE_PAGE_SIZE      getauxval(AT_PAGESZ) says 64 KiB pages
 *   FAKE_NO_KEY         pthread_key_create fails (EAGAIN: no keys left)
 *   FAKE_NO_THREAD      pthread_create fails (EAGAIN)
 *
 * None of them allocates: they run inside strata's initialisation. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sys/auxv.h>

#if defined(FAKE_PAGE_SIZE)
unsigned long __getauxval(unsigned long type); /* glibc's, exported */

unsigned long getauxval(unsigned long type) {
  if (type == AT_PAGESZ) return 64 << 10;
  return __getauxval(type);
}
#elif defined(FAKE_NO_KEY)
int pthread_key_create(pthread_key_t *key, void (*destructor)(void *)) {
  (void)key;
  (void)destructor;
  return EAGAIN;
}
#elif defined(FAKE_NO_THREAD)
int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*start)(void *), void *arg) {
  (void)t;
  (void)attr;
  (void)start;
  (void)arg;
  return EAGAIN;
}
#else
#error "define one FAKE_*"
#endif
