"""bench_*: tools/bench/strata_bench.py, the runner of `tools/strata bench`.

usage: test_strata_bench.py STRATA_BENCH_PY [unittest args...]

Nothing is measured and no program is started: run_child (every child
process), build_c (the C helpers) and sh (git, dpkg-query, gcc) are replaced
by fakes, so a whole bench over fake workloads and allocators runs in memory
in about a second. Covers the arguments (--allocators, --workloads, --reps,
--variant, --build), the statistics over repetitions, the parsing of a
workload's last output line, the ratios to the best of each row, the
interleaving of runs, and results.json / results.md / the charts of a whole
bench. No assertion depends on time.
"""

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import unittest
from unittest import mock

bench = None  # the strata_bench module, loaded in __main__


def load_module(path):
    spec = importlib.util.spec_from_file_location("strata_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def have_matplotlib():
    try:
        importlib.import_module("matplotlib")
        return True
    except ImportError:
        return False


def spread(median, lo, hi, n):
    """A median_spread() result."""
    return {"median": median, "min": lo, "max": hi, "n": n}


def libc_of_this_process():
    # The runner looks for libc the same way; the fake preload check reports
    # it as glibc's malloc.
    with open("/proc/self/maps") as f:
        for line in f:
            if re.search(r"/libc\.so\.6$|/libc-[\d.]+\.so$", line.strip()):
                return line.split()[-1]
    return None


def make_run(stdout="", ok=True, error=None, wall_s=0.5, maxrss_kb=1000, exit_code=0, stderr=""):
    r = bench.Run()
    r.ok, r.error, r.exit = ok, error, exit_code
    r.wall_s, r.maxrss_kb = wall_s, maxrss_kb
    r.stdout, r.stderr = stdout, stderr
    return r


def crash_run(stdout=""):
    return make_run(stdout, ok=False, error="killed by SIGSEGV", exit_code=-signal.SIGSEGV,
                    maxrss_kb=99999, stderr="Segmentation fault")


def job(name, metric="time_s", higher=False, extra=()):
    return bench.Job(name, "workload", metric, higher, "", list(extra))


def rec(workload, allocator, ok=True, values=None, maxrss_kb=1000, wall_s=1.0, error=None):
    """A raw run as results.json holds it (what summarize reads)."""
    return {"workload": workload, "allocator": allocator, "ok": ok,
            "error": None if ok else (error or "exit status 1"), "values": values or {},
            "maxrss_kb": maxrss_kb, "wall_s": wall_s}


# The fake manifest: a throughput, a time, a memory-size primary metric with
# RSS phases (drawn in phases.svg), and one whose binary was never built.
MANIFEST = {"workloads": [
    {"name": "spin", "binary": "spin", "quick": ["-q"], "full": ["-f", "7"],
     "metric": "ops_per_sec", "higher_is_better": True, "stresses": "a throughput",
     "extra_metrics": ["rss_after_free_kb"]},
    {"name": "grind", "binary": "grind", "quick": ["-q"], "full": ["-f"],
     "metric": "time_s", "higher_is_better": False, "stresses": "a time"},
    {"name": "frag", "binary": "frag", "quick": ["-q"], "full": ["-f"],
     "metric": "rss_peak_kb", "higher_is_better": False, "stresses": "memory | phases",
     "extra_metrics": ["rss_fill_kb", "rss_after_free_kb", "rss_1s_after_free_kb"]},
    {"name": "absent", "binary": "absent", "quick": [], "full": [],
     "metric": "time_s", "stresses": "never built"},
]}


def default_output(workload, alloc, rep):
    return make_run("warming up\nops_per_sec=100 time_s=1.5 rss_peak_kb=2048 rss_fill_kb=1024 "
                    "rss_after_free_kb=512 rss_1s_after_free_kb=256\n")


class Harness:
    """Runs bench.main() with every process faked, in a temporary directory.

    The fake run_child tells the allocator from the child's environment
    (LD_PRELOAD, and a variant's variables) and the workload from argv[0], and
    answers with self.output(workload, allocator, rep); rep counts from 0 per
    (workload, allocator). The preload check (malloc_loop) reports the preload
    itself, or this process's libc for glibc, and a strata warning when a
    variable's value is "bad"."""

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="strata-bench-test.")
        self.bindir = os.path.join(self.dir, "bin")
        os.mkdir(self.bindir)
        for w in MANIFEST["workloads"]:
            if w["name"] != "absent":
                self.touch(os.path.join(self.bindir, w["binary"]), 0o755)
        self.manifest = os.path.join(self.dir, "workloads.json")
        with open(self.manifest, "w") as f:
            json.dump(MANIFEST, f)
        self.strata_lib = self.touch(os.path.join(self.dir, "libstrata.so"))
        # The peers, so that the default allocator set is measured on any machine.
        self.peers = {"glibc": (None, "libc6")}
        for name in ("mimalloc", "jemalloc", "tcmalloc"):
            self.peers[name] = (self.touch(os.path.join(self.dir, "lib%s.so" % name)),
                                bench.PEERS[name][1])
        self.out = os.path.join(self.dir, "out")
        self.loop = os.path.join(self.dir, "malloc_loop")
        self.libc = libc_of_this_process()
        self.output = default_output
        self.calls = []       # (workload, allocator, argv, env) of each measured run
        self.checks = []      # allocators whose preload was checked
        self.variant_defs = dict(bench.BUILTIN_VARIANTS)
        self.build_defs = {}

    def stop(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def touch(self, path, mode=0o644):
        with open(path, "w") as f:
            f.write("")
        os.chmod(path, mode)
        return path

    def identify(self, env):
        pre = env.get("LD_PRELOAD")
        if pre is None:
            return "glibc"
        if os.path.samefile(pre, self.strata_lib):
            for name, venv in self.variant_defs.items():
                if venv and all(env.get(k) == v for k, v in venv.items()):
                    return name
            return "strata"
        for name, path in self.build_defs.items():
            if os.path.samefile(pre, path):
                return name
        for name, (path, _) in self.peers.items():
            if path and os.path.samefile(pre, path):
                return name
        raise AssertionError("unexpected LD_PRELOAD %r" % pre)

    def fake_run_child(self, argv, env, timeout, stdin_path=None, cwd=None, measured=True):
        alloc = self.identify(env)
        if argv[0] == self.loop:
            self.checks.append(alloc)
            lib = env.get("LD_PRELOAD") or self.libc
            bad = [k for k, v in env.items() if k.startswith("STRATA_") and v == "bad"]
            err = "".join("strata: ignoring %s=bad (not a number)\n" % k for k in bad)
            return make_run("malloc_lib=%s free_lib=%s\n" % (lib, lib), stderr=err)
        workload = os.path.basename(argv[0])
        rep = sum(1 for c in self.calls if c[0] == workload and c[1] == alloc)
        self.calls.append((workload, alloc, list(argv), dict(env)))
        return self.output(workload, alloc, rep)

    def fake_build_c(self, workdir, name, flags):
        # No rusage_exec helper (runs are not measured); a malloc_loop path
        # for the preload check, which the fake run_child recognises.
        return self.loop if name == "malloc_loop" else None

    def main(self, *args, variants=None, builds=None, allocators=None, charts=False,
             environ=None):
        """bench.main(args) with the fakes; returns (status, stdout, stderr).
        A status of "exit N" means argparse exited (a usage error)."""
        argv = ["--root", self.dir, "--manifest", self.manifest, "--bin-dir", self.bindir,
                "--strata-lib", self.strata_lib, "--out", self.out, "--no-real"]
        for name, env in (variants or {}).items():
            self.variant_defs[name] = env
            argv += ["--variant", "%s=%s" % (name, ",".join("%s=%s" % kv for kv in env.items()))]
        for name, path in (builds or {}).items():
            if os.path.exists(path):
                self.build_defs[name] = path
            argv += ["--build", "%s=%s" % (name, path)]
        if allocators is not None:
            argv += ["--allocators", allocators]
        argv += list(args)
        # The caller's environment is this process's, without its own STRATA_*
        # (the runner reports those), plus environ.
        caller = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        caller.update(environ or {})
        out, err = io.StringIO(), io.StringIO()
        patches = [mock.patch.object(bench, "run_child", self.fake_run_child),
                   mock.patch.object(bench, "build_c", self.fake_build_c),
                   mock.patch.object(bench, "sh", lambda cmd: "fake-" + os.path.basename(cmd[0])),
                   mock.patch.object(bench, "HELPER", None),
                   mock.patch.dict(bench.PEERS, self.peers),
                   mock.patch.dict(os.environ, caller, clear=True)]
        if not charts:
            patches.append(mock.patch.object(bench, "draw_charts", lambda *a, **k: []))
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            try:
                status = bench.main(argv)
            except SystemExit as e:
                status = "exit %s" % e.code
        return status, out.getvalue(), err.getvalue()

    def results(self):
        with open(os.path.join(self.out, "results.json")) as f:
            return json.load(f)


class FakeBench(Harness, unittest.TestCase):
    """A test case with a fresh harness per test."""

    def setUp(self):
        self.start()

    def tearDown(self):
        self.stop()


# ------------------------------------------------------------- arguments ---

class Arguments(FakeBench):
    def test_unknown_allocator_is_rejected_with_the_known_names(self):
        status, _, err = self.main(allocators="strata,nosuch", variants={"v1": {"STRATA_X": "1"}})
        self.assertEqual(status, "exit 2")
        self.assertIn("unknown allocator 'nosuch'", err)
        for known in ["strata", "glibc", "mimalloc", "jemalloc", "tcmalloc", "strata-nodecay",
                      "v1"]:
            self.assertIn(known, err.split("known:")[1])
        self.assertEqual(self.calls, [])

    def test_allocators_are_a_subset_in_the_order_given_without_duplicates(self):
        status, _, _ = self.main("--reps", "1", "--workloads", "spin",
                                 allocators=" glibc , strata,glibc")
        self.assertEqual(status, 0)
        self.assertEqual(self.results()["config"]["allocators"], ["glibc", "strata"])
        self.assertEqual([c[1] for c in self.calls], ["glibc", "strata"])

    def test_default_allocators_are_the_five_and_the_defined_ones_not_builtin_variants(self):
        lib = self.touch(os.path.join(self.dir, "other.so"))
        status, _, _ = self.main("--reps", "1", "--workloads", "spin",
                                 variants={"v1": {"STRATA_DECAY_MS": "0"}}, builds={"b1": lib})
        self.assertEqual(status, 0)
        self.assertEqual(self.results()["config"]["allocators"],
                         ["strata", "glibc", "mimalloc", "jemalloc", "tcmalloc", "v1", "b1"])
        self.assertNotIn("strata-nodecay", [c[1] for c in self.calls])

    def test_builtin_variant_is_measured_when_named(self):
        status, _, _ = self.main("--reps", "1", "--workloads", "spin",
                                 allocators="strata,strata-nodecay")
        self.assertEqual(status, 0)
        env = {c[1]: c[3] for c in self.calls}
        self.assertEqual(env["strata-nodecay"]["STRATA_DECAY_MS"], "-1")
        self.assertEqual(env["strata-nodecay"]["STRATA_BACKGROUND"], "0")
        self.assertEqual(self.results()["config"]["variants"],
                         {"strata-nodecay": {"base": "strata",
                                             "env": bench.BUILTIN_VARIANTS["strata-nodecay"]}})

    def test_missing_peer_library_is_skipped_with_its_debian_package(self):
        self.peers["jemalloc"] = (os.path.join(self.dir, "gone.so"), "libjemalloc2")
        status, _, _ = self.main("--reps", "1", "--workloads", "spin",
                                 allocators="strata,jemalloc")
        self.assertEqual(status, 0)
        res = self.results()
        self.assertEqual(res["config"]["allocators"], ["strata"])
        self.assertTrue(any("jemalloc" in s and "libjemalloc2" in s for s in res["skipped"]),
                        res["skipped"])

    def test_reps_sets_the_number_of_runs_per_pair(self):
        status, _, _ = self.main("--reps", "2", "--workloads", "spin,grind",
                                 allocators="strata,glibc")
        self.assertEqual(status, 0)
        self.assertEqual(self.results()["config"]["reps"], 2)
        self.assertEqual(len(self.calls), 2 * 2 * 2)

    def test_reps_default_is_3_quick_and_5_full(self):
        self.main("--quick", "--workloads", "spin", allocators="glibc")
        self.assertEqual(len(self.calls), 3)
        self.calls = []
        self.main("--workloads", "spin", allocators="glibc")
        self.assertEqual(len(self.calls), 5)

    def test_reps_below_one_and_timeout_not_above_zero_are_rejected(self):
        for option, message in [("--reps", "--reps must be at least 1"),
                                ("--timeout", "--timeout must be a positive number of seconds")]:
            for value in ["0", "-1"]:
                status, _, err = self.main(option, value, allocators="glibc")
                self.assertEqual(status, "exit 2", (option, value))
                self.assertIn(message, err)
        self.assertEqual(self.calls, [])

    def test_timeout_defaults_to_120_quick_and_600_full(self):
        for args, expect in [(["--quick"], 120.0), ([], 600.0), (["--timeout", "7.5"], 7.5)]:
            self.main(*args, "--workloads", "spin", allocators="glibc")
            self.assertEqual(self.results()["config"]["timeout_s"], expect, args)

    def test_workloads_selects_manifest_entries_with_their_quick_or_full_arguments(self):
        status, _, _ = self.main("--reps", "1", "--workloads", "grind,spin", allocators="glibc")
        self.assertEqual(status, 0)
        # Manifest order, not the order of --workloads.
        self.assertEqual([c[0] for c in self.calls], ["spin", "grind"])
        self.assertEqual(self.calls[0][2], [os.path.join(self.bindir, "spin"), "-f", "7"])
        self.assertEqual(self.results()["config"]["workloads"], ["spin", "grind"])
        self.calls = []
        self.main("--quick", "--reps", "1", "--workloads", "spin", allocators="glibc")
        self.assertEqual(self.calls[0][2], [os.path.join(self.bindir, "spin"), "-q"])

    def test_unknown_workload_stops_before_measuring(self):
        status, _, err = self.main("--reps", "1", "--workloads", "spin,nosuch",
                                   allocators="glibc")
        self.assertEqual(status, 2)
        self.assertIn("unknown workloads: nosuch", err)
        self.assertEqual(self.calls, [])

    def test_workload_without_binary_is_skipped_not_unknown(self):
        status, _, _ = self.main("--reps", "1", "--workloads", "spin,absent", allocators="glibc")
        self.assertEqual(status, 0)
        res = self.results()
        self.assertEqual(res["config"]["workloads"], ["spin"])
        self.assertEqual(res["skipped"], ["workload absent (no binary %s)"
                                          % os.path.join(self.bindir, "absent")])

    def test_nothing_to_run_fails(self):
        status, _, err = self.main("--workloads", "absent", allocators="glibc")
        self.assertEqual(status, 1)
        self.assertIn("nothing to run", err)


class Variants(FakeBench):
    def test_parse_variant_splits_name_and_variables(self):
        self.assertEqual(bench.parse_variant("strata-d0=STRATA_DECAY_MS=0"),
                         ("strata-d0", {"STRATA_DECAY_MS": "0"}))
        self.assertEqual(bench.parse_variant("v.2+x=A=1, B_2=x=y ,,"),
                         ("v.2+x", {"A": "1", "B_2": "x=y"}))
        # No variables: strata's defaults under another name.
        self.assertEqual(bench.parse_variant("same="), ("same", {}))

    def test_parse_variant_rejects_malformed_specs(self):
        for spec, why in [("novalue", "expected NAME=VAR=VALUE"),
                          ("-x=A=1", "expected NAME=VAR=VALUE"),
                          ("a b=A=1", "expected NAME=VAR=VALUE"),
                          ("v=A", "'A' is not VAR=VALUE"),
                          ("v=1A=2", "'1A=2' is not VAR=VALUE"),
                          ("v=LD_PRELOAD=/x.so", "cannot set LD_PRELOAD")]:
            with self.assertRaises(ValueError, msg=spec) as cm:
                bench.parse_variant(spec)
            self.assertIn(why, str(cm.exception))

    def test_malformed_variant_is_a_usage_error(self):
        status, _, err = self.main(allocators="glibc", *["--variant", "v=LD_PRELOAD=/x.so"])
        self.assertEqual(status, "exit 2")
        self.assertIn("cannot set LD_PRELOAD", err)

    def test_variant_name_may_not_reuse_an_allocator_or_variant(self):
        for name in ["glibc", "strata", "strata-nodecay"]:
            status, _, err = self.main("--variant", "%s=STRATA_X=1" % name)
            self.assertEqual(status, "exit 2", name)
            self.assertIn("the name %s is already taken" % name, err)
        status, _, err = self.main("--variant", "v=STRATA_X=1", "--variant", "v=STRATA_X=2")
        self.assertEqual(status, "exit 2")
        self.assertIn("the name v is already taken", err)

    def test_variant_gets_strata_and_its_variables_and_never_the_callers_strata_options(self):
        caller = {"STRATA_DECAY_MS": "5", "STRATA_STATS": "json", "STRATA_PYTHON": "/py",
                  "MALLOC_CONF": "narenas:1", "LD_PRELOAD": "/caller.so",
                  "PYTHONMALLOC": "debug", "KEEP_ME": "yes"}
        status, _, err = self.main("--reps", "1", "--workloads", "spin",
                                   variants={"d0": {"STRATA_DECAY_MS": "0", "OTHER": "1"}},
                                   allocators="strata,d0,glibc", environ=caller)
        self.assertEqual(status, 0)
        env = {c[1]: c[3] for c in self.calls}
        strata_vars = {a: {k: v for k, v in e.items() if k.startswith("STRATA_")}
                       for a, e in env.items()}
        self.assertEqual(strata_vars, {"strata": {}, "glibc": {},
                                       "d0": {"STRATA_DECAY_MS": "0"}})
        self.assertEqual(env["d0"]["OTHER"], "1")
        self.assertNotIn("OTHER", env["strata"])
        self.assertEqual(env["d0"]["LD_PRELOAD"], os.path.realpath(self.strata_lib))
        self.assertEqual(env["strata"]["LD_PRELOAD"], os.path.realpath(self.strata_lib))
        self.assertNotIn("LD_PRELOAD", env["glibc"])
        for e in env.values():
            for k in ("MALLOC_CONF", "PYTHONMALLOC"):
                self.assertNotIn(k, e)
            self.assertEqual(e["KEEP_ME"], "yes")
        # Said once, so a caller who set options knows they were not used.
        self.assertIn("not passed to the measured programs: STRATA_DECAY_MS, STRATA_STATS", err)
        self.assertEqual(self.results()["config"]["variants"],
                         {"d0": {"base": "strata", "env": {"STRATA_DECAY_MS": "0", "OTHER": "1"}}})

    def test_variant_defined_but_not_named_in_allocators_is_not_measured(self):
        status, _, err = self.main("--reps", "1", "--workloads", "spin",
                                   variants={"d0": {"STRATA_DECAY_MS": "0"}},
                                   allocators="strata")
        self.assertEqual(status, 0)
        self.assertEqual({c[1] for c in self.calls}, {"strata"})
        self.assertIn("variant d0 is defined but not in --allocators", err)
        self.assertEqual(self.results()["config"]["variants"], {})

    def test_variant_whose_option_strata_rejects_is_dropped_before_measuring(self):
        status, _, _ = self.main("--reps", "1", "--workloads", "spin",
                                 variants={"broken": {"STRATA_DECAY_MS": "bad"}},
                                 allocators="strata,broken")
        self.assertEqual(status, 0)
        self.assertIn("broken", self.checks)
        self.assertEqual({c[1] for c in self.calls}, {"strata"})
        res = self.results()
        self.assertEqual(res["config"]["allocators"], ["strata"])
        self.assertEqual(res["config"]["variants"], {})
        self.assertTrue(any(s.startswith("allocator broken (strata rejected its options")
                            for s in res["skipped"]), res["skipped"])

    def test_child_env_drops_allocator_settings_and_adds_preload_and_extra(self):
        with mock.patch.dict(os.environ, {"STRATA_STATS": "json", "MALLOC_CONF": "x",
                                          "MIMALLOC_SHOW_STATS": "1", "LD_PRELOAD": "/a.so"}):
            env = bench.child_env("/lib.so", {"STRATA_DECAY_MS": "0"})
            plain = bench.child_env(None)
        self.assertEqual(env["LD_PRELOAD"], "/lib.so")
        self.assertEqual(env["STRATA_DECAY_MS"], "0")
        for k in ("STRATA_STATS", "MALLOC_CONF", "MIMALLOC_SHOW_STATS"):
            self.assertNotIn(k, env)
            self.assertNotIn(k, plain)
        self.assertNotIn("LD_PRELOAD", plain)


class Builds(FakeBench):
    def test_build_is_measured_with_its_library_and_recorded_in_config(self):
        lib = self.touch(os.path.join(self.dir, "before.so"))
        status, _, err = self.main("--reps", "1", "--workloads", "spin",
                                   builds={"before": lib}, allocators="strata,before")
        self.assertEqual(status, 0)
        env = {c[1]: c[3] for c in self.calls}
        self.assertEqual(env["before"]["LD_PRELOAD"], os.path.realpath(lib))
        self.assertEqual(env["strata"]["LD_PRELOAD"], os.path.realpath(self.strata_lib))
        res = self.results()
        self.assertEqual(res["config"]["builds"], {"before": lib})
        self.assertEqual(res["config"]["variants"], {})
        self.assertEqual(res["machine"]["allocator_versions"]["before"], "build " + lib)
        self.assertIn("build before = %s" % lib, err)

    def test_build_with_a_missing_library_is_skipped_and_not_in_config(self):
        lib = os.path.join(self.dir, "nowhere", "libstrata.so")
        status, _, _ = self.main("--reps", "1", "--workloads", "spin",
                                 builds={"gone": lib}, allocators="strata,gone")
        self.assertEqual(status, 0)
        res = self.results()
        self.assertEqual(res["config"]["allocators"], ["strata"])
        self.assertEqual(res["config"]["builds"], {})
        self.assertIn("allocator gone (%s not found)" % lib, res["skipped"])
        self.assertEqual({c[1] for c in self.calls}, {"strata"})

    def test_build_name_may_not_reuse_an_allocator_or_variant(self):
        lib = self.touch(os.path.join(self.dir, "x.so"))
        for name in ["mimalloc", "strata", "strata-nodecay"]:
            status, _, err = self.main("--build", "%s=%s" % (name, lib))
            self.assertEqual(status, "exit 2", name)
            self.assertIn("the name %s is already taken" % name, err)
        status, _, err = self.main("--variant", "v=STRATA_X=1", "--build", "v=%s" % lib)
        self.assertIn("the name v is already taken", err)
        status, _, err = self.main("--build", "b=%s" % lib, "--build", "b=%s" % lib)
        self.assertIn("the name b is already taken", err)

    def test_build_spec_needs_a_name_and_a_path(self):
        for spec in ["justaname", "b=", "=/x.so", "b c=/x.so"]:
            status, _, err = self.main("--build", spec)
            self.assertEqual(status, "exit 2", spec)
            self.assertIn("expected NAME=PATH", err)


# ------------------------------------------------------------ statistics ---

class Statistics(unittest.TestCase):
    def test_median_spread_odd_and_even(self):
        self.assertEqual(bench.median_spread([3, 1, 2]), spread(2, 1, 3, 3))
        self.assertEqual(bench.median_spread([4.0, 1.0, 2.0, 3.0]), spread(2.5, 1.0, 4.0, 4))

    def test_median_spread_ignores_missing_values(self):
        self.assertEqual(bench.median_spread([None, 5, None]), spread(5, 5, 5, 1))
        self.assertIsNone(bench.median_spread([]))
        self.assertIsNone(bench.median_spread([None]))

    def test_summarize_counts_failed_runs_and_excludes_them(self):
        j = job("w", "ops_per_sec", True, ["rss_after_free_kb"])
        runs = [rec("w", "a", values={"ops_per_sec": 10, "rss_after_free_kb": 7},
                    maxrss_kb=100, wall_s=1.0),
                rec("w", "a", values={"ops_per_sec": 30, "rss_after_free_kb": 9},
                    maxrss_kb=300, wall_s=3.0),
                rec("w", "a", values={"ops_per_sec": 20, "rss_after_free_kb": "n/a"},
                    maxrss_kb=200, wall_s=2.0),
                # Failed: its values are not counted, whatever they are.
                rec("w", "a", ok=False, values={"ops_per_sec": 1e9}, maxrss_kb=10 ** 9,
                    wall_s=99.0, error="killed by SIGSEGV"),
                rec("w", "a", ok=False, error="timed out after 5s"),
                rec("w", "a", ok=False, error="killed by SIGSEGV"),
                rec("other", "a", values={"ops_per_sec": 5000})]
        e = bench.summarize([j], ["a"], runs)["w"]["a"]
        self.assertEqual(e["runs"], 6)
        self.assertEqual(e["failed"], 3)
        self.assertEqual(e["errors"], ["killed by SIGSEGV", "timed out after 5s"])
        self.assertEqual(e["metric"], spread(20, 10, 30, 3))
        self.assertEqual(e["peak_rss_kb"], spread(200, 100, 300, 3))
        self.assertEqual(e["wall_s"], spread(2.0, 1.0, 3.0, 3))
        # A non-numeric extra value is left out, not fatal.
        self.assertEqual(e["extra"], {"rss_after_free_kb": spread(8.0, 7, 9, 2)})

    def test_summarize_with_every_run_failed_has_no_medians(self):
        j = job("w", extra=["x_kb"])
        runs = [rec("w", "a", ok=False), rec("w", "a", ok=False)]
        e = bench.summarize([j], ["a", "b"], runs)["w"]
        self.assertEqual((e["a"]["runs"], e["a"]["failed"]), (2, 2))
        self.assertIsNone(e["a"]["metric"])
        self.assertIsNone(e["a"]["peak_rss_kb"])
        self.assertEqual(e["a"]["extra"], {"x_kb": None})
        # An allocator with no run at all: zero runs, zero failures.
        self.assertEqual((e["b"]["runs"], e["b"]["failed"], e["b"]["metric"]), (0, 0, None))

    def test_geomean_skips_missing_ratios(self):
        self.assertAlmostEqual(bench.geomean([2.0, 8.0, None]), 4.0)
        self.assertIsNone(bench.geomean([None]))


# ---------------------------------------------------------------- output ---

class WorkloadOutput(unittest.TestCase):
    def test_parse_kv_line_reads_only_the_last_non_empty_line(self):
        text = "phase=1 ops_per_sec=5\nrunning...\nops_per_sec=123 time_s=0.25\n\n  \n"
        self.assertEqual(bench.parse_kv_line(text), {"ops_per_sec": 123, "time_s": 0.25})

    def test_parse_kv_line_types_and_odd_tokens(self):
        v = bench.parse_kv_line("n=42 x=1.5e3 name=frag opt=a=b done neg=-3 empty=")
        self.assertEqual(v, {"n": 42, "x": 1500.0, "name": "frag", "opt": "a=b", "neg": -3,
                             "empty": ""})
        self.assertIsInstance(v["n"], int)
        self.assertIsInstance(v["x"], float)

    def test_parse_kv_line_of_nothing_is_empty(self):
        self.assertEqual(bench.parse_kv_line(""), {})
        self.assertEqual(bench.parse_kv_line("\n \n"), {})
        self.assertEqual(bench.parse_kv_line("no pairs here"), {})

    def manifest_job(self, output):
        j = bench.ManifestJob({"name": "w", "metric": "ops_per_sec", "higher_is_better": True},
                              "/bin/w", ["-n", 3])
        ctx = mock.Mock(preload={"strata": "/lib.so"}, variant_env={}, timeout=7.0)
        seen = []

        def fake(argv, env, timeout, **kw):
            seen.append((argv, env.get("LD_PRELOAD"), timeout))
            return output
        with mock.patch.object(bench, "run_child", fake):
            r = j.run("strata", ctx)
        self.assertEqual(seen, [(["/bin/w", "-n", "3"], "/lib.so", 7.0)])
        return r

    def test_manifest_job_takes_its_metric_from_the_last_line(self):
        r = self.manifest_job(make_run("ops_per_sec=1\nops_per_sec=2.5e6 time_s=1.0\n"))
        self.assertTrue(r.ok)
        self.assertEqual(r.values, {"ops_per_sec": 2.5e6, "time_s": 1.0})

    def test_manifest_job_without_its_metric_fails(self):
        r = self.manifest_job(make_run("ops_per_sec=5\ntime_s=1.0\n"))
        self.assertFalse(r.ok)
        self.assertIn("the last output line has no ops_per_sec=", r.error)
        self.assertIn("time_s=1.0", r.error)

    def test_manifest_job_with_a_non_numeric_metric_fails(self):
        for value in ["n/a", "12ops", "nan", "inf"]:
            r = self.manifest_job(make_run("ops_per_sec=%s time_s=1.0\n" % value))
            self.assertFalse(r.ok, value)
            self.assertIn("ops_per_sec", r.error)

    def test_manifest_job_keeps_the_error_of_a_crashed_process(self):
        r = self.manifest_job(crash_run("ops_per_sec=5\n"))
        self.assertFalse(r.ok)
        self.assertEqual(r.error, "killed by SIGSEGV")
        self.assertEqual(r.values, {"ops_per_sec": 5})

    def test_python_job_measures_the_whole_process(self):
        j = bench.PythonJob(quick=True)
        ctx = mock.Mock(preload={"v": "/lib.so"}, variant_env={"v": {"STRATA_DECAY_MS": "0"}},
                        timeout=7.0)
        seen = []

        def fake(argv, env, timeout, **kw):
            seen.append(env)
            return make_run("objects=10 time_s=0.75\n", wall_s=1.25)
        with mock.patch.object(bench, "run_child", fake):
            r = j.run("v", ctx)
        self.assertEqual(r.values, {"objects": 10, "script_time_s": 0.75, "time_s": 1.25})
        self.assertEqual(seen[0]["PYTHONMALLOC"], "malloc")
        self.assertEqual(seen[0]["STRATA_DECAY_MS"], "0")

    def test_describe_status(self):
        self.assertEqual(bench.describe_status(0), (0, None))
        self.assertEqual(bench.describe_status(3 << 8), (3, "exit status 3"))
        self.assertEqual(bench.describe_status(signal.SIGSEGV),
                         (-signal.SIGSEGV, "killed by SIGSEGV"))

    def test_tail_keeps_the_last_lines(self):
        self.assertEqual(bench.tail("a\nb\nc\nd\n", lines=2), "c\nd")
        self.assertEqual(bench.tail("x" * 50, chars=10), "x" * 10)


# ---------------------------------------------------------------- ratios ---

class Relative(unittest.TestCase):
    def test_lower_is_better_divides_by_the_smallest(self):
        self.assertEqual(bench.relative_row({"a": 2.0, "b": 1.0, "c": 3.0}, False),
                         {"a": 2.0, "b": 1.0, "c": 3.0})

    def test_higher_is_better_divides_the_largest_by_each(self):
        rel = bench.relative_row({"a": 100.0, "b": 400.0, "c": 50.0}, True)
        self.assertEqual(rel, {"a": 4.0, "b": 1.0, "c": 8.0})

    def test_failed_or_unusable_values_have_no_ratio(self):
        self.assertEqual(bench.relative_row({"a": None, "b": 2.0, "c": 0.0}, False),
                         {"a": None, "b": 1.0, "c": None})
        self.assertEqual(bench.relative_row({"a": None, "b": 0, "c": -1.0}, True),
                         {"a": None, "b": None, "c": None})
        self.assertEqual(bench.relative_row({}, True), {})

    def test_metric_direction_from_its_name(self):
        for name in ["ops_per_sec", "requests_per_sec", "set_rps", "threads_per_sec"]:
            self.assertFalse(bench.lower_is_better_metric(name), name)
        for name in ["time_s", "rss_after_free_kb", "moves", "rss_after_free_pct"]:
            self.assertTrue(bench.lower_is_better_metric(name), name)

    def summary(self, jobs, allocs, runs):
        s = bench.summarize(jobs, allocs, runs)
        return s, bench.build_tables(jobs, allocs, s)

    def test_tables_rank_each_row_by_its_direction_and_mark_failures(self):
        jobs = [job("fast", "ops_per_sec", True), job("slow", "time_s", False),
                job("mem", "rss_peak_kb", False, ["rss_fill_kb"])]
        runs = [rec("fast", "a", values={"ops_per_sec": 300}, maxrss_kb=100),
                rec("fast", "b", values={"ops_per_sec": 100}, maxrss_kb=300),
                rec("slow", "a", ok=False, error="killed by SIGKILL"),
                rec("slow", "b", values={"time_s": 2.0}),
                rec("mem", "a", values={"rss_peak_kb": 50, "rss_fill_kb": 40}),
                rec("mem", "b", values={"rss_peak_kb": 100, "rss_fill_kb": 10})]
        _, (sections, chart) = self.summary(jobs, ["a", "b"], runs)
        self.assertEqual(chart["perf"], {"fast": {"a": 1.0, "b": 3.0},
                                         "slow": {"a": None, "b": 1.0}})
        # A memory-size primary metric is not a performance row.
        self.assertNotIn("mem", chart["perf"])
        self.assertEqual(chart["rss"], {"fast": {"a": 1.0, "b": 3.0}, "slow": {"a": None, "b": 1.0},
                                        "mem": {"a": 1.0, "b": 1.0}})
        perf = dict((s[0], s) for s in sections)["Performance"][2]
        self.assertIn("| fast | ops_per_sec (higher is better) | **1.00** | 3.00 |", perf)
        self.assertIn("| slow | time_s (lower is better) | FAIL | **1.00** |", perf)
        self.assertIn("| **geometric mean** | (lower is better) | **1.00** | 1.73 |", perf)
        other = dict((s[0], s) for s in sections)["Other metrics"][2]
        self.assertIn("| mem | rss_peak_kb (lower is better) | **0.05 MiB** (1.00) | "
                      "0.10 MiB (2.00) |", other)
        self.assertIn("| mem | rss_fill_kb (lower is better) | 0.04 MiB (4.00) | "
                      "**0.01 MiB** (1.00) |", other)


# ---------------------------------------------------------- interleaving ---

class Interleaving(FakeBench):
    def test_each_repetition_runs_every_pair_and_rotates_the_allocator_order(self):
        lib = self.touch(os.path.join(self.dir, "before.so"))
        status, _, _ = self.main("--reps", "3", "--workloads", "spin,grind",
                                 builds={"before": lib}, allocators="strata,glibc,before")
        self.assertEqual(status, 0)
        orders = [["strata", "glibc", "before"],
                  ["glibc", "before", "strata"],
                  ["before", "strata", "glibc"]]
        expected = [(w, a) for order in orders for w in ["spin", "grind"] for a in order]
        self.assertEqual([(c[0], c[1]) for c in self.calls], expected)
        runs = self.results()["runs"]
        self.assertEqual([(r["workload"], r["allocator"]) for r in runs], expected)
        self.assertEqual([r["rep"] for r in runs], [1] * 6 + [2] * 6 + [3] * 6)


class RunFailures(FakeBench):
    def test_a_run_that_raises_is_recorded_as_failed_and_the_bench_goes_on(self):
        def output(workload, alloc, rep):
            if alloc == "strata" and rep == 0:
                raise RuntimeError("boom")
            return default_output(workload, alloc, rep)
        self.output = output
        status, _, _ = self.main("--reps", "2", "--workloads", "spin", allocators="strata,glibc")
        self.assertEqual(status, 0)
        runs = self.results()["runs"]
        self.assertEqual(len(runs), 4)
        self.assertFalse(runs[0]["ok"])
        self.assertEqual(runs[0]["error"], "runner error: RuntimeError('boom')")
        self.assertTrue(all(r["ok"] for r in runs[1:]))

    def test_a_non_numeric_metric_is_a_failed_run_and_the_report_is_written(self):
        def output(workload, alloc, rep):
            if alloc == "glibc" and rep == 1:
                return make_run("ops_per_sec=n/a time_s=1.0\n")
            return default_output(workload, alloc, rep)
        self.output = output
        status, _, err = self.main("--reps", "3", "--workloads", "spin",
                                   allocators="strata,glibc")
        self.assertEqual(status, 0, err)
        g = self.results()["summary"]["spin"]["glibc"]
        self.assertEqual((g["runs"], g["failed"], g["metric"]["n"]), (3, 1, 2))
        self.assertTrue(os.path.exists(os.path.join(self.out, "results.md")))


# ------------------------------------------------------------ end to end ---

# Per (workload, allocator): what each of the 3 repetitions prints and how
# much it used. Medians: see EndToEnd's assertions.
def e2e_output(workload, alloc, rep):
    if workload == "spin":
        ops = {"strata": [100, 300, 200], "glibc": [50, 40, 60], "before": [100, 100, 100],
               "strata-d0": [400, 400, 400]}[alloc][rep]
        rss = {"strata": [3000, 1000, 2000], "glibc": [4000] * 3, "before": [2000] * 3,
               "strata-d0": [1000] * 3}[alloc][rep]
        after = {"strata": 10, "glibc": 20, "before": 30, "strata-d0": 40}[alloc]
        return make_run("start\nops_per_sec=%d rss_after_free_kb=%d time_s=0.5\n" % (ops, after),
                        maxrss_kb=rss)
    if workload == "grind":
        if alloc == "strata":
            # Crashes after printing a metric: that value must not count.
            return crash_run("time_s=0.1\n")
        if alloc == "glibc":
            if rep == 1:
                return make_run("progress 50%\n", maxrss_kb=99999)
            return make_run("time_s=%g\n" % [1.0, None, 3.0][rep], maxrss_kb=[1000, 0, 3000][rep])
        return make_run("time_s=%g\n" % {"before": 4.0, "strata-d0": 1.0}[alloc], maxrss_kb=1000)
    if workload == "frag":
        peak = {"strata": 1024, "glibc": 2048, "before": 1024, "strata-d0": 4096}[alloc]
        return make_run("rss_fill_kb=%d rss_after_free_kb=%d rss_1s_after_free_kb=%d "
                        "rss_peak_kb=%d time_s=0.2\n" % (peak // 2, peak // 4, peak // 8, peak),
                        maxrss_kb=peak + 100)
    raise AssertionError("unexpected workload " + workload)


class EndToEnd(unittest.TestCase):
    """One whole bench, run once for the class: 3 workloads (and one without
    a binary) x 4 allocators (strata, glibc, a --build, a --variant) x 3
    repetitions, with STRATA_* set in the caller's environment; the charts
    when matplotlib is importable."""

    ALLOCS = ["strata", "glibc", "before", "strata-d0"]

    @classmethod
    def setUpClass(cls):
        h = cls.h = Harness()
        h.start()
        h.output = e2e_output
        cls.before = h.touch(os.path.join(h.dir, "before.so"))
        cls.charts = have_matplotlib()
        cls.status, cls.stdout, cls.stderr = h.main(
            "--quick", "--reps", "3", builds={"before": cls.before},
            variants={"strata-d0": {"STRATA_DECAY_MS": "0"}},
            allocators=",".join(cls.ALLOCS), charts=cls.charts,
            environ={"STRATA_DECAY_MS": "7", "STRATA_STATS": "json"})
        cls.res = cls.md = None
        if cls.status == 0:
            cls.res = h.results()
            with open(os.path.join(h.out, "results.md")) as f:
                cls.md = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.h.stop()

    def setUp(self):
        self.assertEqual(self.status, 0, self.stderr)

    def test_results_json_has_every_section_and_the_config(self):
        res = self.res
        self.assertEqual(sorted(res), ["config", "instructions", "machine", "relative", "runs",
                                       "skipped", "summary", "workloads"])
        c = res["config"]
        self.assertEqual(c["allocators"], self.ALLOCS)
        self.assertEqual(c["workloads"], ["spin", "grind", "frag"])
        self.assertEqual((c["reps"], c["quick"], c["real"], c["instructions"]),
                         (3, True, False, False))
        self.assertEqual(c["variants"], {"strata-d0": {"base": "strata",
                                                       "env": {"STRATA_DECAY_MS": "0"}}})
        self.assertEqual(c["builds"], {"before": self.before})
        self.assertIsNone(res["instructions"])
        self.assertEqual(res["skipped"], ["workload absent (no binary %s)"
                                          % os.path.join(self.h.bindir, "absent")])
        self.assertEqual([w["name"] for w in res["workloads"]], ["spin", "grind", "frag"])
        self.assertEqual(res["workloads"][0]["extra_metrics"], ["rss_after_free_kb"])
        self.assertEqual(set(res["machine"]["allocator_versions"]), set(self.ALLOCS))
        self.assertEqual(self.stdout.strip(), os.path.join(self.h.out, "results.md"))
        # The work directory is removed at the end.
        self.assertFalse(os.path.exists(os.path.join(self.h.out, "work")))

    def test_runs_record_every_measurement(self):
        runs = self.res["runs"]
        self.assertEqual(len(runs), 3 * 4 * 3)
        self.assertEqual(self.h.checks, self.ALLOCS)
        first = runs[0]
        self.assertEqual(first["workload"], "spin")
        self.assertEqual(first["allocator"], "strata")
        self.assertEqual(first["values"], {"ops_per_sec": 100, "rss_after_free_kb": 10,
                                           "time_s": 0.5})
        self.assertEqual((first["metric"], first["metric_value"]), ("ops_per_sec", 100))
        self.assertTrue(first["ok"])
        crash = next(r for r in runs if r["workload"] == "grind" and r["allocator"] == "strata")
        self.assertEqual((crash["ok"], crash["error"], crash["exit"]),
                         (False, "killed by SIGSEGV", -signal.SIGSEGV))
        self.assertEqual(crash["stderr_tail"], "Segmentation fault")
        nometric = [r for r in runs if r["workload"] == "grind" and r["allocator"] == "glibc"
                    and not r["ok"]]
        self.assertEqual(len(nometric), 1)
        self.assertIn("the last output line has no time_s=", nometric[0]["error"])
        # Each allocator ran with its own preload and options, never the caller's.
        for w, a, _, env in self.h.calls:
            strata_vars = {k: v for k, v in env.items() if k.startswith("STRATA_")}
            self.assertEqual(strata_vars, {"STRATA_DECAY_MS": "0"} if a == "strata-d0" else {})

    def test_summary_has_medians_spreads_and_failures(self):
        s = self.res["summary"]
        self.assertEqual(s["spin"]["strata"]["metric"], spread(200, 100, 300, 3))
        self.assertEqual(s["spin"]["strata"]["peak_rss_kb"], spread(2000, 1000, 3000, 3))
        self.assertEqual(s["spin"]["glibc"]["extra"]["rss_after_free_kb"]["median"], 20)
        g = s["grind"]["glibc"]
        self.assertEqual((g["runs"], g["failed"]), (3, 1))
        self.assertEqual(g["metric"], spread(2.0, 1.0, 3.0, 2))
        self.assertEqual(g["peak_rss_kb"], spread(2000.0, 1000, 3000, 2))
        st = s["grind"]["strata"]
        self.assertEqual((st["runs"], st["failed"], st["metric"], st["errors"]),
                         (3, 3, None, ["killed by SIGSEGV"]))

    def test_relative_is_against_the_best_of_each_row(self):
        rel = self.res["relative"]
        self.assertEqual(rel["performance"], {
            "spin": {"strata": 2.0, "glibc": 8.0, "before": 4.0, "strata-d0": 1.0},
            "grind": {"strata": None, "glibc": 2.0, "before": 4.0, "strata-d0": 1.0}})
        self.assertEqual(rel["peak_rss"], {
            "spin": {"strata": 2.0, "glibc": 4.0, "before": 2.0, "strata-d0": 1.0},
            "grind": {"strata": None, "glibc": 2.0, "before": 1.0, "strata-d0": 1.0},
            "frag": {"strata": 1.0, "glibc": 2148 / 1124, "before": 1.0,
                     "strata-d0": 4196 / 1124}})

    def test_results_md_tables(self):
        md = self.md
        perf = md[md.index("## Performance"):md.index("## Peak RSS")]
        self.assertIn("| workload | metric | strata | glibc | before | strata-d0 |", perf)
        for row in ["| spin | ops_per_sec (higher is better) | 2.00 | 8.00 | 4.00 | **1.00** |",
                    "| grind | time_s (lower is better) | FAIL | 2.00 (1/3 failed) | 4.00 | "
                    "**1.00** |",
                    "| **geometric mean** | (lower is better) | 2.00 | 4.00 | 4.00 | **1.00** |",
                    "| spin | ops_per_sec, higher is better | 200 [100–300] | 50.0 [40.0–60.0] |"]:
            self.assertIn(row, perf)
        self.assertNotIn("| frag |", perf)
        self.assertIn("| frag | rss_peak_kb (lower is better) | **1.00 MiB** (1.00) |", md)
        self.assertIn("variants (strata's library with options in the environment of the "
                      "measured process): strata-d0 = strata with STRATA_DECAY_MS=0", md)
        self.assertIn("before build " + self.before, md)
        self.assertIn("- 3 repetitions per (workload, allocator), interleaved", md)
        self.assertIn("- skipped: workload absent (no binary", md)
        self.assertIn("| frag | memory / phases |", md)  # '|' would break the table
        fails = md[md.index("## Failures"):]
        self.assertIn("- grind under strata: 3 of 3 runs failed: killed by SIGSEGV", fails)
        self.assertIn("- grind under glibc: 1 of 3 runs failed: the last output line has no "
                      "time_s=", fails)
        self.assertNotIn("spin under", fails)

    def test_charts_are_written_and_linked_when_matplotlib_is_there(self):
        if not self.charts:
            self.skipTest("matplotlib is not importable")
        for name, title in [("perf.svg", "Performance"), ("rss.svg", "Peak RSS"),
                            ("phases.svg", "Other metrics")]:
            path = os.path.join(self.h.out, name)
            self.assertTrue(os.path.exists(path), name)
            with open(path) as f:
                self.assertIn("<svg", f.read(1000))
            self.assertIn("![%s](%s)" % (title, name), self.md)

    def test_results_md_links_no_chart_when_none_was_drawn(self):
        h = Harness()
        h.start()
        try:
            status, _, _ = h.main("--reps", "1", allocators="strata,glibc", charts=False)
            self.assertEqual(status, 0)
            with open(os.path.join(h.out, "results.md")) as f:
                md = f.read()
            self.assertIn("## Performance", md)
            self.assertNotIn("](", md)
            self.assertFalse(any(n.endswith(".svg") for n in os.listdir(h.out)))
        finally:
            h.stop()

    def test_from_json_redraws_the_same_results_md(self):
        again = os.path.join(self.h.dir, "again")
        status, out, _ = self.h.main("--from-json", os.path.join(self.h.out, "results.json"),
                                   "--out", again, charts=self.charts)
        self.assertEqual(status, 0)
        self.assertEqual(out.strip(), os.path.join(again, "results.md"))
        with open(os.path.join(again, "results.md")) as f:
            self.assertEqual(f.read(), self.md)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: test_strata_bench.py STRATA_BENCH_PY [unittest args...]")
        sys.exit(2)
    bench = load_module(os.path.abspath(sys.argv[1]))
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
