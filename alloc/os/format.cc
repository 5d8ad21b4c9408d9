#include "alloc/os/format.h"

namespace strata {

void TextBuf::U64(uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = char('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) Put(tmp[--n]);
}

void TextBuf::Hex(uint64_t v) {
  Str("0x");
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  while (n) Put(tmp[--n]);
}

void TextBuf::Fixed(double v, int digits) {
  if (v != v) { Str("nan"); return; }
  if (v < 0) { Put('-'); v = -v; }
  uint64_t scale = 1;
  for (int i = 0; i < digits; ++i) scale *= 10;
  if (v > 1e18) v = 1e18;  // integer and fraction parts kept apart: no overflow
  uint64_t whole = uint64_t(v);
  uint64_t frac = uint64_t((v - double(whole)) * double(scale) + 0.5);
  if (frac >= scale) {
    ++whole;
    frac -= scale;
  }
  U64(whole);
  if (digits > 0) {
    Put('.');
    for (uint64_t d = scale / 10; d > 0; d /= 10) Put(char('0' + (frac / d) % 10));
  }
}

void TextBuf::PadLeftFrom(size_t mark, size_t width) {
  size_t written = len_ - mark;
  if (written >= width) return;
  size_t pad = width - written;
  // Shift what was written right by `pad` (within the buffer only).
  for (size_t i = len_; i-- > mark;) {
    if (i + pad + 1 < cap_) buf_[i + pad] = buf_[i];
  }
  for (size_t i = mark; i < mark + pad; ++i) {
    if (i + 1 < cap_) buf_[i] = ' ';
  }
  len_ += pad;
}

void TextBuf::Vformat(const char* fmt, va_list ap) {
  for (const char* f = fmt; *f; ++f) {
    if (*f != '%') { Put(*f); continue; }
    ++f;
    bool is_size = false, is_long = false;
    while (*f == 'z' || *f == 'l') {
      if (*f == 'z') is_size = true; else is_long = true;
      ++f;
    }
    switch (*f) {
      case 's': { const char* s = va_arg(ap, const char*); Str(s ? s : "(null)"); break; }
      case 'c': Put(char(va_arg(ap, int))); break;
      case 'd':
        if (is_size) I64(va_arg(ap, ptrdiff_t));
        else if (is_long) I64(va_arg(ap, long long));
        else I64(va_arg(ap, int));
        break;
      case 'u':
        if (is_size) U64(va_arg(ap, size_t));
        else if (is_long) U64(va_arg(ap, unsigned long long));
        else U64(va_arg(ap, unsigned));
        break;
      case 'x':
        if (is_size) Hex(va_arg(ap, size_t));
        else if (is_long) Hex(va_arg(ap, unsigned long long));
        else Hex(va_arg(ap, unsigned));
        break;
      case 'p': Hex(uintptr_t(va_arg(ap, void*))); break;
      case '%': Put('%'); break;
      case '\0': return;
      default: Put('%'); Put(*f); break;
    }
  }
}

void TextBuf::Format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Vformat(fmt, ap);
  va_end(ap);
}

}  // namespace strata
