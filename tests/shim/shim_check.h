/* Minimal C test harness for the libstrata.so conformance tests.
 *
 * CHECK(expr) / CHECKF(expr, fmt, ...) count passes and failures and print
 * file:line plus the expression (and the formatted detail) for failures.
 * shim_finish() prints "N passed, M failed" and returns the exit status.
 *
 * shim_require_strata() proves that libstrata.so is really in effect (mapped
 * into the process, exporting strata_malloc, and providing malloc and free);
 * otherwise the test fails
 * at once, so it can never pass vacuously against glibc. Setting
 * STRATA_TEST_ALLOW_NATIVE=1 turns that failure into a warning, so the same
 * binaries can be checked against glibc during development; strata-specific
 * checks then consult shim_native (1 = running without strata).
 *
 * Also: sleep_ms(), and /proc readers that neither malloc nor use stdio
 * (read_proc, proc_field, proc_threads), shared with tests/purge.
 */
#ifndef STRATA_TESTS_SHIM_CHECK_H
#define STRATA_TESTS_SHIM_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_long shim_passed;
static atomic_long shim_failed;
static int shim_native; /* 1 when running without libstrata.so */

#define SHIM_MAX_REPORTS 200

static inline void shim_report(const char *file, int line, const char *expr,
                        const char *detail) {
  long n = atomic_fetch_add(&shim_failed, 1);
  if (n < SHIM_MAX_REPORTS)
    fprintf(stderr, "%s:%d: CHECK failed: %s%s%s\n", file, line, expr,
            detail[0] ? " -- " : "", detail);
  else if (n == SHIM_MAX_REPORTS)
    fprintf(stderr, "(further failures not printed)\n");
  fflush(stderr);
}

#define CHECK(expr)                                                          \
  do {                                                                       \
    if (expr)                                                                \
      atomic_fetch_add(&shim_passed, 1);                                     \
    else                                                                     \
      shim_report(__FILE__, __LINE__, #expr, "");                            \
  } while (0)

#define CHECKF(expr, ...)                                                    \
  do {                                                                       \
    if (expr) {                                                              \
      atomic_fetch_add(&shim_passed, 1);                                     \
    } else {                                                                 \
      char shim_detail_[512];                                                \
      snprintf(shim_detail_, sizeof shim_detail_, __VA_ARGS__);              \
      shim_report(__FILE__, __LINE__, #expr, shim_detail_);                  \
    }                                                                        \
  } while (0)

/* Returns 1 when /proc/self/maps names a mapping of libstrata.so. */
static inline int shim_strata_mapped(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return 0;
  char line[4096];
  int found = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "libstrata.so")) {
      found = 1;
      break;
    }
  fclose(f);
  return found;
}

/* 1 if the symbol that the global lookup finds for name lives in a file whose
 * path contains libstrata.so; *where gets that file (or a reason). */
static inline int shim_symbol_in_strata(const char *name, const char **where) {
  void *sym = dlsym(RTLD_DEFAULT, name);
  *where = "(not found)";
  if (!sym)
    return 0;
  Dl_info info;
  if (!dladdr(sym, &info) || !info.dli_fname) {
    *where = "(dladdr failed)";
    return 0;
  }
  *where = info.dli_fname;
  return strstr(info.dli_fname, "libstrata.so") != NULL;
}

/* strata is in effect when libstrata.so is mapped, exports strata_malloc,
 * and is where the process's malloc and free come from. */
static inline void shim_require_strata(const char *test_name) {
  int mapped = shim_strata_mapped();
  int exported = dlsym(RTLD_DEFAULT, "strata_malloc") != NULL;
  const char *malloc_from, *free_from;
  int owns_malloc = shim_symbol_in_strata("malloc", &malloc_from);
  int owns_free = shim_symbol_in_strata("free", &free_from);
  if (mapped && exported && owns_malloc && owns_free) {
    printf("%s: libstrata.so is in effect\n", test_name);
    return;
  }
  const char *allow = getenv("STRATA_TEST_ALLOW_NATIVE");
  fprintf(stderr,
          "%s: libstrata.so is NOT in effect (mapped in /proc/self/maps: %s, "
          "dlsym(\"strata_malloc\"): %s, malloc from %s, free from %s)\n",
          test_name, mapped ? "yes" : "no", exported ? "found" : "missing",
          malloc_from, free_from);
  if (allow && strcmp(allow, "1") == 0) {
    fprintf(stderr, "%s: WARNING: STRATA_TEST_ALLOW_NATIVE=1, testing the "
                    "native allocator instead\n", test_name);
    shim_native = 1;
    return;
  }
  fprintf(stderr, "%s: FATAL: run under LD_PRELOAD=libstrata.so\n", test_name);
  printf("0 passed, 1 failed\n");
  exit(1);
}

static inline int shim_finish(void) {
  long p = atomic_load(&shim_passed), f = atomic_load(&shim_failed);
  fflush(stderr);
  printf("%ld passed, %ld failed\n", p, f);
  fflush(stdout);
  return f == 0 ? 0 : 1;
}

/* A hang becomes a failure: `seconds` after this, `what` goes to stderr and
 * the process exits with 1 (alarm(0) cancels). */
static const char *shim_hang_what;
static inline void shim_on_alarm(int sig) {
  (void)sig;
  ssize_t w = write(2, shim_hang_what, strlen(shim_hang_what));
  (void)w;
  _exit(1);
}
static inline void shim_hang_guard(unsigned seconds, const char *what) {
  shim_hang_what = what;
  signal(SIGALRM, shim_on_alarm);
  alarm(seconds);
}

/* Small deterministic PRNG (xorshift64*), one state per user. */
static inline uint64_t shim_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 2685821657736338717ull;
}

/* Byte pattern depending on position and seed; catches shifted copies. */
static inline unsigned char shim_pat(size_t i, unsigned seed) {
  return (unsigned char)(seed + i * 31u + (i >> 8) * 7u + (i >> 16) * 13u);
}

static inline void shim_fill(void *p, size_t n, unsigned seed) {
  unsigned char *b = (unsigned char *)p;
  for (size_t i = 0; i < n; i++)
    b[i] = shim_pat(i, seed);
}

/* Returns the index of the first wrong byte, or (size_t)-1 if all match. */
static inline size_t shim_verify(const void *p, size_t n, unsigned seed) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != shim_pat(i, seed))
      return i;
  return (size_t)-1;
}

/* Hides a constant from the optimizer (avoids -Walloc-size-larger-than and
 * lets huge requests reach the allocator). */
static inline size_t shim_opaque(size_t v) {
  volatile size_t x = v;
  return x;
}

/* strata_stats_json() of the preloaded libstrata.so into buf: the length
 * it needs (>= len: cut short), or (size_t)-1 when strata is not there. */
static inline size_t shim_stats_json(char *buf, size_t len) {
  size_t (*stats_json)(char *, size_t) = (size_t(*)(char *, size_t))(
      uintptr_t)dlsym(RTLD_DEFAULT, "strata_stats_json");
  return stats_json ? stats_json(buf, len) : (size_t)-1;
}

/* The first number after "key": in a JSON document (or its part from doc
 * on), or -1 when the key is not there (or doc is NULL). */
static inline long long shim_json_number(const char *doc, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = doc ? strstr(doc, pat) : NULL;
  if (!p)
    return -1;
  p += strlen(pat);
  while (*p == ' ')
    p++;
  return strtoll(p, NULL, 10);
}

/* Sleeps ms milliseconds, resuming after signals. */
static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- /proc readers: open/read/close only, no stdio, no malloc ---- */

static char g_procbuf[16384];

static inline int read_proc(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, g_procbuf + len, sizeof g_procbuf - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
    if (len == sizeof g_procbuf - 1)
      break;
  }
  close(fd);
  g_procbuf[len] = '\0';
  return (int)len;
}

/* Value of the "key:" line of g_procbuf (a number, as written), or -1. */
static inline long long proc_field(const char *key) {
  size_t klen = strlen(key);
  for (const char *line = g_procbuf; *line;) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      const char *v = line + klen + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      long long x = 0;
      int digits = 0;
      while (*v >= '0' && *v <= '9') {
        x = x * 10 + (*v++ - '0');
        digits++;
      }
      return digits ? x : -1;
    }
    const char *nl = strchr(line, '\n');
    if (!nl)
      break;
    line = nl + 1;
  }
  return -1;
}

/* Threads of this process, from /proc/self/status; -1 if unreadable. */
static inline long proc_threads(void) {
  if (read_proc("/proc/self/status") <= 0)
    return -1;
  return (long)proc_field("Threads");
}

#endif /* STRATA_TESTS_SHIM_CHECK_H */
