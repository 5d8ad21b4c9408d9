"""report_unit: tools/report/strata_report.py on hand-written statistics files.

usage: test_strata_report.py STRATA_REPORT_PY [unittest args...]

Covers the one-snapshot path (a single document, pretty-printed or on one
line, no interval lines), missing sections and an empty size-class list,
a newer format version with unknown keys, JSON lines with a truncated last
line, an empty file, the choice of snapshot, the default output path, and the
unit formatting. Run by with_python.sh (exit 77 = skipped).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report_check  # noqa: E402

SCRIPT = None
report = None  # the strata_report module

# A minimal exit report as docs/stats.md describes it: one document, two
# classes, no interval lines.
MINIMAL = {
    "version": 1,
    "strata_version": "0.1.0",
    "time_ms": 5000,
    "options": {"STATS": "json", "DECAY_MS": "1000"},
    "totals": {
        "allocated_bytes": 1572864, "mapped_bytes": 10485760, "resident_bytes": 7340032,
        "released_bytes": 1048576, "peak_allocated_bytes": 2097152, "metadata_bytes": 2097152,
        "thread_cache_bytes": 8192, "central_free_bytes": 4096,
        "page_heap_free_bytes": 2097152, "allocs": 123457, "frees": 120001,
    },
    "size_classes": [
        {"class": 1, "size": 16, "allocs": 100000, "frees": 99000, "live": 1000,
         "live_bytes": 16000, "requested_bytes": 1200000, "cached": 256, "spans": 5,
         "span_bytes": 20480, "free_objects": 10},
        {"class": 20, "size": 1280, "allocs": 23456, "frees": 21001, "live": 2455,
         "live_bytes": 3142400, "requested_bytes": 25000000, "cached": 3, "spans": 77,
         "span_bytes": 3153920, "free_objects": 2},
    ],
    "thread_cache": {"hits": 120000, "misses": 3456, "flushes": 321, "cached_bytes": 8192,
                     "threads": 3},
    "central": {"lock_acquisitions": 4000, "lock_contended": 40, "spans": 82,
                "partial_spans": 4, "empty_spans": 1, "free_bytes": 4096},
    "page_heap": {"page_size": 4096, "chunk_size": 4194304,
                  "free_blocks_by_order": [3, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0],
                  "splits": 10, "merges": 5, "chunks": 2, "mmap_bytes": 8388608,
                  "brk_bytes": 0, "used_bytes": 6291456, "free_bytes": 2097152,
                  "released_bytes": 1048576, "released_bytes_total": 1048576,
                  "largest_free_block_bytes": 1048576, "page_objects": 0,
                  "page_object_bytes": 0},
    "large": {"threshold_bytes": 262144, "allocs": 7, "frees": 6, "live": 1,
              "live_bytes": 1048576, "peak_live_bytes": 3145728, "mremaps": 2},
    "fragmentation": {"internal": 0.1234, "external": 0.5},
}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_module(path):
    spec = importlib.util.spec_from_file_location("strata_report", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="strata-report-unit.")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def run_script(self, *args):
        return subprocess.run([sys.executable, SCRIPT] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=120)

    def page_of(self, stats_text, min_svgs=3, name="stats.json", args=()):
        path = self.write(name, stats_text)
        out = os.path.join(self.dir, "out.html")
        r = self.run_script(path, "-o", out, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), out)
        page = read(out)
        self.assertEqual(report_check.problems(page, min_svgs=min_svgs), [])
        return page, report_check.parse(page), r


class OneSnapshot(Base):
    def check_minimal(self, text):
        page, parsed, _ = self.page_of(text)
        t = parsed.all_text
        # Breakdown, size classes, free blocks; no timeline.
        self.assertEqual(len(report_check.re.findall(r"<svg[\s>]", page)), 3)
        self.assertIn("single snapshot", t)
        self.assertIn("1 snapshot", t)
        for s in ["123,457", "120,001", "10,485,760 B", "7,340,032 B", "1,572,864 B",
                  "1.5 MiB", "10 MiB", "7 MiB", "120,000", "3,456", "97.20 %",
                  "12.3 %", "50.0 %", "1.25 KiB", "16 B", "STRATA_DECAY_MS", "stats.json"]:
            self.assertIn(s, t)
        self.assertEqual(parsed.class_rows, 2)

    def test_one_line(self):
        self.check_minimal(json.dumps(MINIMAL, separators=(",", ":")) + "\n")

    def test_pretty_printed(self):
        self.check_minimal(json.dumps(MINIMAL, indent=2))

    def test_no_trailing_newline(self):
        self.check_minimal(json.dumps(MINIMAL))

    def test_default_output_next_to_input(self):
        path = self.write("run1.json", json.dumps(MINIMAL))
        r = self.run_script(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), os.path.join(self.dir, "run1.html"))
        self.assertTrue(os.path.exists(os.path.join(self.dir, "run1.html")))


class MissingAndNew(Base):
    def test_empty_size_classes_and_missing_sections(self):
        doc = {"version": 1, "totals": {"allocated_bytes": 0, "mapped_bytes": 4096},
               "size_classes": []}
        page, parsed, _ = self.page_of(json.dumps(doc), min_svgs=1)
        self.assertIn("No size class has seen an allocation", parsed.all_text)
        self.assertEqual(parsed.class_rows, 0)

    def test_nearly_empty_document(self):
        page, parsed, _ = self.page_of("{}", min_svgs=0)
        self.assertIn("No totals in this file", parsed.all_text)

    def test_newer_version_unknown_and_odd_keys(self):
        doc = json.loads(json.dumps(MINIMAL))
        doc["version"] = 7
        doc["new_section"] = {"x": [1, 2, 3]}
        doc["totals"]["shiny_new_bytes"] = 5
        del doc["page_heap"]["free_blocks_by_order"]
        del doc["large"]
        doc["thread_cache"]["hits"] = "many"        # wrong type: shown as missing
        doc["size_classes"].append({"class": 99})  # a class with nothing but its index
        page, parsed, _ = self.page_of(json.dumps(doc), min_svgs=2)
        self.assertIn("format version 7", parsed.all_text)
        self.assertEqual(parsed.class_rows, 3)


class Lines(Base):
    def snaps(self, n):
        out = []
        for i in range(n):
            d = json.loads(json.dumps(MINIMAL))
            d["time_ms"] = 1000 + 50 * i
            d["totals"]["allocated_bytes"] = 1048576 * (1 + (i if i < 3 else 5 - i))
            out.append(json.dumps(d, separators=(",", ":")))
        return out

    def test_timeline_and_truncated_last_line(self):
        lines = self.snaps(5)
        text = "\n".join(lines) + "\n" + lines[-1][:40]
        page, parsed, r = self.page_of(text, min_svgs=4)
        self.assertIn("truncated", r.stderr)
        self.assertIn("truncated", parsed.all_text)
        self.assertIn("5 snapshots over 0.20 s", parsed.all_text)
        self.assertIn("Memory over time", parsed.all_text)

    def test_blank_lines_ignored(self):
        text = "\n\n".join(self.snaps(3)) + "\n\n"
        page, parsed, r = self.page_of(text, min_svgs=4)
        self.assertIn("3 snapshots", parsed.all_text)
        self.assertEqual(r.stderr, "")

    def test_snapshot_choice(self):
        text = "\n".join(self.snaps(5)) + "\n"
        _, parsed, _ = self.page_of(text, min_svgs=4, args=("--snapshot", "peak"))
        self.assertIn("snapshot 3 of 5 (at 0.10 s)", parsed.all_text)
        self.assertIn("3,145,728 B", parsed.all_text)  # allocated at the peak
        _, parsed, _ = self.page_of(text, min_svgs=4, args=("--snapshot", "0"))
        self.assertIn("snapshot 1 of 5", parsed.all_text)
        path = self.write("s.json", text)
        r = self.run_script(path, "--snapshot", "9")
        self.assertEqual(r.returncode, 2)
        self.assertIn("does not exist", r.stderr)
        r = self.run_script(path, "--snapshot", "best")
        self.assertEqual(r.returncode, 2)


class Errors(Base):
    def test_empty_file(self):
        r = self.run_script(self.write("e.json", ""))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no statistics", r.stderr)

    def test_not_json(self):
        r = self.run_script(self.write("e.json", "hello\n"))
        self.assertEqual(r.returncode, 1)

    def test_missing_file(self):
        r = self.run_script(os.path.join(self.dir, "nope.json"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot read", r.stderr)


class Units(unittest.TestCase):
    def test_size_label(self):
        for n, s in [(16, "16 B"), (1024, "1 KiB"), (1280, "1.25 KiB"), (1536, "1.5 KiB"),
                     (229376, "224 KiB"), (262144, "256 KiB"), (4194304, "4 MiB")]:
            self.assertEqual(report.size_label(n), s)

    def test_fmt_bytes(self):
        for n, s in [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (24250768, "23.1 MiB"),
                     (141438464, "135 MiB"), (None, "-"), ("x", "-")]:
            self.assertEqual(report.fmt_bytes(n), s)

    def test_counts_and_percentages(self):
        self.assertEqual(report.fmt_count(1780255), "1,780,255")
        self.assertEqual(report.fmt_pct(0.064803), "6.5 %")
        self.assertEqual(report.fmt_pct(None), "-")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: test_strata_report.py STRATA_REPORT_PY [unittest args...]")
        sys.exit(2)
    SCRIPT = os.path.abspath(sys.argv[1])
    report = load_module(SCRIPT)
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
