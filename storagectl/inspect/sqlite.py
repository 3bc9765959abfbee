"""`inspect` for SQLite: pages, bytes and unused bytes per table and index from the ``dbstat``
virtual table (SQLITE_ENABLE_DBSTAT_VTAB), read-only (``PRAGMA query_only``), interruptible: a
progress handler stops a statement when the budget runs out."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any, ClassVar

from storagectl.errors import OperationFailed
from storagectl.inspect.base import Inspector
from storagectl.inspect.model import BudgetExhausted, Report, estimate, exact, in_bytes

DBSTAT_SQL = ("SELECT name, count(*) AS pages, sum(pgsize) AS bytes, sum(unused) AS unused, "
              "sum(payload) AS payload FROM dbstat GROUP BY name")
OBJECTS_SQL = "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
STAT1 = "sqlite_stat1 (ANALYZE)"
NO_DBSTAT = ("this Python's SQLite was built without the dbstat virtual table (SQLITE_ENABLE_DBSTAT_VTAB): "
             "no per-table sizes")
PROGRESS_STEPS = 10_000  # virtual machine instructions between budget checks


class SQLiteInspector(Inspector):
    views: ClassVar[tuple[str, ...]] = ("overview", "tables", "indexes")

    def prepare(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA query_only = ON")
        connection.set_progress_handler(lambda: 1 if self.budget.expired() else 0, PROGRESS_STEPS)

    def query(self, connection: sqlite3.Connection, sql: str) -> list[sqlite3.Row]:
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if self.budget.expired():
                raise BudgetExhausted from exc
            raise
        except sqlite3.DatabaseError as exc:
            raise OperationFailed(f"{self.backend.label}: {exc}") from exc

    def overview(self, connection: sqlite3.Connection, report: Report) -> None:
        self.prepare(connection)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        report.summary.update(file_bytes=in_bytes(self.backend.settings.path.stat().st_size),
                              pages=exact(pages), free_bytes=in_bytes(free * size))
        rows = self.object_rows(connection, report)
        tables = [r for r in rows if r["type"] == "table"]
        report.summary.update(tables=exact(len(tables)), indexes=exact(len(rows) - len(tables)))
        report.sections["largest_tables"] = sorted(tables, key=_size, reverse=True)[:5]

    def tables(self, connection: sqlite3.Connection, report: Report) -> None:
        self.prepare(connection)
        rows = [r for r in self.object_rows(connection, report) if r["type"] == "table"]
        order = {"rows": lambda r: r["rows_estimate"].value or 0, "name": lambda r: r["table"]}.get(
            self.options.sort, _size)
        rows.sort(key=order, reverse=self.options.sort != "name")
        report.sections["tables"] = rows = rows[: self.options.top]
        if self.options.exact:
            for row in rows:
                quoted = '"' + row["table"].replace('"', '""') + '"'
                row["rows"] = exact(self.query(connection, f"SELECT count(*) FROM {quoted}")[0][0], source="count(*)")

    def indexes(self, connection: sqlite3.Connection, report: Report) -> None:
        self.prepare(connection)
        rows = [r for r in self.object_rows(connection, report) if r["type"] == "index"]
        report.sections["indexes"] = sorted(rows, key=_size, reverse=True)[: self.options.top]
        report.summary.update(indexes=exact(len(rows)))

    def object_rows(self, connection: sqlite3.Connection, report: Report) -> list[dict[str, Any]]:
        """One row per table and index: its pages, bytes and unused bytes, indexes also counted into
        their table's ``index_bytes``."""
        objects = self.query(connection, OBJECTS_SQL)
        found = self.dbstat(connection, report)
        stats = found or {}
        estimates = self.row_estimates(connection)
        index_bytes: dict[str, int] = defaultdict(int)
        for obj in objects:
            if obj["type"] == "index" and obj["name"] in stats:
                index_bytes[obj["tbl_name"]] += stats[obj["name"]]["bytes"]
        return [object_row(obj, stats.get(obj["name"]), index_bytes, estimates, found is not None)
                for obj in objects]

    def dbstat(self, connection: sqlite3.Connection, report: Report) -> dict[str, Any] | None:
        try:
            return {r["name"]: dict(r) for r in self.query(connection, DBSTAT_SQL)}
        except sqlite3.OperationalError as exc:
            if "no such table: dbstat" not in str(exc):
                raise OperationFailed(f"{self.backend.label}: {exc}") from exc
            report.notes.append(NO_DBSTAT)
            return None

    def row_estimates(self, connection: sqlite3.Connection) -> dict[str, int]:
        """Rows per table from sqlite_stat1 (first number of ``stat``), where ANALYZE has run."""
        try:
            rows = self.query(connection, "SELECT tbl, stat FROM sqlite_stat1")
        except sqlite3.OperationalError:
            return {}
        return {r["tbl"]: int(str(r["stat"]).split()[0]) for r in rows if r["stat"]}


def _size(row: dict[str, Any]) -> int:
    return (row["total_bytes"].value or 0) if "total_bytes" in row else (row["bytes"].value or 0)


def object_row(obj: Any, stat: dict[str, Any] | None, index_bytes: dict[str, int], estimates: dict[str, int],
               measured: bool) -> dict[str, Any]:
    stat = stat or ({"pages": 0, "bytes": 0, "unused": 0} if measured else {"pages": None, "bytes": None,
                                                                            "unused": None})
    if obj["type"] == "index":
        return {"type": "index", "index": obj["name"], "table": obj["tbl_name"], "pages": exact(stat["pages"]),
                "bytes": in_bytes(stat["bytes"]), "unused_bytes": in_bytes(stat["unused"])}
    own = stat["bytes"]
    indexes = index_bytes.get(obj["name"], 0) if measured else None
    return {
        "type": "table", "table": obj["name"], "rows_estimate": estimate(estimates.get(obj["name"]), STAT1),
        "rows": None, "pages": exact(stat["pages"]), "table_bytes": in_bytes(own), "index_bytes": in_bytes(indexes),
        "total_bytes": in_bytes(None if own is None else own + indexes), "unused_bytes": in_bytes(stat["unused"]),
    }
