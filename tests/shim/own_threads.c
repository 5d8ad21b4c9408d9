/* What strata's own thread (the background purger) may do to a program.
 *
 * 1. A program that frees little never gets one: it stays single-threaded
 *    (unshare(CLONE_NEWUSER), a sandbox's zygote, gdb's view of it, and
 *    libstdc++'s single-threaded shortcuts depend on that).
 * 2. Once the program has handed out enough to start it, the purger
 *    blocks every signal: a signal the program sends itself, with the
 *    signal blocked in its own thread and waited for with sigtimedwait,
 *    must reach that wait. An unblocked purger would take it instead and
 *    die of it (SIGUSR1's default action ends the process).
 * 3. A handled signal that every thread of the program blocks stays
 *    pending until the program unblocks it, and its handler then runs in
 *    the program's thread, never in strata's.
 */
#include "shim_check.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* Allocates `bytes` in objects of `size` and frees them all. */
static void churn(size_t bytes, size_t size) {
  size_t n = bytes / size;
  void **p = malloc(n * sizeof *p);
  CHECK(p != NULL);
  if (!p)
    return;
  for (size_t i = 0; i < n; i++) {
    p[i] = malloc(size);
    CHECK(p[i] != NULL);
    if (p[i])
      memset(p[i], 1, size);
  }
  for (size_t i = 0; i < n; i++)
    free(p[i]);
  free(p);
}

/* Waits up to 2 s for the thread count to reach `want`. */
static long wait_threads(long want) {
  long n = proc_threads();
  for (int i = 0; i < 200 && n != want; i++) {
    sleep_ms(10);
    n = proc_threads();
  }
  return n;
}

static volatile sig_atomic_t handled_in_main;
static volatile sig_atomic_t handled_elsewhere;
static pthread_t main_thread;

static void on_usr2(int sig) {
  (void)sig;
  if (pthread_equal(pthread_self(), main_thread))
    handled_in_main = 1;
  else
    handled_elsewhere = 1;
}

int main(void) {
  shim_require_strata("shim_own_threads");
  main_thread = pthread_self();

  /* 1: a small program stays single-threaded. */
  for (int round = 0; round < 50; round++)
    churn(64 << 10, 48);
  churn(1 << 20, 200 << 10); /* a few large objects as well */
  sleep_ms(50);
  CHECKF(proc_threads() == 1 || shim_native,
         "after freeing 4 MiB in all, /proc/self/status says Threads: %ld",
         proc_threads());

  /* 2: enough to start the purger, then a blocked signal waited for. */
  churn(64 << 20, 4096);
  churn(64 << 20, 64);
  long n = wait_threads(2);
  CHECKF(n == 2 || shim_native,
         "after freeing 128 MiB the purger should run: Threads: %ld", n);

  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  CHECK(pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0);
  for (int i = 0; i < 20; i++) {
    CHECK(kill(getpid(), SIGUSR1) == 0);
    struct timespec wait = {5, 0};
    siginfo_t info;
    int got = sigtimedwait(&usr1, &info, &wait);
    CHECKF(got == SIGUSR1, "round %d: sigtimedwait returned %d", i, got);
    churn(1 << 20, 1024); /* keep the purger busy between rounds */
  }

  /* 3: a handled signal, blocked, waits for the program's thread. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  CHECK(pthread_sigmask(SIG_BLOCK, &usr2, NULL) == 0);
  CHECK(kill(getpid(), SIGUSR2) == 0);
  sleep_ms(100);
  CHECKF(!handled_elsewhere, "SIGUSR2's handler ran in a thread of strata's");
  CHECK(!handled_in_main);
  CHECK(pthread_sigmask(SIG_UNBLOCK, &usr2, NULL) == 0);
  CHECK(handled_in_main);
  CHECK(!handled_elsewhere);
  return shim_finish();
}
