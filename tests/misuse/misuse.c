/* The classic misuse cases, one per run: `misuse CASE` does it and prints
 * the address it misused on stdout (before doing it); the test driver
 * expects SIGABRT and a "strata: " message naming that address. Cases
 * whose message names a size or an alignment instead print that part of
 * the message; cases with nothing to name print nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
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
  } else if (strcmp(c, "never_allocated") == 0) {  /* checking mode only */
    /* The object after a fresh one: an object start in the same span that
     * was never handed out. */
    char *p = malloc(2000);
    char *q = p + malloc_usable_size(p);
    say(q);
    free(q);
  } else if (strcmp(c, "usable_size_after_free") == 0) {  /* checking mode only */
    char *p = malloc(100);
    say(p);
    free(p);
    malloc_usable_size(p);
  } else if (strcmp(c, "new_bad_alignment") == 0) {
    /* operator new(size_t, std::align_val_t) with an alignment that is not
     * a power of two (UB in C++, but a program can do it). */
    void *(*op_new)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "_ZnwmSt11align_val_t");
    if (op_new == NULL) return 3;
    printf("alignment 24 \n");
    fflush(stdout);
    op_new(64, 24);
  } else if (strcmp(c, "new_oom_without_cxx_runtime") == 0) {
    /* operator new out of memory in a program without libstdc++ (this one
     * is C): no new_handler, no std::bad_alloc to throw. */
    if (dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv") != NULL) return 4; /* libstdc++ is loaded */
    void *(*op_new)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "_Znwm");
    if (op_new == NULL) return 3;
    size_t huge = (size_t)1 << 62;
    printf("operator new(%zu)\n", huge);
    fflush(stdout);
    op_new(huge);
  } else if (strcmp(c, "init") == 0) {  /* for failures during initialisation */
    free(malloc(100));
    return 0;
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
