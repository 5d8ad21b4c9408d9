/* The classic misuse cases, one per run: `misuse CASE` does it and prints
 * the address it misused on stdout (before doing it); the test driver
 * expects SIGABRT and a "strata: " message naming that address. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(const void *p) {
  printf("%p\n", p);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *c = argv[1];
  if (strcmp(c, "double_free") == 0) {
    char *p = malloc(64);
    say(p);
    free(p);
    free(p);
  } else if (strcmp(c, "double_free_later") == 0) {  /* another free in between */
    char *p = malloc(64), *q = malloc(64);
    say(p);
    free(p);
    free(q);
    free(p);
  } else if (strcmp(c, "interior") == 0) {
    char *p = malloc(64);
    say(p + 16);
    free(p + 16);
  } else if (strcmp(c, "stack") == 0) {
    char buf[64];
    say(buf);
    free(buf);
  } else if (strcmp(c, "wild") == 0) {
    void *p = (void *)(uintptr_t)0x12345670;
    say(p);
    free(p);
  } else if (strcmp(c, "realloc_after_free") == 0) {
    char *p = malloc(100);
    say(p);
    free(p);
    p = realloc(p, 200);
  } else if (strcmp(c, "large_double_free") == 0) {
    char *p = malloc(4 << 20);
    say(p);
    free(p);
    free(p);
  } else if (strcmp(c, "write_after_free") == 0) {  /* checking mode only */
    char *p = malloc(128);
    say(p);
    free(p);
    p[100] = 1;
    for (int i = 0; i < 1000; ++i) free(malloc(128));
  } else if (strcmp(c, "free_sized_mismatch") == 0) {  /* checking mode only */
    /* Not in glibc 2.36's headers or libc: libstrata.so exports it. */
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (fs == NULL) return 3;
    char *p = malloc(1000);
    say(p);
    fs(p, 5000); /* more than the block holds */
  } else if (strcmp(c, "no_false_positive") == 0) {  /* checking mode: must exit 0 */
    /* Pages of freed 64 B objects recycled for 192 B ones; valid sized frees. */
    void **v = malloc(100000 * sizeof(void *));
    for (int i = 0; i < 100000; ++i) v[i] = malloc(64);
    for (int i = 0; i < 100000; ++i) free(v[i]);
    for (int i = 0; i < 100000; ++i) v[i] = malloc(192);
    for (int i = 0; i < 100000; ++i) free(v[i]);
    free(v);
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (fs == NULL) return 3;
    char *p = realloc(malloc(1000), 100); /* shrunk in place: still the 1 KiB class */
    fs(p, 100);
    printf("ok\n");
    return 0;
  } else {
    return 2;
  }
  /* Reaching here means the misuse went unnoticed. */
  return 0;
}
