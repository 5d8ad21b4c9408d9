/* Loaded by deepbind.c with RTLD_DEEPBIND: without strata's rebinding, its
 * calls to the malloc family bind to glibc's allocator, not the preloaded
 * one. It also allocates in its constructor (which runs inside dlopen,
 * before any rebinding can be done). */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

static void *g_ctor_blocks[3];

/* A data word initialised to free's address, which the program changes
 * (the constructor, here): not a binding to rewrite. */
void deep_my_free(void *p) { free(p); }
void (*deep_hook)(void *) = free;

__attribute__((constructor)) static void deep_init(void) {
  deep_hook = deep_my_free;
  for (int i = 0; i < 3; i++) {
    g_ctor_blocks[i] = malloc(200);
    if (g_ctor_blocks[i])
      memset(g_ctor_blocks[i], 'a' + i, 200);
  }
}

void *deep_ctor_block(int i) { return g_ctor_blocks[i]; }
void *deep_malloc(size_t n) { return malloc(n); }
void *deep_calloc(size_t n, size_t m) { return calloc(n, m); }
void *deep_realloc(void *p, size_t n) { return realloc(p, n); }
void deep_free(void *p) { free(p); }
size_t deep_usable(void *p) { return malloc_usable_size(p); }
char *deep_strdup(const char *s) { return strdup(s); } /* libc's malloc inside */
/* The address the library's own references to free resolve to. */
void *deep_free_address(void) { return (void *)&free; }
void *deep_hook_value(void) { return (void *)deep_hook; }
