"""`inspect` for TimescaleDB: PostgreSQL's views, plus one row per hypertable (chunks, size,
compression, last job) instead of thousands of chunk rows; ``--chunks`` lists the chunks as tables.

Extension versions differ: 2.x has ``hypertable_size()``, ``hypertable_compression_stats()``,
``approximate_row_count()`` and ``timescaledb_information.hypertables/job_stats``; 1.x has
``hypertable_relation_size()`` and ``timescaledb_information.hypertable``. The SQL is chosen from
what the installed version actually has (:func:`hypertables_sql`, pure)."""

from __future__ import annotations

from typing import Any

from storagectl.inspect import pg_sql
from storagectl.inspect.model import Provenance, Report, estimate, exact, in_bytes
from storagectl.inspect.pg_session import ReadOnlySession
from storagectl.inspect.postgres import PostgresInspector

CHUNK_SCHEMAS = ["_timescaledb_internal"]
# The extension's own catalog and configuration: not the user's tables (seen on TimescaleDB 2.23)
CATALOG_SCHEMAS = ["_timescaledb_catalog", "_timescaledb_config", "_timescaledb_cache", "_timescaledb_functions",
                   "_timescaledb_debug", "timescaledb_information", "timescaledb_experimental"]
FUNCTIONS = ("hypertable_size", "hypertable_relation_size", "hypertable_compression_stats", "approximate_row_count")
CATALOG_SQL = """
SELECT 'function' AS what, p.proname AS name FROM pg_proc p WHERE p.pronamespace = %(schema)s::regnamespace
  AND p.proname = ANY(%(functions)s::text[])
UNION ALL
SELECT 'view', c.relname FROM pg_class c WHERE c.relnamespace = 'timescaledb_information'::regnamespace"""


def _regclass(schema_column: str, name_column: str) -> str:
    return f"(quote_ident({schema_column}) || '.' || quote_ident({name_column}))::regclass"


def _root(table: str) -> str:
    """The hypertable's root relation as the tables view counts it (its chunks are not counted there)."""
    return (f"pg_total_relation_size({table})::bigint AS root_bytes, "
            f"(SELECT greatest(c.reltuples, 0) FROM pg_class c WHERE c.oid = {table})::bigint AS root_rows")


def hypertables_sql(schema: str, available: set[str]) -> str | None:
    """The hypertable query for an extension installed in ``schema`` that has the functions and
    ``timescaledb_information`` views named in ``available``; None when it has neither generation."""
    ext = '"' + schema.replace('"', '""') + '"'
    if "hypertables" in available and "hypertable_size" in available:
        table = _regclass("h.hypertable_schema", "h.hypertable_name")
        rows = f"{ext}.approximate_row_count({table})" if "approximate_row_count" in available else "NULL::bigint"
        compressed = (f"(SELECT sum(c.before_compression_total_bytes)::bigint AS before_bytes, "
                      f"sum(c.after_compression_total_bytes)::bigint AS after_bytes "
                      f"FROM {ext}.hypertable_compression_stats({table}) c)"
                      if "hypertable_compression_stats" in available
                      else "(SELECT NULL::bigint AS before_bytes, NULL::bigint AS after_bytes)")
        job = ("(SELECT j.last_run_status FROM timescaledb_information.job_stats j "
               "WHERE j.hypertable_schema = h.hypertable_schema AND j.hypertable_name = h.hypertable_name "
               "ORDER BY j.last_run_started_at DESC NULLS LAST LIMIT 1)"
               if "job_stats" in available else "NULL::text")
        return (f"SELECT h.hypertable_schema AS schema, h.hypertable_name AS name, h.num_chunks::bigint AS chunks, "
                f"{ext}.hypertable_size({table})::bigint AS total_bytes, {rows}::bigint AS approximate_rows, "
                f"z.before_bytes, z.after_bytes, {job} AS last_job_status, {_root(table)} "
                f"FROM timescaledb_information.hypertables h LEFT JOIN LATERAL {compressed} z ON true "
                "ORDER BY total_bytes DESC NULLS LAST")
    if "hypertable" in available and "hypertable_relation_size" in available:
        table = _regclass("h.table_schema", "h.table_name")
        return (f"SELECT h.table_schema AS schema, h.table_name AS name, h.num_chunks::bigint AS chunks, "
                f"(SELECT s.total_bytes FROM {ext}.hypertable_relation_size({table}) s)::bigint AS total_bytes, "
                "NULL::bigint AS approximate_rows, NULL::bigint AS before_bytes, NULL::bigint AS after_bytes, "
                f"NULL::text AS last_job_status, {_root(table)} FROM timescaledb_information.hypertable h "
                "ORDER BY total_bytes DESC NULLS LAST")
    return None


def hypertable_row(r: dict[str, Any]) -> dict[str, Any]:
    before, after = r["before_bytes"], r["after_bytes"]
    ratio = round(before / after, 2) if before and after else None
    return {
        "schema": r["schema"], "hypertable": r["name"], "chunks": exact(r["chunks"]),
        "rows_estimate": estimate(r["approximate_rows"], "approximate_row_count()"),
        "total_bytes": in_bytes(r["total_bytes"], Provenance.EXACT, "hypertable_size()"),
        "compression_ratio": exact(ratio, source="hypertable_compression_stats()"),
        "last_job_status": r["last_job_status"],
    }


def count_chunks_in_summary(report: Report, hypertables: list[dict[str, Any]]) -> None:
    """The summary's bytes and rows counted the hypertables' roots only (their chunks are left out of
    the tables view): count each hypertable whole instead, so the total is the database's data."""
    if not hypertables:
        return
    summary = report.summary
    if "total_bytes" in summary:
        extra = sum((h["total_bytes"] or 0) - (h["root_bytes"] or 0) for h in hypertables)
        figure = summary["total_bytes"]
        source = f"{figure.source} + " if figure.source else ""
        summary["total_bytes"] = in_bytes(figure.value + extra, figure.provenance,
                                          f"{source}hypertable_size() of {len(hypertables)} hypertable(s)")
    if "rows" in summary and all(h["approximate_rows"] is not None for h in hypertables):
        extra = sum(h["approximate_rows"] - (h["root_rows"] or 0) for h in hypertables)
        summary["rows"] = estimate(summary["rows"].value + extra,
                                   f"{summary['rows'].source} + approximate_row_count()")


class TimescaleInspector(PostgresInspector):
    hypertables: list[dict[str, Any]] = []

    def excluded_schemas(self) -> list[str]:
        return CATALOG_SCHEMAS + ([] if self.options.chunks else CHUNK_SCHEMAS)

    def chunks_only_schemas(self) -> list[str]:
        return CHUNK_SCHEMAS  # with --chunks: the chunks, not the job tables beside them

    def overview(self, connection: Any, report: Report) -> None:
        super().overview(connection, report)
        self.count_chunks(report)

    def tables(self, connection: Any, report: Report) -> None:
        super().tables(connection, report)
        self.count_chunks(report)

    def count_chunks(self, report: Report) -> None:
        if not self.options.chunks:  # with --chunks, they are rows of the tables view already
            count_chunks_in_summary(report, self.hypertables)

    def extra_overview(self, session: ReadOnlySession, report: Report) -> None:
        self.extra_tables(session, report)

    def extra_tables(self, session: ReadOnlySession, report: Report) -> None:
        found = session.one(pg_sql.EXTENSION_SCHEMA_SQL, ["timescaledb"])
        if found is None:
            report.notes.append("kind is timescaledb but the extension is not installed in this database")
            return
        query = hypertables_sql(found["nspname"], self.catalog(session, found["nspname"]))
        if query is None:
            report.notes.append("this TimescaleDB version has neither hypertable_size() nor hypertable_relation_size()")
            return
        found = session.rows(query)
        self.hypertables = found
        rows = [hypertable_row(r) for r in found]
        report.sections["hypertables"] = rows
        report.summary["hypertables"] = exact(len(rows))

    def catalog(self, session: ReadOnlySession, schema: str) -> set[str]:
        rows = session.rows(CATALOG_SQL, {"schema": schema, "functions": list(FUNCTIONS)})
        return {r["name"] for r in rows}
