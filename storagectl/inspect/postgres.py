"""`inspect` for PostgreSQL: overview, tables, indexes, queries (pg_stat_statements)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, ClassVar

from storagectl.errors import FeatureUnavailable, OperationFailed, OperationTimeout
from storagectl.inspect import pg_sql
from storagectl.inspect.base import Inspector
from storagectl.inspect.model import Provenance, Report, estimate, exact, in_bytes
from storagectl.inspect.pg_session import LockBusy, ReadOnlySession, read_only_session

RELPAGES = "pg_class.relpages (the relation is locked ACCESS EXCLUSIVE by another session)"
# a table outside the candidates that still made the list (its size shrank since pages were recorded)
RECORDED_PAGES = "pg_class.relpages (as of the last VACUUM, ANALYZE or CREATE INDEX)"
RELTUPLES = "pg_class.reltuples"
DEAD = "pg_stat_user_tables.n_dead_tup"
STATEMENT_ORDER = {"total": "total_ms", "calls": "calls", "mean": "mean_ms", "rows": "rows"}


class PostgresInspector(Inspector):
    views: ClassVar[tuple[str, ...]] = ("overview", "tables", "indexes", "queries")

    def excluded_schemas(self) -> list[str]:
        """Schemas whose tables the tables view leaves out (TimescaleDB: its chunks)."""
        return []

    def chunks_only_schemas(self) -> list[str]:
        """Schemas of which only TimescaleDB chunks are shown (``--chunks``: not the extension's job
        tables beside them). A chunk's name ends in ``_chunk`` (``<prefix>_<id>_chunk``, compressed
        ones ``compress<prefix>_<id>_chunk``); compressed chunks are not inheritance children."""
        return []

    def session(self, connection: Any) -> Any:
        return read_only_session(self.backend, connection, self.budget, self.options)

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"schema": self.options.schema, "excluded": self.excluded_schemas(),
                "chunks_only": self.chunks_only_schemas(), **extra}

    # -- overview --------------------------------------------------------------------------------
    def overview(self, connection: Any, report: Report) -> None:
        with self.session(connection) as session:
            row = session.one(pg_sql.OVERVIEW_SQL, self.params())
            report.summary.update(database_bytes=in_bytes(row["database_bytes"]), tables=exact(row["tables"]),
                                  indexes=exact(row["indexes"]))
            self.extra_overview(session, report)
            largest = self.table_rows(session, report, "size", top=5)
        report.sections["largest_tables"] = largest

    def extra_overview(self, session: ReadOnlySession, report: Report) -> None:
        return None

    # -- tables ----------------------------------------------------------------------------------
    def tables(self, connection: Any, report: Report) -> None:
        with self.session(connection) as session:
            rows = self.table_rows(session, report, self.options.sort, self.options.top)
            report.sections["tables"] = rows
            self.extra_tables(session, report)
            if self.options.exact:
                self.count_rows(session, rows, report)

    def extra_tables(self, session: ReadOnlySession, report: Report) -> None:
        return None

    def table_rows(self, session: ReadOnlySession, report: Report, sort: str, top: int) -> list[dict[str, Any]]:
        params = self.params(top=top, candidates=pg_sql.candidates_for(sort, top))
        try:
            found = session.rows(pg_sql.tables_sql(sort), params)
        except LockBusy:
            report.notes.append("a table was locked while being sized: every size is from pg_class.relpages")
            found = session.rows(pg_sql.tables_from_pages_sql(sort), params)
        if found:
            first = found[0]
            report.summary.update(tables=exact(first["all_tables"]),
                                  rows=estimate(int(first["all_rows"]), RELTUPLES),
                                  total_bytes=in_bytes(int(first["all_bytes"]), *(
                                      (Provenance.ESTIMATE, f"pg_class.relpages for {first['estimated_tables']} "
                                                            f"of {first['all_tables']} tables")
                                      if first["estimated_tables"] else (Provenance.EXACT,))))
        return [table_row(r) for r in found]

    def count_rows(self, session: ReadOnlySession, rows: list[dict[str, Any]], report: Report) -> None:
        """``--exact``: count(*) of each shown table, one statement (and timeout) each."""
        from psycopg import sql

        for row in rows:
            query = sql.SQL("SELECT count(*) AS n FROM {}.{}").format(sql.Identifier(row["schema"]),
                                                                     sql.Identifier(row["table"]))
            try:
                row["rows"] = exact(session.one(query.as_string(session.connection))["n"], source="count(*)")
            except (OperationTimeout, LockBusy) as exc:
                why = "is locked by another session" if isinstance(exc, LockBusy) else "exceeded the query timeout"
                report.notes.append(f"no count(*) of {row['schema']}.{row['table']}: it {why}")

    # -- indexes ---------------------------------------------------------------------------------
    def indexes(self, connection: Any, report: Report) -> None:
        with self.session(connection) as session:
            found = session.rows(pg_sql.INDEXES_SQL, self.params())
        duplicates = duplicate_groups(found)
        rows = [index_row(r, duplicates.get(_index_key(r), [])) for r in found]
        report.sections["indexes"] = sorted(rows, key=lambda r: -(r["index_bytes"].value or 0))[: self.options.top]
        report.summary.update(
            indexes=exact(len(rows)), index_bytes=in_bytes(sum(r["index_bytes"].value or 0 for r in rows)),
            unused=exact(sum(r["unused"] for r in rows)), duplicate=exact(sum(bool(r["duplicate_of"]) for r in rows)),
            invalid=exact(sum(not r["valid"] for r in rows)))

    # -- queries ---------------------------------------------------------------------------------
    def queries(self, connection: Any, report: Report) -> None:
        order = STATEMENT_ORDER[self.options.sort if self.options.sort in STATEMENT_ORDER else "total"]
        with self.session(connection) as session:
            schema = self.statements_schema(session)
            version = connection.info.server_version
            if not self.options.interval:
                found = self.read_statements(session, pg_sql.statements_sql(schema, version, order,
                                                                               self.options.top))
                report.sections["statements"] = [statement_row(r) for r in found]
                report.notes.append("since pg_stat_statements was last reset")
                return
            before = self.read_statements(session, pg_sql.statements_sql(schema, version, None, None))
        self.sleep(self.options.interval)
        with self.session(connection) as session:
            after = self.read_statements(session, pg_sql.statements_sql(schema, version, None, None))
        delta = statement_delta(before, after)
        delta.sort(key=lambda r: r[order] or 0, reverse=True)
        report.sections["statements"] = [statement_row(r) for r in delta[: self.options.top]]
        report.notes.append(f"difference of two snapshots {self.options.interval:g}s apart")

    def statements_schema(self, session: ReadOnlySession) -> str:
        row = session.one(pg_sql.EXTENSION_SCHEMA_SQL, ["pg_stat_statements"])
        if row is None:
            database = session.one("SELECT current_database() AS d")["d"]
            raise FeatureUnavailable(
                f"{self.backend.label}: pg_stat_statements is not installed in database {database!r}; enable it: "
                "shared_preload_libraries = 'pg_stat_statements' in postgresql.conf, restart, then "
                "CREATE EXTENSION pg_stat_statements")
        return row["nspname"]

    def read_statements(self, session: ReadOnlySession, query: str) -> list[dict[str, Any]]:
        try:
            return session.rows(query)
        except OperationFailed as exc:
            if "shared_preload_libraries" not in exc.message:
                raise
            raise FeatureUnavailable(
                f"{self.backend.label}: pg_stat_statements is installed but not loaded; enable it: "
                "shared_preload_libraries = 'pg_stat_statements' in postgresql.conf, then restart the server"
            ) from exc

    def sleep(self, seconds: float) -> None:
        self.budget.check()
        time.sleep(self.budget.bounded(seconds))
        self.budget.check()


# -- rows (pure) -------------------------------------------------------------------------------------
def table_row(r: dict[str, Any]) -> dict[str, Any]:
    measured = r["measured_total"] is not None
    source = RELPAGES if r["busy"] else RECORDED_PAGES
    size = (lambda v: in_bytes(v)) if measured else (lambda v: in_bytes(v, Provenance.ESTIMATE, source))
    toast = r["toast_bytes"] if measured else r["toast_pages_bytes"]
    index = r["index_bytes"] if measured else r["index_pages_bytes"]
    table = r["measured_total"] - index - toast if measured else r["table_pages_bytes"]
    analyzed = r["reltuples"] >= 0  # -1: never vacuumed or analyzed (PostgreSQL 14+)
    return {
        "schema": r["nspname"], "table": r["relname"], "kind": RELKINDS.get(r["relkind"], r["relkind"]),
        "rows_estimate": estimate(r["reltuples"] if analyzed else None, RELTUPLES),
        "rows": None,
        "table_bytes": size(table), "toast_bytes": size(toast), "index_bytes": size(index),
        "total_bytes": size(r["total_bytes"]),
        "dead_tuples": estimate(r["n_dead_tup"], DEAD),
        "last_vacuum": _latest(r["last_vacuum"], r["last_autovacuum"]),
        "last_analyze": _latest(r["last_analyze"], r["last_autoanalyze"]),
    }


RELKINDS = {"r": "table", "p": "partitioned", "m": "matview"}


def _latest(manual: Any, auto: Any) -> Any:
    present = [t for t in (manual, auto) if t is not None]
    return max(present) if present else None


def _index_key(r: dict[str, Any]) -> tuple:
    return (r["table_oid"], r["columns"], r["opclasses"], r["collations"], r["expressions"], r["predicate"],
            r["method"])


def duplicate_groups(found: list[dict[str, Any]]) -> dict[tuple, list[str]]:
    """Index definitions (table, columns, operator classes, collations, expressions, predicate, method)
    shared by more than one index, with the names of those indexes."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for r in found:
        groups[_index_key(r)].append(r["index_name"])
    return {key: names for key, names in groups.items() if len(names) > 1}


def index_row(r: dict[str, Any], same: list[str]) -> dict[str, Any]:
    measured = r["index_bytes"] is not None
    size = in_bytes(r["index_bytes"]) if measured else in_bytes(r["pages_bytes"], Provenance.ESTIMATE, RELPAGES)
    enforces = r["backs_constraint"] or r["indisunique"] or r["indisprimary"]
    scans = r["idx_scan"]
    return {
        "schema": r["nspname"], "table": r["table_name"], "index": r["index_name"], "index_bytes": size,
        "scans": exact(scans, source="pg_stat_user_indexes.idx_scan since the statistics reset"),
        "unused": scans == 0 and not enforces, "duplicate_of": [n for n in same if n != r["index_name"]],
        "valid": bool(r["indisvalid"]), "constraint": bool(enforces), "definition": r["definition"],
    }


def statement_delta(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per statement (user, queryid), what happened between two pg_stat_statements snapshots. A
    statement new in the second counts from zero; one whose counters went down (reset or evicted and
    re-entered) counts from zero too."""
    earlier = {(r["userid"], r["queryid"]): r for r in before}
    changes = []
    for r in after:
        old = earlier.get((r["userid"], r["queryid"]))
        if old is not None and old["calls"] > r["calls"]:
            old = None
        calls = r["calls"] - (old["calls"] if old else 0)
        if calls <= 0:
            continue
        total = r["total_ms"] - (old["total_ms"] if old else 0.0)
        changes.append({**r, "calls": calls, "total_ms": total, "mean_ms": total / calls,
                        "rows": r["rows"] - (old["rows"] if old else 0)})
    return changes


def statement_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"query": " ".join(str(r["query"]).split()), "calls": exact(r["calls"]),
            "total_ms": exact(round(r["total_ms"], 3)), "mean_ms": exact(round(r["mean_ms"], 3)),
            "rows": exact(r["rows"]), "queryid": r["queryid"]}

