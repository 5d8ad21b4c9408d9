/* strata: a general-purpose memory allocator.
 *
 * This header is the C API for programs that call strata directly. It is
 * available both from libstrata.so (which also replaces malloc, free and
 * operator new/delete for the whole process) and from any build that links
 * strata's core. Every function is thread-safe.
 *
 * Semantics follow the C library counterparts: a failed allocation returns
 * NULL (the malloc-compatible entry points in libstrata.so also set errno to
 * ENOMEM); strata_free(NULL) does nothing.
 */
#ifndef STRATA_STRATA_H
#define STRATA_STRATA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define STRATA_API __attribute__((visibility("default")))
#else
#define STRATA_API
#endif

#define STRATA_VERSION_MAJOR 0
#define STRATA_VERSION_MINOR 1
#define STRATA_VERSION_PATCH 0

/* Allocate at least size bytes, aligned to 16. size 0 gives a unique,
 * freeable pointer. */
STRATA_API void *strata_malloc(size_t size);
/* Release a block from any strata_* allocation function. NULL is a no-op. */
STRATA_API void strata_free(void *ptr);
/* Release a block whose requested size is known; size must be the size that
 * was requested (or anything up to strata_usable_size(ptr)). */
STRATA_API void strata_free_sized(void *ptr, size_t size);
/* n * size zeroed bytes; NULL when the product overflows. */
STRATA_API void *strata_calloc(size_t n, size_t size);
/* Resize; realloc(NULL, n) allocates, and a failure leaves ptr intact.
 * strata_realloc(ptr, 0) frees ptr and returns NULL (as glibc does). */
STRATA_API void *strata_realloc(void *ptr, size_t size);
/* size bytes aligned to alignment, which must be a power of two. Any
 * power of two is accepted, up to 1 GiB. */
STRATA_API void *strata_aligned_alloc(size_t alignment, size_t size);
/* Bytes usable at ptr (at least the size requested); 0 for NULL. */
STRATA_API size_t strata_usable_size(const void *ptr);

/* Return free memory to the operating system now: the calling thread's
 * cache is flushed, then empty spans, cached large mappings and free pages
 * go back. Pages the background thread was giving back at the time are
 * waited for (up to about a second), so that, unless other threads free
 * meanwhile, the statistics read after it show no resident free page.
 * Returns the number of bytes this call released. Objects cached by other
 * threads stay with them. */
STRATA_API size_t strata_release(void);

/* Statistics. strata_stats_json writes one JSON document (described in
 * docs/stats.md) into buf, NUL-terminated and truncated to len, and returns
 * the length the complete document needs (excluding the NUL): call again
 * with a larger buffer if the result is >= len. strata_stats_print writes
 * the human-readable report to fd. Neither allocates. */
STRATA_API size_t strata_stats_json(char *buf, size_t len);
STRATA_API void strata_stats_print(int fd);

#ifdef __cplusplus
}
#endif

#endif /* STRATA_STRATA_H */
