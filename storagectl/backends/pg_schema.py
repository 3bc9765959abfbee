"""Catalog queries for PostgreSQL backup and restore: what to copy, sequences, emptiness, cleanup."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storagectl.errors import OperationFailed

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
# filter, exactly what pg_dump's data section would contain.
TABLES_SQL = f"""
SELECT n.nspname, c.relname, pg_relation_size(c.oid) + coalesce(pg_relation_size(c.reltoastrelid), 0),
       cfg.condition
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '') AS condition
    FROM pg_extension e WHERE c.oid = ANY (e.extconfig)
) cfg ON true
WHERE c.relkind = 'r' AND {USER_SCHEMA} AND c.relpersistence <> 't'
  AND (cfg.condition IS NOT NULL OR NOT {EXTENSION_MEMBER})
ORDER BY 1, 2
"""

SEQUENCES_SQL = f"""
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND {USER_SCHEMA}
  AND (NOT {EXTENSION_MEMBER} OR EXISTS (SELECT 1 FROM pg_extension e WHERE c.oid = ANY (e.extconfig)))
ORDER BY 1, 2
"""

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

    @property
    def unit(self) -> str:
        return qualified(self.schema, self.name)

    def copy_out_sql(self) -> str:
        if self.condition:
            return f"COPY (SELECT * FROM ONLY {self.unit} {self.condition}) TO STDOUT"
        return f"COPY {self.unit} TO STDOUT"


def list_tables(conn: Any) -> list[Table]:
    return [Table(schema, name, size, condition) for schema, name, size, condition in conn.execute(TABLES_SQL)]


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
    from storagectl.backends.postgres import timescaledb_version

    version, version_num, encoding = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
        "current_setting('server_encoding')"
    ).fetchone()
    return {"server_version": version, "server_version_num": version_num, "encoding": encoding,
            "timescaledb": timescaledb_version(conn)}


def refuse_large_objects(conn: Any, label: str) -> None:
    """Large objects live outside tables; refuse rather than silently leave them out."""
    count = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    if count:
        raise OperationFailed(
            f"{label}: the database holds {count} large objects, which storagectl does not back up",
            hint="Try: pg_dump -Fc for this database, or move the data into bytea columns",
        )


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


def extension_names(conn: Any) -> set[str]:
    return {row[0] for row in conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")}


def user_objects(conn: Any) -> list[str]:
    """What a restore would collide with: user schemas, and the relations, routines and types of
    public (e.g. ``TABLE public.orders``); extensions and what belongs to them are not counted."""
    statements = [row[0] for row in conn.execute(SCHEMA_DROPS_SQL).fetchall()]
    statements += [row[0] for row in conn.execute(PUBLIC_DROPS_SQL).fetchall()]
    return [statement.removeprefix("DROP ").replace(" IF EXISTS", "").removesuffix(" CASCADE")
            for statement in statements]


def drop_user_objects(conn: Any, keep_extensions: Iterable[str] = ()) -> None:
    """Drop extensions (but ``keep_extensions``), user schemas and what the public schema holds;
    keeps public itself (its owner and privileges are the database's defaults, which a dump does
    not recreate)."""
    for name in sorted(extension_names(conn) - set(keep_extensions)):
        conn.execute(f"DROP EXTENSION IF EXISTS {quote_ident(name)} CASCADE")
    for sql in (SCHEMA_DROPS_SQL, PUBLIC_DROPS_SQL):
        for (statement,) in conn.execute(sql).fetchall():
            conn.execute(statement)
