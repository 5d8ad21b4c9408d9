// Content patterns for tests that check that memory survives: every byte
// derives from a seed and its offset, so a wrong copy, an overlap or a
// stray write shows up as a mismatch at a precise offset.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace strata_test {

inline uint64_t PatternWord(uint64_t seed, size_t i) {
  uint64_t x = seed + (uint64_t(i) + 1) * 0x9e3779b97f4a7c15ull;
  x ^= x >> 31;
  return x * 0xbf58476d1ce4e5b9ull;
}

inline uint64_t SeedFor(const void* p, size_t size) {
  return uint64_t(uintptr_t(p)) * 31 + size;
}

inline void Fill(void* p, size_t n, uint64_t seed) {
  unsigned char* b = static_cast<unsigned char*>(p);
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w = PatternWord(seed, i);
    memcpy(b + 8 * i, &w, 8);
  }
  uint64_t last = PatternWord(seed, words);
  memcpy(b + 8 * words, &last, n % 8);
}

// Offset of the first byte that differs, or SIZE_MAX when all match.
inline size_t FirstMismatch(const void* p, size_t n, uint64_t seed) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w = PatternWord(seed, i);
    if (memcmp(b + 8 * i, &w, 8) != 0) return 8 * i;
  }
  uint64_t last = PatternWord(seed, words);
  if (memcmp(b + 8 * words, &last, n % 8) != 0) return 8 * words;
  return SIZE_MAX;
}

inline bool Intact(const void* p, size_t n, uint64_t seed) { return FirstMismatch(p, n, seed) == SIZE_MAX; }

}  // namespace strata_test
