#!/usr/bin/python3
"""strata_report: turn a strata statistics file into one self-contained HTML page.

usage: /usr/bin/python3 tools/report/strata_report.py STATS_FILE [-o OUT.html]

STATS_FILE is what libstrata.so writes with STRATA_STATS=json and
STRATA_STATS_FILE: one JSON document, or JSON lines (interval snapshots from
STRATA_STATS_INTERVAL_MS, then the exit report as the last line). A truncated
last line (a program killed mid-write) is ignored with a warning. The format is
described in docs/stats.md; keys this script does not know are ignored and
missing ones are shown as "-".

The page needs nothing from outside: the charts are drawn by matplotlib and
embedded as inline SVG, the styling is a small embedded style sheet.
Needs matplotlib (Debian: python3-matplotlib); `tools/strata report` installs it.
"""

import argparse
import datetime
import html
import io
import json
import math
import os
import re
import sys

# ------------------------------------------------------------------ colours --
# One colour per kind of memory, shared by every chart and the legends.
C_LIVE = "#3d6fb6"      # live objects / allocated
C_TCACHE = "#2a9d8f"    # free objects in thread caches
C_CENTRAL = "#e9b949"   # free objects in central lists
C_PHFREE = "#f08a4b"    # free page-heap pages, not released (resident if touched)
C_RELEASED = "#cfd8dc"  # free page-heap pages returned to the OS
C_META = "#8e6cc0"      # metadata
C_SLACK = "#9aa5ad"     # unused span tails (class rounding of spans)
C_RESIDENT = "#d1495b"  # process RSS
C_MAPPED = "#5c6770"    # mapped by strata
C_ALLOCS = "#6c8ebf"    # allocation counts
C_BLOCKS = "#4f9d69"    # free blocks by order

PAGE_SIZE_DEFAULT = 4096


# ------------------------------------------------------------ small helpers --

def get(d, *keys, default=None):
    """d[k1][k2]..., or default when a key is missing or a level is no dict."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def num(x):
    """x when it is a number (not a bool), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def gnum(d, *keys):
    return num(get(d, *keys))


_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def fmt_bytes(n):
    """Human bytes with 3 significant digits: 512 B, 1.73 MiB, 135 MiB."""
    n = num(n)
    if n is None:
        return "-"
    neg = n < 0
    v = float(abs(n))
    k = 0
    while v >= 1024 and k < len(_UNITS) - 1:
        v /= 1024.0
        k += 1
    if k == 0:
        s = "%d B" % int(round(v))
    else:
        if round(v, 2) >= 100:
            s = "%.0f" % v
        elif round(v, 2) >= 10:
            s = "%.1f" % v
        else:
            s = "%.2f" % v
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        s += " " + _UNITS[k]
    return ("-" if neg else "") + s


def size_label(n):
    """Exact-ish label for a size class or block size: 16 B, 1.25 KiB, 4 MiB."""
    n = num(n)
    if n is None:
        return "?"
    k = 0
    v = float(n)
    while v >= 1024 and k < len(_UNITS) - 1:
        v /= 1024.0
        k += 1
    return "%s %s" % (("%.2f" % v).rstrip("0").rstrip("."), _UNITS[k])


def fmt_count(n):
    n = num(n)
    if n is None:
        return "-"
    if isinstance(n, float) and not n.is_integer():
        return "%.3g" % n
    return "{:,}".format(int(n))


def fmt_pct(x, digits=1):
    x = num(x)
    if x is None:
        return "-"
    return "%.*f %%" % (digits, x * 100.0)


def ratio(a, b):
    a, b = num(a), num(b)
    if a is None or b is None or b == 0:
        return None
    return a / b


def esc(s):
    return html.escape(str(s), quote=True)


# ------------------------------------------------------------------ reading --

def read_snapshots(path):
    """Returns (snapshots, warnings). Snapshots are dicts, in file order."""
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8", errors="replace")
    warnings = []
    stripped = text.strip()
    if not stripped:
        return [], ["the file is empty"]
    # A single document, possibly pretty-printed over several lines.
    try:
        doc = json.loads(stripped)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return [doc], warnings
    if isinstance(doc, list):
        snaps = [d for d in doc if isinstance(d, dict)]
        return snaps, warnings
    # JSON lines.
    lines = [(i + 1, l) for i, l in enumerate(text.splitlines()) if l.strip()]
    snaps = []
    for idx, (lineno, line) in enumerate(lines):
        try:
            d = json.loads(line)
        except ValueError:
            if idx == len(lines) - 1:
                warnings.append("line %d is truncated or not JSON; ignored "
                                "(was the program killed while writing its report?)" % lineno)
            else:
                warnings.append("line %d is not JSON; ignored" % lineno)
            continue
        if isinstance(d, dict):
            snaps.append(d)
        else:
            warnings.append("line %d is JSON but not an object; ignored" % lineno)
    return snaps, warnings


# ----------------------------------------------------------------- charting --

class Charts:
    """Draws matplotlib figures and returns them as inline <svg> text."""

    def __init__(self):
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
        self.plt = plt
        self.ticker = ticker
        plt.rcParams.update({
            "svg.fonttype": "path",      # glyphs as paths: identical everywhere
            "svg.hashsalt": "strata-report",
            "font.family": "DejaVu Sans",
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.titlelocation": "left",
            "axes.labelsize": 9,
            "axes.labelcolor": "#333333",
            "axes.edgecolor": "#b8c0c8",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "axes.axisbelow": True,
            "grid.color": "#e6e9ed",
            "grid.linewidth": 0.8,
            "xtick.color": "#444444",
            "ytick.color": "#444444",
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "legend.frameon": False,
            "legend.fontsize": 8.5,
            "figure.facecolor": "white",
        })
        self.count = 0

    def to_svg(self, fig):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.08,
                    metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
        self.plt.close(fig)
        svg = buf.getvalue()
        # Drop the XML prolog and doctype: the SVG is inlined into HTML.
        start = svg.find("<svg")
        svg = svg[start:] if start >= 0 else svg
        # Several SVGs share one document: give every id a per-chart prefix.
        self.count += 1
        p = "c%d-" % self.count
        svg = re.sub(r'\bid="([^"]+)"', lambda m: 'id="%s%s"' % (p, m.group(1)), svg)
        svg = re.sub(r'href="#([^"]+)"', lambda m: 'href="#%s%s"' % (p, m.group(1)), svg)
        svg = re.sub(r'url\(#([^)]+)\)', lambda m: "url(#%s%s)" % (p, m.group(1)), svg)
        svg = svg.replace("<svg ", '<svg role="img" ', 1)
        return svg

    def bytes_axis(self, ax, vmax, axis="y"):
        """Limits [0, vmax] and round binary ticks (0, 32 MiB, 64 MiB...) on an axis of bytes."""
        vmax = vmax if vmax and vmax > 0 else 1
        k = 0
        while vmax / (1024.0 ** (k + 1)) >= 1.5 and k < len(_UNITS) - 1:
            k += 1
        unit = 1024.0 ** k
        loc = self.ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 4, 5, 8, 10])
        ticks = [t * unit for t in loc.tick_values(0, vmax / unit) if 0 <= t * unit <= vmax * 1.0001]
        name = _UNITS[k]
        if axis == "y":
            ax.set_ylim(0, vmax)
            a = ax.yaxis
        else:
            ax.set_xlim(0, vmax)
            a = ax.xaxis
        a.set_major_locator(self.ticker.FixedLocator(ticks))
        a.set_major_formatter(self.ticker.FuncFormatter(
            lambda v, _p: "0" if v == 0 else "%g %s" % (round(v / unit, 3), name)))

    # -- size classes --------------------------------------------------------
    def size_classes(self, classes):
        plt = self.plt
        n = len(classes)
        x = list(range(n))
        labels = [size_label(c.get("size")) for c in classes]
        size = [num(c.get("size")) or 0 for c in classes]
        live_b = []
        for c, s in zip(classes, size):
            lb = num(c.get("live_bytes"))
            if lb is None:
                lb = (num(c.get("live")) or 0) * s
            live_b.append(max(lb, 0))
        cached_b = [max((num(c.get("cached")) or 0) * s, 0) for c, s in zip(classes, size)]
        free_b = [max((num(c.get("free_objects")) or 0) * s, 0) for c, s in zip(classes, size)]
        allocs = [num(c.get("allocs")) or 0 for c in classes]

        fig, (a1, a2) = plt.subplots(2, 1, figsize=(10.5, 6.0), sharex=True,
                                     gridspec_kw={"height_ratios": [1.25, 1], "hspace": 0.3})
        bw = 0.72
        a1.bar(x, live_b, bw, color=C_LIVE, label="live objects")
        bottom = live_b
        if any(cached_b):
            a1.bar(x, cached_b, bw, bottom=bottom, color=C_TCACHE, label="free in thread caches")
            bottom = [a + b for a, b in zip(bottom, cached_b)]
        if any(free_b):
            a1.bar(x, free_b, bw, bottom=bottom, color=C_CENTRAL, label="free in central lists")
            bottom = [a + b for a, b in zip(bottom, free_b)]
        a1.set_title("Bytes by size class", pad=22)
        self.bytes_axis(a1, max(bottom, default=0) * 1.05)
        a1.legend(loc="lower left", ncol=3, bbox_to_anchor=(0, 1.0), borderaxespad=0.2)
        a1.grid(axis="x", visible=False)

        a2.bar(x, allocs, bw, color=C_ALLOCS)
        a2.set_title("Allocations by size class (cumulative)")
        if max(allocs, default=0) > 0:
            a2.set_yscale("log")
            a2.set_ylim(0.8, max(allocs) * 2.5)
            a2.yaxis.set_minor_locator(self.ticker.NullLocator())
            a2.yaxis.set_major_formatter(self.ticker.FuncFormatter(
                lambda v, _p: fmt_count(v) if v >= 1 else ""))
        a2.grid(axis="x", visible=False)
        a2.set_xticks(x)
        a2.set_xticklabels(labels, rotation=90 if n > 14 else 45,
                           ha="center" if n > 14 else "right")
        a2.set_xlabel("size class (object size)")
        # Few classes: keep the bars narrow and centred rather than stretched.
        pad = max(0.6, (16 - n) / 2.0)
        a2.set_xlim(-pad, n - 1 + pad)
        return self.to_svg(fig)

    # -- where the memory is -------------------------------------------------
    def breakdown(self, parts, mapped, resident):
        """parts: [(label, bytes, colour)] stacked to `mapped`; resident beside."""
        plt = self.plt
        fig, ax = plt.subplots(figsize=(10.5, 1.9 if resident is not None else 1.1))
        total = sum(b for _, b, _ in parts)
        scale = max(total, mapped or 0, resident or 0, 1)
        left = 0
        y_m, y_r = 1, 0
        for label, b, color in parts:
            if b <= 0:
                continue
            ax.barh(y_m, b, 0.62, left=left, color=color, edgecolor="white", linewidth=0.8)
            if b / scale > 0.07:
                dark = color in (C_LIVE, C_META, C_SLACK, C_MAPPED)
                ax.text(left + b / 2, y_m, fmt_bytes(b), ha="center", va="center",
                        fontsize=8.5, color="white" if dark else "#222222")
            left += b
        if resident is not None:
            ax.barh(y_r, resident, 0.42, color=C_RESIDENT, alpha=0.85)
            if resident / scale > 0.15:  # inside the bar, clear of the mapped line
                ax.text(resident, y_r, fmt_bytes(resident) + "  ", ha="right", va="center",
                        fontsize=8.5, color="white")
            else:
                ax.text(resident, y_r, "  " + fmt_bytes(resident), ha="left", va="center",
                        fontsize=8.5, color="#333333")
        if mapped is not None and mapped > 0:
            ax.axvline(mapped, color=C_MAPPED, linestyle=(0, (3, 2)), linewidth=1)
        ax.set_yticks([y_m, y_r] if resident is not None else [y_m])
        ax.set_yticklabels(["mapped by strata", "process resident (RSS)"]
                           if resident is not None else ["mapped by strata"])
        self.bytes_axis(ax, scale * 1.1, "x")
        ax.set_ylim(-0.5 if resident is not None else 0.5, 1.5)
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", length=0, labelsize=9)
        # The legend is the HTML table under the chart (same colours).
        return self.to_svg(fig)

    # -- free blocks by order ------------------------------------------------
    def free_blocks(self, blocks, page_size):
        plt = self.plt
        n = len(blocks)
        x = list(range(n))
        labels = [size_label(page_size << k) for k in range(n)]
        fig, ax = plt.subplots(figsize=(6.4, 3.1))
        bars = ax.bar(x, blocks, 0.66, color=C_BLOCKS)
        top = max(blocks, default=0)
        for rect, v in zip(bars, blocks):
            ax.text(rect.get_x() + rect.get_width() / 2, rect.get_height() + top * 0.015,
                    fmt_count(v), ha="center", va="bottom", fontsize=7.5, color="#333333")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_xlabel("block size (order)")
        ax.set_ylabel("free blocks")
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
        ax.yaxis.set_major_locator(self.ticker.MaxNLocator(nbins=6, integer=True))
        ax.grid(axis="x", visible=False)
        ax.margins(x=0.02)
        return self.to_svg(fig)

    # -- timeline -----------------------------------------------------------
    def timeline(self, t, series, mark=None):
        """series: [(label, values, colour, style)] with None for missing."""
        plt = self.plt
        fig, ax = plt.subplots(figsize=(10.5, 3.5))
        top = 0
        for label, vals, color, style in series:
            pts = [(a, b) for a, b in zip(t, vals) if b is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            top = max(top, max(ys))
            ax.plot(xs, ys, label=label, color=color, linestyle=style, linewidth=1.8,
                    marker="o" if len(xs) <= 40 else None, markersize=3)
        if mark is not None:
            ax.axvline(mark, color="#888888", linestyle=":", linewidth=1.2)
            ax.annotate("shown below", (mark, 1), xycoords=("data", "axes fraction"),
                        xytext=(4, -2), textcoords="offset points", va="top", fontsize=8,
                        color="#555555")
        ax.set_xlabel("time since the first snapshot (s)")
        self.bytes_axis(ax, top * 1.08)
        ax.set_xlim(left=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return self.to_svg(fig)


# ------------------------------------------------------------------- report --

CSS = """
:root{--fg:#1f2933;--muted:#66727f;--bg:#f3f5f8;--card:#fff;--line:#e3e7ec;--accent:#3d6fb6}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","Liberation Sans",sans-serif}
.wrap{max-width:1120px;margin:0 auto;padding:28px 20px 40px}
header h1{margin:0 0 4px;font-size:24px;font-weight:650;letter-spacing:-.01em}
header h1 .file{color:var(--accent)}
header .sub{color:var(--muted);margin:0 0 18px}
header .sub span+span:before{content:"\\00b7";margin:0 .55em;color:#a0aab4}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:16px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px;
 border-top:4px solid var(--c,var(--accent))}
.kpi .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.kpi .value{font-size:22px;font-weight:650;margin-top:2px;font-variant-numeric:tabular-nums}
.kpi .note{color:var(--muted);font-size:12px}
.figs{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.fig{border-left:4px solid var(--c);padding:2px 0 2px 12px}
.fig .label{color:var(--muted);font-size:12px}
.fig .value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.fig .note{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;
 margin-bottom:16px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.card h2{margin:0 0 10px;font-size:16px;font-weight:650}
.card h3{margin:14px 0 6px;font-size:13px;font-weight:650;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card h3:first-child{margin-top:0}
.card p.hint{color:var(--muted);margin:4px 0 10px;font-size:13px}
.chart svg{display:block;width:100%;height:auto}
.split{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:18px;align-items:start}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;margin-bottom:16px}
.grid2 .card{margin-bottom:0}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:baseline}
th{font-weight:600;color:var(--muted);font-size:12px}
td.n,th.n{text-align:right;white-space:nowrap}
td.exact{color:var(--muted);font-size:12px}
tr:last-child td{border-bottom:0}
table.kv td:first-child{color:var(--fg)}
table.classes{font-size:13px}
table.classes thead th{position:sticky;top:0;background:var(--card);border-bottom:2px solid var(--line)}
table.classes tbody tr:nth-child(even){background:#f8f9fb}
.scroll{max-height:560px;overflow:auto;border:1px solid var(--line);border-radius:8px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:baseline}
.notice{background:#fff8e6;border:1px solid #f1d38a;border-radius:10px;padding:10px 14px;margin-bottom:16px}
.notice ul{margin:4px 0 0 18px;padding:0}
.empty{color:var(--muted);font-style:italic;margin:6px 0}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;
 background:#f1f3f6;padding:1px 4px;border-radius:4px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:22px}
@media (max-width:820px){.split{grid-template-columns:1fr}}
"""


def kv_table(rows, exact=False):
    """rows: [(label, value_text, exact_text_or_None)] -> HTML table."""
    out = ['<table class="kv"><tbody>']
    for row in rows:
        label, value = row[0], row[1]
        ex = row[2] if len(row) > 2 else None
        out.append('<tr><td>%s</td><td class="n">%s</td>' % (esc(label), esc(value)))
        if exact:
            out.append('<td class="n exact">%s</td>' % (esc(ex) if ex else ""))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def bytes_row(label, v):
    v = num(v)
    return (label, fmt_bytes(v), (fmt_count(v) + " B") if v is not None and v >= 1024 else None)


def pick_snapshot(snapshots, which):
    """Index of the snapshot to show: 'last', 'peak' (most allocated bytes) or an index."""
    if which in (None, "last"):
        return len(snapshots) - 1
    if which == "peak":
        best, best_v = len(snapshots) - 1, None
        for i, snap in enumerate(snapshots):
            v = gnum(snap, "totals", "allocated_bytes")
            if v is not None and (best_v is None or v > best_v):
                best, best_v = i, v
        return best
    i = int(which)
    if not -len(snapshots) <= i < len(snapshots):
        raise IndexError("snapshot %d does not exist (the file holds %d)" % (i, len(snapshots)))
    return i % len(snapshots)


def build_report(snapshots, src_name, warnings, now=None, focus=None):
    """Returns the HTML text. snapshots: non-empty list of dicts; focus: the index
    of the snapshot whose figures are shown (default: the last one)."""
    now = now or datetime.datetime.now().astimezone()
    warnings = list(warnings)
    focus = len(snapshots) - 1 if focus is None else focus
    last = snapshots[focus]
    charts = Charts()

    version = get(last, "version")
    if num(version) is not None and version > 1:
        warnings.append("format version %s is newer than this report knows (1); "
                        "unknown figures are left out" % version)

    totals = get(last, "totals", default={}) or {}
    tc = get(last, "thread_cache", default={}) or {}
    central = get(last, "central", default={}) or {}
    ph = get(last, "page_heap", default={}) or {}
    large = get(last, "large", default={}) or {}
    frag = get(last, "fragmentation", default={}) or {}
    options = get(last, "options", default={}) or {}
    classes = get(last, "size_classes", default=[]) or []
    classes = [c for c in classes if isinstance(c, dict)] if isinstance(classes, list) else []
    classes.sort(key=lambda c: (num(c.get("size")) or 0, num(c.get("class")) or 0))

    allocated = gnum(totals, "allocated_bytes")
    mapped = gnum(totals, "mapped_bytes")
    resident = gnum(totals, "resident_bytes")
    peak = gnum(totals, "peak_allocated_bytes")

    # ---- header ------------------------------------------------------------
    times = [gnum(s, "time_ms") for s in snapshots]
    sub = ['<span>generated %s</span>' % esc(now.strftime("%Y-%m-%d %H:%M:%S %Z").strip())]
    if get(last, "strata_version") is not None:
        sub.append("<span>strata %s</span>" % esc(get(last, "strata_version")))
    if version is not None:
        sub.append("<span>format %s</span>" % esc(version))
    t_first = next((t for t in times if t is not None), None)
    if len(snapshots) > 1:
        span_s = None
        if times[0] is not None and times[-1] is not None:
            span_s = (times[-1] - times[0]) / 1000.0
        if focus == len(snapshots) - 1:
            which = "the last"
        else:
            which = "snapshot %d of %d" % (focus + 1, len(snapshots))
            if times[focus] is not None and t_first is not None:
                which += " (at %.2f s)" % ((times[focus] - t_first) / 1000.0)
        sub.append("<span>%d snapshots%s; figures from %s</span>" % (
            len(snapshots), (" over %.2f s" % span_s) if span_s is not None else "", which))
    else:
        sub.append("<span>1 snapshot</span>")

    parts = []
    parts.append('<header><h1>strata memory report &mdash; <span class="file">%s</span></h1>'
                 '<p class="sub">%s</p></header>' % (esc(src_name), "".join(sub)))

    if warnings:
        parts.append('<div class="notice"><strong>Note</strong><ul>%s</ul></div>' %
                     "".join("<li>%s</li>" % esc(w) for w in warnings))

    # ---- key figures -------------------------------------------------------
    def kpi(label, value, note, color):
        return ('<div class="kpi" style="--c:%s"><div class="label">%s</div>'
                '<div class="value">%s</div><div class="note">%s</div></div>'
                % (color, esc(label), esc(value), esc(note)))
    hit_rate = ratio(gnum(tc, "hits"), (gnum(tc, "hits") or 0) + (gnum(tc, "misses") or 0))
    parts.append('<section class="kpis">%s</section>' % "".join([
        kpi("Allocated", fmt_bytes(allocated), "live bytes handed out", C_LIVE),
        kpi("Peak allocated", fmt_bytes(peak), "upper bound of the peak", "#1f4e8c"),
        kpi("Resident", fmt_bytes(resident), "process RSS", C_RESIDENT),
        kpi("Mapped", fmt_bytes(mapped), "address space taken by strata", C_MAPPED),
        kpi("Allocations", fmt_count(gnum(totals, "allocs")),
            "%s frees" % fmt_count(gnum(totals, "frees")), C_ALLOCS),
        kpi("Cache hit rate", fmt_pct(hit_rate), "thread caches, small objects", C_TCACHE),
    ]))

    # ---- where the memory is ----------------------------------------------
    ph_free = gnum(ph, "free_bytes")
    if ph_free is None:
        ph_free = gnum(totals, "page_heap_free_bytes")
    released = gnum(ph, "released_bytes")
    if released is None:
        released = gnum(totals, "released_bytes")
    seg = [
        ("live (allocated)", allocated, C_LIVE),
        ("thread caches", gnum(totals, "thread_cache_bytes"), C_TCACHE),
        ("central free objects", gnum(totals, "central_free_bytes"), C_CENTRAL),
        ("page heap free, not released",
         None if ph_free is None else max(ph_free - (released or 0), 0), C_PHFREE),
        ("released to the OS", released, C_RELEASED),
        ("metadata", gnum(totals, "metadata_bytes"), C_META),
    ]
    seg = [(l, v, c) for l, v, c in seg if v is not None]
    known = sum(v for _, v, _ in seg)
    if mapped is not None and mapped - known > 0:
        seg.append(("other (span tails, rounding)", mapped - known, C_SLACK))
    seg_total = sum(v for _, v, _ in seg)
    parts.append('<section class="card"><h2>Where the memory is</h2>')
    if seg and (known > 0 or (mapped or 0) > 0):
        parts.append('<div class="chart">%s</div>' % charts.breakdown(seg, mapped, resident))
        side = ['<div class="figs">',
                big_fig("Mapped by strata", mapped, C_MAPPED),
                big_fig("Resident (process RSS)", resident, C_RESIDENT),
                '</div>']
        if mapped is not None and known > mapped:
            side.append('<p class="hint">The parts add up to %s more than the mapped total '
                        '(a snapshot taken while threads were allocating is not atomic).</p>'
                        % esc(fmt_bytes(known - mapped)))
        side.append('<p class="hint">The bar above is strata&rsquo;s address space, split by use. '
                    'Resident is the whole process (program, libraries, stacks), so it can '
                    'exceed what strata mapped; released pages and untouched metadata are '
                    'mapped but not resident.</p>')
        parts.append('<div class="split" style="margin-top:10px">%s%s</div>' % (
            '<div>%s</div>' % breakdown_table(seg, seg_total), '<div>%s</div>' % "".join(side)))
    else:
        parts.append('<p class="empty">No totals in this file.</p>')
    parts.append("</section>")

    # ---- timeline ---------------------------------------------------------
    parts.append('<section class="card"><h2>Memory over time</h2>')
    if len(snapshots) > 1 and any(t is not None for t in times):
        t0 = next(t for t in times if t is not None)
        ts, idx = [], []
        for i, t in enumerate(times):
            if t is not None:
                ts.append((t - t0) / 1000.0)
                idx.append(i)
        def col(key):
            return [gnum(snapshots[i], "totals", key) for i in idx]
        series = [
            ("mapped", col("mapped_bytes"), C_MAPPED, "-"),
            ("resident", col("resident_bytes"), C_RESIDENT, "-"),
            ("allocated", col("allocated_bytes"), C_LIVE, "-"),
            ("thread caches", col("thread_cache_bytes"), C_TCACHE, "--"),
        ]
        parts.append('<p class="hint">%d snapshots, one every %s ms (<code>STRATA_STATS_INTERVAL_MS</code>); '
                     'the last one is the exit report when the program exited normally.</p>'
                     % (len(ts), esc(options.get("STATS_INTERVAL_MS", "?")) if isinstance(options, dict) else "?"))
        mark = None
        if focus != len(snapshots) - 1 and focus in idx:
            mark = ts[idx.index(focus)]
        parts.append('<div class="chart">%s</div>' % charts.timeline(ts, series, mark))
    else:
        parts.append('<p class="empty">This file holds a single snapshot. Run the program with '
                     '<code>STRATA_STATS_INTERVAL_MS=50</code> (and <code>STRATA_STATS_FILE</code>) '
                     'to record a timeline.</p>')
    parts.append("</section>")

    # ---- size classes chart ---------------------------------------------------
    parts.append('<section class="card"><h2>Size classes</h2>')
    if classes:
        parts.append('<p class="hint">Per class: live objects and the free objects it holds '
                     '(bytes, top) and allocations so far (log scale, bottom).</p>')
        parts.append('<div class="chart">%s</div>' % charts.size_classes(classes))
    else:
        parts.append('<p class="empty">No size class has seen an allocation.</p>')
    parts.append("</section>")

    # ---- page heap ------------------------------------------------------------
    blocks = get(ph, "free_blocks_by_order")
    page_size = gnum(ph, "page_size") or PAGE_SIZE_DEFAULT
    parts.append('<section class="card"><h2>Page heap</h2><div class="split">')
    if isinstance(blocks, list) and blocks:
        b = [num(v) or 0 for v in blocks]
        parts.append('<div><h3>Free blocks by order</h3><div class="chart">%s</div></div>'
                     % charts.free_blocks(b, int(page_size)))
    else:
        parts.append('<div><h3>Free blocks by order</h3><p class="empty">Not in this file.</p></div>')
    parts.append('<div><h3>Buddy allocator</h3>%s</div>' % kv_table([
        ("Chunks from the OS", fmt_count(gnum(ph, "chunks"))),
        bytes_row("Chunk size", gnum(ph, "chunk_size")),
        bytes_row("From mmap", gnum(ph, "mmap_bytes")),
        bytes_row("From brk", gnum(ph, "brk_bytes")),
        bytes_row("Used", gnum(ph, "used_bytes")),
        bytes_row("Free", ph_free),
        bytes_row("Free, released to the OS", released),
        bytes_row("Released (cumulative)", gnum(ph, "released_bytes_total")),
        bytes_row("Largest free block", gnum(ph, "largest_free_block_bytes")),
        ("Splits / merges", "%s / %s" % (fmt_count(gnum(ph, "splits")), fmt_count(gnum(ph, "merges")))),
        ("Page objects", "%s (%s)" % (fmt_count(gnum(ph, "page_objects")),
                                      fmt_bytes(gnum(ph, "page_object_bytes")))),
    ], exact=True))
    parts.append("</div></section>")

    # ---- counters ----------------------------------------------------------
    acq, cont = gnum(central, "lock_acquisitions"), gnum(central, "lock_contended")
    parts.append('<div class="grid2">')
    parts.append('<section class="card"><h2>Totals</h2>%s</section>' % kv_table([
        bytes_row("Allocated (live)", allocated),
        bytes_row("Peak allocated", peak),
        bytes_row("Mapped", mapped),
        bytes_row("Resident", resident),
        bytes_row("Released to the OS", gnum(totals, "released_bytes")),
        bytes_row("Metadata", gnum(totals, "metadata_bytes")),
        bytes_row("Thread caches", gnum(totals, "thread_cache_bytes")),
        bytes_row("Central free objects", gnum(totals, "central_free_bytes")),
        bytes_row("Page heap free", gnum(totals, "page_heap_free_bytes")),
        ("Allocations", fmt_count(gnum(totals, "allocs")), None),
        ("Frees", fmt_count(gnum(totals, "frees")), None),
    ], exact=True))
    parts.append('<section class="card"><h2>Thread caches and central lists</h2>'
                 '<h3>Thread caches</h3>%s<h3>Central lists</h3>%s</section>' % (
                     kv_table([
                         ("Hits", fmt_count(gnum(tc, "hits"))),
                         ("Misses (batch refills)", fmt_count(gnum(tc, "misses"))),
                         ("Hit rate", fmt_pct(hit_rate, 2)),
                         ("Flushes (batches given back)", fmt_count(gnum(tc, "flushes"))),
                         ("Cached", fmt_bytes(gnum(tc, "cached_bytes"))),
                         ("Threads with a cache", fmt_count(gnum(tc, "threads"))),
                     ]),
                     kv_table([
                         ("Lock acquisitions", fmt_count(acq)),
                         ("Contended", "%s (%s)" % (fmt_count(cont), fmt_pct(ratio(cont, acq), 3))),
                         ("Spans (partial / empty)", "%s (%s / %s)" % (
                             fmt_count(gnum(central, "spans")), fmt_count(gnum(central, "partial_spans")),
                             fmt_count(gnum(central, "empty_spans")))),
                         ("Free objects", fmt_bytes(gnum(central, "free_bytes"))),
                     ])))
    parts.append('<section class="card"><h2>Large objects</h2>%s'
                 '<h3>Fragmentation</h3>%s'
                 '<p class="hint"><b>Internal</b>: share of the bytes given for small objects '
                 'that was size-class rounding. <b>External</b>: share of the free page-heap '
                 'bytes that its largest free block cannot serve.</p></section>' % (
                     kv_table([
                         ("Threshold", "above " + fmt_bytes(gnum(large, "threshold_bytes"))),
                         ("Allocations / frees", "%s / %s" % (fmt_count(gnum(large, "allocs")),
                                                            fmt_count(gnum(large, "frees")))),
                         ("Live", "%s (%s)" % (fmt_count(gnum(large, "live")),
                                               fmt_bytes(gnum(large, "live_bytes")))),
                         ("Peak live bytes", fmt_bytes(gnum(large, "peak_live_bytes"))),
                         ("Reallocs by mremap", fmt_count(gnum(large, "mremaps"))),
                     ]),
                     kv_table([
                         ("Internal (class rounding)", fmt_pct(gnum(frag, "internal"))),
                         ("External (page heap)", fmt_pct(gnum(frag, "external"))),
                     ])))
    parts.append('<section class="card"><h2>Options in effect</h2>%s</section>'
                 % options_table(options))
    parts.append("</div>")

    # ---- per-class table -----------------------------------------------------
    parts.append('<section class="card"><h2>Size class table</h2>')
    if classes:
        parts.append(class_table(classes))
    else:
        parts.append('<p class="empty">No size class has seen an allocation.</p>')
    parts.append("</section>")

    parts.append('<footer>strata_report &middot; figures as defined in docs/stats.md</footer>')

    title = "strata report: %s" % src_name
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n<div class="wrap">\n%s\n'
            '</div>\n</body>\n</html>\n' % (esc(title), CSS, "\n".join(parts)))


def big_fig(label, v, color):
    return ('<div class="fig" style="--c:%s"><div class="label">%s</div><div class="value">%s</div>'
            '<div class="note">%s</div></div>' % (
                color, esc(label), esc(fmt_bytes(v)),
                esc(fmt_count(v) + " bytes") if num(v) is not None else ""))


def breakdown_table(seg, total):
    out = ['<table><thead><tr><th>part</th><th class="n">bytes</th><th class="n">share</th>'
           '</tr></thead><tbody>']
    for label, v, color in seg:
        out.append('<tr><td><span class="swatch" style="background:%s"></span>%s</td>'
                   '<td class="n">%s</td><td class="n">%s</td></tr>'
                   % (color, esc(label), esc(fmt_bytes(v)), esc(fmt_pct(ratio(v, total)))))
    out.append("</tbody></table>")
    return "".join(out)


def options_table(options):
    if not isinstance(options, dict) or not options:
        return '<p class="empty">Not in this file.</p>'
    rows = "".join('<tr><td><code>STRATA_%s</code></td><td class="n"><code>%s</code></td></tr>'
                   % (esc(k), esc(v)) for k, v in options.items())
    return '<table class="kv"><tbody>%s</tbody></table>' % rows


def class_table(classes):
    cols = [("class", "class"), ("size", "size"), ("allocs", "allocs"), ("frees", "frees"),
            ("live", "live"), ("live bytes", "live_bytes"), ("cached", "cached"),
            ("free in spans", "free_objects"), ("spans", "spans"), ("span bytes", "span_bytes"),
            ("rounding", None)]
    out = ['<div class="scroll"><table class="classes"><thead><tr>']
    out.extend('<th class="n">%s</th>' % esc(c[0]) for c in cols)
    out.append("</tr></thead><tbody>")
    tot = {"allocs": 0, "frees": 0, "live": 0, "live_bytes": 0, "cached": 0,
           "free_objects": 0, "spans": 0, "span_bytes": 0}
    for c in classes:
        size = num(c.get("size"))
        given = (num(c.get("allocs")) or 0) * (size or 0)
        req = num(c.get("requested_bytes"))
        rounding = (1 - req / given) if (req is not None and given > 0) else None
        cells = []
        for label, key in cols:
            if key is None:
                cells.append(fmt_pct(rounding))
            elif key == "class":
                cells.append(fmt_count(c.get(key)))
            elif key in ("size", "live_bytes", "span_bytes"):
                v = num(c.get(key))
                if key == "live_bytes" and v is None and size is not None and num(c.get("live")) is not None:
                    v = num(c.get("live")) * size
                cells.append(size_label(v) if key == "size" else fmt_bytes(v))
            else:
                cells.append(fmt_count(c.get(key)))
            if key in tot and num(c.get(key)) is not None:
                tot[key] += num(c.get(key))
        out.append("<tr>%s</tr>" % "".join('<td class="n">%s</td>' % esc(v) for v in cells))
    out.append("</tbody><tfoot><tr>")
    foot = ["all", "", fmt_count(tot["allocs"]), fmt_count(tot["frees"]), fmt_count(tot["live"]),
            fmt_bytes(tot["live_bytes"]), fmt_count(tot["cached"]), fmt_count(tot["free_objects"]),
            fmt_count(tot["spans"]), fmt_bytes(tot["span_bytes"]), ""]
    out.append("".join('<th class="n">%s</th>' % esc(v) for v in foot))
    out.append("</tr></tfoot></table></div>")
    return "".join(out)


# --------------------------------------------------------------------- main --

def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="strata_report.py",
        description="Turn a strata statistics file (STRATA_STATS=json, one document or "
                    "JSON lines) into one self-contained HTML page with charts.")
    ap.add_argument("stats_file", help="the statistics file (STRATA_STATS_FILE)")
    ap.add_argument("-o", "--output", help="the HTML file to write "
                    "(default: STATS_FILE with its extension replaced by .html)")
    ap.add_argument("--snapshot", default="last", metavar="WHICH",
                    help="whose figures the page shows, from a file of several snapshots: "
                         "'last' (default: the exit report), 'peak' (the one with the most "
                         "allocated bytes) or an index (0 = first, -1 = last)")
    args = ap.parse_args(argv)

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("strata_report: matplotlib is not installed for %s "
              "(Debian: apt-get install python3-matplotlib)" % sys.executable, file=sys.stderr)
        return 2

    try:
        snapshots, warnings = read_snapshots(args.stats_file)
    except OSError as e:
        print("strata_report: cannot read %s: %s" % (args.stats_file, e.strerror or e),
              file=sys.stderr)
        return 1
    for w in warnings:
        print("strata_report: warning: %s" % w, file=sys.stderr)
    if not snapshots:
        print("strata_report: %s holds no statistics document" % args.stats_file, file=sys.stderr)
        return 1

    out = args.output
    if not out:
        base, ext = os.path.splitext(args.stats_file)
        out = (base if ext else args.stats_file) + ".html"
        if os.path.abspath(out) == os.path.abspath(args.stats_file):
            out = args.stats_file + ".html"
    try:
        focus = pick_snapshot(snapshots, args.snapshot)
    except (ValueError, IndexError) as e:
        msg = str(e) if isinstance(e, IndexError) else \
            "--snapshot must be last, peak or an integer, not %r" % args.snapshot
        print("strata_report: %s" % msg, file=sys.stderr)
        return 2
    page = build_report(snapshots, os.path.basename(args.stats_file), warnings, focus=focus)
    tmp = out + ".tmp%d" % os.getpid()
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, out)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        print("strata_report: cannot write %s: %s" % (out, e.strerror or e), file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
