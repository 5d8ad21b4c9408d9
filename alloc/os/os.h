// The OS layer: the only code in strata that talks to the kernel.
//
// Names say what the allocator means, not which syscall does it: Reserve
// memory (mmap), Unmap it, tell the kernel pages are unused (madvise) or
// used again, grow the break, write a message, die. Every call is a raw
// syscall or a libc wrapper that neither allocates nor takes a lock malloc
// also takes, so this layer is safe to call from inside malloc.
//
// Layers above take the OS as a template parameter (`Os`), so tests swap in
// a fake that hands out memory from a buffer and counts every call
// (tests/unit/fake_os.h). RealOs is stateless; its functions are static.
#pragma once

#include <atomic>

#include "alloc/base.h"

namespace strata {

struct RealOs {
  // Fresh zeroed read-write memory of `bytes` (a multiple of the page
  // size), aligned to `align` (a power of two >= page size). nullptr on
  // failure.
  static void* Map(size_t bytes, size_t align = kPageSize);
  static void Unmap(void* p, size_t bytes);
  // Resize a mapping, moving it if needed; nullptr on failure (the old
  // mapping is then untouched).
  static void* Remap(void* p, size_t old_bytes, size_t new_bytes);
  // Shrink or grow a mapping in place only; false if it cannot.
  static bool RemapInPlace(void* p, size_t old_bytes, size_t new_bytes);
  // The mapping [p, p+bytes) is used from now on as two, [p, p+first) and
  // the rest, each unmapped or remapped on its own. The kernel needs no
  // notice (munmap and mremap take any range of pages); an OS that keeps
  // a record of mappings (the tests' fake) does.
  static void Split(void* /*p*/, size_t /*bytes*/, size_t /*first*/) {}
  // The pages are free: give their memory back. They read as zero when
  // touched again (MADV_DONTNEED) unless `lazy` (MADV_FREE), in which case
  // they keep their content until the kernel reclaims them.
  static void Release(void* p, size_t bytes, bool lazy = false);
  // The kernel must not back [p, p+bytes) with transparent huge pages
  // (MADV_NOHUGEPAGE): with THP set to "always", the first touch of any
  // byte in an aligned 2 MiB range makes all of it resident.
  static void NoHugePages(void* p, size_t bytes);
  // Extend the program break so that [result, result+bytes) is new memory
  // aligned to `align`; nullptr when the break cannot grow.
  static void* GrowBreak(size_t bytes, size_t align);
  // Give back the top of the break if [p, p+bytes) is exactly its top.
  static bool ShrinkBreak(void* p, size_t bytes);

  // Monotonic milliseconds (vDSO; no allocation, no lock).
  static uint64_t NowMs();
  static void Yield();
  static void SleepShort();  // ~50 us
  // Resident set size of this process in bytes (from /proc/self/statm read
  // with raw syscalls); 0 if unavailable.
  static size_t ResidentBytes();

  // Write all of buf to fd, retrying on EINTR/short writes.
  static void Write(int fd, const char* buf, size_t len);

  // Starts a detached thread running fn(nullptr), with a stack of
  // `stack_bytes` (0: the default) and every signal blocked, so that no
  // signal meant for the program lands in it: one the program blocks in
  // its own threads to take with sigwait or a signalfd, or whose handler it
  // expects to run in one of its threads. The caller's mask is restored.
  // False if the thread could not be created.
  static bool StartThread(void* (*fn)(void*), size_t stack_bytes);
  // Sleeps while *word == expected (a private futex), with no timeout;
  // returns at once if it differs, and may return early (a signal, a
  // spurious wake-up): callers loop. Wake wakes one thread sleeping on it.
  static void WaitWhileEquals(std::atomic<int>* word, int expected);
  static void Wake(std::atomic<int>* word);
};

// Fatal error: writes "strata: <msg>\n" to stderr without allocating and
// aborts. Use Fatalf for a message naming an address or size.
[[noreturn]] void Fatal(const char* msg);
// A tiny formatter: %s (const char*), %p (pointer as hex), %zu (size_t),
// %d (int), %x (hex unsigned; %zx for size_t), %%. No allocation; output truncated at 512.
[[noreturn]] void Fatalf(const char* fmt, ...);
void Warnf(const char* fmt, ...);

}  // namespace strata
