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
//  1. It wraps dlopen, in assembly: without RTLD_DEEPBIND the wrapper is a
//     jump to glibc's dlopen whatever the compiler's options, so that glibc
//     sees the real caller (whose DT_RPATH and DT_RUNPATH the search for a
//     bare name uses). With it, a bare name not yet loaded is first looked
//     for along the caller's RPATH, LD_LIBRARY_PATH and RUNPATH (dlinfo
//     RTLD_DI_SERINFO) and passed on as a full path (glibc then sees
//     libstrata.so as the caller; the cache and system directories are the
//     same for both). Then, in every object that call loaded (each pinned
//     with RTLD_NOLOAD first, so that no object another thread is still
//     relocating is touched), the GOT slots of malloc-family symbols that
//     hold glibc's functions, and lazy PLT slots that the library's scope
//     would resolve to them, get the process's allocator (the global
//     scope's definition: strata's). Pages under RELRO are made writable
//     for the store and get their protection back.
//  2. The library's constructors run inside dlopen, before step 1 ends:
//     what they allocate is glibc's, and may reach strata's free, realloc
//     or malloc_usable_size later. From the first RTLD_DEEPBIND load on, a
//     pointer strata does not own goes to glibc's functions
//     (SetForeignAllocator) instead of being a fatal error.
// Both run only for RTLD_DEEPBIND loads of a file; any other dlopen is
// glibc's own. x86-64 only (the wrapper is assembly); elsewhere dlopen is
// not wrapped and deep-bound libraries keep glibc's allocator.
#if defined(__x86_64__)

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <string_view>

#include "alloc/os/spinlock.h"
#include "alloc/strata.h"

using DlopenFn = void* (*)(const char*, int);

extern "C" {
// glibc's dlopen, once found (the wrapper reads it).
__attribute__((visibility("hidden"))) DlopenFn strata_real_dlopen = nullptr;
__attribute__((visibility("hidden"))) DlopenFn strata_resolve_dlopen();
__attribute__((visibility("hidden"))) void* strata_dlopen_deep(const char* file, int mode, const void* caller);
}

// dlopen(file, mode): a jump to glibc's unless mode has RTLD_DEEPBIND (8),
// then strata_dlopen_deep(file, mode, return address). A jump, not a call:
// glibc takes the caller from its own return address.
static_assert(RTLD_DEEPBIND == 8);
asm(R"(
    .text
    .globl dlopen
    .type dlopen, @function
    .p2align 4
dlopen:
    .cfi_startproc
    testl $8, %esi
    jnz 2f
    movq strata_real_dlopen(%rip), %rax
    testq %rax, %rax
    jz 1f
    jmp *%rax
1:
    pushq %rdi
    .cfi_adjust_cfa_offset 8
    pushq %rsi
    .cfi_adjust_cfa_offset 8
    subq $8, %rsp
    .cfi_adjust_cfa_offset 8
    call strata_resolve_dlopen
    addq $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq %rsi
    .cfi_adjust_cfa_offset -8
    popq %rdi
    .cfi_adjust_cfa_offset -8
    jmp *%rax
2:
    movq (%rsp), %rdx
    jmp strata_dlopen_deep
    .cfi_endproc
    .size dlopen, .-dlopen
)");

DlopenFn strata_resolve_dlopen() {
  DlopenFn f = __atomic_load_n(&strata_real_dlopen, __ATOMIC_ACQUIRE);
  if (f == nullptr) {
    f = reinterpret_cast<DlopenFn>(dlsym(RTLD_NEXT, "dlopen"));
    __atomic_store_n(&strata_real_dlopen, f, __ATOMIC_RELEASE);
  }
  return f;
}

namespace strata::shim {
namespace {

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
// The entry of kSymbols named `name`, or kNumSymbols.
constexpr size_t IndexOf(std::string_view name) {
  size_t i = 0;
  while (i < kNumSymbols && name != kSymbols[i]) ++i;
  return i;
}
// glibc's, for the foreign blocks that reach strata.
constexpr size_t kFree = IndexOf("free"), kUsableSize = IndexOf("malloc_usable_size");
static_assert(kFree < kNumSymbols && kUsableSize < kNumSymbols);

DlopenFn RealDlopen() { return strata_resolve_dlopen(); }

// For each symbol, glibc's definition (what a deep-bound library finds
// first) and the process's (the global scope's); and glibc's free and
// malloc_usable_size for the blocks that reach strata anyway.
struct Glibc {
  void* glibc[kNumSymbols];
  void* ours[kNumSymbols];
  ForeignAllocator allocator;
};
Glibc g_glibc;
std::atomic<int> g_glibc_state{0};  // 0 not looked up, 1 ready, 2 not found
SpinLock g_glibc_lock;              // guards only the copy into g_glibc

// Looks the definitions up with no lock held (they call into the loader,
// which may be running a constructor that calls dlopen) and publishes them
// once. nullptr if glibc's allocator cannot be found.
const Glibc* Setup() {
  const int state = g_glibc_state.load(std::memory_order_acquire);
  if (state != 0) return state == 1 ? &g_glibc : nullptr;
  Glibc found;
  bool ok = false;
  if (void* libc = RealDlopen()("libc.so.6", RTLD_LAZY | RTLD_NOLOAD)) {
    for (size_t i = 0; i < kNumSymbols; ++i) {
      found.glibc[i] = dlsym(libc, kSymbols[i]);
      found.ours[i] = dlsym(RTLD_DEFAULT, kSymbols[i]);
    }
    found.allocator.free = reinterpret_cast<void (*)(void*)>(found.glibc[kFree]);
    found.allocator.usable_size = reinterpret_cast<size_t (*)(void*)>(found.glibc[kUsableSize]);
    ok = found.allocator.free != nullptr && found.allocator.usable_size != nullptr;
    dlclose(libc);  // RTLD_NOLOAD took a reference
  }
  dlerror();  // the C++ names are not in libc: no error must be left for the program
  LockGuard g(g_glibc_lock);
  if (g_glibc_state.load(std::memory_order_relaxed) == 0) {
    g_glibc = found;
    g_glibc_state.store(ok ? 1 : 2, std::memory_order_release);
  }
  return g_glibc_state.load(std::memory_order_relaxed) == 1 ? &g_glibc : nullptr;
}

// ---- which objects a call loaded ----

constexpr size_t kMaxObjects = 2048;
constexpr size_t kNameBytes = 32 << 10;
struct Objects {
  size_t n = 0;
  uintptr_t base[kMaxObjects];
  const char* name[kMaxObjects];  // into names (new objects only)
  void* pin[kMaxObjects];         // handles that keep pinned objects loaded
  size_t name_used = 0;
  char names[kNameBytes];
};

bool Contains(const Objects& set, uintptr_t base) {
  for (size_t i = 0; i < set.n; ++i) {
    if (set.base[i] == base) return true;
  }
  return false;
}

int RecordAll(dl_phdr_info* info, size_t, void* arg) {
  auto* set = static_cast<Objects*>(arg);
  if (set->n < kMaxObjects) set->base[set->n++] = info->dlpi_addr;
  return 0;
}

struct Found {
  const Objects* before;
  Objects* added;
};

// Objects not in `before`, with their names (to pin them by).
int RecordNew(dl_phdr_info* info, size_t, void* arg) {
  auto* f = static_cast<Found*>(arg);
  if (Contains(*f->before, info->dlpi_addr) || info->dlpi_name == nullptr) return 0;
  Objects* a = f->added;
  const size_t len = strlen(info->dlpi_name) + 1;
  if (len == 1 || a->n == kMaxObjects || a->name_used + len > kNameBytes) return 0;
  memcpy(a->names + a->name_used, info->dlpi_name, len);
  a->base[a->n] = info->dlpi_addr;
  a->name[a->n++] = a->names + a->name_used;
  a->name_used += len;
  return 0;
}

// ---- rewriting one object's bindings ----

// Stores v at slot, making its page writable for the store when the object
// has it read-only, and giving the page its protection back after. RELRO
// covers whole pages from its start to its end rounded down, as glibc
// protects it (a last partial page stays writable).
void StoreSlot(void** slot, void* v, const dl_phdr_info* info) {
  const uintptr_t a = uintptr_t(slot);
  int prot = -1;  // -1: writable as it is
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
    if (ph.p_type == PT_GNU_RELRO && a >= AlignDown(lo, kPageSize) && a < AlignDown(hi, kPageSize)) {
      prot = PROT_READ;
      break;
    }
    if (ph.p_type == PT_LOAD && a >= lo && a < hi && (ph.p_flags & PF_W) == 0) {
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

// Whether address v lies in one of the object's executable segments (an
// unresolved lazy slot points back into its PLT).
bool InOwnCode(uintptr_t v, const dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) != 0 && v >= lo && v < lo + ph.p_memsz) return true;
  }
  return false;
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
  return rela && t->symtab != nullptr && t->strtab != nullptr;
}

struct Rebind {
  const Glibc* g;
  const Objects* pinned;
  void* deep[kNumSymbols];  // what the loaded library's scope binds each symbol to
};

// Rewrites the relocations in [r, r + bytes) of the object `info` that
// bind an allocator symbol to glibc: slots that hold glibc's function, and
// lazy PLT slots, not yet resolved, that the library's scope would resolve
// to glibc's. A data word (GLOB_DAT, 64) that no longer holds glibc's
// function (the program stored another) is left alone.
void RebindRelocations(const dl_phdr_info* info, const Tables& t, const ElfW(Rela)* r, size_t bytes,
                       const Rebind& rb) {
  if (r == nullptr) return;
  const size_t n = bytes / sizeof(ElfW(Rela));
  for (size_t k = 0; k < n; ++k) {
    const uint32_t type = uint32_t(ELF64_R_TYPE(r[k].r_info));
    if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && type != R_X86_64_64) continue;
    const size_t sym = ELF64_R_SYM(r[k].r_info);
    if (sym == 0 || r[k].r_addend != 0 || t.symtab[sym].st_shndx != SHN_UNDEF) continue;  // its own: leave it
    const size_t i = IndexOf(t.strtab + t.symtab[sym].st_name);
    if (i == kNumSymbols) continue;
    void* glibc = rb.g->glibc[i];
    void* ours = rb.g->ours[i];
    if (glibc == nullptr || ours == nullptr || ours == glibc) continue;
    void** slot = reinterpret_cast<void**>(info->dlpi_addr + r[k].r_offset);
    void* now = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    const bool lazy = type == R_X86_64_JUMP_SLOT && InOwnCode(uintptr_t(now), info) && rb.deep[i] == glibc;
    if (now == glibc || lazy) StoreSlot(slot, ours, info);
  }
}

int RebindPinned(dl_phdr_info* info, size_t, void* arg) {
  const auto* rb = static_cast<const Rebind*>(arg);
  if (!Contains(*rb->pinned, info->dlpi_addr)) return 0;
  Tables t;
  if (!ReadTables(info, &t)) return 0;
  RebindRelocations(info, t, t.jmprel, t.jmprel_bytes, *rb);
  RebindRelocations(info, t, t.rela, t.rela_bytes, *rb);
  return 0;
}

// ---- the search for a bare name, from the caller's point of view ----

// Whether `path` is an ELF file for this machine (glibc skips others).
bool IsOurElf(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ElfW(Ehdr) h;
  const bool ok = read(fd, &h, sizeof h) == ssize_t(sizeof h) && memcmp(h.e_ident, ELFMAG, SELFMAG) == 0 &&
                  h.e_ident[EI_CLASS] == ELFCLASS64 && h.e_machine == EM_X86_64;
  close(fd);
  return ok;
}

// Writes into `out` the first "dir/file" along the DT_RPATH,
// LD_LIBRARY_PATH and DT_RUNPATH directories of the object containing
// `caller`, in glibc's order. False if none holds it (the cache and the
// system directories come next, the same from any caller), or if `file`
// is already loaded (glibc finds it by name first).
bool FindForCaller(const void* caller, const char* file, char* out, size_t len) {
  if (void* loaded = RealDlopen()(file, RTLD_LAZY | RTLD_NOLOAD)) {
    dlclose(loaded);
    return false;
  }
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
      if ((info->dls_serpath[i].dls_flags & (LA_SER_RUNPATH | LA_SER_LIBPATH)) == 0) continue;
      const char* dir = info->dls_serpath[i].dls_name;
      const size_t dlen = strlen(dir);
      if (dlen + 1 + flen + 1 > len) continue;
      memcpy(out, dir, dlen);
      out[dlen] = '/';
      memcpy(out + dlen + 1, file, flen + 1);
      found = IsOurElf(out);
    }
  }
  strata::Free(info);
  return found;
}

}  // namespace

SpinLock& DeepbindLock() { return g_glibc_lock; }

}  // namespace strata::shim

// The RTLD_DEEPBIND path of the dlopen wrapper.
void* strata_dlopen_deep(const char* file, int mode, const void* caller) {
  using namespace strata::shim;
  const Glibc* g = Setup();
  if (g == nullptr || file == nullptr) return RealDlopen()(file, mode);
  // Before the load: its constructors run inside dlopen, with glibc's malloc.
  strata::SetForeignAllocator(&g->allocator);
  char path[4096];
  if (strchr(file, '/') == nullptr && FindForCaller(caller, file, path, sizeof path)) file = path;
  auto* before = static_cast<Objects*>(strata::Malloc(sizeof(Objects)));
  auto* added = static_cast<Objects*>(strata::Malloc(sizeof(Objects)));
  if (before != nullptr) {
    before->n = 0;
    dl_iterate_phdr(RecordAll, before);
  }
  void* handle = RealDlopen()(file, mode);
  if (handle != nullptr && before != nullptr && added != nullptr) {
    // Loader calls only outside dl_iterate_phdr's callbacks, which run
    // under the loader's write lock (dlopen takes its locks the other way).
    added->n = 0;
    added->name_used = 0;
    Found f{before, added};
    dl_iterate_phdr(RecordNew, &f);
    // Each new object pinned: a load still in progress in another thread
    // (mapped, not yet relocated) finishes first, or the object is gone
    // (and leaves the set).
    size_t kept = 0;
    for (size_t i = 0; i < added->n; ++i) {
      void* h = RealDlopen()(added->name[i], RTLD_LAZY | RTLD_NOLOAD);
      if (h == nullptr) continue;
      added->pin[kept] = h;
      added->base[kept++] = added->base[i];
    }
    added->n = kept;
    Rebind rb;
    rb.g = g;
    rb.pinned = added;
    for (size_t i = 0; i < kNumSymbols; ++i) rb.deep[i] = dlsym(handle, kSymbols[i]);
    dl_iterate_phdr(RebindPinned, &rb);
    for (size_t i = 0; i < added->n; ++i) dlclose(added->pin[i]);
    dlerror();  // a success leaves no error from strata's own lookups
  }
  strata::Free(added);
  strata::Free(before);
  return handle;
}

#endif  // __x86_64__
