// Options: every setting of strata, listed once.
//
// Each row: environment variable suffix (STRATA_<NAME>), field, type,
// default, meaning. The list produces the Options struct, its defaults, the
// parser (ReadOptions, run once at initialisation, without allocating) and
// the option table printed by `PrintOptionsMarkdown` (docs/options.md).
//
// A value that does not parse gets one warning line on stderr naming the
// variable and the value, and the default is kept.
#pragma once

#include "alloc/base.h"

namespace strata {

// Kinds of values.
enum class OptKind : uint8_t { kInt, kBool, kChoice, kString };

// X(NAME, field, kind, default_text, choices ("a|b|c" for kChoice), help)
#define STRATA_OPTION_LIST(X)                                                                 \
  X(SOURCE, source, kChoice, "mmap", "mmap|brk",                                              \
    "Where the page heap gets its chunks: mmap, or brk (falling back to mmap when the break " \
    "cannot grow).")                                                                          \
  X(DECAY_MS, decay_ms, kInt, "500", "",                                                     \
    "Free pages idle for longer than this many milliseconds are returned to the OS; -1 "      \
    "never returns them, 0 returns them at once: slow, since pages freed and reused at once " \
    "fault in again each time (jq and mawk building a long string by copying ran 9-23x "         \
    "slower than glibc), where 1 cost nothing there. While one thread allocates, free "       \
    "memory idle for 50 ms (or this, if shorter) also goes back as soon as large objects or " \
    "the page heap need new pages (README, \"Returning memory\"). The default was chosen by "  \
    "measurement (docs/benchmarks.md, \"Choosing the decay time\").")                         \
  X(BACKGROUND, background, kBool, "1", "",                                                   \
    "Return idle free pages from a background thread, so a program that goes idle also gives " \
    "its memory back. The thread starts at the first free once the program has held 8 MiB "   \
    "at the same time, blocks every signal, and sleeps until a free wakes it while nothing "  \
    "is left to give back; a program that must stay single-threaded beyond that "             \
    "(unshare(CLONE_NEWUSER)) needs 0. While one thread allocates, it also gives back at "   \
    "once what strata holds free whenever the process grows past its peak RSS by other "     \
    "means than strata's own pages (README, \"Returning memory\").")                          \
  X(RELEASE, release, kChoice, "dontneed", "dontneed|free",                                   \
    "How pages are returned: MADV_DONTNEED (RSS drops at once) or MADV_FREE (the kernel "     \
    "reclaims them lazily).")                                                                 \
  X(THREAD_CACHE_BYTES, thread_cache_bytes, kInt, "4194304", "",                              \
    "Upper bound on the bytes one thread cache may hold (shrinks as threads multiply).")      \
  X(STATS, stats, kChoice, "off", "off|0|1|text|json",                                        \
    "Print a statistics report at exit: text (or 1) for people, json for programs.")          \
  X(STATS_FILE, stats_file, kString, "", "",                                                  \
    "Write the exit report (and interval lines) to this file instead of stderr; %p in the "   \
    "name becomes the process id.")                                                           \
  X(STATS_INTERVAL_MS, stats_interval_ms, kInt, "0", "",                                      \
    "Also write one JSON line of statistics every this many milliseconds (0: never).")        \
  X(CHECK, check, kBool, "0", "",                                                             \
    "Checking mode: every malloc and free is validated on the slow path (double and invalid " \
    "frees, writes after free, sized-free mismatches, heap invariants); slower.")

struct Options {
#define STRATA_OPTION_FIELD(NAME, field, KIND_, DEF_, CHOICES_, HELP_) \
  int64_t field = 0;                                              \
  const char* field##_text = nullptr;
  STRATA_OPTION_LIST(STRATA_OPTION_FIELD)
#undef STRATA_OPTION_FIELD
};

// For kChoice options the int value is the index of the choice; for kBool
// 0 or 1; for kString `field_text` points to a static copy of the value
// (the environment may change under the program) and the int is its length.
void ReadOptions(Options* out);

struct OptionInfo {
  const char* name;  // without the STRATA_ prefix
  OptKind kind;
  const char* default_text;
  const char* choices;
  const char* help;
};
const OptionInfo* OptionTable(size_t* count);

// Looks up NAME=value in the environment without allocating (walks
// environ, or /proc/self/environ before libc has set environ up).
const char* FindEnv(const char* name);

}  // namespace strata
