// A fixed-buffer text formatter. Used by fatal messages and by the stats
// writers: it never allocates, so it is safe inside malloc and at exit.
//
// Output past the buffer's capacity is dropped; `needed()` still counts it,
// so a caller can report the length a complete result would take.
#pragma once

#include <stdarg.h>

#include "alloc/base.h"

namespace strata {

class TextBuf {
 public:
  TextBuf(char* buf, size_t cap) : buf_(buf), cap_(cap) {}

  void Put(char c) {
    if (len_ + 1 < cap_) buf_[len_] = c;  // keep room for the terminator
    ++len_;
  }
  void Str(const char* s) {
    while (*s) Put(*s++);
  }
  void Str(const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i) Put(s[i]);
  }
  void U64(uint64_t v);
  void I64(int64_t v) {
    if (v < 0) { Put('-'); U64(uint64_t(0) - uint64_t(v)); } else { U64(uint64_t(v)); }
  }
  void Hex(uint64_t v);  // 0x-prefixed
  // Fixed-point decimal with `digits` decimals (no locale, no printf).
  void Fixed(double v, int digits);
  // Right-align in a field of `width` characters: call before writing and
  // pass the mark to PadTo afterwards.
  size_t Mark() const { return len_; }
  void PadLeftFrom(size_t mark, size_t width);
  void Spaces(size_t n) { while (n--) Put(' '); }
  // printf-like: %s %c %d %u %zu %llu %p %x %%; also %zd.
  void Vformat(const char* fmt, va_list ap);
  void Format(const char* fmt, ...) __attribute__((format(printf, 2, 3)));

  // NUL-terminates (within capacity) and returns the text written so far.
  const char* CStr() {
    if (cap_ > 0) buf_[len_ < cap_ ? len_ : cap_ - 1] = '\0';
    return buf_;
  }
  size_t size() const { return len_ < cap_ ? len_ : (cap_ ? cap_ - 1 : 0); }
  size_t needed() const { return len_; }
  bool truncated() const { return len_ + 1 > cap_; }
  void Clear() { len_ = 0; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
};

}  // namespace strata
