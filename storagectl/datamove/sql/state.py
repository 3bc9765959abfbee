"""Which chunks of a move are committed, in the target itself: the ``storagectl_data_migration`` table.

Per target table one header row (chunk -1: the source, the chunk bounds fixed at the first run, and
the table's status: ``copying``, ``loaded``, ``done``) and one row per committed chunk (rows read,
source checksum; for a SQLite → PostgreSQL chunk copied as text, the XXH64 sum of the COPY lines it
sent, ``{"copy_xxh64": N}`` in ``detail``, which the run's verify compares the target's rows with).
A chunk's row is written in the same transaction as its data, so after a crash the table says
exactly which chunks are in. The crc32 sums an earlier version recorded (``{"copy_sum": N}``) are
not read: such a chunk is verified as one copied without sums, by the canonical checksums.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

STATE_TABLE = "storagectl_data_migration"
HEADER = -1
COPY_SUM_KEY = "copy_xxh64"  # in a chunk's detail

CREATE_SQL = (f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (target_table text NOT NULL, chunk integer NOT NULL, "
              "source text NOT NULL, status text NOT NULL, rows bigint, rejected bigint, checksum text, detail text, "
              "PRIMARY KEY (target_table, chunk))")


@dataclass
class TableState:
    target: str
    source: str = ""
    status: str = ""  # "" (never started), copying, loaded, done
    bounds: list[int] = field(default_factory=list)
    chunks: dict[int, tuple[int, int, int | None]] = field(default_factory=dict)  # index → (rows, rejected, checksum)
    copy_sums: dict[int, int] = field(default_factory=dict)  # index → XXH64 sum of the COPY lines sent

    @property
    def started(self) -> bool:
        return bool(self.status)


def ensure(conn: Any) -> None:
    conn.execute(CREATE_SQL)


def read(conn: Any, param: str, target: str) -> TableState:
    state = TableState(target)
    rows = conn.execute(f"SELECT chunk, source, status, rows, rejected, checksum, detail FROM {STATE_TABLE} "
                        f"WHERE target_table = {param} ORDER BY chunk", [target]).fetchall()
    for chunk, source, status, count, rejected, checksum, detail in rows:
        if chunk == HEADER:
            state.source, state.status = source, status
            state.bounds = json.loads(detail or "{}").get("bounds", [])
        else:
            state.chunks[chunk] = (int(count), int(rejected or 0), None if checksum is None else int(checksum))
            if (copy_sum := json.loads(detail or "{}").get(COPY_SUM_KEY)) is not None:
                state.copy_sums[chunk] = int(copy_sum)
    return state


def start(conn: Any, param: str, target: str, source: str, bounds: list[int]) -> None:
    forget(conn, param, target)
    conn.execute(f"INSERT INTO {STATE_TABLE} (target_table, chunk, source, status, detail) VALUES "
                 f"({param}, {HEADER}, {param}, 'copying', {param})", [target, source, json.dumps({"bounds": bounds})])


def record_chunk(conn: Any, param: str, target: str, source: str, index: int, rows: int, rejected: int,
                 checksum: int | None, copy_sum: int | None = None) -> None:
    """In the chunk's own transaction: ``rows`` loaded, ``rejected`` skipped, the source checksum of
    the loaded rows and the XXH64 sum of the COPY lines sent, each when the copy computed it."""
    detail = None if copy_sum is None else json.dumps({COPY_SUM_KEY: copy_sum})
    conn.execute(f"INSERT INTO {STATE_TABLE} (target_table, chunk, source, status, rows, rejected, checksum, detail) "
                 f"VALUES ({param}, {param}, {param}, 'committed', {param}, {param}, {param}, {param})",
                 [target, index, source, rows, rejected, None if checksum is None else str(checksum), detail])


def set_status(conn: Any, param: str, target: str, status: str) -> None:
    conn.execute(f"UPDATE {STATE_TABLE} SET status = {param} WHERE target_table = {param} AND chunk = {HEADER}",
                 [status, target])


def forget(conn: Any, param: str, target: str) -> None:
    conn.execute(f"DELETE FROM {STATE_TABLE} WHERE target_table = {param}", [target])


def exists(conn: Any, kind: str) -> bool:
    if kind == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = "SELECT 1 FROM pg_class WHERE relname = %s AND relkind = 'r' AND pg_table_is_visible(oid)"
    return conn.execute(sql, [STATE_TABLE]).fetchone() is not None
