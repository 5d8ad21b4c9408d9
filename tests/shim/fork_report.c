/* fork() while strata's STRATA_STATS_INTERVAL_MS thread writes a report,
 * run under LD_PRELOAD=libstrata.so with STRATA_STATS_INTERVAL_MS=1
 * STRATA_STATS_FILE=/dev/null (see CMakeLists.txt).
 *
 * The interval thread holds the report lock while it takes a snapshot; a
 * child forked then inherited the lock held, and its malloc_stats() (and
 * exit report) printed nothing: 2 of 200 children before the shim's fork
 * handlers took that lock too. Each child here writes malloc_stats() into
 * a pipe; every one must have written something.
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  shim_require_strata("shim_fork_report");
  enum { FORKS = 300 };
  int silent = 0;
  for (int i = 0; i < FORKS; ++i) {
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(fd[0]);
      dup2(fd[1], 2);
      alarm(10);
      malloc_stats();
      _exit(0);
    }
    CHECK(pid > 0);
    close(fd[1]);
    char buf[256];
    ssize_t n = read(fd[0], buf, sizeof buf);
    close(fd[0]);
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %d", i, status);
    if (n <= 0)
      ++silent;
    usleep(300);
  }
  CHECKF(silent == 0, "%d of %d children: malloc_stats() printed nothing", silent, FORKS);
  return shim_finish();
}
