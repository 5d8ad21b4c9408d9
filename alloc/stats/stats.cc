#include "alloc/stats/stats.h"

#include "alloc/os/format.h"

namespace strata {

ClassRow Row(const Snapshot& snap, size_t cls) {
  ClassRow r{};
  r.size = Info(cls).size;
  r.allocs = snap.threads.allocs[cls];
  r.frees = snap.threads.frees[cls];
  r.live = r.allocs >= r.frees ? r.allocs - r.frees : 0;
  r.spans = snap.central[cls].spans;
  r.cached = snap.central[cls].objects_out >= r.live ? snap.central[cls].objects_out - r.live : 0;
  return r;
}

void Finish(Snapshot* s) {
  for (size_t c = 1; c < kNumClasses; ++c) {
    ClassRow r = Row(*s, c);
    s->small_live_bytes += r.live * r.size;
    s->allocs += r.allocs;
    s->frees += r.frees;
    s->central_free_bytes += s->central[c].free_objects * r.size;
    s->lock_acquisitions += s->central[c].lock_acquisitions;
    s->lock_contended += s->central[c].lock_contended;
  }
  s->misses = s->threads.misses;
  s->hits = s->allocs >= s->misses ? s->allocs - s->misses : 0;
  // Page objects: their pages are the used pages not in small spans.
  uint64_t small_span_pages = 0;
  for (size_t c = 1; c < kNumClasses; ++c) small_span_pages += s->central[c].spans << Info(c).order;
  uint64_t po_pages = s->pages.used_pages >= small_span_pages ? s->pages.used_pages - small_span_pages : 0;
  s->page_object_bytes = po_pages << kPageShift;
  s->allocated_bytes = s->small_live_bytes + s->large.live_bytes + s->page_object_bytes;
  s->mapped_bytes = s->pages.mmap_bytes + s->pages.brk_bytes + s->large.live_bytes + s->metadata_bytes;
  s->released_bytes = s->pages.released_pages << kPageShift;
  s->heap_free_bytes = s->pages.free_pages << kPageShift;
  s->allocs += s->large.allocs + s->page_objects;
  s->frees += s->large.frees + s->page_object_frees;
}

namespace {

// "12.3 MiB" style sizes, right-aligned in `width`.
void Bytes(TextBuf& out, uint64_t b, size_t width) {
  size_t mark = out.Mark();
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) out.U64(b); else out.Fixed(v, 1);
  out.Put(' ');
  out.Str(kUnits[u]);
  out.PadLeftFrom(mark, width);
}

void Num(TextBuf& out, uint64_t v, size_t width) {
  size_t mark = out.Mark();
  out.U64(v);
  out.PadLeftFrom(mark, width);
}

}  // namespace

size_t WriteText(const Snapshot& s, char* buf, size_t len) {
  TextBuf out(buf, len);
  out.Str("strata statistics\n");
  out.Str("  totals\n");
  out.Str("    allocated (live)   "); Bytes(out, s.allocated_bytes, 12); out.Put('\n');
  out.Str("    mapped             "); Bytes(out, s.mapped_bytes, 12); out.Put('\n');
  out.Str("    resident (RSS)     "); Bytes(out, s.resident_bytes, 12); out.Put('\n');
  out.Str("    released to OS     "); Bytes(out, s.released_bytes, 12); out.Put('\n');
  out.Str("    metadata           "); Bytes(out, s.metadata_bytes, 12); out.Put('\n');
  out.Str("    thread caches      "); Bytes(out, s.cached_bytes, 12);
  out.Format("  in %zu live threads\n", size_t(s.live_threads));
  out.Str("    allocations        "); Num(out, s.allocs, 12); out.Put('\n');
  out.Str("    frees              "); Num(out, s.frees, 12); out.Put('\n');
  out.Str("  thread cache: hits "); out.U64(s.hits); out.Str(", misses "); out.U64(s.misses);
  out.Str(", flushes "); out.U64(s.threads.flushes); out.Put('\n');
  out.Str("  central lists: lock acquisitions "); out.U64(s.lock_acquisitions);
  out.Str(", contended "); out.U64(s.lock_contended); out.Put('\n');
  out.Str("  size classes (active only)\n");
  out.Str("      class       size      allocs       frees        live    spans   live bytes\n");
  for (size_t c = 1; c < kNumClasses; ++c) {
    ClassRow r = Row(s, c);
    if (r.allocs == 0 && r.spans == 0) continue;
    out.Spaces(4);
    Num(out, c, 7);
    Bytes(out, r.size, 11);
    Num(out, r.allocs, 12);
    Num(out, r.frees, 12);
    Num(out, r.live, 12);
    Num(out, r.spans, 9);
    Bytes(out, r.live * r.size, 13);
    out.Put('\n');
  }
  out.Str("  page heap: chunks "); out.U64(s.pages.chunks);
  out.Str(", splits "); out.U64(s.pages.splits);
  out.Str(", merges "); out.U64(s.pages.merges); out.Put('\n');
  out.Str("    free blocks by order:");
  for (unsigned k = 0; k < kNumOrders; ++k) { out.Put(' '); out.U64(s.pages.free_blocks[k]); }
  out.Put('\n');
  out.Str("    free "); Bytes(out, s.heap_free_bytes, 0);
  out.Str(", from mmap "); Bytes(out, s.pages.mmap_bytes, 0);
  out.Str(", from brk "); Bytes(out, s.pages.brk_bytes, 0); out.Put('\n');
  out.Str("  large objects: allocs "); out.U64(s.large.allocs);
  out.Str(", frees "); out.U64(s.large.frees);
  out.Str(", live "); out.U64(s.large.live); out.Str(" ("); Bytes(out, s.large.live_bytes, 0);
  out.Str("), mremaps "); out.U64(s.large.mremaps); out.Put('\n');
  out.CStr();
  return out.needed();
}

}  // namespace strata
