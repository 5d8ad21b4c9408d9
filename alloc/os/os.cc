// RealOs: raw kernel calls. See os.h for the contract.
#include "alloc/os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alloc/os/format.h"

namespace strata {

void* RealOs::Map(size_t bytes, size_t align) {
  if (align <= kPageSize) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  // Over-map by the alignment and trim both ends.
  size_t span = bytes + align - kPageSize;
  if (span < bytes) return nullptr;  // overflow
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t start = uintptr_t(raw);
  uintptr_t aligned = AlignUp(start, align);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + span;
  if (end > aligned + bytes) munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
  return reinterpret_cast<void*>(aligned);
}

void RealOs::Unmap(void* p, size_t bytes) { munmap(p, bytes); }

void* RealOs::Remap(void* p, size_t old_bytes, size_t new_bytes) {
  void* q = mremap(p, old_bytes, new_bytes, MREMAP_MAYMOVE);
  return q == MAP_FAILED ? nullptr : q;
}

bool RealOs::RemapInPlace(void* p, size_t old_bytes, size_t new_bytes) {
  return mremap(p, old_bytes, new_bytes, 0) != MAP_FAILED;
}

void RealOs::Release(void* p, size_t bytes, bool lazy) {
  if (lazy && madvise(p, bytes, MADV_FREE) == 0) return;
  madvise(p, bytes, MADV_DONTNEED);
}

void RealOs::NoHugePages(void* p, size_t bytes) {
  const int saved = errno;  // EINVAL without THP in the kernel: nothing to do, and malloc succeeded
  madvise(p, bytes, MADV_NOHUGEPAGE);
  errno = saved;
}

void* RealOs::GrowBreak(size_t bytes, size_t align) {
  void* cur = sbrk(0);
  if (cur == reinterpret_cast<void*>(-1)) return nullptr;
  uintptr_t pad = AlignUp(uintptr_t(cur), align) - uintptr_t(cur);
  if (pad + bytes < bytes) return nullptr;
  void* old = sbrk(intptr_t(pad + bytes));
  if (old == reinterpret_cast<void*>(-1)) return nullptr;
  if (old != cur) {
    // Someone moved the break between the two calls: give it back and fail
    // rather than hand out misaligned memory.
    sbrk(-intptr_t(pad + bytes));
    return nullptr;
  }
  return reinterpret_cast<void*>(uintptr_t(cur) + pad);
}

bool RealOs::ShrinkBreak(void* p, size_t bytes) {
  void* cur = sbrk(0);
  if (uintptr_t(cur) != uintptr_t(p) + bytes) return false;
  return sbrk(-intptr_t(bytes)) != reinterpret_cast<void*>(-1);
}

uint64_t RealOs::NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

void RealOs::Yield() { sched_yield(); }

void RealOs::SleepShort() {
  struct timespec ts = {0, 50 * 1000};
  nanosleep(&ts, nullptr);
}

size_t RealOs::ResidentBytes() {
  int saved = errno;
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) { errno = saved; return 0; }
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  errno = saved;
  if (n <= 0) return 0;
  buf[n] = '\0';
  // Second field: resident pages.
  const char* s = buf;
  while (*s && *s != ' ') ++s;
  while (*s == ' ') ++s;
  size_t pages = 0;
  while (*s >= '0' && *s <= '9') pages = pages * 10 + size_t(*s++ - '0');
  return pages * kPageSize;
}

void RealOs::Write(int fd, const char* buf, size_t len) {
  int saved = errno;
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    buf += n;
    len -= size_t(n);
  }
  errno = saved;
}

namespace {
void WriteMessage(const char* fmt, va_list ap) {
  char buf[512];
  TextBuf out(buf, sizeof buf);
  out.Str("strata: ");
  out.Vformat(fmt, ap);
  if (out.truncated()) out.Clear(), out.Str("strata: (message truncated)");
  out.Put('\n');
  RealOs::Write(2, buf, out.size());
}
}  // namespace

void Fatal(const char* msg) { Fatalf("%s", msg); }

void Fatalf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  WriteMessage(fmt, ap);
  va_end(ap);
  abort();
}

void Warnf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  WriteMessage(fmt, ap);
  va_end(ap);
}

bool RealOs::StartThread(void* (*fn)(void*), size_t stack_bytes) {
  sigset_t all, old;
  sigfillset(&all);  // glibc keeps its own signals (cancellation, setxid) open
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (stack_bytes != 0) pthread_attr_setstacksize(&attr, stack_bytes);
  pthread_t t;
  const bool ok = pthread_create(&t, &attr, fn, nullptr) == 0;
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return ok;
}

// The word's address is all the kernel needs: std::atomic<int> is an int.
static_assert(sizeof(std::atomic<int>) == sizeof(int));

void RealOs::WaitWhileEquals(std::atomic<int>* word, int expected) {
  const int saved = errno;  // EAGAIN or EINTR must not reach the program
  syscall(SYS_futex, reinterpret_cast<int*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
  errno = saved;
}

void RealOs::Wake(std::atomic<int>* word) {
  const int saved = errno;
  syscall(SYS_futex, reinterpret_cast<int*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  errno = saved;
}

}  // namespace strata
