"""Catalog queries for PostgreSQL backup and restore: what to copy, sequences, emptiness, cleanup."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"
USER_SCHEMA = (f"n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname !~ '^pg_temp_' "
               "AND n.nspname !~ '^pg_toast_temp_'")


def extension_member(catalog: str, oid: str) -> str:
    """SQL: the object ``oid`` of ``catalog`` belongs to an extension."""
    return (f"EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass AND d.objid = {oid} "
            "AND d.deptype = 'e')")


EXTENSION_MEMBER = extension_member("pg_class", "c.oid")

# Plain and partition-leaf tables ('r'; partitioned parents hold no rows) outside extensions, plus
# extension configuration tables (pg_extension_config_dump, e.g. TimescaleDB's catalog) with their
# filter, exactly what pg_dump's data section would contain: the FROM and WHERE of the table list
# and of the backup estimate.
BACKED_UP_TABLES = f"""
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '') AS condition
    FROM pg_extension e WHERE c.oid = ANY (e.extconfig)
) cfg ON true
WHERE c.relkind = 'r' AND {USER_SCHEMA} AND c.relpersistence <> 't'
  AND (cfg.condition IS NOT NULL OR NOT {EXTENSION_MEMBER})
"""
TABLES_SQL = f"""
SELECT c.oid, n.nspname, c.relname, pg_relation_size(c.oid) + coalesce(pg_relation_size(c.reltoastrelid), 0),
       cfg.condition, c.reltuples
{BACKED_UP_TABLES}
ORDER BY 2, 3
"""

SEQUENCES_SQL = f"""
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND {USER_SCHEMA}
  AND (NOT {EXTENSION_MEMBER} OR EXISTS (SELECT 1 FROM pg_extension e WHERE c.oid = ANY (e.extconfig)))
ORDER BY 1, 2
"""

# The type of every column COPY sends (not dropped, not generated) of the given tables, as
# (table oid, type oid).
COPY_COLUMN_TYPES_SQL = """
SELECT a.attrelid, a.atttypid FROM pg_attribute a
WHERE a.attrelid = ANY (%s) AND a.attnum > 0 AND NOT a.attisdropped {generated}
"""

# What decides whether values of a type survive binary COPY into another database (see
# ColumnTypes.binary_safe): its kind, base/element type, and whether it has binary I/O functions
# that mean the same in any database. The reg* types (regclass, regtype, regproc, ...) send the
# bare OID of the object they name where text sends its name: another database's OIDs differ.
TYPE_FACTS_SQL = """
SELECT oid, typtype, typcategory, typbasetype, typelem,
       typsend <> 0 AND typreceive <> 0 AND typsend::regproc::text !~ '^reg[a-z]*send$'
FROM pg_type WHERE oid = ANY (%s)
"""

# FirstGenbkiObjectId: types below it have OIDs fixed in PostgreSQL's source, the same in every
# database and version; initdb's later objects (information_schema's domains, system views' row
# types) and all user and extension types have OIDs that differ between installations.
FIXED_OID_LIMIT = 10000
BYTEA_TYPES = (17, 1001)  # bytea, bytea[]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    size: int = 0
    condition: str | None = None  # extension config tables: pg_dump's WHERE filter ('' = all rows)
    copy_format: str = "text"  # "binary" when binary_copy_tables() allows it
    # One ctid range of the table (see storagectl.backends.postgres.ranges): heap pages [start, end)
    # (None: unbounded), and the columns COPY sends, named because the range is copied from a SELECT.
    page_range: tuple[int | None, int | None] | None = None
    columns: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        return qualified(self.schema, self.name)

    def copy_out_sql(self) -> str:
        options = " (FORMAT binary)" if self.copy_format == "binary" else ""
        if self.page_range is not None:
            start, end = self.page_range
            bounds = [f"ctid >= '({start},0)'::pg_catalog.tid" if start is not None else "",
                      f"ctid < '({end},0)'::pg_catalog.tid" if end is not None else ""]
            where = " AND ".join(bound for bound in bounds if bound) or "true"
            columns = ", ".join(map(quote_ident, self.columns))
            return f"COPY (SELECT {columns} FROM ONLY {self.unit} WHERE {where}) TO STDOUT{options}"
        if self.condition:
            return f"COPY (SELECT * FROM ONLY {self.unit} {self.condition}) TO STDOUT{options}"
        return f"COPY {self.unit} TO STDOUT{options}"

    def copy_in_sql(self) -> str:
        options = " (FORMAT binary)" if self.copy_format == "binary" else ""
        return f"COPY {self.unit} FROM STDIN{options}"


# What a backup writes, from the statistics alone (pg_relation_size would wait behind an exclusive
# lock): rows x (average column widths + COPY's per-field length word); tables without column
# statistics count their pages instead, and tables never vacuumed or analyzed nothing.
ESTIMATE_SQL = f"""
WITH widths AS (
    SELECT schemaname, tablename, sum(avg_width + 4) AS width FROM pg_stats WHERE NOT inherited GROUP BY 1, 2
)
SELECT count(*), coalesce(sum(CASE WHEN t.reltuples >= 0 AND w.width IS NOT NULL THEN t.reltuples * (w.width + 2)
                                   ELSE (t.relpages + coalesce(toast.relpages, 0))::float8
                                        * current_setting('block_size')::int END), 0)
FROM (SELECT n.nspname, c.relname, c.reltuples, c.relpages, c.reltoastrelid {BACKED_UP_TABLES}) AS t
LEFT JOIN pg_class toast ON toast.oid = t.reltoastrelid
LEFT JOIN widths w ON w.schemaname = t.nspname AND w.tablename = t.relname
"""


def backup_estimate(conn: Any) -> tuple[int, int]:
    """Tables a backup copies and the bytes it is expected to write for them, without reading a row."""
    count, size = conn.execute(ESTIMATE_SQL).fetchone()
    return int(count), int(size)


# A large table of narrow rows stays text even when it holds bytea: binary COPY is read from libpq
# one row at a time (~1.4 us of Python per row), text through psql in blocks at C speed (~0.5 us per
# row, ~2.5 ns per byte more for the hex). Measured on 2 M rows of (int, 16-byte bytea), 52 bytes a
# row on disk: 2.9 CPU s binary, 1.35 s text; on 350 k rows of 340 bytes binary stays cheaper.
NARROW_ROWS_MIN_BYTES = 16 << 20  # on disk; as archive.PSQL_MIN_BYTES, from where psql reads a table
NARROW_ROW_BYTES = 160  # on disk per row (pg_class.reltuples), tuple header included


def list_tables(conn: Any, *, binary: bool = False) -> list[Table]:
    """Every table a backup copies; with ``binary`` those :func:`binary_copy_tables` allows are
    marked for binary COPY, but large tables of narrow rows (:func:`narrow_rows`)."""
    rows = conn.execute(TABLES_SQL).fetchall()
    candidates = [row[0] for row in rows if row[4] is None and not narrow_rows(row[3], row[5])]
    binary_oids = binary_copy_tables(conn, candidates) if binary else set()
    return [Table(schema, name, size, condition, "binary" if oid in binary_oids else "text")
            for oid, schema, name, size, condition, _rows in rows]


def narrow_rows(size: int, estimated_rows: float) -> bool:
    """A table large enough to be read through psql whose rows are narrow, by its statistics (a
    table never analyzed, reltuples -1 or 0, is not)."""
    return size >= NARROW_ROWS_MIN_BYTES and estimated_rows > 0 and size / estimated_rows < NARROW_ROW_BYTES


def binary_copy_tables(conn: Any, table_oids: list[int]) -> set[int]:
    """The tables to copy in binary format: those holding bytea (possibly through a domain or in
    an array) whose every copied column is of a :meth:`ColumnTypes.binary_safe` type.

    bytea's text form is hex: twice the bytes to send, compress, store and parse; in binary such a
    table is copied out in half the CPU time and read back by the server in half the time, for an
    archive no larger. For the other types binary COPY is also cheaper for the server to read
    (no date, number or array parsing), but brotli compresses their binary forms 10-20% worse than
    their text (measured on the benchmark data: bench/bench_pg_backup.py), so tables without bytea
    stay text: the archive stays smaller than pg_dump's.
    """
    if not table_oids:
        return set()
    generated = "AND a.attgenerated = ''" if conn.info.server_version >= 120000 else ""
    columns = conn.execute(COPY_COLUMN_TYPES_SQL.format(generated=generated), [table_oids]).fetchall()
    types = ColumnTypes.load(conn, {type_oid for _table, type_oid in columns})
    unsafe = {table for table, type_oid in columns if not types.binary_safe(type_oid)}
    with_bytea = {table for table, type_oid in columns if types.base(type_oid) in BYTEA_TYPES}
    return with_bytea - unsafe


@dataclass
class ColumnTypes:
    """``pg_type`` facts of some types and of the base and element types they refer to."""

    facts: dict[int, tuple[str, str, int, int, bool]]  # oid -> kind, category, base, element, binary I/O

    @classmethod
    def load(cls, conn: Any, type_oids: set[int]) -> ColumnTypes:
        facts: dict[int, tuple[str, str, int, int, bool]] = {}
        asked: set[int] = set()
        pending = set(type_oids)
        while pending:  # fetch the types, then the base/element types they refer to
            asked |= pending
            for oid, kind, category, base, element, has_io in conn.execute(TYPE_FACTS_SQL, [list(pending)]):
                facts[oid] = (kind, category, base, element, has_io)
            pending = {ref for kind, category, base, element, _io in facts.values()
                       for ref in (base if kind == "d" else 0, element if category == "A" else 0)
                       if ref and ref not in asked}
        return cls(facts)

    def base(self, oid: int) -> int:
        """The type under any domains."""
        while oid in self.facts and self.facts[oid][0] == "d":
            oid = self.facts[oid][2]
        return oid

    def binary_safe(self, oid: int) -> bool:
        """Whether values of the type read back from binary COPY alike in any database: built-in
        base types with binary I/O, built-in ranges, arrays of built-in safe types (an array value
        names its element type's OID, so it must be one of the fixed ones), enums (sent as their
        label) and domains over safe types. Composite types (their values name each field's type
        OID), the reg* types (sent as OIDs), extension types and information_schema's domains in
        arrays are not."""
        oid = self.base(oid)
        if oid not in self.facts:
            return False
        kind, category, _base, element, has_io = self.facts[oid]
        if kind == "e":
            return True
        if oid >= FIXED_OID_LIMIT or kind not in ("b", "r", "m") or not has_io:
            return False
        return category != "A" or (element < FIXED_OID_LIMIT and self.binary_safe(element))


def lock_tables(conn: Any, tables: list[Table], batch: int = 1000) -> None:
    """ACCESS SHARE locks until the snapshot transaction ends (blocks only DROP/ALTER/TRUNCATE)."""
    for start in range(0, len(tables), batch):
        names = ", ".join(f"ONLY {table.unit}" for table in tables[start:start + batch])
        conn.execute(f"LOCK TABLE {names} IN ACCESS SHARE MODE")


def read_sequences(conn: Any) -> list[dict[str, Any]]:
    """Every sequence's state; nextval() is not transactional, so this is the state when read."""
    sequences = []
    for schema, name in conn.execute(SEQUENCES_SQL).fetchall():
        last_value, is_called = conn.execute(f"SELECT last_value, is_called FROM {qualified(schema, name)}").fetchone()
        sequences.append({"schema": schema, "name": name, "last_value": last_value, "is_called": is_called})
    return sequences


def set_sequences(conn: Any, sequences: list[dict[str, Any]]) -> None:
    for seq in sequences:
        conn.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)",
                     [qualified(seq["schema"], seq["name"]), seq["last_value"], seq["is_called"]])


def server_facts(conn: Any) -> dict[str, Any]:
    from storagectl.backends.postgres.backend import timescaledb_version

    version, version_num, encoding = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
        "current_setting('server_encoding')"
    ).fetchone()
    return {"server_version": version, "server_version_num": version_num, "encoding": encoding,
            "timescaledb": timescaledb_version(conn)}


# -- emptiness, and emptying a database (undoing a failed restore) -------------------------------
# Objects that belong to an extension are the extension's: never counted as content (pg_dump's
# CREATE EXTENSION IF NOT EXISTS leaves one already there alone, e.g. one preinstalled through
# template1) and only dropped with their extension.
SCHEMA_DROPS_SQL = f"""
SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname) FROM pg_namespace n
WHERE {USER_SCHEMA} AND n.nspname <> 'public' AND NOT {extension_member('pg_namespace', 'n.oid')}
"""

PUBLIC_DROPS_SQL = f"""
SELECT format('DROP %s IF EXISTS %s CASCADE',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass)
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype IN ('i', 'e'))  -- identity sequences go with their table
UNION ALL
SELECT format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure) FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.prokind IN ('f', 'p') AND NOT {extension_member('pg_proc', 'p.oid')}
UNION ALL
SELECT format('DROP AGGREGATE IF EXISTS %s CASCADE', p.oid::regprocedure) FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'a' AND NOT {extension_member('pg_proc', 'p.oid')}
UNION ALL
SELECT format('DROP TYPE IF EXISTS %s CASCADE', t.oid::regtype) FROM pg_type t
LEFT JOIN pg_class r ON r.oid = t.typrelid
WHERE t.typnamespace = 'public'::regnamespace AND t.typcategory <> 'A'
  AND (t.typtype IN ('e', 'd', 'r', 'b') OR r.relkind = 'c') AND NOT {extension_member('pg_type', 't.oid')}
"""


LARGE_OBJECTS_SQL = "SELECT 'LARGE OBJECT ' || oid FROM pg_catalog.pg_largeobject_metadata ORDER BY oid"


def extension_names(conn: Any) -> set[str]:
    return {row[0] for row in conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")}


def user_objects(conn: Any) -> list[str]:
    """What a restore would collide with: user schemas, the relations, routines and types of
    public (e.g. ``TABLE public.orders``), and large objects; extensions and what belongs to them
    are not counted."""
    statements = [row[0] for row in conn.execute(SCHEMA_DROPS_SQL).fetchall()]
    statements += [row[0] for row in conn.execute(PUBLIC_DROPS_SQL).fetchall()]
    objects = [statement.removeprefix("DROP ").replace(" IF EXISTS", "").removesuffix(" CASCADE")
               for statement in statements]
    return objects + [row[0] for row in conn.execute(LARGE_OBJECTS_SQL)]


def drop_user_objects(conn: Any, keep_extensions: Iterable[str] = ()) -> None:
    """Drop extensions (but ``keep_extensions``), user schemas and what the public schema holds;
    keeps public itself (its owner and privileges are the database's defaults, which a dump does
    not recreate). Large objects are unlinked apart, in batches (``largeobjects.unlink_all``)."""
    for name in sorted(extension_names(conn) - set(keep_extensions)):
        conn.execute(f"DROP EXTENSION IF EXISTS {quote_ident(name)} CASCADE")
    for sql in (SCHEMA_DROPS_SQL, PUBLIC_DROPS_SQL):
        for (statement,) in conn.execute(sql).fetchall():
            conn.execute(statement)
