/* Libraries loaded with dlopen(..., RTLD_DEEPBIND) bind their own symbol
 * references to their dependencies (libc) before the global scope, where
 * LD_PRELOAD put strata: their malloc, free and the rest would be glibc's
 * (shim/deepbind.cc). PHP loads its extensions this way; before strata
 * rebound them, `php -r 'echo 1;'` crashed in glibc's free.
 *
 * 1. Blocks cross both ways: strata's freed, reallocated and measured by
 *    the library; the library's freed and reallocated by the program; a
 *    block libc's strdup makes inside the library.
 * 2. The library's references to free resolve to the process's free.
 * 3. Blocks the library's constructor made (glibc's: it runs inside
 *    dlopen, before anything can be rebound) may be freed, reallocated and
 *    measured by the program.
 * 4. The same with lazy binding (RTLD_LAZY: the PLT slots are unresolved
 *    when strata rewrites them).
 * 5. A bare name passed to dlopen from a library with a RUNPATH is found
 *    along that RUNPATH, with and without RTLD_DEEPBIND (the wrapper must
 *    not make dlopen search from libstrata.so's point of view).
 * 6. What strata does leaves no trace: dlerror() is NULL after a
 *    successful load, and a data word of the library that held free's
 *    address and was changed by the program keeps the program's value.
 *
 * argv[1]: directory of deep_lib*.so and deep_loader.so. */
#include "shim_check.h" /* first: it defines _GNU_SOURCE */

#include <dlfcn.h>
#include <malloc.h>

struct deep {
  void *(*ctor_block)(int);
  void *(*malloc_)(size_t);
  void *(*calloc_)(size_t, size_t);
  void *(*realloc_)(void *, size_t);
  void (*free_)(void *);
  size_t (*usable)(void *);
  char *(*strdup_)(const char *);
  void *(*free_address)(void);
};

static int load(struct deep *d, const char *path, int flags) {
  dlerror();
  void *h = dlopen(path, flags | RTLD_DEEPBIND);
  CHECKF(h != NULL, "dlopen(%s, RTLD_DEEPBIND): %s", path, dlerror());
  if (!h)
    return 0;
  /* 6 */
  const char *err = dlerror();
  CHECKF(err == NULL, "dlerror() after a successful load: %s", err);
  void *(*hook_value)(void) = NULL;
  *(void **)&hook_value = dlsym(h, "deep_hook_value");
  void *mine = dlsym(h, "deep_my_free");
  CHECKF(hook_value && mine && hook_value() == mine,
         "the library's own function pointer became %p (it set %p)",
         hook_value ? hook_value() : NULL, mine);
#define SYM(field, name) *(void **)&d->field = dlsym(h, name)
  SYM(ctor_block, "deep_ctor_block");
  SYM(malloc_, "deep_malloc");
  SYM(calloc_, "deep_calloc");
  SYM(realloc_, "deep_realloc");
  SYM(free_, "deep_free");
  SYM(usable, "deep_usable");
  SYM(strdup_, "deep_strdup");
  SYM(free_address, "deep_free_address");
#undef SYM
  CHECK(d->ctor_block && d->malloc_ && d->calloc_ && d->realloc_ &&
        d->free_ && d->usable && d->strdup_ && d->free_address);
  return d->ctor_block != NULL;
}

static void crossing(const struct deep *d, const char *how) {
  /* 2 */
  CHECKF(d->free_address() == dlsym(RTLD_DEFAULT, "free"),
         "%s: the library's free is %p, the process's %p", how,
         d->free_address(), dlsym(RTLD_DEFAULT, "free"));
  /* 1: ours, through the library */
  char *p = malloc(100);
  CHECK(p != NULL);
  shim_fill(p, 100, 1);
  CHECKF(d->usable(p) >= 100, "%s: usable size %zu", how, d->usable(p));
  p = d->realloc_(p, 5000);
  CHECK(p != NULL && shim_verify(p, 100, 1) == (size_t)-1);
  d->free_(p);
  /* the library's, through the program */
  char *q = d->malloc_(300);
  CHECK(q != NULL);
  shim_fill(q, 300, 2);
  CHECK(malloc_usable_size(q) >= 300);
  q = realloc(q, 70000);
  CHECK(q != NULL && shim_verify(q, 300, 2) == (size_t)-1);
  free(q);
  long *z = d->calloc_(1000, sizeof *z);
  CHECK(z != NULL);
  for (int i = 0; z && i < 1000; i++)
    if (z[i] != 0) {
      CHECKF(0, "%s: calloc'd word %d is %ld", how, i, z[i]);
      break;
    }
  free(z);
  char *s = d->strdup_("deep-bound");
  CHECK(s != NULL && strcmp(s, "deep-bound") == 0);
  free(s);
  /* 3: glibc's blocks from the constructor */
  char *c0 = d->ctor_block(0), *c1 = d->ctor_block(1), *c2 = d->ctor_block(2);
  CHECK(c0 && c1 && c2);
  if (!c0 || !c1 || !c2)
    return;
  CHECKF(malloc_usable_size(c0) >= 200, "%s: a constructor's block measures %zu",
         how, malloc_usable_size(c0));
  char *c1b = realloc(c1, 100000);
  CHECK(c1b != NULL);
  for (int i = 0; c1b && i < 200; i++)
    if (c1b[i] != 'b') {
      CHECKF(0, "%s: a constructor's block lost its byte %d in realloc", how, i);
      break;
    }
  free(c1b);
  free(c0);
  d->free_(c2);
}

int main(int argc, char **argv) {
  shim_require_strata("shim_deepbind");
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  char path[4096];
  struct deep now, lazy;
  snprintf(path, sizeof path, "%s/libshim_deep_lib.so", argv[1]);
  if (load(&now, path, RTLD_NOW))
    crossing(&now, "RTLD_NOW");
  /* 4: a second copy of the library, so that its slots are still lazy */
  snprintf(path, sizeof path, "%s/libshim_deep_lazy.so", argv[1]);
  if (load(&lazy, path, RTLD_LAZY))
    crossing(&lazy, "RTLD_LAZY");

  /* 5 */
  snprintf(path, sizeof path, "%s/libshim_deep_loader.so", argv[1]);
  void *loader = dlopen(path, RTLD_NOW);
  CHECKF(loader != NULL, "dlopen(%s): %s", path, dlerror());
  void *(*open_)(const char *, int) = NULL;
  if (loader)
    *(void **)&open_ = dlsym(loader, "loader_open");
  if (open_) {
    int flags[2] = {RTLD_NOW, RTLD_NOW | RTLD_DEEPBIND};
    for (int i = 0; i < 2; i++) {
      void *h = open_("libshim_deep_plugin.so", flags[i]);
      CHECKF(h != NULL, "a bare name from a library with a RUNPATH%s: %s",
             i ? ", RTLD_DEEPBIND" : "", dlerror());
      int (*answer)(void) = NULL;
      if (h)
        *(void **)&answer = dlsym(h, "plugin_answer");
      CHECK(answer && answer() == 42);
    }
  }
  return shim_finish();
}
