"""Selective PostgreSQL backups and restores (``--table/--schema/--exclude-table``), as ``pg_dump -t``
and ``pg_restore -t`` do.

Which tables: :func:`select_tables` (globs; ``--schema`` and ``--table`` together mean the tables
``--table`` names within those schemas). Which schema SQL: :func:`filter_schema_sql` keeps, of
pg_dump's entries, only those of the selected tables -- the table, its owned or identity sequences,
column defaults, constraints (foreign keys included), indexes, triggers, policies, rules, comments
and privileges. Like ``pg_dump -t``, nothing the tables depend on comes along (their schema, types,
functions, the tables their foreign keys reference): those must exist in the target.

A selective restore goes into the target in place, in one transaction (:func:`restore_tables`): the
selected tables that exist are dropped (foreign keys of other tables pointing at them are put back
afterwards, and checked), created again and loaded. Nothing else in the target is touched, and a
failure rolls everything back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from storagectl.backends.postgres.roles import entries
from storagectl.backends.postgres.schema import qualified, quote_ident
from storagectl.errors import NotFound, OperationFailed
from storagectl.selection import Selection, matches_any

log = logging.getLogger(__name__)

_HEADER = re.compile(r"^--\n-- Name: (?P<name>[^\n]*?); Type: (?P<type>[A-Z ]+); Schema: (?P<schema>[^\n;]*);")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"(?P<schema>{_IDENT})\.(?P<name>{_IDENT})"
_OWNED_BY = re.compile(rf"ALTER SEQUENCE {_IDENT}\.{_IDENT} OWNED BY {_QUALIFIED}\.{_IDENT};")
_IDENTITY = re.compile(rf"^ALTER TABLE (?:ONLY )?{_QUALIFIED} ALTER COLUMN", re.MULTILINE)
_INDEX_ON = re.compile(rf"CREATE (?:UNIQUE )?INDEX {_IDENT} ON (?:ONLY )?{_QUALIFIED}")
_REFERENCES = re.compile(rf"REFERENCES {_QUALIFIED}\(")
_ON_TABLE = re.compile(r"^(?:CONSTRAINT|TRIGGER|POLICY|RULE) .+ ON (?P<table>.+)$")
# Entries named "<table> <object>" (a column default, a constraint, a trigger, ...) or "<table>".
_TABLE_PREFIXED = ("DEFAULT", "CONSTRAINT", "FK CONSTRAINT", "TRIGGER", "POLICY", "RULE", "ROW SECURITY",
                   "CHECK CONSTRAINT")


def unquote(identifier: str) -> str:
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


def select_tables(tables: Iterable[tuple[str, str]], selection: Selection, where: str) -> list[tuple[str, str]]:
    """The (schema, name) pairs ``selection`` picks; a --table or --schema that matches nothing is an
    error (a typo must not silently back up or restore less)."""
    tables = list(tables)
    chosen = [table for table in tables if _picks(selection, table)]
    for option, patterns, matched in (
            ("--table", selection.tables, lambda p: [t for t in tables if _table_matches(t, p)]),
            ("--schema", selection.schemas, lambda p: [t for t in tables if matches_any(t[0], [p])])):
        for pattern in patterns:
            if not matched(pattern):
                raise NotFound(f"{option} {pattern!r} matches no table in {where}",
                               hint="Try: schema.name or a glob (app.*); tables: " + _sample(tables))
    if not chosen:
        raise NotFound(f"{selection.describe()} selects no table in {where}", hint="Try: tables: " + _sample(tables))
    return chosen


def picks(selection: Selection, table: tuple[str, str]) -> bool:
    return _picks(selection, table)


def _picks(selection: Selection, table: tuple[str, str]) -> bool:
    return ((not selection.tables or any(_table_matches(table, p) for p in selection.tables))
            and (not selection.schemas or matches_any(table[0], selection.schemas))
            and not any(_table_matches(table, p) for p in selection.exclude_tables))


def _table_matches(table: tuple[str, str], pattern: str) -> bool:
    """``schema.name`` globs match the qualified name; a pattern without a dot matches the name in any schema."""
    schema, name = table
    return matches_any(f"{schema}.{name}" if "." in pattern else name, [pattern])


def _sample(tables: list[tuple[str, str]]) -> str:
    names = [f"{schema}.{name}" for schema, name in sorted(tables)]
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "") if names else "none"


@dataclass
class SchemaSubset:
    """pg_dump's SQL cut down to some tables, and what that SQL still needs from the target."""

    sql: str
    sequences: set[tuple[str, str]] = field(default_factory=set)  # owned/identity sequences kept
    references: set[tuple[str, str]] = field(default_factory=set)  # tables foreign keys point at


def filter_schema_sql(sql_text: str, tables: set[tuple[str, str]]) -> SchemaSubset:
    """The entries of ``sql_text`` (a pre-data or post-data section) that belong to ``tables``."""
    pieces = entries(sql_text)
    sequences = _owned_sequences(pieces, tables)
    indexes: set[tuple[str, str]] = set()
    subset = SchemaSubset("", sequences)
    kept = []
    for entry_type, text in pieces:
        header = _HEADER.match(text)
        if entry_type is None or header is None:
            kept.append(text)  # the preamble: session settings
        elif _belongs(header, text, tables, sequences, indexes):
            kept.append(text)
            subset.references |= {(unquote(m["schema"]), unquote(m["name"])) for m in _REFERENCES.finditer(text)}
        else:
            kept.append(_setting_lines(text))
    subset.sql = "".join(kept)
    subset.references -= tables
    return subset


def _owned_sequences(pieces: list[tuple[str | None, str]], tables: set[tuple[str, str]]) -> set[tuple[str, str]]:
    found = set()
    for entry_type, text in pieces:
        header = _HEADER.match(text)
        if header is None or entry_type not in ("SEQUENCE", "SEQUENCE OWNED BY"):
            continue
        owner = _OWNED_BY.search(text) or _IDENTITY.search(text)
        if owner and (unquote(owner["schema"]), unquote(owner["name"])) in tables:
            found.add((header["schema"], header["name"]))
    return found


def _belongs(header: re.Match[str], text: str, tables: set[tuple[str, str]], sequences: set[tuple[str, str]],
             indexes: set[tuple[str, str]]) -> bool:
    kind, schema, name = header["type"], header["schema"], header["name"]
    names = {table for table_schema, table in tables if table_schema == schema}
    if kind == "TABLE":
        return name in names
    if kind in ("SEQUENCE", "SEQUENCE OWNED BY"):
        return (schema, name) in sequences
    if kind in _TABLE_PREFIXED:
        return name in names or any(name.startswith(f"{table} ") for table in names)
    if kind == "INDEX":
        on = _INDEX_ON.search(text)
        if on and (unquote(on["schema"]), unquote(on["name"])) in tables:
            indexes.add((schema, name))
            return True
        return False
    if kind in ("COMMENT", "ACL", "SECURITY LABEL"):
        return _about_kept(name, schema, names, sequences, indexes)
    return False


def _about_kept(name: str, schema: str, names: set[str], sequences: set[tuple[str, str]],
                indexes: set[tuple[str, str]]) -> bool:
    """A comment's or privilege's object ("TABLE t", "COLUMN t.c", "CONSTRAINT c ON t", ...) is kept."""
    what, _, rest = name.partition(" ")
    if what == "TABLE":
        return rest in names
    if what == "COLUMN":
        return any(rest.startswith(f"{table}.") for table in names)
    if what == "SEQUENCE":
        return (schema, rest) in sequences
    if what == "INDEX":
        return (schema, rest) in indexes
    on = _ON_TABLE.match(name)
    return bool(on and on["table"] in names)


def _setting_lines(text: str) -> str:
    """Of a dropped entry, the session settings pg_dump put at its end for the entries after it."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.startswith(("SET ", "SELECT pg_catalog.set_config(")))


# -- restore in place ---------------------------------------------------------------------------
FOREIGN_KEYS_INTO_SQL = """
SELECT n.nspname, c.relname, con.conname, pg_catalog.pg_get_constraintdef(con.oid)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE con.contype = 'f' AND (rn.nspname, r.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY 1, 2, 3
"""
EXISTING_SQL = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""


def existing_tables(conn: Any, tables: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    pairs = sorted(tables)
    rows = conn.execute(EXISTING_SQL, [[s for s, _ in pairs], [n for _, n in pairs]]).fetchall()
    return {(schema, name) for schema, name in rows}


@dataclass(frozen=True)
class ForeignKey:
    schema: str
    table: str
    name: str
    definition: str

    def drop_sql(self) -> str:
        return f"ALTER TABLE {qualified(self.schema, self.table)} DROP CONSTRAINT {quote_ident(self.name)}"

    def add_sql(self) -> str:
        return f"ALTER TABLE {qualified(self.schema, self.table)} ADD CONSTRAINT {quote_ident(self.name)} " \
               f"{self.definition}"


def foreign_keys_into(conn: Any, replaced: set[tuple[str, str]]) -> list[ForeignKey]:
    """Foreign keys of other tables that point at the tables being replaced (they would block the
    DROP): taken off first and put back after the load, which checks them against the restored rows."""
    pairs = sorted(replaced)
    rows = conn.execute(FOREIGN_KEYS_INTO_SQL, [[s for s, _ in pairs], [n for _, n in pairs]]).fetchall()
    return [ForeignKey(*row) for row in rows if (row[0], row[1]) not in replaced]


def table_names(tables: set[tuple[str, str]]) -> str:
    return ", ".join(f"{schema}.{name}" for schema, name in sorted(tables))


def require_referenced(backend: Any, conn: Any, references: set[tuple[str, str]]) -> None:
    """The tables the restored tables' foreign keys point at must be in the target."""
    missing = references - existing_tables(conn, references)
    if missing:
        raise OperationFailed(f"{backend.label}: the selected tables have foreign keys to {table_names(missing)}, "
                              "which the target lacks; nothing was restored",
                              hint=f"Try: add {table_names(missing)} to the selection (--table), or restore them first")


def drop_tables(conn: Any, tables: set[tuple[str, str]]) -> list[ForeignKey]:
    """The tables being replaced, after the foreign keys of other tables into them (returned, to put
    back). A view or other object depending on them makes the DROP fail: nothing is dropped then."""
    # so the definitions read name every table with its schema
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
    foreign_keys = foreign_keys_into(conn, tables)
    for foreign_key in foreign_keys:
        conn.execute(foreign_key.drop_sql())
    if tables:
        conn.execute("DROP TABLE " + ", ".join(qualified(*table) for table in sorted(tables)))
    return foreign_keys


def put_back_foreign_keys(backend: Any, conn: Any, foreign_keys: list[ForeignKey]) -> None:
    import psycopg

    for foreign_key in foreign_keys:
        try:
            with conn.transaction():
                conn.execute(foreign_key.add_sql())
        except psycopg.Error as exc:
            raise OperationFailed(f"{backend.label}: foreign key {foreign_key.name} of {foreign_key.schema}."
                                  f"{foreign_key.table} does not hold for the restored rows: "
                                  f"{backend.error_line(exc)}",
                                  hint=f"Try: restore {foreign_key.schema}.{foreign_key.table} too (--table), "
                                       "so both sides come from the same backup") from exc
