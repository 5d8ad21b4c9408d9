/* Giving memory back, seen from outside: run under LD_PRELOAD=libstrata.so
 * (issue #8). One program, one mode per ctest entry (argv[1]):
 *
 *   small   128 MiB of small objects (64..4000 bytes, mixed) are touched,
 *           freed, and the program goes idle: the background purger must
 *           return at least 90% of what they added to the resident set.
 *   large   the same with 16 large objects of 4 MiB (strata may cache the
 *           mappings for reuse, and must unmap them after the decay time).
 *   trim    STRATA_BACKGROUND=0 STRATA_DECAY_MS=-1: an idle program keeps
 *           its free memory (1 s), then malloc_trim(0) returns 1 and gives
 *           it back; again with strata_release() (found with dlsym).
 *   fork    a big object set, three threads allocating, fork(): each child
 *           frees its copy and its own background purger gives it back;
 *           the parent then does the same. A hung child fails the test.
 *   reuse   half of the objects are freed and purged while the other half
 *           stays live (and must stay intact); calloc of the purged sizes
 *           gives zeroes; after everything is purged, malloc'd memory takes
 *           and keeps a pattern.
 *   park    once everything freed went back, the purger stops waking (it
 *           sleeps until a free wakes it: an idle program is not woken by
 *           its allocator); a second round of frees wakes it, it gives that
 *           memory back too, and sleeps again.
 *   forkrelease  STRATA_BACKGROUND=0 STRATA_DECAY_MS=-1: a thread gives
 *           256 MiB back with strata_release() (block by block, the page
 *           heap's lock dropped around each madvise) while the main thread
 *           forks. In each child the blocks that thread was giving back
 *           must be back on the free lists: the child's own
 *           strata_release() leaves no free page resident (statistics),
 *           and it can allocate.
 *   growth  STRATA_DECAY_MS=60000 (nothing goes back by decay here): 64 MiB
 *           of small objects are freed and the program stays below its
 *           peak for 300 ms: the page heap keeps the memory resident (the
 *           statistics). Then the program grows by memory of its own
 *           (mmap, 1 MiB every 2 ms) without allocating: the purger sees
 *           the peak grow with no new pages of strata's and gives the
 *           freed memory back (purger.growth_releases, and the page heap's
 *           resident free bytes, down to a tenth), and the pages inside
 *           48 KiB objects freed among live ones (all but their first).
 *
 * What "resident" means, measured without allocating:
 *   - the program's effective resident set: Rss - LazyFree from
 *     /proc/self/smaps_rollup (a page-table walk, exact; LazyFree counts
 *     pages given back with MADV_FREE, which stay in Rss until the kernel
 *     reclaims them), and
 *   - with STRATA_RELEASE=dontneed (the default), the resident pages of the
 *     freed objects themselves, with mincore().
 * Freed memory counts as returned when the effective Rss is down by 90% of
 * what the objects added and (mincore) at most 10% of their pages are still
 * resident. Memory is polled every 50 ms; the 20 s deadline is only a hang
 * guard, and the time it took is printed.
 *
 * All bookkeeping (pointer arrays, page ranges) lives in mmap'd memory,
 * touched before the baseline, so that it neither comes from the allocator
 * under test nor moves the resident set while it is measured.
 */
#define _GNU_SOURCE
#include "purge_common.h"

#include <dirent.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* ---- 1 and 2: an idle program gets its memory back ---- */

static int run_idle(const char *name, size_t small, size_t nlarge,
                    size_t large) {
  setup(name, VEC_PAGES);
  require_background();
  struct objset s;
  set_init(&s, MAX_OBJECTS);
  struct sample base, full, after;
  take(&base, NULL);
  set_alloc(&s, small, nlarge, large, 0x9e3779b97f4a7c15ull);
  set_compute_pages(&s);
  take(&full, &s);
  long long added = full.rss - base.rss;
  CHECK(set_verify(&s, "before free") == 0);
  set_free(&s); /* in allocation order; purge_random_free.c: random */
  wait_returned("idle after free", &full, added, &s, &after);
  long th = proc_threads();
  CHECKF(th == 2,
         "expected the main thread and the background purger, "
         "/proc/self/status says Threads: %ld",
         th);
  return shim_finish();
}

/* The statistics as JSON now, in a static buffer (a failed check if they
 * do not fit). */
static const char *stats_now(const char *what) {
  static char doc[1 << 16];
  size_t need = shim_stats_json(doc, sizeof doc);
  CHECKF(need < sizeof doc, "%s: strata_stats_json needs %zu bytes", what,
         need);
  return doc;
}

/* ---- 6: the purger sleeps while there is nothing to give back ---- */

/* The thread of this process that is not the main one (strata's purger),
 * or 0. */
static long other_tid(void) {
  long self = (long)getpid(), found = 0;
  /* getdents64 rather than opendir, which allocates. */
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[4096] __attribute__((aligned(8)));
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0)
      break;
    for (long off = 0; off < n;) {
      const struct dirent64 *d = (const struct dirent64 *)(buf + off);
      long tid = strtol(d->d_name, NULL, 10);
      if (tid > 0 && tid != self)
        found = tid;
      off += d->d_reclen;
    }
  }
  close(fd);
  return found;
}

/* How often thread `tid` has gone to sleep (voluntary context switches),
 * or -1. */
static long long sleeps_of(long tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%ld/status", tid);
  if (read_proc(path) <= 0)
    return -1;
  return proc_field("voluntary_ctxt_switches");
}

/* Waits (hang guard: kDeadlineMs) until thread `tid` has not woken for a
 * whole second; returns the ms it took, or -1. A purger that keeps its
 * period wakes 4 times per decay time (here 20 times a second). */
static long long wait_parked(long tid, const char *what) {
  uint64_t t0 = now_ms();
  long long last = sleeps_of(tid);
  uint64_t still_since = now_ms();
  while (now_ms() - t0 < kDeadlineMs) {
    sleep_ms(100);
    long long n = sleeps_of(tid);
    if (n != last) {
      last = n;
      still_since = now_ms();
    } else if (now_ms() - still_since >= 1000) {
      printf("%s: %s: the purger sleeps for good %llu ms after the memory "
             "went back (%lld wake-ups in all)\n",
             g_name, what, (unsigned long long)(still_since - t0), n);
      fflush(stdout);
      return (long long)(still_since - t0);
    }
  }
  return -1;
}

static int run_park(void) {
  setup("purge_park", VEC_PAGES);
  require_background();
  for (int round = 0; round < 2; round++) {
    const char *what = round == 0 ? "first round" : "after waking";
    struct objset s;
    set_init(&s, MAX_OBJECTS);
    struct sample base, full, after;
    take(&base, NULL);
    set_alloc(&s, SMALL_BYTES / 4, 2, 4 << 20, 0x51ed2701u + (uint64_t)round);
    set_compute_pages(&s);
    take(&full, &s);
    long long before = -1;
    long tid = other_tid();
    if (round == 1) {
      CHECKF(tid != 0, "%s: the purger's thread is gone", what);
      before = sleeps_of(tid);
    }
    set_free(&s);
    /* An idle program: only the purger can give this back. */
    wait_returned(what, &full, full.rss - base.rss, &s, &after);
    tid = other_tid();
    CHECKF(tid != 0, "%s: no purger thread (Threads: %ld)", what,
           proc_threads());
    if (tid == 0)
      break;
    if (round == 1)
      CHECKF(sleeps_of(tid) > before,
             "%s: the parked purger gave memory back without waking "
             "(%lld wake-ups before, %lld after)",
             what, before, sleeps_of(tid));
    CHECKF(wait_parked(tid, what) >= 0,
           "%s: the purger still wakes every period %llu ms after there "
           "was nothing left to give back (%lld wake-ups)",
           what, (unsigned long long)kDeadlineMs, sleeps_of(tid));
    /* The statistics say so too. */
    const char *doc = stats_now(what);
    const char *purger = strstr(doc, "\"purger\":");
    CHECKF(purger && strstr(purger, "\"state\":\"parked\""),
           "%s: the statistics' purger object is not parked: %.80s", what,
           purger ? purger : "(none)");
    CHECKF(shim_json_number(purger, "parks") >= round + 1,
           "%s: the statistics count %lld parks, expected at least %d", what,
           shim_json_number(purger, "parks"), round + 1);
  }
  return shim_finish();
}

/* ---- 3: no purger; malloc_trim and strata_release ---- */

typedef size_t (*release_fn)(void);

/* For the modes where memory goes back only on request
 * (STRATA_DECAY_MS=-1 STRATA_BACKGROUND=0): strata_release(), found with
 * dlsym, or NULL (a failed check). */
static release_fn require_release_on_request(void) {
  CHECKF(env_ll("STRATA_DECAY_MS", 500) == -1 &&
             env_ll("STRATA_BACKGROUND", 1) == 0,
         "this mode needs STRATA_DECAY_MS=-1 STRATA_BACKGROUND=0");
  release_fn release =
      (release_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "strata_release");
  CHECK(release != NULL);
  return release;
}

static int run_trim(void) {
  setup("purge_trim", VEC_PAGES);
  release_fn release = require_release_on_request();

  for (int round = 0; round < 2; round++) {
    const char *how = round == 0 ? "malloc_trim(0)" : "strata_release()";
    struct objset s;
    set_init(&s, MAX_OBJECTS);
    struct sample base, full, idle, after;
    take(&base, NULL);
    set_alloc(&s, SMALL_BYTES, 4, 4 << 20, 0x1234567ull + (uint64_t)round);
    set_compute_pages(&s);
    take(&full, &s);
    long long added = full.rss - base.rss;
    set_free(&s);
    sleep_ms(1000);
    take(&idle, &s);
    /* Nothing may have given memory back by itself. */
    CHECKF(idle.rss >= full.rss - added / 10 &&
               idle.pages * 10 >= full.pages * 9,
           "%s round: without a purger, Rss went %lld -> %lld after 1 s idle "
           "(objects added %lld), resident pages %zu -> %zu",
           how, full.rss, idle.rss, added, full.pages, idle.pages);
    long th = proc_threads();
    CHECKF(th == 1, "STRATA_BACKGROUND=0, yet Threads: %ld", th);
    size_t released = 0;
    if (round == 0) {
      int r = malloc_trim(0);
      CHECKF(r == 1, "malloc_trim(0) returned %d", r);
    } else if (release) {
      released = release();
      CHECKF(released >= (size_t)added * 9 / 10,
             "strata_release() returned %zu, the objects added %lld", released,
             added);
    }
    take(&after, &s);
    long long back = full.rss - after.rss;
    printf("%s: %s: %.1f MiB added, %.1f MiB still resident after 1 s idle, "
           "%.1f MiB (%.1f%%) returned at once",
           g_name, how, added / MIB, (idle.rss - base.rss) / MIB, back / MIB,
           added > 0 ? 100.0 * (double)back / (double)added : 0.0);
    if (round == 1)
      printf(" (it says %.1f MiB)", (double)released / MIB);
    printf("; resident pages %zu -> %zu\n", full.pages, after.pages);
    fflush(stdout);
    CHECKF(returned(&after, &full, added, &s),
           "%s: Rss %lld -> %lld (objects added %lld), resident pages %zu -> "
           "%zu",
           how, full.rss, after.rss, added, full.pages, after.pages);
  }
  /* Everything is back already: nothing left to trim. */
  int r = malloc_trim(0);
  CHECKF(r == 0, "malloc_trim(0) with nothing left to give returned %d", r);
  return shim_finish();
}

/* ---- 4: fork ---- */

enum { WORKERS = 3, CHILDREN = 4, SLOTS = 128 };

static atomic_int g_stop;
static atomic_long g_worker_errors;

static void *worker(void *arg) {
  uint64_t rng = 0x51ed2701u + (uint64_t)(uintptr_t)arg * 7919u;
  unsigned char *slot[SLOTS] = {0};
  size_t len[SLOTS] = {0};
  while (!atomic_load(&g_stop)) {
    uint64_t r = shim_rand(&rng);
    size_t i = (size_t)(r % SLOTS);
    if (slot[i]) {
      if (slot[i][0] != (unsigned char)i ||
          slot[i][len[i] - 1] != (unsigned char)i)
        atomic_fetch_add(&g_worker_errors, 1);
      free(slot[i]);
    }
    size_t n = (r >> 32) % 64 == 0 ? (size_t)300 << 10
                                   : 16 + (size_t)((r >> 16) % 8192);
    slot[i] = malloc(n);
    len[i] = n;
    if (!slot[i]) {
      atomic_fetch_add(&g_worker_errors, 1);
      continue;
    }
    slot[i][0] = slot[i][n - 1] = (unsigned char)i;
  }
  for (size_t i = 0; i < SLOTS; i++)
    free(slot[i]);
  return NULL;
}

static void *child_thread(void *arg) {
  (void)arg;
  void *p[64];
  for (int i = 0; i < 64; i++) {
    p[i] = malloc((size_t)(i + 1) * 100);
    if (p[i])
      memset(p[i], i, (size_t)(i + 1) * 100);
  }
  for (int i = 0; i < 64; i++)
    free(p[i]);
  return (void *)1;
}

/* The child: its copy of the set is intact, it can allocate and start a
 * thread, and after freeing the set its own purger gives the pages back. */
static int child_main(struct objset *s, int k) {
  alarm(60); /* a deadlocked allocator ends the child with SIGALRM */
  char name[32];
  snprintf(name, sizeof name, "purge_fork child %d", k);
  g_name = name;
  struct sample full, after;
  take(&full, s);
  long long added = (long long)full.pages * PAGE;
  CHECK(set_verify(s, "child, after fork") == 0);
  pthread_t t;
  void *res = NULL;
  CHECK(pthread_create(&t, NULL, child_thread, NULL) == 0 &&
        pthread_join(t, &res) == 0 && res == (void *)1);
  set_free(s);
  wait_returned("idle after free", &full, added, s, &after);
  long f = atomic_load(&shim_failed);
  if (f)
    fprintf(stderr, "%s: %ld checks failed\n", name, f);
  return f == 0 ? 0 : 1;
}

static int run_fork(void) {
  setup("purge_fork", VEC_PAGES);
  require_background();
  struct objset s;
  set_init(&s, MAX_OBJECTS);
  set_alloc(&s, 64 << 20, 4, 4 << 20, 0xf0f0f0f0ull);
  set_compute_pages(&s);

  pthread_t w[WORKERS];
  for (long i = 0; i < WORKERS; i++)
    if (pthread_create(&w[i], NULL, worker, (void *)i) != 0) {
      fprintf(stderr, "purge_fork: pthread_create failed\n");
      return 1;
    }
  sleep_ms(20); /* the workers are running */

  /* The children start while the workers allocate, then run side by side
   * (the workers stop once the last one is forked). */
  pid_t pid[CHILDREN];
  int forked = 0;
  for (int k = 0; k < CHILDREN; k++) {
    fflush(stdout);
    fflush(stderr);
    pid[k] = fork();
    if (pid[k] < 0) {
      CHECKF(0, "fork: %s", strerror(errno));
      break;
    }
    if (pid[k] == 0) {
      int rc = child_main(&s, k);
      fflush(stdout);
      fflush(stderr);
      _exit(rc);
    }
    forked++;
    sleep_ms(5);
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < WORKERS; i++)
    pthread_join(w[i], NULL);
  CHECK(atomic_load(&g_worker_errors) == 0);

  uint64_t t0 = now_ms();
  for (int k = 0; k < forked; k++) {
    int st = 0;
    pid_t got = 0;
    while ((got = waitpid(pid[k], &st, WNOHANG)) == 0 && now_ms() - t0 < 90000)
      sleep_ms(10);
    if (got == 0) {
      kill(pid[k], SIGKILL);
      waitpid(pid[k], &st, 0);
      CHECKF(0, "child %d hung: killed after 90 s", k);
    } else {
      CHECKF(got == pid[k] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "child %d: %s %d", k,
             WIFSIGNALED(st) ? "killed by signal" : "exit status",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
  }

  /* The parent: same as the children. */
  struct sample full, after;
  take(&full, &s);
  long long added = (long long)full.pages * PAGE;
  CHECK(set_verify(&s, "parent, after the forks") == 0);
  set_free(&s);
  wait_returned("parent, idle after free", &full, added, &s, &after);
  return shim_finish();
}

/* ---- 5: purged pages come back zeroed, live ones stay intact ---- */

static int run_reuse(void) {
  setup("purge_reuse", VEC_PAGES);
  require_background();
  struct objset a, b, a_only;
  set_init(&a, MAX_OBJECTS);
  set_init(&b, MAX_OBJECTS);
  set_init(&a_only, 2 * MAX_OBJECTS);
  set_alloc(&a, 64 << 20, 4, 4 << 20, 0xaaaa5555ull);
  set_alloc(&b, 64 << 20, 4, 4 << 20, 0x5555aaaaull);
  set_compute_pages(&a);
  set_compute_pages(&b);
  /* pages only a's objects use: those can go back while b lives */
  a_only.n = a.n;
  memcpy(a_only.p, a.p, a.n * sizeof *a.p);
  memcpy(a_only.size, a.size, a.n * sizeof *a.size);
  set_compute_pages(&a_only);
  set_subtract_pages(&a_only, &b,
                     raw_alloc((a.n + b.n) * sizeof(struct range)));

  struct sample full, after;
  take(&full, &a_only);
  long long added = (long long)full.pages * PAGE;
  set_free(&a);
  wait_returned("half freed", &full, added, &a_only, &after);
  CHECK(set_verify(&b, "live half, after the other half was purged") == 0);

  /* calloc of the same sizes (same order): all zero, then writable. */
  size_t nonzero = 0;
  for (size_t i = 0; i < a.n; i++) {
    unsigned char *p = calloc(1, a.size[i]);
    if (!p)
      fail_oom(a.size[i]);
    for (size_t k = 0; k < a.size[i]; k++)
      if (p[k] != 0) {
        if (nonzero++ < 5)
          fprintf(stderr, "purge_reuse: calloc(1, %zu) = %p: byte %zu is %u\n",
                  a.size[i], (void *)p, k, p[k]);
        break;
      }
    shim_fill(p, a.size[i], (unsigned)i);
    a.p[i] = p;
  }
  CHECKF(nonzero == 0, "%zu of %zu calloc'd blocks were not zero", nonzero,
         a.n);
  /* The purger runs a few times with everything live: it must take
   * nothing away. */
  sleep_ms(env_ll("STRATA_DECAY_MS", 500) + 50);
  CHECK(set_verify(&a, "calloc'd half, after idling") == 0);
  CHECK(set_verify(&b, "live half, after idling") == 0);

  /* Everything freed and purged, then malloc'd again: takes a pattern. */
  struct objset all;
  set_init(&all, 2 * MAX_OBJECTS);
  memcpy(all.p, a.p, a.n * sizeof *a.p);
  memcpy(all.size, a.size, a.n * sizeof *a.size);
  memcpy(all.p + a.n, b.p, b.n * sizeof *b.p);
  memcpy(all.size + a.n, b.size, b.n * sizeof *b.size);
  all.n = a.n + b.n;
  set_compute_pages(&all);
  take(&full, &all);
  added = (long long)full.pages * PAGE;
  set_free(&all);
  wait_returned("all freed", &full, added, &all, &after);
  for (size_t i = 0; i < all.n; i++) {
    all.p[i] = malloc(all.size[i]);
    if (!all.p[i])
      fail_oom(all.size[i]);
    shim_fill(all.p[i], all.size[i], (unsigned)i);
  }
  sleep_ms(env_ll("STRATA_DECAY_MS", 500) + 50);
  CHECK(set_verify(&all, "malloc'd again after the purge") == 0);
  set_free(&all);
  return shim_finish();
}

/* ---- 7: fork() while another thread gives pages back ---- */

static release_fn g_release;
static atomic_int g_releasing;

static void *releaser(void *arg) {
  (void)arg;
  atomic_store(&g_releasing, 1);
  g_release();
  atomic_store(&g_releasing, 0);
  return NULL;
}

/* The child: what the parent's thread was giving back is free here, and
 * its own strata_release() gives it all back. Exit status 0 if so. */
static int forkrelease_child(char *doc, size_t doc_len) {
  alarm(10); /* a hang (a wait for a block no thread will bring back) kills it */
  g_release();
  size_t n = shim_stats_json(doc, doc_len);
  if (n == 0 || n >= doc_len)
    return 3;
  long long free_b = shim_json_number(doc, "page_heap_free_bytes");
  long long released = shim_json_number(doc, "released_bytes");
  if (free_b < 0 || released < 0)
    return 4;
  if (released != free_b) {
    fprintf(stderr,
            "%s: child: after strata_release(), %lld of %lld free bytes "
            "released\n",
            g_name, released, free_b);
    return 5;
  }
  void *p[64];
  for (int i = 0; i < 64; i++) {
    p[i] = malloc((size_t)64 << 10);
    if (!p[i])
      return 6;
    memset(p[i], i, (size_t)64 << 10);
  }
  for (int i = 0; i < 64; i++)
    free(p[i]);
  return 0;
}

static int run_forkrelease(void) {
  setup("purge_forkrelease", VEC_PAGES);
  g_release = require_release_on_request();
  if (!g_release)
    return shim_finish();
  enum { OBJECTS = 4096, MAX_CHILDREN = 24, ROUNDS = 8, WANTED = 4 };
  const size_t doc_len = (size_t)4 << 20;
  char *doc = raw_alloc(doc_len);
  void **objs = raw_alloc(OBJECTS * sizeof(void *));
  pid_t *kids = raw_alloc(MAX_CHILDREN * sizeof(pid_t));
  int during = 0, children = 0;
  for (int round = 0; round < ROUNDS && during < WANTED; round++) {
    for (int i = 0; i < OBJECTS; i++) {
      objs[i] = malloc((size_t)64 << 10);
      if (!objs[i])
        fail_oom((size_t)64 << 10);
      memset(objs[i], 1, (size_t)64 << 10);
    }
    for (int i = 0; i < OBJECTS; i++)
      free(objs[i]);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, releaser, NULL) == 0);
    while (atomic_load(&g_releasing) == 0)
      ;
    int nkids = 0;
    while (nkids < MAX_CHILDREN && atomic_load(&g_releasing) == 1) {
      pid_t pid = fork();
      if (pid == 0)
        _exit(forkrelease_child(doc, doc_len));
      CHECKF(pid > 0, "fork: %s", strerror(errno));
      if (pid <= 0)
        break;
      kids[nkids++] = pid;
      if (atomic_load(&g_releasing) == 1)
        during++; /* forked with the release under way on both sides of it */
      /* fork() takes every lock of strata's (ForkPrepare): forking again at
       * once starved the releasing thread, and every child was forked
       * before its first madvise. */
      sleep_ms(1);
    }
    pthread_join(t, NULL);
    for (int k = 0; k < nkids; k++) {
      int status = 0;
      CHECK(waitpid(kids[k], &status, 0) == kids[k]);
      CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "child %d of round %d: %s %d (3-4: no statistics, 5: free pages "
             "left resident, 6: malloc failed)",
             k, round, WIFEXITED(status) ? "exit status" : "killed by signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    children += nkids;
  }
  printf("%s: %d children, %d forked while the parent's release was under way\n",
         g_name, children, during);
  if (during == 0)
    printf("%s: (no fork landed inside a release on this machine; the unit "
           "test AForkedChildGetsBackTheBlocksBeingReleased covers the logic)\n",
           g_name);
  fflush(stdout);
  return shim_finish();
}

/* ---- 8: the rest of the process grows past its peak ---- */

/* The page heap's resident free bytes and the purger's growth releases,
 * from the statistics. */
static void heap_held(long long *held, long long *growth_releases) {
  const char *doc = stats_now("growth");
  const char *ph = strstr(doc, "\"page_heap\":");
  const char *purger = strstr(doc, "\"purger\":");
  CHECK(ph != NULL && purger != NULL);
  *held = shim_json_number(ph, "free_bytes") - shim_json_number(ph, "released_bytes");
  *growth_releases = shim_json_number(purger, "growth_releases");
}

/* 48 KiB objects, five to a span: one of every five stays live, so that no
 * span empties; while the purger is eager, the pages inside the freed ones
 * go back (CentralList::ReleaseInsideFreeObjects), all but the first. */
enum { kInsideObjects = 60, kInsideBytes = 48 << 10 };
static void *g_inside[kInsideObjects];

/* How many of the freed 48 KiB objects have none of their inside pages
 * resident. */
static int inside_released(void) {
  int n = 0;
  for (int i = 0; i < kInsideObjects; ++i) {
    if (i % 5 == 0) continue;
    const uintptr_t lo = ((uintptr_t)g_inside[i] + 16 + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
    const uintptr_t hi = ((uintptr_t)g_inside[i] + kInsideBytes) & ~(uintptr_t)(PAGE - 1);
    CHECK((hi - lo) / PAGE <= g_vec_pages);
    CHECK(mincore((void *)lo, hi - lo, g_vec) == 0);
    int resident = 0;
    for (uintptr_t k = 0; k < (hi - lo) / PAGE; ++k) resident |= g_vec[k] & 1;
    n += !resident;
  }
  return n;
}

static int run_growth(void) {
  setup("purge_growth", VEC_PAGES);
  require_background();
  CHECKF(env_ll("STRATA_DECAY_MS", 500) >= 10000,
         "this mode needs a decay time that cannot pass during the test");
  struct objset s;
  set_init(&s, MAX_OBJECTS);
  set_alloc(&s, 64 << 20, 0, 0, 0x6a09e667f3bcc908ull);
  set_free(&s);
  for (int i = 0; i < kInsideObjects; ++i) {
    g_inside[i] = malloc(kInsideBytes);
    CHECK(g_inside[i] != NULL);
    memset(g_inside[i], 0x5a, kInsideBytes);
  }
  for (int i = 0; i < kInsideObjects; ++i)
    if (i % 5 != 0) free(g_inside[i]);
  const int freed = kInsideObjects - kInsideObjects / 5;
  /* The thread cache keeps up to 5 of them (256 KiB): no slow path of this
   * thread runs while it grows, to send them back. */
  const int want = freed - 8;
  sleep_ms(300);
  long long held, releases, releases_before;
  heap_held(&held, &releases_before);
  printf("%s: %.1f MiB free and resident in the page heap after 300 ms below "
         "the peak (%lld growth releases)\n",
         g_name, held / MIB, releases_before);
  CHECKF(held >= (32 << 20),
         "only %.1f MiB of the 64 MiB freed is free and resident in the page "
         "heap: nothing to watch",
         held / MIB);
  /* Grows until the memory went back (or 256 MiB, or the hang guard). */
  const size_t grow = (size_t)256 << 20;
  char *mine = mmap(NULL, grow, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(mine != MAP_FAILED);
  uint64_t t0 = now_ms();
  long long left = held;
  size_t grown = 0;
  while (grown < grow && now_ms() - t0 < kDeadlineMs) {
    memset(mine + grown, 1, 1 << 20);
    grown += 1 << 20;
    sleep_ms(2);
    heap_held(&left, &releases);
    if (left <= held / 10 && releases > releases_before && inside_released() >= want)
      break;
  }
  const int inside = inside_released();
  printf("%s: %.1f MiB left resident %llu ms after the program began to "
         "grow, by %zu MiB (%lld growth releases)\n",
         g_name, left / MIB, (unsigned long long)(now_ms() - t0),
         grown >> 20, releases);
  CHECKF(releases > releases_before,
         "the purger never saw the process grow (%lld growth releases)",
         releases);
  CHECKF(left <= held / 10,
         "%.1f of %.1f MiB still resident in the page heap while the "
         "process grew past its peak",
         left / MIB, held / MIB);
  printf("%s: %d of %d freed 48 KiB objects in spans with live neighbours "
         "have their inside pages given back\n",
         g_name, inside, freed);
  CHECKF(inside >= want,
         "only %d of %d freed 48 KiB objects whose spans have objects out "
         "had their inside pages given back",
         inside, freed);
  for (int i = 0; i < kInsideObjects; i += 5) free(g_inside[i]);
  munmap(mine, grow);
  return shim_finish();
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "small") == 0)
    return run_idle("purge_small", SMALL_BYTES, 0, 0);
  if (strcmp(mode, "large") == 0)
    return run_idle("purge_large", 0, 16, 4 << 20);
  if (strcmp(mode, "trim") == 0)
    return run_trim();
  if (strcmp(mode, "fork") == 0)
    return run_fork();
  if (strcmp(mode, "reuse") == 0)
    return run_reuse();
  if (strcmp(mode, "park") == 0)
    return run_park();
  if (strcmp(mode, "forkrelease") == 0)
    return run_forkrelease();
  if (strcmp(mode, "growth") == 0)
    return run_growth();
  fprintf(stderr,
          "usage: %s small|large|trim|fork|reuse|park|forkrelease|growth (under "
          "LD_PRELOAD=libstrata.so)\n",
          argv[0]);
  return 2;
}
