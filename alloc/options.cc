#include "alloc/options.h"

#include <fcntl.h>
#include <unistd.h>

#include "alloc/os/os.h"

extern char** environ;

namespace strata {

namespace {

const OptionInfo kTable[] = {
#define STRATA_OPTION_ROW(NAME, field, KIND_, DEF_, CHOICES_, HELP_) \
  {#NAME, OptKind::KIND_, DEF_, CHOICES_, HELP_},
    STRATA_OPTION_LIST(STRATA_OPTION_ROW)
#undef STRATA_OPTION_ROW
};

// Before libc sets environ (the loader may call malloc first), the
// environment is read once from /proc/self/environ into this buffer.
char g_env_copy[32 * 1024];
bool g_env_copy_loaded = false;

bool StartsWithVar(const char* entry, const char* name, const char** value) {
  size_t i = 0;
  while (name[i] != '\0' && entry[i] == name[i]) ++i;
  if (name[i] != '\0' || entry[i] != '=') return false;
  *value = entry + i + 1;
  return true;
}

bool Equal(const char* a, const char* b, size_t blen) {
  size_t i = 0;
  for (; i < blen; ++i) {
    if (a[i] != b[i]) return false;
  }
  return a[i] == '\0';
}

bool ParseInt(const char* s, int64_t* out) {
  bool neg = false;
  if (*s == '-') { neg = true; ++s; }
  if (*s < '0' || *s > '9') return false;
  int64_t v = 0;
  for (; *s >= '0' && *s <= '9'; ++s) {
    if (v > (INT64_MAX - 9) / 10) return false;
    v = v * 10 + (*s - '0');
  }
  if (*s != '\0') return false;
  *out = neg ? -v : v;
  return true;
}

// Index of `s` in "a|b|c", or -1.
int64_t ChoiceIndex(const char* choices, const char* s) {
  int64_t idx = 0;
  const char* start = choices;
  for (const char* c = choices;; ++c) {
    if (*c == '|' || *c == '\0') {
      if (Equal(s, start, size_t(c - start))) return idx;
      if (*c == '\0') return -1;
      ++idx;
      start = c + 1;
    }
  }
}

bool ParseValue(const OptionInfo& o, const char* text, int64_t* value) {
  switch (o.kind) {
    case OptKind::kInt: return ParseInt(text, value);
    case OptKind::kBool:
      if (Equal(text, "1", 1) || Equal(text, "true", 4) || Equal(text, "yes", 3) || Equal(text, "on", 2)) {
        *value = 1;
        return true;
      }
      if (Equal(text, "0", 1) || Equal(text, "false", 5) || Equal(text, "no", 2) || Equal(text, "off", 3)) {
        *value = 0;
        return true;
      }
      return false;
    case OptKind::kChoice: *value = ChoiceIndex(o.choices, text); return *value >= 0;
    case OptKind::kString: {
      size_t n = 0;
      while (text[n] != '\0') ++n;
      *value = int64_t(n);
      return true;
    }
  }
  return false;
}

}  // namespace

const char* FindEnv(const char* name) {
  const char* value = nullptr;
  if (environ != nullptr) {
    for (char** e = environ; *e != nullptr; ++e) {
      if (StartsWithVar(*e, name, &value)) return value;
    }
    return nullptr;
  }
  if (!g_env_copy_loaded) {
    g_env_copy_loaded = true;
    int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      size_t len = 0;
      while (len + 1 < sizeof g_env_copy) {
        ssize_t n = read(fd, g_env_copy + len, sizeof g_env_copy - 1 - len);
        if (n <= 0) break;
        len += size_t(n);
      }
      g_env_copy[len] = '\0';
      close(fd);
    }
  }
  for (const char* e = g_env_copy; *e != '\0'; e += __builtin_strlen(e) + 1) {
    if (StartsWithVar(e, name, &value)) return value;
  }
  return nullptr;
}

// Option values are copied here, one slot per option: the environment's
// strings may be overwritten by the program (redis-server rewrites its argv
// and environ area for its process title), and the report prints them at
// exit. A slot holds a path (PATH_MAX); only the slots used are touched.
constexpr size_t kOptionTextMax = 4096;
static char g_option_text[sizeof kTable / sizeof kTable[0]][kOptionTextMax];

// A copy of `text` in option i's slot; nullptr if it does not fit.
static const char* KeepText(size_t i, const char* text) {
  size_t n = __builtin_strlen(text) + 1;
  if (n > kOptionTextMax) return nullptr;
  __builtin_memcpy(g_option_text[i], text, n);
  return g_option_text[i];
}

void ReadOptions(Options* out) {
  size_t i = 0;
#define STRATA_OPTION_READ(NAME, field, KIND_, DEF_, CHOICES_, HELP_)                          \
  {                                                                                         \
    const OptionInfo& o = kTable[i++];                                                      \
    int64_t v = 0;                                                                          \
    ParseValue(o, o.default_text, &v);                                                      \
    out->field = v;                                                                         \
    out->field##_text = o.default_text;                                                     \
    if (const char* text = FindEnv("STRATA_" #NAME)) {                                      \
      const char* kept = KeepText(i - 1, text);                                             \
      if (kept == nullptr) {                                                                \
        Warnf("ignoring STRATA_" #NAME ": its value is longer than %zu bytes; using the "   \
              "default %s", kOptionTextMax - 1, o.default_text);                            \
      } else if (ParseValue(o, kept, &v)) {                                                 \
        out->field = v;                                                                     \
        out->field##_text = kept;                                                           \
      } else {                                                                              \
        Warnf("ignoring STRATA_" #NAME "=%s: expected %s; using the default %s", text,      \
              o.kind == OptKind::kInt    ? "an integer"                                     \
              : o.kind == OptKind::kBool ? "0 or 1"                                         \
                                         : o.choices,                                       \
              o.default_text);                                                              \
      }                                                                                     \
    }                                                                                       \
  }
  STRATA_OPTION_LIST(STRATA_OPTION_READ)
#undef STRATA_OPTION_READ
}

const OptionInfo* OptionTable(size_t* count) {
  *count = sizeof kTable / sizeof kTable[0];
  return kTable;
}

}  // namespace strata
