"""report_preload: a real statistics file, then its report.

usage: test_preload.py LIBSTRATA WORKLOAD STRATA_REPORT_PY

Runs WORKLOAD (workload.c) with LD_PRELOAD=LIBSTRATA, STRATA_STATS=json,
STRATA_STATS_FILE and STRATA_STATS_INTERVAL_MS, so the file gets interval
snapshots and the exit report; turns it into a page with strata_report.py and
checks the page: well-formed HTML, at least 4 inline SVG charts (with the
timeline), nothing fetched from outside, and the exit report's key figures
shown. Also makes a report of the same file with its last line cut short (a
program killed while writing). Run by with_python.sh (exit 77 = skipped).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report_check  # noqa: E402

FAILS = []


def fail(msg):
    print("FAIL: report_preload: %s" % msg)
    FAILS.append(msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def run_report(script, stats, out=None, extra=()):
    cmd = [sys.executable, script, stats] + (["-o", out] if out else []) + list(extra)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120)


def main():
    if len(sys.argv) != 4:
        print("usage: test_preload.py LIBSTRATA WORKLOAD STRATA_REPORT_PY")
        return 2
    lib, workload, script = (os.path.abspath(a) for a in sys.argv[1:])
    work = tempfile.mkdtemp(prefix="strata-report-test.")
    stats = os.path.join(work, "stats.json")

    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update(LD_PRELOAD=lib, STRATA_STATS="json", STRATA_STATS_FILE=stats,
               STRATA_STATS_INTERVAL_MS="20")
    r = subprocess.run([workload], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    if r.returncode != 0:
        fail("workload exited %d: %s" % (r.returncode, r.stderr.strip()))
    if not os.path.exists(stats) or os.path.getsize(stats) == 0:
        fail("the preloaded workload wrote no statistics to %s (was libstrata.so preloaded?)"
             % stats)
        return finish(work)
    lines = [l for l in read(stats).splitlines() if l.strip()]
    if len(lines) < 3:
        fail("%d lines in the statistics file; expected interval snapshots and the exit report"
             % len(lines))
    try:
        final = json.loads(lines[-1])
    except ValueError as e:
        fail("the last line (the exit report) is not JSON: %s" % e)
        return finish(work)

    # The report, with -o, and by default next to the input.
    out = os.path.join(work, "page.html")
    r = run_report(script, stats, out)
    if r.returncode != 0:
        fail("strata_report.py exited %d: %s" % (r.returncode, r.stderr.strip()))
        return finish(work)
    if r.stdout.strip() != out:
        fail("strata_report.py printed %r, not the output path %r" % (r.stdout.strip(), out))
    r2 = run_report(script, stats)
    if r2.returncode != 0 or not os.path.exists(os.path.join(work, "stats.html")):
        fail("without -o the page was not written to stats.html next to the input (%s)"
             % r2.stderr.strip())

    page = read(out)
    for p in report_check.problems(page, min_svgs=4):
        fail(p)
    parsed = report_check.parse(page)
    text = parsed.all_text
    t, tc = final.get("totals", {}), final.get("thread_cache", {})
    c = report_check.count_fmt
    want = {
        "total allocations": c(t["allocs"]),
        "total frees": c(t["frees"]),
        "mapped bytes": c(t["mapped_bytes"]) + " B",
        "resident bytes": c(t["resident_bytes"]) + " B",
        "thread-cache hits": c(tc["hits"]),
        "central lock acquisitions": c(final["central"]["lock_acquisitions"]),
        "internal fragmentation": "%.1f %%" % (final["fragmentation"]["internal"] * 100),
        "external fragmentation": "%.1f %%" % (final["fragmentation"]["external"] * 100),
        "snapshot count": "%d snapshots" % len(lines),
        "interval option": "STRATA_STATS_INTERVAL_MS",
        "timeline section": "Memory over time",
    }
    if t["allocated_bytes"] >= 1024:
        want["allocated bytes"] = c(t["allocated_bytes"]) + " B"
    for what, s in want.items():
        if s not in text:
            fail("the page does not show the %s (%r)" % (what, s))
    n_classes = len(final.get("size_classes", []))
    if n_classes == 0:
        fail("the exit report has no size class (the workload allocates many)")
    if parsed.class_rows != n_classes:
        fail("the size class table has %d rows, the report %d classes"
             % (parsed.class_rows, n_classes))

    # A file whose last line was cut short: the report is made, with a warning.
    cut = os.path.join(work, "cut.json")
    with open(cut, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    r = run_report(script, cut, os.path.join(work, "cut.html"))
    if r.returncode != 0:
        fail("a truncated last line made strata_report.py fail: %s" % r.stderr.strip())
    elif "truncated" not in r.stderr:
        fail("no warning about the truncated last line: %r" % r.stderr)
    else:
        cut_page = read(os.path.join(work, "cut.html"))
        for p in report_check.problems(cut_page, min_svgs=4):
            fail("truncated input: " + p)
        if "%d snapshots" % (len(lines) - 1) not in report_check.parse(cut_page).all_text:
            fail("truncated input: the page does not count %d snapshots" % (len(lines) - 1))

    print("report_preload: %d snapshots, %d size classes, page %d bytes"
          % (len(lines), n_classes, len(page)))
    return finish(work)


def finish(work):
    if FAILS:
        print("report_preload: %d failure(s); files kept in %s" % (len(FAILS), work))
        return 1
    if os.environ.get("REPORT_TEST_KEEP") == "1":
        print("report_preload: files kept in %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS: report_preload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
