// Every C++ operator new and delete: plain, array, nothrow, sized (C++14),
// aligned (C++17) and their combinations.
//
// Out of memory: operator new calls the installed new_handler and retries,
// and throws std::bad_alloc when there is none; the nothrow forms return
// nullptr. libstrata.so does not link libstdc++: the handler and the throw
// are reached through weak references that the loader binds when the
// program has the C++ runtime loaded (any program that calls operator new
// does). Without it, running out of memory in operator new is fatal.
#include <new>

#include "alloc/strata.h"
#include "shim/shim.h"

extern "C" {
// std::get_new_handler() and std::__throw_bad_alloc(), by mangled name.
__attribute__((weak)) std::new_handler _ZSt15get_new_handlerv() noexcept;
__attribute__((weak, noreturn)) void _ZSt17__throw_bad_allocv();
}

namespace {

STRATA_COLD void* NewSlow(size_t size, size_t align, bool nothrow) {
  for (;;) {
    void* p = align > strata::kMinAlign ? strata::AlignedAlloc(align, size) : strata::Malloc(size);
    if (p != nullptr) return p;
    std::new_handler handler = _ZSt15get_new_handlerv != nullptr ? _ZSt15get_new_handlerv() : nullptr;
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      if (_ZSt17__throw_bad_allocv != nullptr) _ZSt17__throw_bad_allocv();
      strata::Fatalf("operator new(%zu): out of memory, and no C++ runtime to throw std::bad_alloc", size);
    }
    handler();
  }
}

// operator new's slow paths: on failure, the new_handler loop. The fast
// path tail-calls these.
template <bool kNothrow>
struct NewSlowPaths {
  STRATA_NOINLINE static void* Small(size_t size) {
    void* p = strata::MallocSlow(strata::SizeToClass(size), size);
    return p != nullptr ? p : NewSlow(size, 0, kNothrow);
  }
  STRATA_NOINLINE static void* Large(size_t size) {
    void* p = strata::MallocLarge(size);
    return p != nullptr ? p : NewSlow(size, 0, kNothrow);
  }
};

STRATA_INLINE void* New(size_t size) { return strata::Malloc<NewSlowPaths<false>>(size); }

STRATA_INLINE void* NewNothrow(size_t size) noexcept { return strata::Malloc<NewSlowPaths<true>>(size); }

STRATA_INLINE size_t Align(std::align_val_t a) {
  size_t align = static_cast<size_t>(a);
  if (!strata::IsPow2(align)) strata::Fatalf("operator new: alignment %zu is not a power of two", align);
  return align;
}

}  // namespace

STRATA_EXPORT_HOT void* operator new(size_t size) { return New(size); }
STRATA_EXPORT_HOT void* operator new[](size_t size) { return New(size); }
STRATA_EXPORT void* operator new(size_t size, const std::nothrow_t&) noexcept { return NewNothrow(size); }
STRATA_EXPORT void* operator new[](size_t size, const std::nothrow_t&) noexcept { return NewNothrow(size); }

STRATA_EXPORT void* operator new(size_t size, std::align_val_t a) { return NewSlow(size, Align(a), false); }
STRATA_EXPORT void* operator new[](size_t size, std::align_val_t a) { return NewSlow(size, Align(a), false); }
STRATA_EXPORT void* operator new(size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return NewSlow(size, Align(a), true);
}
STRATA_EXPORT void* operator new[](size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return NewSlow(size, Align(a), true);
}

STRATA_EXPORT_HOT void operator delete(void* p) noexcept { strata::Free(p); }
STRATA_EXPORT void operator delete[](void* p) noexcept { strata::Free(p); }
STRATA_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { strata::Free(p); }
STRATA_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { strata::Free(p); }
STRATA_EXPORT_HOT void operator delete(void* p, size_t size) noexcept { strata::FreeSized(p, size); }
STRATA_EXPORT void operator delete[](void* p, size_t size) noexcept { strata::FreeSized(p, size); }

STRATA_EXPORT void operator delete(void* p, std::align_val_t) noexcept { strata::Free(p); }
STRATA_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { strata::Free(p); }
STRATA_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { strata::Free(p); }
STRATA_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { strata::Free(p); }
STRATA_EXPORT void operator delete(void* p, size_t size, std::align_val_t) noexcept { strata::FreeSized(p, size); }
STRATA_EXPORT void operator delete[](void* p, size_t size, std::align_val_t) noexcept { strata::FreeSized(p, size); }
