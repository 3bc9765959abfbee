"""Data paths between SQL backends: SQLite, PostgreSQL and TimescaleDB, either way, with transforms."""

from __future__ import annotations

from storagectl.datamove.sql.path import SqlDataPath


def path_for(source_kind: str, target_kind: str) -> SqlDataPath:
    return SqlDataPath(source_kind, target_kind)
