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

USER_RELATIONS = """
n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname <> ALL(%(excluded)s::text[])
AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)"""

TABLE_ORDER = {
    "size": "total_bytes DESC NULLS LAST, nspname, relname",
    "rows": "reltuples DESC, nspname, relname",
    "dead": "n_dead_tup DESC NULLS LAST, nspname, relname",
    "name": "nspname, relname",
}


def tables_sql(sort: str) -> str:
    """Tables (ordinary, partitioned, materialized views) with their sizes, statistics and the totals
    over all of them (window functions, before the LIMIT)."""
    return f"""
WITH {BUSY.strip()},
rel AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::bigint AS reltuples, c.relpages, c.reltoastrelid,
    (c.oid IN (SELECT relation FROM busy) OR c.reltoastrelid IN (SELECT relation FROM busy)
     OR EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indexrelid IN (SELECT relation FROM busy))
    ) AS busy
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'm') AND {USER_RELATIONS.strip()}
),
sized AS (
  SELECT rel.*,
    CASE WHEN busy THEN NULL ELSE pg_table_size(oid) END AS table_and_toast,
    CASE WHEN busy THEN NULL ELSE pg_indexes_size(oid) END AS index_bytes,
    CASE WHEN busy OR reltoastrelid = 0 THEN 0 ELSE pg_total_relation_size(reltoastrelid) END AS toast_bytes,
    current_setting('block_size')::bigint * relpages AS table_pages_bytes,
    current_setting('block_size')::bigint * coalesce((SELECT sum(ic.relpages) FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = rel.oid), 0) AS index_pages_bytes,
    current_setting('block_size')::bigint * coalesce((SELECT tc.relpages FROM pg_class tc
      WHERE tc.oid = rel.reltoastrelid), 0) AS toast_pages_bytes
  FROM rel
),
total AS (
  SELECT sized.*, s.n_live_tup, s.n_dead_tup, s.last_vacuum, s.last_autovacuum, s.last_analyze,
    s.last_autoanalyze,
    coalesce(table_and_toast + index_bytes,
             table_pages_bytes + index_pages_bytes + toast_pages_bytes) AS total_bytes
  FROM sized LEFT JOIN pg_stat_user_tables s ON s.relid = sized.oid
)
SELECT *, count(*) OVER () AS all_tables, sum(total_bytes) OVER () AS all_bytes,
  sum(greatest(reltuples, 0)) OVER () AS all_rows
FROM total ORDER BY {TABLE_ORDER[sort]} LIMIT %(top)s"""


# The same without touching any relation: every size from pg_class.relpages (after a lock timeout).
def tables_from_pages_sql(sort: str) -> str:
    return tables_sql(sort).replace("CASE WHEN busy THEN", "CASE WHEN true THEN")


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
WHERE {USER_RELATIONS.strip()}
ORDER BY n.nspname, t.relname, c.relname"""

OVERVIEW_SQL = f"""
SELECT pg_database_size(current_database()) AS database_bytes,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'm') AND {USER_RELATIONS.strip()}) AS tables,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('i', 'I') AND {USER_RELATIONS.strip()}) AS indexes"""

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
