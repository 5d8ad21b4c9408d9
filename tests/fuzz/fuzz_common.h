// Shared by the fuzz targets: a fatal error that names the target, and a
// reader that decodes operations from the fuzzer's input bytes (reading
// past the end yields zeros, so every input is a valid program).
#pragma once

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// Each target defines its name for the messages.
extern const char* const kFuzzTarget;

[[noreturn]] __attribute__((format(printf, 1, 2))) inline void Die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", kFuzzTarget);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

struct Reader {
  const uint8_t* d;
  size_t n;
  size_t i = 0;
  bool more() const { return i < n; }
  uint8_t u8() { return i < n ? d[i++] : 0; }
  uint16_t u16() {
    uint16_t lo = u8();
    return uint16_t(lo | (u8() << 8));
  }
  uint32_t u24() {
    uint32_t lo = u16();
    return lo | (uint32_t(u8()) << 16);
  }
};
