/* rusage_exec: run a program and report its peak RSS, exit status and time.
 *
 *   rusage_exec REPORT_FILE program [args...]
 *
 * `tools/strata bench` starts every measured program through this small
 * helper instead of straight from Python. ru_maxrss of a process counts the
 * memory image it had before exec: a child forked from the Python runner
 * would report the runner's ~20 MiB as its peak. Forked from this helper, the
 * floor is the helper's own ~1 MiB.
 *
 * If STRATA_BENCH_PRELOAD is set, the child (only) gets LD_PRELOAD set to it,
 * so the allocator under test is not loaded into this helper.
 *
 * SIGTERM, SIGINT and SIGHUP are forwarded to the child. When the child has
 * ended, REPORT_FILE gets one line:
 *   status=<raw wait status> maxrss_kb=<ru_maxrss> wall_s=<s> user_s=<s> sys_s=<s>
 * and the helper exits 0 (the child's own status is in the report).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile pid_t child = -1;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rusage_exec REPORT_FILE program [args...]\n");
    return 125;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) {
    perror("rusage_exec: fork");
    return 125;
  }
  if (pid == 0) {
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    const char *preload = getenv("STRATA_BENCH_PRELOAD");
    if (preload != NULL) {
      if (*preload != '\0') setenv("LD_PRELOAD", preload, 1);
      unsetenv("STRATA_BENCH_PRELOAD");
    }
    execvp(argv[2], argv + 2);
    fprintf(stderr, "rusage_exec: cannot run %s: %s\n", argv[2], strerror(errno));
    _exit(127);
  }
  child = pid;
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("rusage_exec: wait4");
      return 125;
    }
  }
  double t1 = now();
  FILE *f = fopen(argv[1], "w");
  if (f == NULL) {
    perror("rusage_exec: report file");
    return 125;
  }
  fprintf(f, "status=%d maxrss_kb=%ld wall_s=%.6f user_s=%.6f sys_s=%.6f\n", status, ru.ru_maxrss,
          t1 - t0, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
  fclose(f);
  return 0;
}
