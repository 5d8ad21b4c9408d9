/* Built with a DT_RUNPATH naming a directory that only it knows: a dlopen
 * of a bare name from here must search it, whether or not the call goes
 * through strata's dlopen wrapper's RTLD_DEEPBIND path. */
#include <dlfcn.h>

void *volatile loader_last;

void *loader_open(const char *name, int flags) {
  /* Not a tail call: glibc takes the caller of dlopen from its return
   * address, which must be in this library. */
  void *h = dlopen(name, flags);
  loader_last = h;
  return loader_last;
}
