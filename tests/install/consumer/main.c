/* Calls the strata_* API of an installed strata. */
#include <stdio.h>
#include <string.h>
#include <strata/strata.h>

int main(void) {
  int failures = 0;
#define CHECK(x) do { if (!(x)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #x); ++failures; } } while (0)
  char *p = strata_malloc(100);
  CHECK(p != NULL);
  CHECK(strata_usable_size(p) >= 100);
  memset(p, 'x', 100);
  p = strata_realloc(p, 100000);
  CHECK(p != NULL && p[99] == 'x');
  strata_free(p);
  int *z = strata_calloc(1000, sizeof(int));
  CHECK(z != NULL && z[0] == 0 && z[999] == 0);
  strata_free_sized(z, 1000 * sizeof(int));
  void *a = strata_aligned_alloc(4096, 10);
  CHECK(a != NULL && ((size_t)a & 4095) == 0);
  strata_free(a);
  (void)strata_release();
  printf("consumer: %s\n", failures ? "FAIL" : "ok");
  return failures != 0;
}
