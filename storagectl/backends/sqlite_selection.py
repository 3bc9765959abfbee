"""Selective SQLite backups and restores (``--table``, glob on the table name).

A partial backup is the usual snapshot (the online backup API) with every other table dropped and
the file vacuumed, so it is still one plain SQLite file; its summary has per-table row checksums,
which prove a selective restore. A selective restore extracts the backup beside the target (checked
with ``PRAGMA integrity_check``), then in one ``BEGIN IMMEDIATE`` transaction replaces only the
selected tables -- each with its indexes, triggers and ``sqlite_sequence`` row -- copied from the
extracted file through ``ATTACH``. Nothing else in the target changes; a failure rolls back.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from storagectl.errors import NotFound, OperationFailed
from storagectl.selection import Selection, matches_any

SOURCE = "storagectl_source"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def picks(selection: Selection, table: str) -> bool:
    """``--table NAME`` globs match the table's name (``main.NAME`` too)."""
    return any(matches_any(f"main.{table}" if "." in p else table, [p]) for p in selection.tables)


def selected_tables(tables: list[str], selection: Selection, where: str) -> list[str]:
    """The tables ``selection`` picks; a --table matching none of them is an error."""
    for pattern in selection.tables:
        if not any(picks(Selection(tables=(pattern,)), table) for table in tables):
            raise NotFound(f"--table {pattern!r} matches no table in {where}",
                           hint="Try: tables: " + (", ".join(tables[:8]) or "none"))
    return [table for table in tables if picks(selection, table)]


def keep_only(snapshot: Path, keep: list[str]) -> None:
    """Drop every other table, view and trigger of the snapshot, and vacuum it."""
    with contextlib.closing(sqlite3.connect(snapshot, isolation_level=None)) as db:
        objects = db.execute("SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'view', "
                             "'trigger') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchall()
        db.execute("BEGIN")
        for kind, name, table in objects:  # a view may read any table: views go; indexes go with their table
            if kind == "view" or (kind == "table" and name not in keep) or (kind == "trigger" and table not in keep):
                db.execute(f"DROP {kind.upper()} IF EXISTS {quote(name)}")
        if keep and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            marks = ", ".join("?" for _ in keep)
            db.execute(f"DELETE FROM sqlite_sequence WHERE name NOT IN ({marks})", keep)
        db.execute("COMMIT")
        db.execute("VACUUM")


def copy_tables(target: Path, source: Path, tables: list[str], replace: bool, label: str, timeout: float) -> list[str]:
    """Put ``tables`` of ``source`` into ``target`` in one transaction; returns those it replaced."""
    with contextlib.closing(sqlite3.connect(f"file:{target}?mode=rw", uri=True, isolation_level=None,
                                            timeout=timeout)) as db:
        db.execute(f"ATTACH DATABASE ? AS {SOURCE}", [f"file:{source}?mode=ro"])
        try:
            db.execute("BEGIN IMMEDIATE")
            replaced = [t for t in tables if _has_table(db, "main", t)]
            if replaced and not replace:
                raise OperationFailed(f"{label} already has table(s) {', '.join(replaced)}; nothing was restored",
                                      hint="Try: --yes to replace them (nothing else is touched)")
            for table in tables:
                _copy_table(db, table, table in replaced)
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise OperationFailed(f"{label}: restoring the selected tables failed: {exc}; the selective restore "
                                      "was rolled back: the target is unchanged") from exc
            raise
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.execute(f"DETACH DATABASE {SOURCE}")
    return replaced


def _has_table(db: sqlite3.Connection, schema: str, table: str) -> bool:
    return db.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?",
                      [table]).fetchone() is not None


def _copy_table(db: sqlite3.Connection, table: str, exists: bool) -> None:
    if exists:
        db.execute(f"DROP TABLE main.{quote(table)}")
    definitions = db.execute(f"SELECT type, sql FROM {SOURCE}.sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
                             "ORDER BY type = 'table' DESC, type = 'index' DESC", [table]).fetchall()
    for kind, sql in definitions:
        if kind == "table":
            db.execute(sql)
            db.execute(f"INSERT INTO main.{quote(table)} SELECT * FROM {SOURCE}.{quote(table)}")
        else:
            db.execute(sql)
    if _has_table(db, SOURCE, "sqlite_sequence") and _has_table(db, "main", "sqlite_sequence"):
        db.execute("DELETE FROM main.sqlite_sequence WHERE name = ?", [table])
        db.execute(f"INSERT INTO main.sqlite_sequence SELECT * FROM {SOURCE}.sqlite_sequence WHERE name = ?", [table])
