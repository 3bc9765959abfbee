"""Column types across SQL backends: SQLite → PostgreSQL (pgloader's defaults as the reference),
PostgreSQL → SQLite (the reverse), and the canonical kind of every target type.

Where this differs from pgloader, on purpose: SQLite ``REAL``/``FLOAT`` become ``double precision``
(SQLite stores 8-byte doubles; pgloader's ``real`` loses digits), ``BOOLEAN`` becomes ``boolean``
(pgloader leaves it to a cast rule) and ``DATE`` becomes ``date``.
"""

from __future__ import annotations

import re

# (first word of the declared SQLite type, lower case) → PostgreSQL type; checked in this order
SQLITE_TO_PG: tuple[tuple[str, str], ...] = (
    ("tinyint", "smallint"),
    ("smallint", "smallint"),
    ("int2", "smallint"),
    ("mediumint", "integer"),
    ("int", "bigint"),  # integer, int, int8, bigint, unsigned big int
    ("bigint", "bigint"),
    ("character", "text"),
    ("varchar", "text"),
    ("nvarchar", "text"),
    ("nchar", "text"),
    ("char", "text"),
    ("clob", "text"),
    ("text", "text"),
    ("real", "double precision"),
    ("double", "double precision"),
    ("float", "double precision"),
    ("numeric", "numeric"),
    ("decimal", "numeric"),
    ("boolean", "boolean"),
    ("bool", "boolean"),
    ("blob", "bytea"),
    ("datetime", "timestamptz"),
    ("timestamptz", "timestamptz"),
    ("timestamp", "timestamp"),
    ("date", "date"),
    ("json", "jsonb"),
    ("uuid", "uuid"),
)

# PostgreSQL type (format_type, lower case, without typmod) → canonical kind
PG_KINDS: dict[str, str] = {
    "smallint": "int", "integer": "int", "bigint": "int", "int": "int", "int2": "int", "int4": "int",
    "int8": "int", "serial": "int", "bigserial": "int", "oid": "int",
    "boolean": "bool", "bool": "bool",
    "double precision": "float", "real": "float4", "float8": "float", "float4": "float4",
    "numeric": "numeric", "decimal": "numeric",
    "text": "text", "character varying": "text", "varchar": "text", "character": "text", "char": "text",
    "bpchar": "text", "name": "text", "citext": "text",
    "bytea": "bytes",
    "timestamp with time zone": "timestamptz", "timestamptz": "timestamptz",
    "timestamp without time zone": "timestamp", "timestamp": "timestamp",
    "date": "date",
    "json": "json", "jsonb": "json", "uuid": "uuid",
}

# canonical kind → SQLite declared type (PostgreSQL → SQLite)
KIND_TO_SQLITE = {
    "int": "INTEGER", "bool": "BOOLEAN", "float": "REAL", "float4": "REAL", "numeric": "NUMERIC", "text": "TEXT",
    "bytes": "BLOB", "timestamptz": "DATETIME", "timestamp": "TIMESTAMP", "date": "DATE",
    "json": "TEXT", "uuid": "TEXT", "other": "TEXT",
}


def sqlite_to_pg(declared: str) -> str:
    """The PostgreSQL type of a SQLite column declared ``declared`` (SQLite's affinity rules for
    anything unknown: text, or numeric)."""
    words = re.sub(r"\(.*", "", declared.lower()).split()
    first = next((w for w in words if w not in ("unsigned", "short", "varying", "native", "big")), "")
    for prefix, pg_type in SQLITE_TO_PG:
        if first == prefix or (prefix == "int" and first.startswith("int")):
            return _with_precision(pg_type, declared)
    if not first or "char" in first or "clob" in first or "text" in first:
        return "text"
    if "int" in first:
        return "bigint"
    if "blob" in first:
        return "bytea"
    if any(word in first for word in ("real", "floa", "doub")):
        return "double precision"
    return "text"  # SQLite would give it NUMERIC affinity; text keeps every value it may hold


def _with_precision(pg_type: str, declared: str) -> str:
    if pg_type == "numeric" and (m := re.search(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", declared)):
        return f"numeric({m.group(1)},{m.group(2) or 0})"
    return pg_type


def pg_kind(pg_type: str) -> str:
    """The canonical kind of a PostgreSQL type as ``format_type`` spells it (typmod ignored)."""
    base = re.sub(r"\(.*?\)", "", pg_type.lower()).strip()
    if base.endswith("[]"):
        return "other"
    return PG_KINDS.get(base, "other")


def sqlite_type_for(kind: str) -> str:
    return KIND_TO_SQLITE[kind]


def sqlite_kind(declared: str) -> str:
    """The canonical kind of a SQLite column as the target of PostgreSQL data (or SQLite → SQLite).
    SQLite checks no JSON or UUID: such columns are text, copied as they are."""
    kind = pg_kind(sqlite_to_pg(declared))
    return "text" if kind in ("json", "uuid") else kind


def sqlite_affinity(declared: str) -> str:
    """SQLite's column affinity of a declared type (its rules in order: INT, CHAR/CLOB/TEXT, BLOB or
    none, REAL/FLOA/DOUB, else NUMERIC). A value stored in a column of one affinity is stored the same
    way again in a column of the same affinity."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper.strip():
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"
