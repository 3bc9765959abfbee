"""Data paths between SQL backends: SQLite, PostgreSQL and TimescaleDB, either way, with transforms."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: a SQLite reader process imports this package
if TYPE_CHECKING:
    from storagectl.datamove.sql.path import SqlDataPath


def path_for(source_kind: str, target_kind: str) -> SqlDataPath:
    # imported here, not above: a SQLite reader process (reader_process) imports this package too
    from storagectl.datamove.sql.path import SqlDataPath

    return SqlDataPath(source_kind, target_kind)
