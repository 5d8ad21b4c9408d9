/* fork() while other threads hold glibc's stdio locks, run under
 * LD_PRELOAD=libstrata.so.
 *
 * glibc's fork() runs the atfork handlers (strata's take every allocator
 * lock), then takes its stdio list lock. Three threads:
 *   - a reader in getdelim() on a slow stream holds that stream's lock and,
 *     once its read returns a long line, reallocs the line (malloc under a
 *     stream lock);
 *   - a flusher in fflush(NULL) holds the list lock and waits for the
 *     reader's stream;
 *   - the main thread forks meanwhile.
 * With the allocator's locks taken before the list lock, the three waited
 * for each other for ever (strata before it took the list lock first, as
 * glibc's own malloc does). alarm(10) turns a hang into a failure. Repeated
 * a few times, with the fork at different moments of the read.
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int in_read;
static atomic_int reads;
static long delay_us;

static ssize_t slow_read(void *cookie, char *buf, size_t size) {
  (void)cookie;
  int n = atomic_fetch_add(&reads, 1);
  if (n == 0) {
    atomic_store(&in_read, 1);
    usleep((useconds_t)delay_us);
    memset(buf, 'a', size); /* a long line: getdelim reallocs */
    return (ssize_t)size;
  }
  if (n == 1) {
    buf[0] = '\n';
    return 1;
  }
  return 0;
}

static void *reader(void *fp) {
  size_t n = 16;
  char *line = malloc(n);
  ssize_t got = getdelim(&line, &n, '\n', fp);
  free(line);
  return (void *)got;
}

static void *flusher(void *arg) {
  (void)arg;
  while (!atomic_load(&in_read))
    usleep(1000);
  usleep((useconds_t)(delay_us / 6));
  fflush(NULL);
  return NULL;
}

int main(void) {
  shim_require_strata("shim_fork_stdio");
  shim_hang_guard(10, "shim_fork_stdio: DEADLOCK: fork(), getdelim() and "
                      "fflush(NULL) all waiting\n");
  static const long delays_us[] = {300000, 100000, 30000};
  for (size_t round = 0; round < sizeof delays_us / sizeof delays_us[0];
       round++) {
    delay_us = delays_us[round];
    atomic_store(&in_read, 0);
    atomic_store(&reads, 0);
    cookie_io_functions_t io = {.read = slow_read};
    FILE *fp = fopencookie(NULL, "r", io);
    CHECK(fp != NULL);
    if (!fp)
      break;
    pthread_t a, b;
    CHECK(pthread_create(&a, NULL, reader, fp) == 0);
    CHECK(pthread_create(&b, NULL, flusher, NULL) == 0);
    while (!atomic_load(&in_read))
      usleep(1000);
    usleep((useconds_t)(delay_us / 2)); /* the flusher waits on the stream */
    pid_t pid = fork();
    if (pid == 0) {
      void *p = malloc(100);
      _exit(p ? 0 : 1);
    }
    CHECK(pid > 0);
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "round %zu: the child's status %d", round, status);
    void *got = NULL;
    pthread_join(a, &got);
    pthread_join(b, NULL);
    CHECKF((ssize_t)got > 0, "round %zu: getdelim returned %zd", round,
           (ssize_t)got);
    fclose(fp);
  }
  alarm(0);
  return shim_finish();
}
