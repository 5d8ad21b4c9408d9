#!/usr/bin/python3
"""strata_bench: run the allocator benchmarks and write the report.

Run through `tools/strata bench` (which builds the workloads and libstrata.so
first and installs missing peers); see `tools/strata bench --help` and
docs/benchmarks.md. Needs only the Python standard library plus matplotlib
(Debian's python3-matplotlib) for the charts.

Method (docs/benchmarks.md explains it):
  * every run is its own child process; the allocator comes in through
    LD_PRELOAD in that child's environment only;
  * runs are interleaved: repetition 1 runs every workload under every
    allocator, then repetition 2, ...; the allocator order rotates by one
    each repetition so no allocator always goes first;
  * per (workload, allocator): the median and min-max of the metric and of
    peak RSS (ru_maxrss of the child from os.wait4), over the runs that did
    not fail; a crash or timeout is recorded, never fatal;
  * tables show each median relative to the best allocator in its row.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIR = "/usr/lib/x86_64-linux-gnu"

# name -> (preload path or None, Debian package that provides it)
PEERS = {
    "glibc": (None, "libc6"),
    "mimalloc": (LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0"),
    "jemalloc": (LIBDIR + "/libjemalloc.so.2", "libjemalloc2"),
    "tcmalloc": (LIBDIR + "/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
}
ALL_ALLOCATORS = ["strata", "glibc", "mimalloc", "jemalloc", "tcmalloc"]
# Variants: strata's library with options set in the environment of the
# measured process (name -> {variable: value}). These are built in; more are
# defined with --variant NAME=VAR=VALUE[,VAR=VALUE...]. A variant is measured
# only when named in --allocators (those of --variant also when --allocators
# is not given).
BUILTIN_VARIANTS = {
    # No purging at all: free pages are never returned to the OS.
    "strata-nodecay": {"STRATA_DECAY_MS": "-1", "STRATA_BACKGROUND": "0"},
}
REAL_PROGRAMS = ["redis", "sqlite", "python", "g++"]
QUICK_SKIPS_REAL = ["g++"]
INSTR_SIZES = [16, 64, 256]
INSTR_N = 200000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ runs ---

class Run:
    """The outcome of one child process."""

    def __init__(self):
        self.ok = False
        self.error = None
        self.wall_s = None
        self.maxrss_kb = None
        self.exit = None
        self.values = {}
        self.stdout = ""
        self.stderr = ""


def parse_kv_line(text):
    """The key=value pairs of the last non-empty line of text."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines:
        return {}
    out = {}
    for tok in lines[-1].split():
        if "=" not in tok:
            continue
        k, v = tok.split("=", 1)
        for conv in (int, float, str):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                pass
    return out


def describe_status(status):
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        return code, "killed by %s" % name
    return code, ("exit status %d" % code if code else None)


def tail(text, lines=6, chars=600):
    t = "\n".join(text.strip().splitlines()[-lines:])
    return t[-chars:]


# tools/bench/rusage_exec.c, compiled into the work directory at start-up:
# measured programs are started through it so that their ru_maxrss does not
# include the Python runner's own memory (see the comment in that file).
HELPER = None


class Child:
    """A child process in its own session, with stdout/stderr in temp files.

    measured=True (and HELPER built): started as `rusage_exec REPORT argv...`,
    with the LD_PRELOAD of env handed to the program only; its peak RSS, wall
    time and status come from the helper's report. Otherwise the child is
    reaped with os.wait4 and its own rusage is used."""

    def __init__(self, argv, env, stdin_path=None, cwd=None, measured=True):
        self.out = tempfile.TemporaryFile(mode="w+b")
        self.err = tempfile.TemporaryFile(mode="w+b")
        self.report = None
        if measured and HELPER:
            fd, self.report = tempfile.mkstemp(prefix="strata-bench-", suffix=".rusage")
            os.close(fd)
            os.unlink(self.report)
            env = dict(env)
            env["STRATA_BENCH_PRELOAD"] = env.pop("LD_PRELOAD", "")
            argv = [HELPER, self.report] + list(argv)
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        self.t0 = time.perf_counter()
        try:
            self.proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=self.out,
                                         stderr=self.err, cwd=cwd, start_new_session=True)
        finally:
            if stdin_path:
                stdin.close()
        self.pid = self.proc.pid
        self._lock = threading.Lock()
        self._reaped = False
        self.timed_out = False
        self._timer = None

    def _kill(self):
        with self._lock:
            if self._reaped:
                return
            self.timed_out = True
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass

    def signal(self, sig):
        with self._lock:
            if not self._reaped:
                try:
                    os.kill(self.pid, sig)
                except OSError:
                    pass

    def wait(self, timeout):
        """Wait for the child; fill and return a Run."""
        if timeout:
            self._timer = threading.Timer(timeout, self._kill)
            self._timer.daemon = True
            self._timer.start()
        while True:
            try:
                _, status, ru = os.wait4(self.pid, 0)
                break
            except InterruptedError:
                continue
        t1 = time.perf_counter()
        with self._lock:
            self._reaped = True
        if self._timer:
            self._timer.cancel()
        # Popen must not try to reap it again.
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        # Any grandchildren left behind (e.g. a workload's own children).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        r = Run()
        for f, attr in ((self.out, "stdout"), (self.err, "stderr")):
            f.seek(0)
            setattr(r, attr, f.read().decode("utf-8", "replace"))
            f.close()
        r.wall_s = t1 - self.t0
        r.maxrss_kb = ru.ru_maxrss
        r.exit, err = describe_status(status)
        if self.report:
            rep = {}
            try:
                with open(self.report) as f:
                    rep = parse_kv_line(f.read())
                os.unlink(self.report)
            except OSError:
                pass
            if "status" in rep:
                r.exit, err = describe_status(int(rep["status"]))
                r.maxrss_kb = int(rep["maxrss_kb"])
                r.wall_s = float(rep["wall_s"])
            elif not self.timed_out:
                err = "the rusage_exec helper failed (%s)" % (err or "no report")
        if self.timed_out:
            r.error = "timed out after %gs" % timeout
        elif err:
            r.error = err
        r.ok = r.error is None
        return r


def run_child(argv, env, timeout, stdin_path=None, cwd=None, measured=True):
    try:
        c = Child(argv, env, stdin_path, cwd, measured)
    except OSError as e:
        r = Run()
        r.error = "could not start %s: %s" % (argv[0], e)
        return r
    return c.wait(timeout)


def child_env(preload, extra=None):
    """The runner's environment without anything that configures an
    allocator (every STRATA_* variable among them: strata runs with its
    defaults unless a variant sets options), plus the preload and extra."""
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "MALLOC_CONF", "MIMALLOC_SHOW_STATS", "PYTHONMALLOC"):
        env.pop(k, None)
    for k in [k for k in env if k.startswith("STRATA_")]:
        del env[k]
    if preload:
        env["LD_PRELOAD"] = preload
    if extra:
        env.update(extra)
    return env


def alloc_env(ctx, alloc, extra=None):
    """The environment of a measured process under allocator `alloc`: its
    preload, a variant's options, then extra."""
    merged = dict(ctx.variant_env.get(alloc, {}))
    merged.update(extra or {})
    return child_env(ctx.preload[alloc], merged)


def parse_variant(spec):
    """'NAME=VAR=VALUE[,VAR=VALUE...]' -> (name, {var: value}); ValueError."""
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
        raise ValueError("--variant %r: expected NAME=VAR=VALUE[,VAR=VALUE...], with a NAME of "
                         "letters, digits, '_', '.', '+' and '-'" % spec)
    env = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        var, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ValueError("--variant %r: %r is not VAR=VALUE" % (spec, item))
        if var == "LD_PRELOAD":
            raise ValueError("--variant %r: a variant is strata's library; it cannot set "
                             "LD_PRELOAD" % spec)
        env[var] = value
    return name, env


def env_text(env):
    return " ".join("%s=%s" % kv for kv in env.items()) or "(no options)"


# ------------------------------------------------------------- workloads ---

class Job:
    """One benchmark row: a manifest workload or a real program."""

    def __init__(self, name, kind, metric, higher_is_better, stresses, extra_metrics, unit=""):
        self.name = name
        self.kind = kind  # "workload" or "real"
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.stresses = stresses
        self.extra_metrics = list(extra_metrics)
        self.unit = unit

    def run(self, alloc, ctx):
        raise NotImplementedError

    def describe(self):
        return {"name": self.name, "kind": self.kind, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "stresses": self.stresses,
                "extra_metrics": self.extra_metrics}


class ManifestJob(Job):
    def __init__(self, spec, binary, args):
        super().__init__(spec["name"], "workload", spec.get("metric", "time_s"),
                         bool(spec.get("higher_is_better", False)), spec.get("stresses", ""),
                         spec.get("extra_metrics", []))
        self.binary = binary
        self.args = [str(a) for a in args]

    def command(self):
        return [self.binary] + self.args

    def run(self, alloc, ctx):
        r = run_child(self.command(), alloc_env(ctx, alloc), ctx.timeout)
        r.values = parse_kv_line(r.stdout)
        value = r.values.get(self.metric)
        if r.ok and self.metric not in r.values:
            r.ok = False
            r.error = "the last output line has no %s=: %r" % (
                self.metric, tail(r.stdout, 1, 200))
        elif r.ok and not (isinstance(value, (int, float)) and math.isfinite(value)):
            # A text value would make the medians and ratios raise after the
            # last run, before results.json is written; NaN is not JSON.
            r.ok = False
            r.error = "%s=%s is not a finite number" % (self.metric, value)
        return r


class PythonJob(Job):
    def __init__(self, quick):
        super().__init__("python", "real", "time_s", False,
                         "python3 (PYTHONMALLOC=malloc) building, sorting, json round-tripping "
                         "and dropping many small dicts, lists, strings and instances "
                         "(tools/bench/py_objects.py)", [])
        self.scale = 2 if quick else 6

    def command(self):
        return ["/usr/bin/python3", os.path.join(HERE, "py_objects.py"), str(self.scale)]

    def run(self, alloc, ctx):
        env = alloc_env(ctx, alloc, {"PYTHONMALLOC": "malloc"})
        r = run_child(self.command(), env, ctx.timeout)
        r.values = parse_kv_line(r.stdout)
        # The metric is the whole process's wall time (start-up included).
        r.values["script_time_s"] = r.values.pop("time_s", None)
        r.values["time_s"] = r.wall_s
        return r


class GxxJob(Job):
    def __init__(self, quick, workdir):
        super().__init__("g++", "real", "time_s", False,
                         "g++ -std=c++17 -O2 -c of a template-heavy file "
                         "(tools/bench/compile_me.cc%s): the driver, cc1plus and as"
                         % (", without its <regex> part in --quick" if quick else ""), [])
        self.light = quick
        self.workdir = workdir

    def command(self):
        cmd = ["g++", "-std=c++17", "-O2"]
        if self.light:
            cmd.append("-DCOMPILE_ME_LIGHT")
        return cmd + ["-c", os.path.join(HERE, "compile_me.cc"),
                      "-o", os.path.join(self.workdir, "compile_me.o")]

    def run(self, alloc, ctx):
        r = run_child(self.command(), alloc_env(ctx, alloc), ctx.timeout)
        r.values = {"time_s": r.wall_s}
        return r


SQL_TEMPLATE = """\
PRAGMA cache_size = -65536;
CREATE TABLE person(id INTEGER PRIMARY KEY, name TEXT, city TEXT, age INT, score REAL, bio TEXT);
CREATE TABLE visit(id INTEGER PRIMARY KEY, person INT, page TEXT, ms INT);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
INSERT INTO person
SELECT x, 'name-' || ((x * 2654435761) % 1000003), 'city-' || (x % 337), 18 + (x * 7) % 70,
       ((x * 40503) % 100000) / 97.0, substr(hex(zeroblob(20 + x % 200)), 1, 30 + (x * 13) % 300)
FROM c;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {visits})
INSERT INTO visit SELECT x, 1 + (x * 7919) % {rows}, '/page/' || (x % 1009) || '/' || (x % 7), x % 5000 FROM c;
{inserts}
COMMIT;
CREATE INDEX person_city ON person(city, age);
CREATE INDEX visit_person ON visit(person);
SELECT city, count(*), avg(score), max(length(bio)) FROM person GROUP BY city ORDER BY 2 DESC LIMIT 3;
SELECT count(*), sum(length(group_concat_v)) FROM
  (SELECT person, group_concat(page, ',') AS group_concat_v FROM visit GROUP BY person);
SELECT p.city, count(*), sum(v.ms) FROM person p JOIN visit v ON v.person = p.id
  WHERE p.age BETWEEN 30 AND 40 GROUP BY p.city ORDER BY 3 DESC LIMIT 3;
SELECT count(DISTINCT upper(name) || lower(city)) FROM person;
SELECT name FROM person ORDER BY bio, score DESC LIMIT 1 OFFSET 1000;
UPDATE person SET bio = bio || bio WHERE id % 3 = 0;
DELETE FROM visit WHERE ms % 4 = 0;
SELECT count(*), sum(length(bio)) FROM person;
"""


class SqliteJob(Job):
    def __init__(self, quick, workdir):
        super().__init__("sqlite", "real", "time_s", False,
                         "sqlite3 on an in-memory database: bulk inserts (generated and "
                         "literal statements), indexes, GROUP BY / group_concat / join / sort, "
                         "an UPDATE that doubles a text column, a DELETE", [])
        self.rows = 40000 if quick else 120000
        self.workdir = workdir
        self.sql = os.path.join(workdir, "sqlite_workload.sql")

    def prepare(self):
        n_ins = self.rows // 4
        ins = "\n".join(
            "INSERT INTO visit(person, page, ms) VALUES (%d, '/literal/%d/%s', %d);"
            % (1 + (i * 31) % self.rows, i % 613, "x" * (i % 40), i % 997)
            for i in range(n_ins))
        with open(self.sql, "w") as f:
            f.write(SQL_TEMPLATE.format(rows=self.rows, visits=self.rows * 3, inserts=ins))

    def run(self, alloc, ctx):
        r = run_child(["sqlite3", ":memory:"], alloc_env(ctx, alloc), ctx.timeout,
                      stdin_path=self.sql)
        r.values = {"time_s": r.wall_s}
        if r.ok and "Error" in r.stderr:
            r.ok, r.error = False, "sqlite3 reported: " + tail(r.stderr, 2, 200)
        return r


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def redis_cmd(port, *args, timeout=5.0):
    """Send one command (RESP) to 127.0.0.1:port; return the raw reply text."""
    payload = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"$"):
                head, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2 or int(head[1:]) < 0:
                    break
            elif data.endswith(b"\r\n"):
                break
        return data.decode("utf-8", "replace")


def redis_info(port):
    out = {}
    for line in redis_cmd(port, "INFO", "memory").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


class RedisJob(Job):
    TESTS = "set,get,lpush,lpop"

    def __init__(self, quick):
        super().__init__("redis", "real", "requests_per_sec", True,
                         "redis-server (started per run with the allocator preloaded) under "
                         "redis-benchmark on 127.0.0.1: SET/GET/LPUSH/LPOP, 50 clients, "
                         "pipeline 16, random keys; metric: requests/s over all four tests",
                         ["rss_after_kb", "rss_after_flush_kb"])
        self.n = 50000 if quick else 100000

    def run(self, alloc, ctx):
        port = free_port()
        env = alloc_env(ctx, alloc)
        if ctx.preload[alloc] is None and ctx.libc_path:
            # Debian's redis-server links libjemalloc.so.2 and gets malloc
            # from it; preloading libc.so.6 puts glibc's malloc first, so
            # that the "glibc" column measures glibc, not jemalloc.
            env["LD_PRELOAD"] = ctx.libc_path
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--protected-mode", "yes", "--loglevel", "warning",
                "--dir", ctx.workdir]
        try:
            server = Child(argv, env)
        except OSError as e:
            r = Run()
            r.error = "could not start redis-server: %s" % e
            return r
        deadline = time.time() + 10
        up = False
        while time.time() < deadline:
            if server.proc.poll() is not None:
                break
            try:
                if "PONG" in redis_cmd(port, "PING", timeout=1):
                    up = True
                    break
            except OSError:
                time.sleep(0.05)
        values = {}
        error = None
        if not up:
            error = "redis-server did not answer PING within 10s"
        else:
            t0 = time.perf_counter()
            bench = run_child(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
                               "-n", str(self.n), "-c", "50", "-P", "16", "-r", "1000000",
                               "-d", "64", "-t", self.TESTS, "--csv"],
                              child_env(None), ctx.timeout, measured=False)
            values["bench_wall_s"] = time.perf_counter() - t0
            if not bench.ok:
                error = "redis-benchmark: %s %s" % (bench.error, tail(bench.stderr, 2, 200))
            else:
                rps = {}
                for line in bench.stdout.splitlines():
                    cells = [c.strip().strip('"') for c in line.split(",")]
                    if len(cells) >= 2:
                        try:
                            rps[cells[0].lower()] = float(cells[1])
                        except ValueError:
                            pass
                want = self.TESTS.split(",")
                missing = [t for t in want if t not in rps]
                if missing:
                    error = "redis-benchmark printed no result for %s: %r" % (
                        ",".join(missing), tail(bench.stdout, 3, 200))
                else:
                    for t in want:
                        values["%s_rps" % t] = rps[t]
                    # All four tests run the same number of requests: the
                    # overall rate is the harmonic mean of the four rates.
                    values["requests_per_sec"] = len(want) / sum(1.0 / rps[t] for t in want)
            try:
                info = redis_info(port)
                values["rss_after_kb"] = int(info["used_memory_rss"]) // 1024
                values["used_memory_kb"] = int(info["used_memory"]) // 1024
                # Redis's own libjemalloc counts what it hands out: if that is
                # most of used_memory, the preload did not take malloc over.
                je = int(info.get("allocator_allocated", "0"))
                if alloc != "jemalloc" and je > int(info["used_memory"]) // 4:
                    error = ("malloc came from redis-server's own libjemalloc "
                             "(allocator_allocated=%d), not from the preload" % je)
                redis_cmd(port, "FLUSHALL", "SYNC")
                time.sleep(0.5)
                info = redis_info(port)
                values["rss_after_flush_kb"] = int(info["used_memory_rss"]) // 1024
            except (OSError, KeyError, ValueError) as e:
                error = error or "INFO memory failed: %s" % e
        # Stop the server (SIGTERM: with no persistence it exits at once).
        server.signal(signal.SIGTERM)
        r = server.wait(30)
        if error:
            r.ok, r.error = False, error
        elif not r.ok and r.error and "SIGTERM" not in r.error:
            r.error = "redis-server: " + r.error
        else:
            r.ok, r.error = True, None
        r.values = values
        # The server's wall time includes start and stop; keep it, but the
        # metric is requests/s.
        return r


# ------------------------------------------------------------ statistics ---

def median_spread(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)}


def lower_is_better_metric(name):
    n = name.lower()
    if any(s in n for s in ("per_sec", "ops", "rps", "throughput", "per_s")):
        return False
    return True


def summarize(jobs, allocators, runs):
    summary = {}
    for job in jobs:
        js = summary.setdefault(job.name, {})
        for a in allocators:
            rs = [r for r in runs if r["workload"] == job.name and r["allocator"] == a]
            ok = [r for r in rs if r["ok"]]
            entry = {"runs": len(rs), "failed": len(rs) - len(ok),
                     "errors": sorted(set(r["error"] for r in rs if not r["ok"]))}
            entry["metric"] = median_spread([r["values"].get(job.metric) for r in ok])
            entry["peak_rss_kb"] = median_spread([r["maxrss_kb"] for r in ok])
            entry["wall_s"] = median_spread([r["wall_s"] for r in ok])
            extra = {}
            for m in job.extra_metrics:
                vals = [r["values"].get(m) for r in ok]
                vals = [v for v in vals if isinstance(v, (int, float))]
                extra[m] = median_spread(vals)
            entry["extra"] = extra
            js[a] = entry
    return summary


def cost(value, higher_is_better):
    """Turn a metric into a cost (lower is better); None if impossible."""
    if value is None:
        return None
    if higher_is_better:
        return 1.0 / value if value > 0 else None
    return value if value > 0 else None


def relative_row(values, higher_is_better):
    """{alloc: median} -> {alloc: cost / best cost} (1.0 = best)."""
    costs = {a: cost(v, higher_is_better) for a, v in values.items()}
    valid = [c for c in costs.values() if c is not None]
    if not valid:
        return {a: None for a in values}
    best = min(valid)
    return {a: (c / best if c is not None else None) for a, c in costs.items()}


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


# --------------------------------------------------------------- machine ---

def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def dpkg_version(pkg):
    return sh(["dpkg-query", "-W", "-f=${Version}", pkg]) or None


def machine_info(root, allocators, strata_lib, variants=None, builds=None):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    versions = {}
    strata_version = None
    for a in allocators:
        if a == "strata" or a in (variants or {}):
            if strata_version is None:
                strata_version = "git " + (sh(["git", "-C", root, "describe", "--always",
                                               "--dirty"]) or "?")
            versions[a] = strata_version
        elif a in (builds or {}):
            versions[a] = "build " + builds[a]
        else:
            versions[a] = dpkg_version(PEERS[a][1])
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "mem_total_kb": mem_kb,
        "kernel": platform.release(),
        "os": sh(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "gcc": (sh(["gcc", "--version"]).splitlines() or [""])[0],
        "allocator_versions": versions,
        "strata_lib": strata_lib,
        "programs": {p: dpkg_version(p) for p in ("redis-server", "sqlite3", "python3", "g++", "valgrind")},
        "loadavg_at_start": os.getloadavg(),
    }


# ------------------------------------------------------------ preload check ---

def build_c(workdir, name, flags):
    """Compile tools/bench/NAME.c into workdir; return its path or None."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    exe = os.path.join(workdir, name)
    p = subprocess.run([cc] + flags + ["-o", exe, os.path.join(HERE, name + ".c")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        log("bench: compiling %s.c failed:\n%s" % (name, p.stderr))
        return None
    return exe


def same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_preload(loop, alloc, preload, libc_path, env=None):
    """Run malloc_loop with 0 pairs under the preload (and a variant's
    options, env); return (ok, message)."""
    r = run_child([loop, "16", "0"], child_env(preload, env), 30)
    if not r.ok:
        return False, "the check program failed under it: %s %s" % (r.error, tail(r.stderr, 2, 300))
    if env and "ignoring STRATA_" in r.stderr:
        # strata warns about an option value it cannot parse and uses the
        # default: the variant would measure something else than asked.
        bad = [l for l in r.stderr.splitlines() if "ignoring STRATA_" in l]
        return False, "strata rejected its options: " + "; ".join(bad)[:300]
    vals = parse_kv_line(r.stdout.splitlines()[0] if r.stdout else "")
    got = vals.get("malloc_lib", "?")
    want = preload or libc_path
    if want and same_file(got, want) and same_file(vals.get("free_lib", "?"), want):
        return True, got
    return False, "malloc resolves to %s, not %s" % (got, want)


# ----------------------------------------------------------- instructions ---

def callgrind_ir(loop, preload, env, size, n, workdir, tag):
    out = os.path.join(workdir, "callgrind.%s.%d.%d.out" % (tag, size, n))
    r = run_child(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                   loop, str(size), str(n)], child_env(preload, env), 300, measured=False)
    if not r.ok:
        raise RuntimeError("valgrind failed: %s %s" % (r.error, tail(r.stderr, 3, 400)))
    first = parse_kv_line(r.stdout.splitlines()[0] if r.stdout else "")
    total = None
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
                break
    if total is None:
        raise RuntimeError("no instruction total in " + out)
    # The loop's own instructions (main), to report the allocator's share.
    main_ir = None
    ann = sh(["callgrind_annotate", "--threshold=100", out])
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?\S*:main \[", line)
        if m and "malloc_loop" in line:
            main_ir = int(m.group(1).replace(",", ""))
            break
    os.unlink(out)
    return total, main_ir, first.get("malloc_lib")


def measure_instructions(loop, allocators, preload, variant_env, libc_path, workdir):
    results = {}
    for a in allocators:
        want = preload[a] or libc_path
        res = {"sizes": {}, "error": None}
        try:
            for size in INSTR_SIZES:
                log("bench: instructions: %s, %d-byte malloc+free" % (a, size))
                t1, m1, lib = callgrind_ir(loop, preload[a], variant_env.get(a), size, INSTR_N,
                                           workdir, a)
                if not (want and same_file(lib or "?", want)):
                    raise RuntimeError("under valgrind, malloc resolves to %s, not %s" % (lib, want))
                t2, m2, _ = callgrind_ir(loop, preload[a], variant_env.get(a), size,
                                         2 * INSTR_N, workdir, a)
                per_pair = (t2 - t1) / INSTR_N
                loop_part = (m2 - m1) / INSTR_N if m1 is not None and m2 is not None else None
                res["sizes"][str(size)] = {
                    "ir_n": t1, "ir_2n": t2, "n": INSTR_N, "per_pair": per_pair,
                    "loop_per_pair": loop_part,
                    "allocator_per_pair": per_pair - loop_part if loop_part is not None else None}
            res["malloc_lib"] = want
        except (RuntimeError, OSError) as e:
            res["error"] = str(e)
            log("bench: instructions for %s failed: %s" % (a, e))
        results[a] = res
    return results


# ----------------------------------------------------------------- report ---

def fmt_num(x):
    if x is None:
        return "–"
    ax = abs(x)
    if ax >= 1e9:
        return "%.3gG" % (x / 1e9)
    if ax >= 1e6:
        return "%.3gM" % (x / 1e6)
    if ax >= 1e4:
        return "%.3gk" % (x / 1e3)
    if ax >= 100:
        return "%.0f" % x
    if ax >= 10:
        return "%.1f" % x
    return "%.3g" % x


def fmt_kb(kb):
    if kb is None:
        return "–"
    mib = kb / 1024.0
    if mib >= 100:
        return "%.0f MiB" % mib
    if mib >= 10:
        return "%.1f MiB" % mib
    return "%.2f MiB" % mib


def is_kb_metric(name):
    return name.endswith("_kb") or name == "peak_rss_kb"


def fmt_metric(name, x):
    if x is None:
        return "–"
    if is_kb_metric(name):
        return fmt_kb(x)
    if name.endswith("_bytes"):
        return fmt_kb(x / 1024.0)
    if name.endswith("_pct"):
        return "%.1f%%" % x
    s = fmt_num(x)
    if name == "time_s" or name.endswith("_s"):
        return s + " s"
    return s


def is_memory_metric(name):
    return is_kb_metric(name) or name.endswith("_bytes")


def other_metrics(job):
    """The metrics shown in the "other metrics" table: the extra ones, and
    the primary one when it is a memory size (it is then not in the
    performance table)."""
    return ([job.metric] if is_memory_metric(job.metric) else []) + \
        [m for m in job.extra_metrics if m != job.metric]


def metric_stats(entry, job, m):
    return entry["metric"] if m == job.metric else entry["extra"].get(m)


def fmt_ratio(r, best):
    if r is None:
        return "–"
    s = "%.2f" % r
    if best:
        return "**%s**" % s
    return s


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def failed_note(entry):
    if entry["failed"] == 0:
        return ""
    return " (%d/%d failed)" % (entry["failed"], entry["runs"])


def ratio_cells(meds, hib, allocators):
    rel = relative_row(meds, hib)
    cells = []
    for a in allocators:
        r = rel.get(a)
        cells.append(fmt_ratio(r, r is not None and abs(r - 1.0) < 1e-12))
    return rel, cells


def build_tables(jobs, allocators, summary):
    """Returns (markdown sections list, data for the charts)."""
    sections = []
    chart = {"perf": {}, "rss": {}}

    # Performance.
    rows, abs_rows, rels = [], [], {a: [] for a in allocators}
    for job in jobs:
        if is_memory_metric(job.metric):
            continue  # its primary metric is memory: in "other metrics"
        s = summary[job.name]
        meds = {a: (s[a]["metric"] or {}).get("median") for a in allocators}
        rel, cells = ratio_cells(meds, job.higher_is_better, allocators)
        for a in allocators:
            if rel.get(a) is not None:
                rels[a].append(rel[a])
            if s[a]["runs"] and s[a]["failed"] == s[a]["runs"]:
                cells[allocators.index(a)] = "FAIL"
            else:
                cells[allocators.index(a)] += failed_note(s[a])
        chart["perf"][job.name] = rel
        better = "higher" if job.higher_is_better else "lower"
        label = job.name + (" (real)" if job.kind == "real" else "")
        rows.append([label, "%s (%s is better)" % (job.metric, better)] + cells)
        abs_cells = []
        for a in allocators:
            m = s[a]["metric"]
            if not m:
                abs_cells.append("FAIL" if s[a]["runs"] else "–")
            else:
                abs_cells.append("%s [%s–%s]" % (fmt_metric(job.metric, m["median"]),
                                                 fmt_metric(job.metric, m["min"]).split(" ")[0],
                                                 fmt_metric(job.metric, m["max"])))
        abs_rows.append([label, "%s, %s is better" % (job.metric, better)] + abs_cells)
    gm = [geomean(rels[a]) for a in allocators]
    best_gm = min([g for g in gm if g is not None], default=None)
    rows.append(["**geometric mean**", "(lower is better)"] +
                [fmt_ratio(g, g is not None and g == best_gm) for g in gm])
    sections.append((
        "Performance",
        "Each cell is the allocator's median relative to the best allocator in that row, "
        "as a cost: time ÷ best time, or best throughput ÷ throughput. **1.00 (bold) is "
        "the best**; 1.50 means 50% slower than the best. The geometric mean is over the "
        "rows where the allocator did not fail.",
        md_table(["workload", "metric"] + allocators, rows),
        "perf.svg",
        "Absolute medians, [min–max] over the repetitions:",
        md_table(["workload", "metric"] + allocators, abs_rows)))

    # Peak RSS.
    rows, abs_rows, rels = [], [], {a: [] for a in allocators}
    for job in jobs:
        s = summary[job.name]
        meds = {a: (s[a]["peak_rss_kb"] or {}).get("median") for a in allocators}
        rel, cells = ratio_cells(meds, False, allocators)
        for a in allocators:
            if rel.get(a) is not None:
                rels[a].append(rel[a])
            if s[a]["runs"] and s[a]["failed"] == s[a]["runs"]:
                cells[allocators.index(a)] = "FAIL"
        chart["rss"][job.name] = rel
        label = job.name + (" (real)" if job.kind == "real" else "")
        rows.append([label] + cells)
        abs_rows.append([label] + [
            ("%s [%s–%s]" % (fmt_kb(s[a]["peak_rss_kb"]["median"]),
                             fmt_kb(s[a]["peak_rss_kb"]["min"]).split(" ")[0],
                             fmt_kb(s[a]["peak_rss_kb"]["max"])))
            if s[a]["peak_rss_kb"] else ("FAIL" if s[a]["runs"] else "–")
            for a in allocators])
    gm = [geomean(rels[a]) for a in allocators]
    best_gm = min([g for g in gm if g is not None], default=None)
    rows.append(["**geometric mean**"] + [fmt_ratio(g, g is not None and g == best_gm) for g in gm])
    sections.append((
        "Peak RSS",
        "Peak resident set size of the benchmark process (ru_maxrss from wait4; for g++ "
        "the largest of the driver and its children; for redis the server), median over the "
        "repetitions, relative to the smallest in the row. **1.00 (bold) is the "
        "smallest**; lower is better.",
        md_table(["workload"] + allocators, rows),
        "rss.svg",
        "Absolute medians, [min–max]:",
        md_table(["workload"] + allocators, abs_rows)))

    # Extra metrics.
    rows = []
    for job in jobs:
        s = summary[job.name]
        for m in other_metrics(job):
            meds = {a: (metric_stats(s[a], job, m) or {}).get("median") for a in allocators}
            if all(v is None for v in meds.values()):
                continue
            lower = (not job.higher_is_better) if m == job.metric else lower_is_better_metric(m)
            rel = relative_row(meds, not lower)
            cells = []
            for a in allocators:
                if meds[a] is None:
                    cells.append("FAIL" if s[a]["failed"] else "–")
                    continue
                r = rel.get(a)
                best = r is not None and abs(r - 1.0) < 1e-12
                v = fmt_metric(m, meds[a])
                cells.append(("**%s**" % v if best else v) +
                             (" (%.2f)" % r if r is not None else ""))
            rows.append([job.name, "%s (%s is better)" % (m, "lower" if lower else "higher")] + cells)
    if rows:
        sections.append((
            "Other metrics",
            "Other numbers the workloads report (for example RSS after the program freed "
            "what it allocated). Each cell: the median, then in parentheses its cost relative "
            "to the best in the row (1.00 = best, **bold**).",
            md_table(["workload", "metric"] + allocators, rows),
            "phases.svg" if phase_jobs(jobs, summary, allocators) else None,
            None, None))
    return sections, chart


def instructions_section(instr, allocators):
    rows = []
    for size in INSTR_SIZES:
        vals = {a: (instr.get(a, {}).get("sizes", {}).get(str(size)) or {}).get("per_pair")
                for a in allocators}
        alloc_only = {a: (instr.get(a, {}).get("sizes", {}).get(str(size)) or {}).get("allocator_per_pair")
                      for a in allocators}
        valid = [v for v in vals.values() if v is not None]
        best = min(valid) if valid else None
        cells = []
        for a in allocators:
            if vals[a] is None:
                cells.append("FAIL" if instr.get(a, {}).get("error") else "–")
                continue
            s = "%.1f" % vals[a]
            if alloc_only[a] is not None:
                s += " (%.1f)" % alloc_only[a]
            cells.append("**%s**" % s if vals[a] == best else s)
        rows.append(["%d B" % size] + cells)
    errors = ["- %s: %s" % (a, instr[a]["error"]) for a in allocators
              if instr.get(a, {}).get("error")]
    text = ("Instructions per malloc+free pair, counted by `valgrind --tool=callgrind`: "
            "(Ir of a run with 2N pairs − Ir with N pairs) / N, N = %d, so start-up and "
            "exit cancel out. In parentheses: the allocator's share, without the test loop's "
            "own instructions (the call, the touch of the block, the loop). Deterministic; "
            "lower is better; the fewest per row in **bold**." % INSTR_N)
    if errors:
        text += "\n\nFailed:\n" + "\n".join(errors)
    return ("Instructions per malloc+free", text,
            md_table(["size"] + allocators, rows), None, None, None)


def phase_jobs(jobs, summary, allocators):
    """Workloads that report RSS in >= 3 phases (*_kb metrics), e.g. frag."""
    out = []
    for job in jobs:
        kb = [m for m in other_metrics(job) if is_kb_metric(m)]
        if len(kb) >= 3 and any(metric_stats(summary[job.name][a], job, m)
                                for a in allocators for m in kb):
            out.append((job, kb))
    return out


COLORS = {"strata": "#d62728", "glibc": "#7f7f7f", "mimalloc": "#1f77b4",
          "jemalloc": "#2ca02c", "tcmalloc": "#ff7f0e"}
# For the variants (and anything else without a colour), in order.
EXTRA_COLORS = ["#9467bd", "#e377c2", "#8c564b", "#bcbd22", "#17becf", "#ff9896",
                "#393b79", "#c49c94"]


def alloc_colors(allocators):
    out, k = {}, 0
    for a in allocators:
        if a in COLORS:
            out[a] = COLORS[a]
        else:
            out[a] = EXTRA_COLORS[k % len(EXTRA_COLORS)]
            k += 1
    return out


def draw_charts(outdir, jobs, allocators, summary, chart, title_suffix):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        log("bench: no charts (matplotlib missing: %s)" % e)
        return []
    plt.rcParams.update({"font.size": 11, "svg.fonttype": "none"})
    written = []
    colors = alloc_colors(allocators)

    def legend_layout(fig_width_in):
        # The legend sits between the title and the axes: as many columns as
        # the figure's width holds (an entry is about 0.55 in of marker and
        # gap plus 0.085 in per character), and room above the axes for its rows.
        chars = max(len(a) for a in allocators)
        ncol = max(1, min(len(allocators), int((fig_width_in - 0.4) / (0.55 + 0.085 * chars))))
        rows = -(-len(allocators) // ncol)
        return ncol, 34 + 18 * (rows - 1)

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    def ratio_axis(ax, top):
        # Ratios are multiplicative: a log axis, labelled 1x, 1.5x, 2x, ...
        ax.set_yscale("log")
        ax.set_ylim(0.85, max(1.6, top * 1.25))
        ticks = [t for t in (1, 1.25, 1.5, 2, 3, 4, 6, 10, 15, 20, 30, 50, 100, 200, 500, 1000)
                 if t <= top * 1.25]
        if len(ticks) > 9:
            ticks = [t for t in ticks if t in (1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: ("%g" % v) + "×"))

    def legend(fig, ax):
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, ncol=legend_layout(fig.get_figwidth())[0], loc="upper center",
                   bbox_to_anchor=(0.5, 0.935), frameon=False)

    def grouped(data, fname, ylabel, title):
        names = [j.name for j in jobs if any(v is not None for v in data.get(j.name, {}).values())]
        if not names:
            return
        width = 0.8 / len(allocators)
        fig, ax = plt.subplots(figsize=(min(14, max(7, 0.75 * len(names) + 2.5)), 5.6))
        title_pad = legend_layout(fig.get_figwidth())[1]
        top = 1.0
        for i, a in enumerate(allocators):
            xs, ys = [], []
            for k, n in enumerate(names):
                v = data[n].get(a)
                if v is not None:
                    xs.append(k - 0.4 + width * (i + 0.5))
                    ys.append(v)
                    top = max(top, v)
            ax.bar(xs, ys, width * 0.92, label=a, color=colors[a], zorder=3)
        ax.axhline(1.0, color="black", linewidth=0.8, zorder=4)
        ratio_axis(ax, top)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35 if len(names) > 5 else 0,
                           ha="right" if len(names) > 5 else "center")
        ax.set_ylabel(ylabel)
        ax.set_title(title + title_suffix, pad=title_pad)
        ax.grid(axis="y", linestyle=":", zorder=0)
        legend(fig, ax)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, fname))
        plt.close(fig)
        written.append(fname)

    grouped(chart["perf"], "perf.svg", "time (or 1/throughput) relative to the best\n(1\u00d7 = best; lower is better)",
            "Performance per workload, relative to the best allocator")
    grouped(chart["rss"], "rss.svg", "peak RSS relative to the smallest\n(1\u00d7 = smallest; lower is better)",
            "Peak RSS per workload, relative to the smallest")

    pj = phase_jobs(jobs, summary, allocators)
    if pj:
        fig, axes = plt.subplots(1, len(pj), figsize=(max(9, 6 * len(pj)), 5.4), squeeze=False)
        title_pad = legend_layout(fig.get_figwidth())[1]
        for ax, (job, kb) in zip(axes[0], pj):
            # In the order the workload reports them, its primary metric
            # (e.g. the peak) last.
            phases = [m for m in kb if m != job.metric] + [m for m in kb if m == job.metric]
            width = 0.8 / len(allocators)
            for i, a in enumerate(allocators):
                xs, ys = [], []
                for k, p in enumerate(phases):
                    m = metric_stats(summary[job.name][a], job, p)
                    if m:
                        xs.append(k - 0.4 + width * (i + 0.5))
                        ys.append(m["median"] / 1024.0)
                ax.bar(xs, ys, width * 0.95, label=a, color=colors[a], zorder=3)
            ax.set_xticks(range(len(phases)))
            ax.set_xticklabels([re.sub(r"^rss_|_kb$", "", p).replace("_", " ") for p in phases],
                               rotation=25, ha="right")
            ax.set_ylabel("RSS, MiB (median; lower is better)")
            ax.set_title("%s: RSS by phase%s" % (job.name, title_suffix), pad=title_pad)
            ax.grid(axis="y", linestyle=":", zorder=0)
        legend(fig, axes[0][0])
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "phases.svg"))
        plt.close(fig)
        written.append("phases.svg")
    return written


def write_markdown(path, info, config, jobs, allocators, summary, sections, instr, skipped, charts):
    L = []
    L.append("# strata benchmark results")
    L.append("")
    L.append("Generated by `tools/strata bench%s` on %s." % (
        " --quick" if config["quick"] else "", info["date"]))
    L.append("")
    L.append("- machine: %s, %s CPUs, %s GiB, kernel %s, %s" % (
        info["cpu"] or "?", info["nproc"],
        ("%.0f" % (info["mem_total_kb"] / 1048576.0)) if info["mem_total_kb"] else "?",
        info["kernel"], info["os"]))
    L.append("- compiler: %s" % info["gcc"])
    variants = config.get("variants") or {}
    L.append("- allocators: " + ", ".join(
        "%s %s" % (a, info["allocator_versions"].get(a) or "?") for a in allocators
        if a not in variants))
    measured = [a for a in allocators if a in variants]
    if measured:
        L.append("- variants (strata's library with options in the environment of the "
                 "measured process): " + "; ".join(
                     "%s = strata with %s" % (a, env_text(variants[a]["env"])) for a in measured))
    L.append("- %d repetitions per (workload, allocator), interleaved (the allocator order "
             "rotates each repetition); medians; %s mode; load average at start %.2f" % (
                 config["reps"], "quick" if config["quick"] else "full",
                 info["loadavg_at_start"][0]))
    L.append("- total time %.0f s" % config.get("elapsed_s", 0))
    if skipped:
        L.append("- skipped: " + "; ".join(skipped))
    L.append("")
    L.append("| workload | stresses |")
    L.append("|---|---|")
    for job in jobs:
        L.append("| %s | %s |" % (job.name + (" (real)" if job.kind == "real" else ""),
                                  job.stresses.replace("|", "/")))
    L.append("")
    all_sections = list(sections)
    if instr:
        all_sections.append(instructions_section(instr, allocators))
    for title, text, table, chart, abs_title, abs_table in all_sections:
        L.append("## " + title)
        L.append("")
        L.append(text)
        L.append("")
        L.append(table)
        L.append("")
        if chart and chart in charts:
            L.append("![%s](%s)" % (title, chart))
            L.append("")
        if abs_table:
            L.append(abs_title)
            L.append("")
            L.append(abs_table)
            L.append("")
    fails = []
    for job in jobs:
        for a in allocators:
            e = summary[job.name][a]
            if e["failed"]:
                fails.append("- %s under %s: %d of %d runs failed: %s" % (
                    job.name, a, e["failed"], e["runs"], "; ".join(e["errors"])[:400]))
    if fails:
        L.append("## Failures")
        L.append("")
        L.extend(fails)
        L.append("")
    L.append("Raw runs and machine details: `results.json`.")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


# ------------------------------------------------------------------- main ---

def report_from_json(path, outdir):
    with open(path) as f:
        result = json.load(f)
    outdir = os.path.abspath(outdir or os.path.dirname(os.path.abspath(path)))
    os.makedirs(outdir, exist_ok=True)
    jobs = [Job(w["name"], w["kind"], w["metric"], w["higher_is_better"], w["stresses"],
                w["extra_metrics"]) for w in result["workloads"]]
    config, info = result["config"], result["machine"]
    allocators = config["allocators"]
    summary = summarize(jobs, allocators, result["runs"])
    sections, chart = build_tables(jobs, allocators, summary)
    suffix = " (%s, %d reps)" % ("quick" if config["quick"] else "full", config["reps"])
    charts = draw_charts(outdir, jobs, allocators, summary, chart, suffix) if jobs else []
    md = os.path.join(outdir, "results.md")
    write_markdown(md, info, config, jobs, allocators, summary, sections,
                   result.get("instructions"), result.get("skipped", []), charts)
    print(md)
    return 0


def load_manifest(path, bindir, quick, wanted):
    with open(path) as f:
        manifest = json.load(f)
    jobs, skipped = [], []
    for spec in manifest.get("workloads", []):
        if wanted is not None and spec["name"] not in wanted:
            continue
        binary = os.path.join(bindir, spec["binary"])
        if not os.access(binary, os.X_OK):
            skipped.append("%s (no binary %s)" % (spec["name"], binary))
            continue
        jobs.append(ManifestJob(spec, binary, spec["quick" if quick else "full"]))
    return jobs, skipped


def split_list(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def main(argv=None):
    p = argparse.ArgumentParser(description="strata benchmark runner (use tools/strata bench)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out")
    p.add_argument("--allocators")
    p.add_argument("--variant", action="append", default=[],
                   metavar="NAME=VAR=VALUE[,VAR=VALUE...]",
                   help="define a strata variant: strata's library with these environment "
                   "variables (repeatable); built in: " + ", ".join(
                       "%s (%s)" % (n, env_text(e)) for n, e in BUILTIN_VARIANTS.items()))
    p.add_argument("--reps", type=int)
    p.add_argument("--workloads")
    p.add_argument("--instructions", action="store_true")
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--timeout", type=float)
    p.add_argument("--build", action="append", default=[], metavar="NAME=PATH",
                   help="measure another build of strata (a libstrata.so) as allocator NAME "
                   "(repeatable)")
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(HERE)))
    p.add_argument("--strata-lib")
    p.add_argument("--manifest")
    p.add_argument("--bin-dir")
    p.add_argument("--from-json", help="redo results.md and the charts from a results.json")
    args = p.parse_args(argv)
    if args.from_json:
        return report_from_json(args.from_json, args.out)

    root = os.path.abspath(args.root)
    quick = args.quick
    reps = args.reps if args.reps is not None else (3 if quick else 5)
    if reps < 1:
        p.error("--reps must be at least 1")
    timeout = args.timeout if args.timeout is not None else (120.0 if quick else 600.0)
    if not timeout > 0:
        p.error("--timeout must be a positive number of seconds")
    manifest = args.manifest or os.path.join(root, "bench", "workloads", "workloads.json")
    bindir = args.bin_dir or os.path.join(root, "build", "bench", "bench", "workloads")
    outdir = args.out or os.path.join(root, "build", "bench-results",
                                      datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    outdir = os.path.abspath(outdir)

    variants = {n: dict(e) for n, e in BUILTIN_VARIANTS.items()}
    defined = []
    for spec in args.variant:
        try:
            name, env = parse_variant(spec)
        except ValueError as e:
            p.error(str(e))
        if name in ALL_ALLOCATORS or name in BUILTIN_VARIANTS or name in defined:
            p.error("--variant %r: the name %s is already taken" % (spec, name))
        variants[name] = env
        defined.append(name)
    builds = {}
    for spec in args.build:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not path or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
            p.error("--build %r: expected NAME=PATH, with a NAME of letters, digits, '_', '.', "
                    "'+' and '-'" % spec)
        if name in ALL_ALLOCATORS or name in variants or name in builds:
            p.error("--build %r: the name %s is already taken" % (spec, name))
        builds[name] = os.path.abspath(path)
        defined.append(name)
    known = ALL_ALLOCATORS + list(variants) + list(builds)
    allocators = split_list(args.allocators) or (list(ALL_ALLOCATORS) + defined)
    for a in allocators:
        if a not in known:
            p.error("unknown allocator %r (known: %s)" % (a, ", ".join(known)))
    allocators = list(dict.fromkeys(allocators))
    for name in defined:
        if name not in allocators:
            log("bench: %s %s is defined but not in --allocators: not measured" %
                ("build" if name in builds else "variant", name))
    variant_env = {a: variants[a] for a in allocators if a in variants}
    for a, env in variant_env.items():
        log("bench: variant %s = strata with %s" % (a, env_text(env)))
    for a in allocators:
        if a in builds:
            log("bench: build %s = %s" % (a, builds[a]))
    inherited = sorted(k for k in os.environ if k.startswith("STRATA_") and k != "STRATA_PYTHON")
    if inherited:
        log("bench: not passed to the measured programs: %s (strata runs with its defaults; "
            "use --variant to measure it with options)" % ", ".join(inherited))
    wanted = split_list(args.workloads)
    os.makedirs(outdir, exist_ok=True)
    workdir = os.path.join(outdir, "work")
    os.makedirs(workdir, exist_ok=True)

    skipped = []
    # Allocators: the preload paths, and drop those not installed.
    strata_lib = os.path.abspath(args.strata_lib) if args.strata_lib else \
        os.path.join(root, "build", "release", "libstrata.so")
    preload = {}
    for a in list(allocators):
        is_strata = a == "strata" or a in variant_env or a in builds
        path = builds.get(a) or (strata_lib if is_strata else PEERS[a][0])
        if path and not os.path.exists(path):
            msg = "%s (%s not found%s)" % (a, path, "" if is_strata else
                                           "; install the Debian package " + PEERS[a][1])
            log("bench: skipping allocator " + msg)
            skipped.append("allocator " + msg)
            allocators.remove(a)
            continue
        preload[a] = os.path.realpath(path) if path else None
    if not allocators:
        log("bench: no allocator to measure")
        return 1

    libc_path = None
    with open("/proc/self/maps") as f:
        for line in f:
            if re.search(r"/libc\.so\.6$|/libc-[\d.]+\.so$", line.strip()):
                libc_path = line.split()[-1]
                break

    global HELPER
    HELPER = build_c(workdir, "rusage_exec", ["-O2"])
    if not HELPER:
        log("bench: no C compiler for tools/bench/rusage_exec.c: peak RSS includes "
            "the runner's own memory image")
    # Check each preload really replaces malloc.
    loop = build_c(workdir, "malloc_loop", ["-O2", "-g", "-fno-builtin"])
    if loop:
        for a in list(allocators):
            ok, msg = check_preload(loop, a, preload[a], libc_path, variant_env.get(a))
            if ok:
                log("bench: %-14s malloc from %s" % (a, msg))
            else:
                log("bench: skipping allocator %s: %s" % (a, msg))
                skipped.append("allocator %s (%s)" % (a, msg))
                allocators.remove(a)
    else:
        log("bench: no C compiler: cannot check that each preload is in effect")
    if not allocators:
        return 1

    # Jobs: the manifest's workloads, then the real programs.
    jobs = []
    if os.path.exists(manifest):
        mj, sk = load_manifest(manifest, bindir, quick, wanted)
        jobs += mj
        for s in sk:
            log("bench: skipping workload " + s)
        skipped += ["workload " + s for s in sk]
    else:
        log("bench: no manifest %s: no synthetic workloads" % manifest)
        skipped.append("synthetic workloads (no %s)" % os.path.relpath(manifest, root))

    if args.no_real:
        real_wanted = []
    elif wanted is not None:
        real_wanted = [r for r in REAL_PROGRAMS if r in wanted]
    elif quick:
        # g++ alone would take a quarter of the quick run's time budget.
        real_wanted = [r for r in REAL_PROGRAMS if r not in QUICK_SKIPS_REAL]
        log("bench: --quick leaves out the real program(s) %s (name them in --workloads "
            "to include them)" % ", ".join(QUICK_SKIPS_REAL))
        skipped.append("real program(s) %s (not in --quick unless named in --workloads)"
                       % ", ".join(QUICK_SKIPS_REAL))
    else:
        real_wanted = list(REAL_PROGRAMS)
    for name in real_wanted:
        need = {"redis": ["redis-server", "redis-benchmark"], "sqlite": ["sqlite3"],
                "python": ["/usr/bin/python3"], "g++": ["g++"]}[name]
        missing = [x for x in need if not shutil.which(x)]
        if missing:
            msg = "%s (not installed: %s)" % (name, ", ".join(missing))
            log("bench: skipping real program " + msg)
            skipped.append("real program " + msg)
            continue
        if name == "redis":
            jobs.append(RedisJob(quick))
        elif name == "sqlite":
            j = SqliteJob(quick, workdir)
            j.prepare()
            jobs.append(j)
        elif name == "python":
            jobs.append(PythonJob(quick))
        elif name == "g++":
            jobs.append(GxxJob(quick, workdir))
    if wanted:
        known = {j.name for j in jobs} | {s.split(" ")[1] for s in skipped if s.startswith("workload ")}
        unknown = [w for w in wanted if w not in known and w not in REAL_PROGRAMS]
        if unknown:
            log("bench: unknown workloads: %s" % ", ".join(unknown))
            return 2
    if not jobs and not args.instructions:
        log("bench: nothing to run")
        return 1

    class Ctx:
        pass
    ctx = Ctx()
    ctx.preload = preload
    ctx.variant_env = variant_env
    ctx.timeout = timeout
    ctx.workdir = workdir
    ctx.libc_path = libc_path

    info = machine_info(root, allocators, next(
        (preload[a] for a in allocators if a == "strata" or a in variant_env), None), variant_env, builds)
    config = {"quick": quick, "reps": reps, "timeout_s": timeout, "allocators": allocators,
              "variants": {a: {"base": "strata", "env": e} for a, e in variant_env.items()
                           if a in allocators},
              "builds": {a: path for a, path in builds.items() if a in allocators},
              "workloads": [j.name for j in jobs], "manifest": manifest, "bin_dir": bindir,
              "instructions": args.instructions, "real": not args.no_real}
    log("bench: %d workloads x %d allocators x %d reps = %d runs -> %s" % (
        len(jobs), len(allocators), reps, len(jobs) * len(allocators) * reps, outdir))

    runs = []
    t_start = time.perf_counter()
    total = len(jobs) * len(allocators) * reps
    done = 0
    durations = {}
    for rep in range(reps):
        order = allocators[rep % len(allocators):] + allocators[:rep % len(allocators)]
        for job in jobs:
            for a in order:
                # ETA from the mean duration of each workload so far.
                remaining = 0.0
                all_d = [d for ds in durations.values() for d in ds]
                mean_all = sum(all_d) / len(all_d) if all_d else None
                left = {}
                for r2 in range(rep, reps):
                    for j2 in jobs:
                        left[j2.name] = left.get(j2.name, 0) + len(allocators)
                # subtract what is already done in this repetition
                for j2 in jobs:
                    if j2 is job:
                        break
                    left[j2.name] -= len(allocators)
                left[job.name] -= order.index(a)
                eta = None
                if mean_all is not None:
                    for n, k in left.items():
                        ds = durations.get(n)
                        remaining += k * (sum(ds) / len(ds) if ds else mean_all)
                    eta = remaining
                log("bench: [%d/%d] rep %d/%d  %-14s %-14s %s" % (
                    done + 1, total, rep + 1, reps, job.name, a,
                    "(%d runs left, ETA %dm%02ds)" % (total - done, eta // 60, eta % 60)
                    if eta is not None else "(%d runs left)" % (total - done)))
                t0 = time.perf_counter()
                try:
                    r = job.run(a, ctx)
                except Exception as e:  # a bug in one job must not lose the others
                    r = Run()
                    r.error = "runner error: %r" % (e,)
                dt = time.perf_counter() - t0
                durations.setdefault(job.name, []).append(dt)
                done += 1
                rec = {"workload": job.name, "kind": job.kind, "allocator": a, "rep": rep + 1,
                       "ok": r.ok, "error": r.error, "exit": r.exit,
                       "wall_s": r.wall_s, "maxrss_kb": r.maxrss_kb, "values": r.values,
                       "metric": job.metric, "metric_value": r.values.get(job.metric)}
                if not r.ok:
                    rec["stdout_tail"] = tail(r.stdout)
                    rec["stderr_tail"] = tail(r.stderr)
                    log("bench:   FAILED: %s%s" % (r.error, (": " + tail(r.stderr, 2, 300))
                                                   if r.stderr.strip() else ""))
                runs.append(rec)

    instr = None
    if args.instructions:
        if not loop:
            log("bench: --instructions needs a C compiler (cc)")
            skipped.append("instructions (no C compiler)")
        elif not shutil.which("valgrind"):
            log("bench: --instructions needs valgrind (Debian package valgrind)")
            skipped.append("instructions (valgrind not installed)")
        else:
            instr = measure_instructions(loop, allocators, preload, variant_env, libc_path,
                                         workdir)

    config["elapsed_s"] = time.perf_counter() - t_start
    summary = summarize(jobs, allocators, runs)
    sections, chart = build_tables(jobs, allocators, summary)
    suffix = " (%s, %d reps)" % ("quick" if quick else "full", reps)
    charts = draw_charts(outdir, jobs, allocators, summary, chart, suffix) if jobs else []
    result = {"machine": info, "config": config, "workloads": [j.describe() for j in jobs],
              "skipped": skipped, "runs": runs, "summary": summary,
              "relative": {"performance": chart["perf"], "peak_rss": chart["rss"]},
              "instructions": instr}
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_markdown(os.path.join(outdir, "results.md"), info, config, jobs, allocators, summary,
                   sections, instr, skipped, charts)
    shutil.rmtree(workdir, ignore_errors=True)
    log("bench: done in %.0f s: %s" % (config["elapsed_s"], os.path.join(outdir, "results.md")))
    print(os.path.join(outdir, "results.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
