#include "alloc/stats/stats.h"

#include "alloc/os/format.h"

namespace strata {

ClassRow Row(const Snapshot& snap, size_t cls) {
  ClassRow r{};
  r.size = Info(cls).size;
  r.allocs = snap.threads.allocs[cls];
  r.requested = snap.threads.requested[cls];
  r.spans = snap.central[cls].spans;
  // Objects out of the central list are either live or resting in a thread
  // cache; frees follow from allocs and live (exact when threads are quiet).
  r.cached = snap.cached_objects[cls];
  uint64_t out = snap.central[cls].objects_out;
  r.live = out >= r.cached ? out - r.cached : 0;
  if (r.live > r.allocs) r.live = r.allocs;  // racy snapshot of a busy heap
  r.frees = r.allocs - r.live;
  return r;
}

void Finish(Snapshot* s) {
  for (size_t c = 1; c < kNumClasses; ++c) {
    ClassRow r = Row(*s, c);
    s->small_live_bytes += r.live * r.size;
    s->allocs += r.allocs;
    s->frees += r.frees;
    s->central_free_bytes += s->central[c].free_objects * r.size;
    s->requested_bytes += r.requested;
    s->granted_bytes += r.allocs * r.size;
    s->lock_acquisitions += s->central[c].lock_acquisitions;
    s->lock_contended += s->central[c].lock_contended;
  }
  s->misses = s->threads.misses;
  s->hits = s->allocs >= s->misses ? s->allocs - s->misses : 0;
  s->central_free_bytes += s->mixed.free_bytes;
  // Page objects: their pages are the used pages not in small spans.
  uint64_t small_span_pages = s->mixed.spans;  // mixed spans are one page each
  for (size_t c = 1; c < kNumClasses; ++c) small_span_pages += s->central[c].spans << Info(c).order;
  uint64_t po_pages = s->pages.used_pages >= small_span_pages ? s->pages.used_pages - small_span_pages : 0;
  s->page_object_bytes = po_pages << kPageShift;
  s->allocated_bytes = s->small_live_bytes + s->large.live_bytes + s->page_object_bytes;
  s->mapped_bytes = s->pages.mmap_bytes + s->pages.brk_bytes + s->large.live_bytes + s->large.cached_bytes +
                   s->metadata_bytes;
  s->released_bytes = s->pages.released_pages << kPageShift;
  s->heap_free_bytes = s->pages.free_pages << kPageShift;
  s->allocs += s->large.allocs + s->page_objects;
  s->frees += s->large.frees + s->page_object_frees;
  s->internal_fragmentation =
      s->granted_bytes == 0 ? 0.0 : double(s->granted_bytes - s->requested_bytes) / double(s->granted_bytes);
  uint64_t largest = s->pages.largest_free_pages << kPageShift;
  s->external_fragmentation =
      s->heap_free_bytes == 0 ? 0.0 : 1.0 - double(largest) / double(s->heap_free_bytes);
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

namespace {

// Writes JSON members with the commas in the right places.
class Json {
 public:
  explicit Json(TextBuf& out) : out_(out) {}
  void Open(const char* key, char bracket) {
    Key(key);
    out_.Put(bracket);
    first_ = true;
  }
  void Close(char bracket) {
    out_.Put(bracket);
    first_ = false;
  }
  void U(const char* key, uint64_t v) { Key(key); out_.U64(v); }
  void I(const char* key, int64_t v) { Key(key); out_.I64(v); }
  void F(const char* key, double v) { Key(key); out_.Fixed(v, 6); }
  void S(const char* key, const char* v) {
    Key(key);
    out_.Put('"');
    for (const char* c = v; *c != '\0'; ++c) {
      if (*c == '"' || *c == '\\') {
        out_.Put('\\');
        out_.Put(*c);
      } else if (uint8_t(*c) < 0x20) {
        out_.Str("\\u00");
        out_.Put("0123456789abcdef"[(*c >> 4) & 15]);
        out_.Put("0123456789abcdef"[*c & 15]);
      } else {
        out_.Put(*c);
      }
    }
    out_.Put('"');
  }
  void Elem(uint64_t v) { Key(nullptr); out_.U64(v); }

 private:
  void Key(const char* key) {
    if (!first_) out_.Put(',');
    first_ = false;
    if (key != nullptr) {
      out_.Put('"');
      out_.Str(key);
      out_.Str("\":");
    }
  }
  TextBuf& out_;
  bool first_ = true;
};

}  // namespace

size_t WriteJson(const Snapshot& s, char* buf, size_t len) {
  TextBuf out(buf, len);
  Json j(out);
  out.Put('{');
  j.U("version", 1);
  j.S("strata_version", "0.1.0");
  j.U("time_ms", s.time_ms);
  if (s.options != nullptr) {
    j.Open("options", '{');
    size_t n;
    const OptionInfo* table = OptionTable(&n);
    const char* const* texts[] = {
#define STRATA_OPTION_TEXT(NAME, field, KIND_, DEF_, CHOICES_, HELP_) &s.options->field##_text,
        STRATA_OPTION_LIST(STRATA_OPTION_TEXT)
#undef STRATA_OPTION_TEXT
    };
    for (size_t i = 0; i < n; ++i) j.S(table[i].name, *texts[i] != nullptr ? *texts[i] : "");
    j.Close('}');
  }
  j.Open("totals", '{');
  j.U("allocated_bytes", s.allocated_bytes);
  j.U("mapped_bytes", s.mapped_bytes);
  j.U("resident_bytes", s.resident_bytes);
  j.U("released_bytes", s.released_bytes);
  j.U("peak_allocated_bytes", s.peak_allocated_bytes);
  j.U("metadata_bytes", s.metadata_bytes);
  j.U("thread_cache_bytes", s.cached_bytes);
  j.U("central_free_bytes", s.central_free_bytes);
  j.U("page_heap_free_bytes", s.heap_free_bytes);
  j.U("allocs", s.allocs);
  j.U("frees", s.frees);
  j.Close('}');
  j.Open("size_classes", '[');
  for (size_t c = 1; c < kNumClasses; ++c) {
    ClassRow r = Row(s, c);
    if (r.allocs == 0 && r.spans == 0) continue;
    j.Open(nullptr, '{');
    j.U("class", c);
    j.U("size", r.size);
    j.U("allocs", r.allocs);
    j.U("frees", r.frees);
    j.U("live", r.live);
    j.U("live_bytes", r.live * r.size);
    j.U("requested_bytes", r.requested);
    j.U("cached", r.cached);
    j.U("spans", r.spans);
    j.U("span_bytes", r.spans * Order{Info(c).order}.bytes());
    j.U("free_objects", s.central[c].free_objects);
    j.Close('}');
  }
  j.Close(']');
  j.Open("thread_cache", '{');
  j.U("hits", s.hits);
  j.U("misses", s.misses);
  j.U("flushes", s.threads.flushes);
  j.U("cached_bytes", s.cached_bytes);
  j.U("threads", s.live_threads);
  j.Close('}');
  j.Open("central", '{');
  j.U("lock_acquisitions", s.lock_acquisitions);
  j.U("lock_contended", s.lock_contended);
  uint64_t spans = 0, partial = 0, empty = 0;
  for (size_t c = 1; c < kNumClasses; ++c) {
    spans += s.central[c].spans;
    partial += s.central[c].partial_spans;
    empty += s.central[c].empty_spans;
  }
  j.U("spans", spans);
  j.U("partial_spans", partial);
  j.U("empty_spans", empty);
  j.U("free_bytes", s.central_free_bytes);
  j.Close('}');
  j.Open("mixed", '{');
  j.U("spans", s.mixed.spans);
  j.U("used_bytes", s.mixed.used_bytes);
  j.U("free_bytes", s.mixed.free_bytes);
  j.U("adopted", s.mixed.adopted);
  j.U("released", s.mixed.released);
  j.U("carved", s.mixed.carved);
  j.Close('}');
  j.Open("page_heap", '{');
  j.U("page_size", kPageSize);
  j.U("chunk_size", kChunkSize);
  j.Open("free_blocks_by_order", '[');
  for (unsigned k = 0; k < kNumOrders; ++k) j.Elem(s.pages.free_blocks[k]);
  j.Close(']');
  j.U("splits", s.pages.splits);
  j.U("merges", s.pages.merges);
  j.U("chunks", s.pages.chunks);
  j.U("mmap_bytes", s.pages.mmap_bytes);
  j.U("brk_bytes", s.pages.brk_bytes);
  j.U("used_bytes", s.pages.used_pages << kPageShift);
  j.U("free_bytes", s.heap_free_bytes);
  j.U("released_bytes", s.released_bytes);
  j.U("released_bytes_total", s.pages.released_bytes_total);
  j.U("largest_free_block_bytes", s.pages.largest_free_pages << kPageShift);
  j.U("page_objects", s.page_objects - s.page_object_frees);
  j.U("page_object_bytes", s.page_object_bytes);
  j.Close('}');
  j.Open("large", '{');
  j.U("threshold_bytes", kMaxSmall);
  j.U("allocs", s.large.allocs);
  j.U("frees", s.large.frees);
  j.U("live", s.large.live);
  j.U("live_bytes", s.large.live_bytes);
  j.U("peak_live_bytes", s.large.peak_live_bytes);
  j.U("mremaps", s.large.mremaps);
  j.U("cache_hits", s.large.cache_hits);
  j.U("cached", s.large.cached);
  j.U("cached_bytes", s.large.cached_bytes);
  j.Close('}');
  j.Open("purger", '{');
  j.S("state", PurgerStateName(s.purger_state));
  j.U("passes", s.purger_passes);
  j.U("parks", s.purger_parks);
  j.U("growth_releases", s.purger_growth_releases);
  j.Close('}');
  j.Open("fragmentation", '{');
  j.F("internal", s.internal_fragmentation);
  j.F("external", s.external_fragmentation);
  j.Close('}');
  out.Str("}\n");
  out.CStr();
  return out.needed();
}

const char* PurgerStateName(PurgerState s) {
  switch (s) {
    case PurgerState::kOff: return "off";
    case PurgerState::kNotStarted: return "not_started";
    case PurgerState::kRunning: return "running";
    case PurgerState::kParked: return "parked";
  }
  return "?";
}

size_t WriteText(const Snapshot& s, char* buf, size_t len) {
  TextBuf out(buf, len);
  out.Str("strata statistics\n");
  out.Str("  totals\n");
  out.Str("    allocated (live)   "); Bytes(out, s.allocated_bytes, 12); out.Put('\n');
  out.Str("    mapped             "); Bytes(out, s.mapped_bytes, 12); out.Put('\n');
  out.Str("    resident (RSS)     "); Bytes(out, s.resident_bytes, 12); out.Put('\n');
  out.Str("    released to OS     "); Bytes(out, s.released_bytes, 12); out.Put('\n');
  out.Str("    peak allocated     "); Bytes(out, s.peak_allocated_bytes, 12); out.Put('\n');
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
  if (s.mixed.adopted != 0) {
    out.Str("  mixed spans: "); out.U64(s.mixed.spans);
    out.Str(" ("); Bytes(out, s.mixed.used_bytes, 0); out.Str(" in use, "); Bytes(out, s.mixed.free_bytes, 0);
    out.Str(" free), adopted "); out.U64(s.mixed.adopted);
    out.Str(", released "); out.U64(s.mixed.released);
    out.Str(", objects carved "); out.U64(s.mixed.carved); out.Put('\n');
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
  out.Str("), mremaps "); out.U64(s.large.mremaps);
  out.Str(", cache hits "); out.U64(s.large.cache_hits);
  out.Str(", cached "); out.U64(s.large.cached); out.Str(" ("); Bytes(out, s.large.cached_bytes, 0);
  out.Str(")\n");
  out.Str("  background purger: "); out.Str(PurgerStateName(s.purger_state));
  out.Str(", passes "); out.U64(s.purger_passes);
  out.Str(", parks "); out.U64(s.purger_parks);
  out.Str(", growth releases "); out.U64(s.purger_growth_releases); out.Put('\n');
  out.Str("  fragmentation: internal "); out.Fixed(s.internal_fragmentation * 100, 1);
  out.Str("% (class rounding), external "); out.Fixed(s.external_fragmentation * 100, 1);
  out.Str("% (free pages the largest free block cannot serve)\n");
  out.CStr();
  return out.needed();
}

}  // namespace strata
