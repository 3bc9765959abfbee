"""The catalog SQL of `inspect` for PostgreSQL (text only, so tests can read what is sent)."""

from __future__ import annotations

# Relations someone holds or waits for ACCESS EXCLUSIVE on: our ACCESS SHARE would wait behind it
# (or, queued, delay others), so those are sized from pg_class.relpages without opening them.
BUSY = """
busy AS (
  SELECT DISTINCT l.relation FROM pg_locks l
  WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid()
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)"""

# ``{table}``: the alias of the table the relation is (or belongs to: an index's table)
USER_RELATIONS_OF = """
n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname <> ALL(%(excluded)s::text[])
AND (n.nspname <> ALL(%(chunks_only)s::text[]) OR {table}.relname LIKE '%%\\_chunk')
AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)"""
USER_RELATIONS = USER_RELATIONS_OF.format(table="c")

TABLE_ORDER = {
    "size": "total_bytes DESC NULLS LAST, nspname, relname",
    "rows": "reltuples DESC, nspname, relname",
    "dead": "n_dead_tup DESC NULLS LAST, nspname, relname",
    "name": "nspname, relname",
}


BLOCK = "current_setting('block_size')::bigint"


def pages_table(t: str) -> str:
    return f"{BLOCK} * {t}.relpages"


def pages_indexes(t: str) -> str:
    return (f"{BLOCK} * coalesce((SELECT sum(ic.relpages) FROM pg_index i JOIN pg_class ic "
            f"ON ic.oid = i.indexrelid WHERE i.indrelid = {t}.oid), 0)")


def pages_toast(t: str) -> str:
    return f"{BLOCK} * coalesce((SELECT tc.relpages FROM pg_class tc WHERE tc.oid = {t}.reltoastrelid), 0)"


# How the tables are picked before any is opened, from the catalog alone: by the pages pg_class
# records (table, its indexes and TOAST, as of the last VACUUM, ANALYZE or CREATE INDEX) for --sort
# size, else by the view's own order.
CANDIDATE_ORDER = {**TABLE_ORDER, "size": "pages_total DESC, nspname, relname"}


def candidates_for(sort: str, top: int) -> int:
    """How many tables a view of ``top`` rows sizes exactly: by size, a margin over ``top`` for the
    tables whose recorded pages are out of date (only these are opened: sizing all of them costs
    five relation opens per table, more than ``psql \\dt+``'s whole query); else exactly ``top``."""
    return max(2 * top, top + 50) if sort == "size" else top


def tables_sql(sort: str) -> str:
    """Tables (ordinary, partitioned, materialized views) with their sizes, statistics and the totals
    over all of them (window functions, before the LIMIT). Only the candidates (%(candidates)s
    tables in CANDIDATE_ORDER, and for --sort size every table whose pages were never recorded:
    reltuples -1, or before PostgreSQL 14 relpages 0) get a size call; the other tables count in the
    totals with their recorded pages, an estimate."""
    unsized = ("rel.relkind <> 'p' AND (rel.reltuples < 0 OR (rel.relpages = 0 AND "
               "current_setting('server_version_num')::int < 140000))") if sort == "size" else "false"
    return f"""
WITH {BUSY.strip()},
rel AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::bigint AS reltuples, c.relpages, c.reltoastrelid,
    (c.oid IN (SELECT relation FROM busy) OR c.reltoastrelid IN (SELECT relation FROM busy)
     OR EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indexrelid IN (SELECT relation FROM busy))
    ) AS busy,
    {BLOCK} * (c.relpages + coalesce(ix.pages, 0) + coalesce(tc.relpages, 0)) AS pages_total,
    pg_stat_get_dead_tuples(c.oid) AS n_dead_tup
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN (SELECT i.indrelid, sum(ic.relpages) AS pages FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
             GROUP BY 1) ix ON ix.indrelid = c.oid
  LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
  WHERE c.relkind IN ('r', 'p', 'm') AND {USER_RELATIONS.strip()}
),
picked AS (
  SELECT oid FROM (SELECT oid FROM rel ORDER BY {CANDIDATE_ORDER[sort]} LIMIT %(candidates)s) AS best
  UNION SELECT rel.oid FROM rel WHERE {unsized}
),
measured AS (
  SELECT rel.oid, CASE WHEN busy THEN NULL ELSE pg_total_relation_size(rel.oid) END AS measured_total
  FROM rel WHERE rel.oid IN (SELECT oid FROM picked)
),
shown AS (
  SELECT rel.*, m.measured_total, coalesce(m.measured_total, rel.pages_total) AS total_bytes
  FROM rel LEFT JOIN measured m ON m.oid = rel.oid
),
top AS (
  SELECT *, count(*) OVER () AS all_tables, sum(total_bytes) OVER () AS all_bytes,
    sum(greatest(reltuples, 0)) OVER () AS all_rows,
    count(*) FILTER (WHERE measured_total IS NULL) OVER () AS estimated_tables
  FROM shown ORDER BY {TABLE_ORDER[sort]} LIMIT %(top)s
)
SELECT top.*,
  -- the statistics pg_stat_user_tables shows, read for the shown rows only (the view reads ~20 per table)
  pg_stat_get_live_tuples(top.oid) AS n_live_tup, pg_stat_get_last_vacuum_time(top.oid) AS last_vacuum,
  pg_stat_get_last_autovacuum_time(top.oid) AS last_autovacuum,
  pg_stat_get_last_analyze_time(top.oid) AS last_analyze,
  pg_stat_get_last_autoanalyze_time(top.oid) AS last_autoanalyze,
  CASE WHEN busy OR measured_total IS NULL THEN NULL ELSE pg_indexes_size(top.oid) END AS index_bytes,
  CASE WHEN busy OR measured_total IS NULL OR top.reltoastrelid = 0 THEN 0
       ELSE pg_total_relation_size(top.reltoastrelid) END AS toast_bytes,
  {pages_table('top')} AS table_pages_bytes, {pages_indexes('top')} AS index_pages_bytes,
  {pages_toast('top')} AS toast_pages_bytes
FROM top ORDER BY {TABLE_ORDER[sort]}"""


# The same without touching any relation: every size from pg_class.relpages (after a lock timeout).
def tables_from_pages_sql(sort: str) -> str:
    return (tables_sql(sort).replace("CASE WHEN busy THEN", "CASE WHEN true THEN")
            .replace("CASE WHEN busy OR", "CASE WHEN true OR"))


INDEXES_SQL = f"""
WITH {BUSY.strip()}
SELECT n.nspname, t.relname AS table_name, c.relname AS index_name, x.indisvalid, x.indisunique,
  x.indisprimary, s.idx_scan,
  CASE WHEN c.oid IN (SELECT relation FROM busy) OR t.oid IN (SELECT relation FROM busy) THEN NULL
       ELSE pg_relation_size(c.oid) END AS index_bytes,
  current_setting('block_size')::bigint * c.relpages AS pages_bytes,
  EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid) AS backs_constraint,
  x.indrelid::bigint AS table_oid, x.indkey::text AS columns, x.indclass::text AS opclasses,
  x.indcollation::text AS collations, pg_get_expr(x.indexprs, x.indrelid) AS expressions,
  pg_get_expr(x.indpred, x.indrelid) AS predicate, am.amname AS method,
  pg_get_indexdef(c.oid) AS definition
FROM pg_index x
JOIN pg_class c ON c.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = c.oid
WHERE {USER_RELATIONS_OF.format(table="t").strip()}
ORDER BY n.nspname, t.relname, c.relname"""

OVERVIEW_SQL = f"""
SELECT pg_database_size(current_database()) AS database_bytes,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'm') AND {USER_RELATIONS.strip()}) AS tables,
  (SELECT count(*) FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
   WHERE {USER_RELATIONS_OF.format(table="t").strip()}) AS indexes"""

EXTENSION_SCHEMA_SQL = ("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                        "WHERE e.extname = %s")


def statements_sql(schema: str, server_version: int, order: str | None, top: int | None) -> str:
    """pg_stat_statements of this database; PostgreSQL 13 renamed total_time to total_exec_time."""
    total, mean = ("total_exec_time", "mean_exec_time") if server_version >= 130000 else ("total_time", "mean_time")
    quoted = '"' + schema.replace('"', '""') + '"'
    sql = (f"SELECT s.userid::bigint AS userid, s.queryid, s.query, s.calls, s.{total} AS total_ms, "
           f"s.{mean} AS mean_ms, s.rows FROM {quoted}.pg_stat_statements s "
           "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
    if order:
        sql += f" ORDER BY {order} DESC"
    if top:
        sql += f" LIMIT {int(top)}"
    return sql
