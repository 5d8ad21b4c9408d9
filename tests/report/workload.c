// A small allocation workload for the report test: run under
// LD_PRELOAD=libstrata.so with STRATA_STATS_INTERVAL_MS so that the statistics
// file gets a few interval snapshots and then the exit report. Two threads
// allocate objects of many size classes, keep some of them, grow a large
// object by realloc, and pause between phases; some objects stay live at exit
// so the exit report has something in every part.
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { kKeep = 4096 };

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static uint32_t next(uint32_t* s) {  // xorshift32
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static size_t pick_size(uint32_t* s) {
  uint32_t r = next(s);
  switch (r % 8) {
    case 0: case 1: case 2: return 1 + r % 64;        // tiny
    case 3: case 4: return 64 + r % 448;               // small
    case 5: return 512 + r % 3584;                     // up to 4 KiB
    case 6: return 4096 + r % 28672;                   // up to 32 KiB
    default: return 32768 + r % 196608;                // up to 224 KiB
  }
}

static void* worker(void* arg) {
  uint32_t seed = (uint32_t)(uintptr_t)arg;
  void** keep = calloc(kKeep, sizeof(void*));
  if (keep == NULL) return (void*)1;
  for (int phase = 0; phase < 6; ++phase) {
    for (int i = 0; i < 20000; ++i) {
      size_t n = pick_size(&seed);
      char* p = malloc(n);
      if (p == NULL) return (void*)1;
      memset(p, i & 0xff, n < 64 ? n : 64);
      size_t slot = next(&seed) % kKeep;
      free(keep[slot]);  // churn: replace a kept object
      keep[slot] = p;
    }
    pause_ms(40);
  }
  // Free three quarters, keep the rest alive until exit.
  for (int i = 0; i < kKeep; ++i) {
    if (i % 4 != 0) {
      free(keep[i]);
      keep[i] = NULL;
    }
  }
  return keep;  // deliberately kept: live at exit
}

int main(void) {
  pthread_t t[2];
  for (int i = 0; i < 2; ++i) {
    if (pthread_create(&t[i], NULL, worker, (void*)(uintptr_t)(0x9e3779b9u + 77u * (unsigned)i)) != 0) {
      fprintf(stderr, "workload: pthread_create failed\n");
      return 1;
    }
  }
  // Meanwhile: large objects, one grown by realloc.
  char* big = malloc(1 << 20);
  if (big == NULL) return 1;
  memset(big, 1, 1 << 20);
  for (size_t n = 2u << 20; n <= (16u << 20); n *= 2) {
    char* q = realloc(big, n);
    if (q == NULL) return 1;
    big = q;
    memset(big + n / 2, 2, n / 2);
    pause_ms(20);
  }
  void* kept[2] = {NULL, NULL};
  for (int i = 0; i < 2; ++i) {
    void* r = NULL;
    pthread_join(t[i], &r);
    if (r == (void*)1) {
      fprintf(stderr, "workload: allocation failed\n");
      return 1;
    }
    kept[i] = r;
  }
  free(big);
  char* stay = malloc(3u << 20);  // one large object live at exit
  if (stay == NULL) return 1;
  memset(stay, 3, 3u << 20);
  pause_ms(60);
  printf("workload done %p %p %d\n", kept[0], kept[1], stay[12345]);
  return 0;
}
