/* Issue #8: an idle program that freed its small objects in random order
 * gets 90% of their memory back from the background purger.
 *
 * Same as `purge small` (tests/purge/purge.c): 128 MiB of small objects
 * (64..4000 bytes, mixed, the same sizes) are touched and freed, and the
 * program goes idle, polling its resident set every 50 ms for up to 20 s
 * (a hang guard). The only difference: the objects are freed in a random
 * order instead of allocation order.
 *
 * Before the fix (09bd492, STRATA_DECAY_MS=200) the resident set stopped at
 * 87.4% returned (18.4 of 145.5 MiB kept) for good: the idle thread's cache
 * held 2.75 MiB of objects scattered over spans holding 14.4 MiB of free
 * objects, and the purger cannot reach a thread's cache. Now a thread that
 * only frees keeps at most 256 KiB in its cache
 * (ThreadCache::kFreeOnlyBudget).
 *
 * The program prints those figures when the check fails, then calls
 * malloc_trim(0) to show the memory was free.
 */
#define _GNU_SOURCE
#include "purge_common.h"

#include <malloc.h>

static char g_json[1 << 20];

static void print_strata_figures(const char *when) {
  if (shim_stats_json(g_json, sizeof g_json) == (size_t)-1)
    return;
  fprintf(stderr,
          "%s: strata says, %s: thread_cache_bytes %lld, central_free_bytes "
          "%lld, page_heap used_bytes %lld, resident_bytes %lld\n",
          g_name, when, shim_json_number(g_json, "thread_cache_bytes"),
          shim_json_number(g_json, "central_free_bytes"),
          shim_json_number(g_json, "used_bytes"),
          shim_json_number(g_json, "resident_bytes"));
}

int main(void) {
  setup("purge_random_free", VEC_PAGES);
  require_background();
  struct objset s;
  set_init(&s, MAX_OBJECTS);
  struct sample base, full, after;
  take(&base, NULL);
  set_alloc(&s, SMALL_BYTES, 0, 0, 0x9e3779b97f4a7c15ull);
  set_compute_pages(&s);
  take(&full, &s);
  long long added = full.rss - base.rss;
  CHECK(set_verify(&s, "before free") == 0);
  set_shuffle(&s, 0x7f4a7c159e3779b9ull);
  set_free(&s);
  wait_returned("idle after freeing in random order", &full, added, &s, &after);
  if (!returned(&after, &full, added, &s)) {
    print_strata_figures("while idle");
    int r = malloc_trim(0);
    struct sample trimmed;
    take(&trimmed, &s);
    fprintf(stderr,
            "%s: then malloc_trim(0) = %d: %.1f MiB (%.1f%%) returned, "
            "resident pages %zu\n",
            g_name, r, (full.rss - trimmed.rss) / MIB,
            100.0 * (double)(full.rss - trimmed.rss) / (double)added,
            trimmed.pages);
  }
  return shim_finish();
}
