#!/usr/bin/env bash
# preload_sqlite: the sqlite3 shell runs a generated SQL script (tables filled
# by recursive CTEs, an index, group-by queries, a join, window functions,
# ordered output), natively and with libstrata.so preloaded, on an in-memory
# and on an on-disk database; the output must be byte-identical.
# usage: sqlite.sh /path/to/libstrata.so
source "$(dirname -- "$0")/common.sh"
preload_init "$@"
SQLITE=$(find_prog sqlite3)

cat >"$WORK/script.sql" <<'SQL'
.headers on
.mode list
PRAGMA cache_size = -65536;
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, price REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
INSERT INTO items
SELECT i,
       'item-' || i,
       (i * 7919) % 97,
       ((i * 104729) % 100000) / 100.0,
       printf('%.*c', (i * 31) % 400, 'x')
FROM n;
CREATE TABLE groups(grp INTEGER PRIMARY KEY, label TEXT);
WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 96)
INSERT INTO groups SELECT i, 'group-' || printf('%03d', i) || '-' || printf('%.*c', i, 'y') FROM g;
CREATE INDEX items_grp_price ON items(grp, price);
CREATE INDEX items_name ON items(name);

SELECT count(*), sum(length(note)), round(sum(price), 2) FROM items;
SELECT grp, count(*) AS n, round(avg(price), 4) AS avg_price, max(length(note)) AS longest
  FROM items GROUP BY grp ORDER BY n DESC, grp LIMIT 20;
SELECT g.label, count(*) AS n, round(sum(i.price), 2) AS total
  FROM items i JOIN groups g ON g.grp = i.grp
  WHERE i.price BETWEEN 100 AND 600
  GROUP BY g.label ORDER BY total DESC, g.label LIMIT 25;
SELECT name, price FROM items WHERE grp = 42 ORDER BY price DESC, id LIMIT 15;
SELECT group_concat(name, ',') FROM (SELECT name FROM items WHERE id % 997 = 0 ORDER BY name);
SELECT grp, id, price, rank() OVER (PARTITION BY grp ORDER BY price DESC, id) AS r
  FROM items WHERE id % 13 = 0 ORDER BY grp, r LIMIT 30;
UPDATE items SET note = note || note WHERE id % 3 = 0;
DELETE FROM items WHERE id % 5 = 0;
SELECT count(*), sum(length(note)) FROM items;
SELECT substr(name, 1, 6) AS prefix, count(DISTINCT grp) FROM items GROUP BY prefix ORDER BY prefix;
SELECT id, name, grp, price FROM items ORDER BY name DESC LIMIT 40;
PRAGMA integrity_check;
VACUUM;
SELECT count(*) FROM items;
SQL

run_both memory -- "$SQLITE" -batch -bail :memory: -cmd ".read $WORK/script.sql" ".quit"
# On disk: a fresh database file per run (the runs must not share one).
RUN_STDIN="$WORK/script.sql" run_both disk -- bash -c 'rm -f "$1"; exec "$2" -batch -bail "$1"' _ "$WORK/disk.db" "$SQLITE"
preload_finish
