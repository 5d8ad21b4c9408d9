// RTLD_DEEPBIND. A library that dlopen() loads with RTLD_DEEPBIND looks up
// symbols in itself and its own dependencies before the global scope, where
// LD_PRELOAD put strata: its calls to malloc, free and the rest bind to
// glibc's. Blocks then cross between the two allocators, and one frees the
// other's. PHP loads its extensions this way: with strata preloaded,
// `php -r 'echo 1;'` crashed in glibc's free, called by pdo.so on a block
// strata's malloc had made. jemalloc and snmalloc mended this with glibc's
// __malloc_hook, which glibc 2.34 removed; tcmalloc and mimalloc do not (a
// block of theirs handed to glibc's free may crash, or enter glibc's caches
// and be handed out twice).
//
// What strata does:
//  1. It wraps dlopen. Without RTLD_DEEPBIND the wrapper ends in a tail
//     call to glibc's dlopen, so that glibc sees the real caller (whose
//     DT_RPATH and DT_RUNPATH the search for a bare name uses). With it,
//     a bare name is first looked for along the caller's search path
//     (dlinfo RTLD_DI_SERINFO) and passed on as a full path; then, in every
//     object that call loaded, the relocations of malloc-family symbols
//     that bind to glibc's functions are rewritten to the process's
//     allocator (the global scope's definition: strata's). Their GOT slots
//     are made writable for the write when RELRO protects them.
//  2. The library's constructors run inside dlopen, before step 1 ends:
//     what they allocate is glibc's, and may reach strata's free, realloc
//     or malloc_usable_size later. From the first RTLD_DEEPBIND load on, a
//     pointer strata does not own goes to glibc's functions
//     (SetForeignAllocator) instead of being a fatal error.
// Both run only for RTLD_DEEPBIND loads; any other dlopen is glibc's own.
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

#include "alloc/os/spinlock.h"
#include "alloc/strata.h"
#include "shim/shim.h"

namespace strata::shim {
namespace {

using DlopenFn = void* (*)(const char*, int);

// The symbols whose bindings are rewritten: every allocation and release
// entry point strata exports that a library may call.
constexpr const char* kSymbols[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "malloc_usable_size", "cfree", "free_sized",
    "free_aligned_sized", "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc",
    "__libc_memalign", "__libc_valloc", "__libc_pvalloc",
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm",
    "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t", "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t", "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t"};
constexpr size_t kNumSymbols = sizeof kSymbols / sizeof kSymbols[0];

// For each symbol: glibc's definition (what a deep-bound library finds
// first) and the process's (the global scope's). Filled once, under
// g_setup_lock; read after g_ready.
struct Binding {
  void* glibc;
  void* ours;
};
Binding g_bindings[kNumSymbols];
std::atomic<DlopenFn> g_real_dlopen{nullptr};
void (*g_glibc_free)(void*) = nullptr;
size_t (*g_glibc_usable_size)(void*) = nullptr;
ForeignAllocator g_glibc_allocator;
bool g_ready = false;
SpinLock g_setup_lock;

DlopenFn RealDlopen() {
  DlopenFn f = g_real_dlopen.load(std::memory_order_acquire);
  if (STRATA_LIKELY(f != nullptr)) return f;
  f = reinterpret_cast<DlopenFn>(dlsym(RTLD_NEXT, "dlopen"));
  g_real_dlopen.store(f, std::memory_order_release);
  return f;
}

// Resolves the symbol tables once. False if glibc's allocator cannot be
// found (then nothing is rewritten).
bool Setup() {
  LockGuard g(g_setup_lock);
  if (g_ready) return true;
  void* libc = RealDlopen()("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  if (libc == nullptr) return false;
  for (size_t i = 0; i < kNumSymbols; ++i) {
    g_bindings[i].glibc = dlsym(libc, kSymbols[i]);
    g_bindings[i].ours = dlsym(RTLD_DEFAULT, kSymbols[i]);
  }
  g_glibc_free = reinterpret_cast<void (*)(void*)>(dlsym(libc, "free"));
  g_glibc_usable_size = reinterpret_cast<size_t (*)(void*)>(dlsym(libc, "malloc_usable_size"));
  dlclose(libc);  // RTLD_NOLOAD took a reference
  if (g_glibc_free == nullptr || g_glibc_usable_size == nullptr) return false;
  g_glibc_allocator = ForeignAllocator{g_glibc_free, g_glibc_usable_size};
  g_ready = true;
  return true;
}

// ---- which objects a call loaded ----

constexpr size_t kMaxObjects = 4096;
struct ObjectSet {
  size_t n = 0;
  uintptr_t base[kMaxObjects];
};

int Record(dl_phdr_info* info, size_t, void* arg) {
  auto* set = static_cast<ObjectSet*>(arg);
  if (set->n < kMaxObjects) set->base[set->n++] = info->dlpi_addr;
  return 0;
}

bool Contains(const ObjectSet& set, uintptr_t base) {
  for (size_t i = 0; i < set.n; ++i) {
    if (set.base[i] == base) return true;
  }
  return false;
}

// ---- rewriting one object's bindings ----

// Stores v at slot, making its page writable for the store when the object
// has it read-only (RELRO, or a read-only segment), and giving the page its
// protection back after.
void StoreSlot(void** slot, void* v, const dl_phdr_info* info) {
  const uintptr_t a = uintptr_t(slot);
  int prot = -1;  // -1: writable as it is
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
    if (a < lo || a >= hi) continue;
    if (ph.p_type == PT_GNU_RELRO) {
      prot = PROT_READ;
      break;
    }
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W) == 0) {
      prot = ((ph.p_flags & PF_R) ? PROT_READ : 0) | ((ph.p_flags & PF_X) ? PROT_EXEC : 0);
    }
  }
  if (prot < 0) {
    __atomic_store_n(slot, v, __ATOMIC_RELEASE);
    return;
  }
  const uintptr_t page = AlignDown(a, kPageSize);
  const size_t len = AlignUp(a + sizeof(void*), kPageSize) - page;
  if (mprotect(reinterpret_cast<void*>(page), len, prot | PROT_READ | PROT_WRITE) != 0) return;
  __atomic_store_n(slot, v, __ATOMIC_RELEASE);
  mprotect(reinterpret_cast<void*>(page), len, prot);
}

// The dynamic section's pointers are absolute once glibc relocated the
// object on most targets, relative on some: either way, an address.
uintptr_t DynAddress(uintptr_t base, ElfW(Addr) v) { return v < base ? base + v : v; }

struct Tables {
  const ElfW(Sym)* symtab = nullptr;
  const char* strtab = nullptr;
  const ElfW(Rela)* rela = nullptr;
  size_t rela_bytes = 0;
  const ElfW(Rela)* jmprel = nullptr;
  size_t jmprel_bytes = 0;
};

bool ReadTables(const dl_phdr_info* info, Tables* t) {
  const ElfW(Dyn)* dyn = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
      dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    }
  }
  if (dyn == nullptr) return false;
  bool rela = true;
  for (; dyn->d_tag != DT_NULL; ++dyn) {
    const uintptr_t b = info->dlpi_addr;
    switch (dyn->d_tag) {
      case DT_SYMTAB: t->symtab = reinterpret_cast<const ElfW(Sym)*>(DynAddress(b, dyn->d_un.d_ptr)); break;
      case DT_STRTAB: t->strtab = reinterpret_cast<const char*>(DynAddress(b, dyn->d_un.d_ptr)); break;
      case DT_RELA: t->rela = reinterpret_cast<const ElfW(Rela)*>(DynAddress(b, dyn->d_un.d_ptr)); break;
      case DT_RELASZ: t->rela_bytes = dyn->d_un.d_val; break;
      case DT_JMPREL: t->jmprel = reinterpret_cast<const ElfW(Rela)*>(DynAddress(b, dyn->d_un.d_ptr)); break;
      case DT_PLTRELSZ: t->jmprel_bytes = dyn->d_un.d_val; break;
      case DT_PLTREL: rela = dyn->d_un.d_val == DT_RELA; break;
      default: break;
    }
  }
  return rela && t->symtab != nullptr && t->strtab != nullptr;  // x86-64 and AArch64 use RELA
}

bool IsSlotRelocation(uint32_t type) {
#if defined(__x86_64__)
  return type == R_X86_64_JUMP_SLOT || type == R_X86_64_GLOB_DAT || type == R_X86_64_64;
#elif defined(__aarch64__)
  return type == R_AARCH64_JUMP_SLOT || type == R_AARCH64_GLOB_DAT || type == R_AARCH64_ABS64;
#else
  (void)type;
  return false;
#endif
}

// The entry of kSymbols named `name`, or kNumSymbols.
size_t SymbolIndex(const char* name) {
  for (size_t i = 0; i < kNumSymbols; ++i) {
    if (strcmp(name, kSymbols[i]) == 0) return i;
  }
  return kNumSymbols;
}

struct RebindArgs {
  const ObjectSet* before;
  void* deep[kNumSymbols];  // what the loaded library's scope binds each symbol to
};

// Rewrites the relocations in [r, r + bytes) of the object `info` that
// bind an allocator symbol to glibc: resolved ones that hold glibc's
// function, and lazy ones not yet resolved that the library's scope
// resolves to glibc's.
void RebindRelocations(const dl_phdr_info* info, const Tables& t, const ElfW(Rela)* r, size_t bytes,
                       const RebindArgs& a) {
  if (r == nullptr) return;
  const size_t n = bytes / sizeof(ElfW(Rela));
  for (size_t k = 0; k < n; ++k) {
    if (!IsSlotRelocation(uint32_t(ELF64_R_TYPE(r[k].r_info)))) continue;
    const size_t sym = ELF64_R_SYM(r[k].r_info);
    if (sym == 0 || t.symtab[sym].st_shndx != SHN_UNDEF) continue;  // its own definition: leave it
    const size_t i = SymbolIndex(t.strtab + t.symtab[sym].st_name);
    if (i == kNumSymbols) continue;
    const Binding& b = g_bindings[i];
    if (b.glibc == nullptr || b.ours == nullptr || b.ours == b.glibc) continue;
    void** slot = reinterpret_cast<void**>(info->dlpi_addr + r[k].r_offset);
    void* now = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (now == b.ours) continue;
    const bool to_glibc = now == b.glibc || a.deep[i] == b.glibc;
    if (to_glibc && r[k].r_addend == 0) StoreSlot(slot, b.ours, info);
  }
}

int RebindNewObject(dl_phdr_info* info, size_t, void* arg) {
  const auto* a = static_cast<const RebindArgs*>(arg);
  if (Contains(*a->before, info->dlpi_addr)) return 0;
  Tables t;
  if (!ReadTables(info, &t)) return 0;
  RebindRelocations(info, t, t.jmprel, t.jmprel_bytes, *a);
  RebindRelocations(info, t, t.rela, t.rela_bytes, *a);
  return 0;
}

// ---- the search for a bare name, from the caller's point of view ----

// Writes into `out` the first "dir/file" that exists along the search path
// of the object containing `caller` (its DT_RPATH, LD_LIBRARY_PATH, its
// DT_RUNPATH, the system directories). False if none does.
bool FindForCaller(const void* caller, const char* file, char* out, size_t len) {
  Dl_info dli;
  link_map* lm = nullptr;
  if (dladdr1(caller, &dli, reinterpret_cast<void**>(&lm), RTLD_DL_LINKMAP) == 0 || lm == nullptr) {
    return false;
  }
  Dl_serinfo size;
  if (dlinfo(lm, RTLD_DI_SERINFOSIZE, &size) != 0 || size.dls_size < sizeof(Dl_serinfo)) return false;
  auto* info = static_cast<Dl_serinfo*>(strata::Malloc(size.dls_size));
  if (info == nullptr) return false;
  memcpy(info, &size, sizeof size);
  bool found = false;
  if (dlinfo(lm, RTLD_DI_SERINFO, info) == 0) {
    const size_t flen = strlen(file);
    for (unsigned i = 0; i < info->dls_cnt && !found; ++i) {
      const char* dir = info->dls_serpath[i].dls_name;
      const size_t dlen = strlen(dir);
      if (dlen + 1 + flen + 1 > len) continue;
      memcpy(out, dir, dlen);
      out[dlen] = '/';
      memcpy(out + dlen + 1, file, flen + 1);
      found = access(out, F_OK) == 0;
    }
  }
  strata::Free(info);
  return found;
}

// The RTLD_DEEPBIND path of dlopen (kept out of the wrapper so that the
// wrapper's other path stays a bare tail call).
__attribute__((noinline)) void* DlopenDeepBind(const char* file, int mode, const void* caller) {
  if (!Setup()) return RealDlopen()(file, mode);
  SetForeignAllocator(&g_glibc_allocator);  // before: its constructors run inside dlopen
  char path[4096];
  if (file != nullptr && strchr(file, '/') == nullptr && FindForCaller(caller, file, path, sizeof path)) {
    file = path;
  }
  auto* before = static_cast<ObjectSet*>(strata::Malloc(sizeof(ObjectSet)));
  if (before != nullptr) {
    before->n = 0;
    dl_iterate_phdr(Record, before);
  }
  void* handle = RealDlopen()(file, mode);
  if (handle != nullptr && before != nullptr) {
    // dlsym before dl_iterate_phdr: the callbacks run under the loader's
    // write lock, and dlsym takes its load lock (the order dlopen takes
    // them in is the other one).
    RebindArgs args;
    args.before = before;
    for (size_t i = 0; i < kNumSymbols; ++i) args.deep[i] = dlsym(handle, kSymbols[i]);
    dl_iterate_phdr(RebindNewObject, &args);
  }
  strata::Free(before);
  return handle;
}

}  // namespace
}  // namespace strata::shim

extern "C" STRATA_EXPORT void* dlopen(const char* file, int mode) {
  if (__builtin_expect((mode & RTLD_DEEPBIND) == 0, 1)) {
    return strata::shim::RealDlopen()(file, mode);  // a tail call: see the top of this file
  }
  return strata::shim::DlopenDeepBind(file, mode, __builtin_return_address(0));
}
