#!/usr/bin/env bash
# preload_python: an allocation-heavy Python workload (python_workload.py:
# dicts, lists, strings up to several MiB, json round trips, sorting, threads,
# bytearrays grown by realloc) with PYTHONMALLOC=malloc, natively and with
# libstrata.so preloaded; the printed digests must be identical. The preloaded
# workload also checks that the library is in its /proc/self/maps.
# usage: python.sh /path/to/libstrata.so
source "$(dirname -- "$0")/common.sh"
preload_init "$@"
PY=$(find_prog /usr/bin/python3 python3)
export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
unset PYTHONSTARTUP PYTHONPATH PYTHONHOME

run_both workload -- "$PY" -s "$TEST_DIR/python_workload.py"
# The interpreter's own start-up and shutdown with many modules imported.
run_both imports -- "$PY" -s -c '
import json, re, decimal, collections, itertools, email.parser, xml.dom.minidom, sqlite3
con = sqlite3.connect(":memory:")
con.execute("create table t(x)")
con.executemany("insert into t values (?)", [(str(i) * 50,) for i in range(20000)])
print(con.execute("select count(*), sum(length(x)) from t").fetchone())
print(xml.dom.minidom.parseString("<a>" + "<b>x</b>" * 5000 + "</a>").documentElement.childNodes.length)
print(decimal.Decimal(2).sqrt().as_tuple().digits[:10])
'
preload_finish
