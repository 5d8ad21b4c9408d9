/* Many short-lived threads, run under LD_PRELOAD=libstrata.so.
 *
 * 20,000 threads run in waves of 16. Each allocates ~50 blocks of random
 * sizes (some up to 256 KiB), frees half of them itself and hands the other
 * half to the next wave, which frees them (cross-thread frees after the
 * allocating thread has exited). Some threads only free and never allocate.
 * Some threads install pthread and C11 TLS destructors that free and
 * allocate after the allocator's own per-thread teardown. RSS must stay
 * bounded: after all threads it is below max(2 x RSS after the first 1000
 * threads, that + 64 MiB).
 */
#define _GNU_SOURCE
#include "shim_check.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <unistd.h>

enum {
  TOTAL_THREADS = 20000,
  WAVE = 16,
  PER_THREAD = 50,
  HANDOFF = PER_THREAD / 2,
  EARLY_THREADS = 1000,
  TLS_EVERY = 50,       /* every 50th thread installs TLS destructors */
  FREE_ONLY_EVERY = 23, /* every 23rd thread only frees */
  DTOR_ROUNDS = 3,
};

#define MiB ((size_t)1 << 20)

struct block {
  unsigned char *p;
  size_t n;
  unsigned seed;
};

/* handoff[w % 2][i]: blocks thread i of wave w leaves for wave w + 1 */
static struct block handoff[2][WAVE][HANDOFF];

static atomic_long errors;
static atomic_long cross_frees;
static atomic_long own_frees;
static atomic_long allocs;
static atomic_long pthread_dtor_calls;
static atomic_long tss_dtor_calls;

static pthread_key_t pkey;
static tss_t ckey;

/* blocks allocated inside TLS destructors, freed by main at the end */
static pthread_mutex_t late_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block late[4096];
static int nlate;

/* pattern in the first bytes; the last byte carries its own tag */
static size_t fill_len(size_t n) { return n - 1 < 1024 ? n - 1 : 1024; }

static int alloc_block(struct block *b, uint64_t *rng, unsigned seed) {
  uint64_t r = shim_rand(rng) % 100;
  size_t n;
  if (r < 85)
    n = (size_t)(shim_rand(rng) % 1024) + 1;
  else if (r < 97)
    n = (size_t)(shim_rand(rng) % (32 * 1024)) + 1;
  else
    n = (size_t)(shim_rand(rng) % (256 * 1024)) + 1;
  b->p = malloc(n);
  b->n = n;
  b->seed = seed;
  if (!b->p) {
    atomic_fetch_add(&errors, 1);
    return 0;
  }
  atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
  shim_fill(b->p, fill_len(n), seed);
  b->p[n - 1] = (unsigned char)(seed * 3);
  return 1;
}

static void free_block(struct block *b, atomic_long *counter) {
  if (!b->p)
    return;
  if (shim_verify(b->p, fill_len(b->n), b->seed) != (size_t)-1 ||
      b->p[b->n - 1] != (unsigned char)(b->seed * 3) ||
      malloc_usable_size(b->p) < b->n) {
    if (atomic_fetch_add(&errors, 1) < 10)
      fprintf(stderr, "thread_churn: block %p (%zu bytes) corrupted\n",
              (void *)b->p, b->n);
  }
  free(b->p);
  b->p = NULL;
  atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* ---- TLS destructors: run after the allocator's own thread teardown ---- */

struct tls_val {
  int round;
  unsigned seed;
  unsigned char payload[100];
};

static void keep_late(size_t n, unsigned seed) {
  unsigned char *p = malloc(n);
  if (!p) {
    atomic_fetch_add(&errors, 1);
    return;
  }
  shim_fill(p, n, seed);
  pthread_mutex_lock(&late_lock);
  if (nlate < (int)(sizeof late / sizeof late[0])) {
    late[nlate].p = p;
    late[nlate].n = n;
    late[nlate].seed = seed;
    nlate++;
    p = NULL;
  }
  pthread_mutex_unlock(&late_lock);
  free(p);
}

/* Shared by both kinds of key: checks the value, frees it, allocates
 * and frees scratch blocks, and re-arms itself for DTOR_ROUNDS rounds. */
static struct tls_val *dtor_common(void *v) {
  struct tls_val *t = v;
  if (shim_verify(t->payload, sizeof t->payload, t->seed) != (size_t)-1)
    atomic_fetch_add(&errors, 1);
  int round = t->round;
  unsigned seed = t->seed;
  free(t);
  for (int i = 0; i < 20; i++) { /* malloc + free after teardown */
    void *s = malloc((size_t)(i * 397 % 5000) + 1);
    if (!s)
      atomic_fetch_add(&errors, 1);
    else
      memset(s, i, 1);
    free(s);
  }
  keep_late(64 + (size_t)round * 1000, seed + (unsigned)round);
  if (round + 1 >= DTOR_ROUNDS)
    return NULL;
  struct tls_val *again = malloc(sizeof *again);
  if (!again) {
    atomic_fetch_add(&errors, 1);
    return NULL;
  }
  again->round = round + 1;
  again->seed = seed + 1;
  shim_fill(again->payload, sizeof again->payload, again->seed);
  return again;
}

static void pthread_dtor(void *v) {
  atomic_fetch_add(&pthread_dtor_calls, 1);
  struct tls_val *again = dtor_common(v);
  if (again)
    pthread_setspecific(pkey, again);
}

static void tss_dtor(void *v) {
  atomic_fetch_add(&tss_dtor_calls, 1);
  struct tls_val *again = dtor_common(v);
  if (again)
    tss_set(ckey, again);
}

static struct tls_val *new_tls_val(unsigned seed) {
  struct tls_val *t = malloc(sizeof *t);
  if (!t) {
    atomic_fetch_add(&errors, 1);
    return NULL;
  }
  t->round = 0;
  t->seed = seed;
  shim_fill(t->payload, sizeof t->payload, seed);
  return t;
}

/* ---- churn threads ---- */

struct job {
  int global;       /* thread number, 0 .. TOTAL_THREADS-1 */
  struct block *in; /* from the previous wave (HANDOFF entries) */
  struct block *out;
};

static void *churn_thread(void *arg) {
  struct job *j = arg;
  uint64_t rng =
      0x2545F4914F6CDD1Dull ^ ((uint64_t)j->global * 0x9E3779B97F4A7C15ull);
  int free_only = j->global % FREE_ONLY_EVERY == 5;

  if (free_only) {
    /* never calls malloc: its first allocator call is a free of a block
     * another (now dead) thread allocated */
    for (int k = 0; k < HANDOFF; k++)
      free_block(&j->in[k], &cross_frees);
    return NULL;
  }

  if (j->global % TLS_EVERY == 7) {
    struct tls_val *a = new_tls_val((unsigned)j->global);
    struct tls_val *b = new_tls_val((unsigned)j->global + 100000u);
    if (a)
      pthread_setspecific(pkey, a);
    if (b)
      tss_set(ckey, b);
  }

  struct block mine[PER_THREAD];
  for (int k = 0; k < PER_THREAD; k++)
    alloc_block(&mine[k], &rng, (unsigned)(j->global * PER_THREAD + k));
  /* free what the previous wave left, interleaved with our own frees */
  for (int k = 0; k < HANDOFF; k++) {
    free_block(&j->in[k], &cross_frees);
    free_block(&mine[2 * k], &own_frees);
  }
  for (int k = 0; k < HANDOFF; k++)
    j->out[k] = mine[2 * k + 1];
  return NULL;
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f)
    return 0;
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = (size_t)strtoull(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb * 1024;
}

/* A thread that creates its own keys (so they get the highest key
 * indices, and their destructors run last) and sets values. */
static pthread_key_t own_pkey;
static tss_t own_ckey;
static void *key_creator_thread(void *arg) {
  (void)arg;
  CHECK(pthread_key_create(&own_pkey, pthread_dtor) == 0);
  CHECK(tss_create(&own_ckey, tss_dtor) == thrd_success);
  struct tls_val *a = new_tls_val(4242);
  struct tls_val *b = new_tls_val(4343);
  /* pthread_dtor re-arms pkey (not own_pkey); that is fine: it then runs
   * again through pkey in the next destructor round */
  if (a)
    pthread_setspecific(own_pkey, a);
  if (b)
    tss_set(own_ckey, b);
  return NULL;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  shim_require_strata("thread_churn");
  CHECK(pthread_key_create(&pkey, pthread_dtor) == 0);
  CHECK(tss_create(&ckey, tss_dtor) == thrd_success);

  static struct job jobs[WAVE];
  pthread_t th[WAVE];
  size_t early_rss = 0;
  int started = 0, waves = 0;
  while (started < TOTAL_THREADS) {
    int w = waves++;
    int n = TOTAL_THREADS - started < WAVE ? TOTAL_THREADS - started : WAVE;
    for (int i = 0; i < n; i++) {
      jobs[i].global = started + i;
      /* take the blocks of a different slot than our own index, so that
       * frees also cross between unrelated threads */
      jobs[i].in = handoff[(w + 1) % 2][(i + 5) % WAVE];
      jobs[i].out = handoff[w % 2][i];
      memset(jobs[i].out, 0, sizeof(struct block) * HANDOFF);
    }
    /* slots whose reader is not running this wave (last partial wave) */
    for (int i = n; i < WAVE; i++) {
      for (int k = 0; k < HANDOFF; k++)
        free_block(&handoff[(w + 1) % 2][(i + 5) % WAVE][k], &cross_frees);
      memset(handoff[w % 2][i], 0, sizeof(struct block) * HANDOFF);
    }
    for (int i = 0; i < n; i++) {
      int rc = pthread_create(&th[i], NULL, churn_thread, &jobs[i]);
      if (rc != 0) {
        CHECKF(rc == 0, "pthread_create #%d: %s", started + i, strerror(rc));
        churn_thread(&jobs[i]); /* keep the handoff consistent */
        th[i] = 0;
      }
    }
    for (int i = 0; i < n; i++)
      if (th[i])
        pthread_join(th[i], NULL);
    int before = started;
    started += n;
    if (before < EARLY_THREADS && started >= EARLY_THREADS) {
      early_rss = rss_bytes();
      printf("thread_churn: RSS after %d threads: %.1f MiB\n", started,
             early_rss / (double)MiB);
    }
  }

  pthread_t kc;
  CHECK(pthread_create(&kc, NULL, key_creator_thread, NULL) == 0);
  pthread_join(kc, NULL);

  size_t final_rss = rss_bytes();
  size_t limit = 2 * early_rss > early_rss + 64 * MiB ? 2 * early_rss
                                                      : early_rss + 64 * MiB;
  printf("thread_churn: RSS after %d threads: %.1f MiB (limit %.1f MiB)\n",
         started, final_rss / (double)MiB, limit / (double)MiB);
  CHECK(early_rss > 0);
  CHECKF(final_rss < limit,
         "RSS grew with the number of threads: %zu bytes after %d threads, "
         "%zu after %d (limit %zu)", final_rss, started, early_rss,
         EARLY_THREADS, limit);

  /* the last wave's handoff */
  for (int i = 0; i < WAVE; i++)
    for (int k = 0; k < HANDOFF; k++)
      free_block(&handoff[(waves - 1) % 2][i][k], &cross_frees);
  /* blocks allocated inside TLS destructors */
  for (int i = 0; i < nlate; i++) {
    if (shim_verify(late[i].p, late[i].n, late[i].seed) != (size_t)-1)
      atomic_fetch_add(&errors, 1);
    free(late[i].p);
  }

  int tls_threads = 0;
  for (int g = 0; g < TOTAL_THREADS; g++)
    if (g % FREE_ONLY_EVERY != 5 && g % TLS_EVERY == 7)
      tls_threads++;
  long pd = atomic_load(&pthread_dtor_calls), td = atomic_load(&tss_dtor_calls);
  /* +1 thread (key_creator) whose two values each run DTOR_ROUNDS rounds */
  long want = (long)(tls_threads + 1) * DTOR_ROUNDS;
  CHECKF(pd == want, "pthread TLS destructor ran %ld times, want %ld", pd,
         want);
  CHECKF(td == want, "C11 tss destructor ran %ld times, want %ld", td, want);
  CHECKF(nlate == (int)(2 * want), "%d late blocks, want %ld", nlate,
         2 * want);
  long errs = atomic_load(&errors);
  CHECKF(errs == 0, "%ld corrupted blocks or failed allocations", errs);
  long cf = atomic_load(&cross_frees);
  CHECK(cf > (long)TOTAL_THREADS * HANDOFF / 2);
  printf("thread_churn: %d threads in %d waves, %ld allocations, %ld own "
         "frees, %ld cross-thread frees, %ld+%ld TLS destructor calls\n",
         started, waves, atomic_load(&allocs), atomic_load(&own_frees), cf, pd,
         td);
  return shim_finish();
}
