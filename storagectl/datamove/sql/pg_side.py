"""PostgreSQL (and TimescaleDB) as source or target of a data move: catalog, chunk reads, COPY loads,
schema after the data, and checksums computed on the server."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from storagectl.datamove.sql import canonical, typemap
from storagectl.datamove.sql.spec import Chunk, ColumnSpec, ForeignKeySpec, IndexSpec, TableSpec
from storagectl.errors import OperationFailed, StoragectlError, UsageError

if TYPE_CHECKING:
    from storagectl.backends.postgres import PostgresBackend
    from storagectl.datamove.model import ColumnMap, TableMap

STATE_TABLE = "storagectl_data_migration"
SESSION = ("SET DateStyle = ISO; SET IntervalStyle = postgres; SET TimeZone = 'UTC'; "
           "SET extra_float_digits = 3; SET bytea_output = hex; SET statement_timeout = 0")
FETCH_ROWS = 5000

USER_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  AND n.nspname NOT LIKE '\\_timescaledb%%' AND n.nspname NOT IN ('timescaledb_information',
      'timescaledb_experimental', 'toolkit_experimental')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
  AND c.relname <> %s
ORDER BY 1, 2
"""

COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity
FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = '' ORDER BY a.attnum
"""

PRIMARY_KEY_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)
"""

SIMPLE_INDEXES_SQL = """
SELECT c.relname, i.indisunique, array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND i.indexprs IS NULL AND i.indpred IS NULL
GROUP BY 1, 2
"""


FOREIGN_KEYS_SQL = """
SELECT (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum),
       rn.nspname, r.relname,
       (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum),
       c.confdeltype, c.confupdtype
FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.conrelid = %s::regclass AND c.contype = 'f' ORDER BY c.conname
"""
# Every column of a table, generated ones too (a whole-row value holds them), in order
ALL_COLUMNS_SQL = """
SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
"""
WHOLE_ROW = "storagectl row"  # the alias of a table hashed by its whole-row value
# who holds exclusive()'s lock: a bigint advisory key is (classid, objid) = (high, low 32 bits), objsubid 1
RUN_LOCK_HOLDERS_SQL = """
SELECT l.pid FROM pg_locks l, (SELECT hashtext(%s)::bigint AS k) key
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = ((key.k >> 32) & 4294967295)::oid AND l.objid = (key.k & 4294967295)::oid
ORDER BY l.pid
"""
FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def split_name(name: str) -> tuple[str, str]:
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else ("public", name)


class PostgresSide:
    kind = "postgres"
    param = "%s"

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.timescale = backend.kind == "timescaledb"
        self.snapshot: str | None = None  # set while a move reads from one exported snapshot

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection in the session settings canonical encodings assume; inside the exported
        snapshot while there is one (a reader)."""
        with self.backend.connect() as conn:
            conn.execute(SESSION)
            if self.snapshot is None:
                yield conn
                return
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
            yield conn
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One writing run per target database: a session advisory lock, held by a connection of its
        own for the run, released by the server if the process dies."""
        with self.backend.connect() as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [STATE_TABLE]).fetchone()[0]:
                raise self.other_run(conn) or self._another_run()
            yield

    def other_run(self, conn: Any) -> StoragectlError | None:
        """The error :meth:`exclusive` would raise, found without taking the lock (a plan's look):
        another session of this database holds it."""
        if conn is None:
            return None
        holders = conn.execute(RUN_LOCK_HOLDERS_SQL, [STATE_TABLE]).fetchall()
        return self._another_run(holders[0][0]) if holders else None

    def _another_run(self, pid: int | None = None) -> StoragectlError:
        from storagectl.errors import LockHeld

        held_by = f" (server process {pid})" if pid is not None else ""
        return LockHeld(f"{self.backend.label}: another migrate data run is writing into this database{held_by}",
                        hint=f"Try: wait for it to finish (its state is in {STATE_TABLE})")

    def missing_schemas(self, conn: Any, specs: Sequence[TableSpec]) -> dict[str, list[TableSpec]]:
        """The schemas of tables a run would create that the target does not have, with those tables."""
        by_schema: dict[str, list[TableSpec]] = {}
        for spec in specs:
            by_schema.setdefault(split_name(spec.target)[0], []).append(spec)
        found = set(self.present_schemas(conn, sorted(by_schema)))
        return {schema: tables for schema, tables in sorted(by_schema.items()) if schema not in found}

    def present_schemas(self, conn: Any, names: Sequence[str]) -> list[str]:
        """Those of ``names`` the target has."""
        if conn is None or not names:
            return []
        return [row[0] for row in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) "
                                               "ORDER BY 1", [list(names)])]

    @contextlib.contextmanager
    def read_only(self) -> Iterator[Any]:
        """A connection that cannot write: a plan's look at the target."""
        with self.connect() as conn:
            conn.execute("SET default_transaction_read_only = on")
            yield conn

    # -- what a run needs of the target (a plan asks; None: nothing missing) ------------------------
    def cannot_record(self, conn: Any, recorded: bool) -> str | None:
        """The state table, where a run records its chunks: written if it exists, else created."""
        if recorded:
            missing = _missing_privileges(conn, quote(STATE_TABLE), ("SELECT", "INSERT", "UPDATE", "DELETE"))
            return f"no {', '.join(missing)} privilege on {STATE_TABLE}, where a run records its chunks" \
                if missing else None
        schema, allowed = conn.execute("SELECT current_schema(), has_schema_privilege(current_schema(), 'CREATE')"
                                       ).fetchone()
        return None if schema is None or allowed else \
            f"no CREATE privilege on schema {schema}, where a run creates its state table {STATE_TABLE}"

    def cannot_write(self, conn: Any, spec: TableSpec, *, create: bool, emptied: bool, adds_keys: bool
                     ) -> str | None:
        """A table the run creates (CREATE on its schema), or fills (INSERT; TRUNCATE to empty it first;
        ownership to add its keys and indexes after the data)."""
        if create:
            schema = split_name(spec.target)[0]
            found = conn.execute("SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = %s",
                                 [schema]).fetchone()
            return None if found is None or found[0] else \
                f"no CREATE privilege on schema {schema}, where a run creates {spec.target}"
        missing = _missing_privileges(conn, spec.target_sql, ("INSERT", "TRUNCATE") if emptied else ("INSERT",))
        problems = [f"no {', '.join(missing)} privilege on {spec.target}"] if missing else []
        if adds_keys and (spec.primary_key or spec.indexes or spec.identity) and not conn.execute(
                "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = %s::regclass",
                [spec.target_sql]).fetchone()[0]:
            problems.append(f"not the owner of {spec.target}, to which a run adds keys and indexes after the data")
        return "; ".join(problems) or None

    # -- catalog --------------------------------------------------------------------------------
    def table_names(self, conn: Any) -> list[str]:
        rows = conn.execute(USER_TABLES_SQL, [STATE_TABLE]).fetchall()
        return [name if schema == "public" else f"{schema}.{name}" for schema, name in rows]

    def describe(self, conn: Any, name: str, table_map: TableMap | None, target_kind: str) -> TableSpec:
        relation = ".".join(map(quote, split_name(name)))
        columns = conn.execute(COLUMNS_SQL, [relation]).fetchall()
        target_name = table_map.target if table_map else (split_name(name)[1] if target_kind == "sqlite" else name)
        target_sql = quote(target_name) if target_kind == "sqlite" else ".".join(map(quote, split_name(target_name)))
        spec = TableSpec(source=name, source_sql=relation, target=target_name, target_sql=target_sql, columns=[])
        if table_map and table_map.columns:
            by_name = {row[0]: row for row in columns}
            spec.columns = [self._mapped_column(conn, relation, by_name, column, target_kind)
                            for column in table_map.columns]
            spec.transformed = True
        else:
            renames = dict(table_map.renames) if table_map else {}
            spec.columns = [self._column(row, target_kind, renames.get(row[0], row[0])) for row in columns]
            spec.transformed = bool(renames) or (table_map is not None and table_map.target != name)
        names = {quote(column.source_column): column.name for column in spec.columns if column.source_column}
        pk = conn.execute(PRIMARY_KEY_SQL, [relation]).fetchall()
        spec.primary_key = tuple(names[quote(c)] for c, _t in pk if quote(c) in names)
        if len(pk) == 1 and typemap.pg_kind(pk[0][1]) == "int":
            spec.key, spec.key_label = quote(pk[0][0]), pk[0][0]
            spec.key_column = names.get(quote(pk[0][0]))
        identity = next((row[0] for row in columns if row[3]), None)
        spec.identity = names.get(quote(identity)) if identity and target_kind != "sqlite" else None
        spec.indexes = [IndexSpec(index, tuple(names[quote(c)] for c in cols), unique)
                        for index, unique, cols in conn.execute(SIMPLE_INDEXES_SQL, [relation])
                        if all(quote(c) in names for c in cols)]
        spec.foreign_keys = self._foreign_keys(conn, relation, names, spec)
        spec.row_estimate = self._row_estimate(conn, relation)
        spec.time_column = table_map.time_column if table_map else None
        if target_kind == "sqlite":
            spec.problems.append("foreign keys, checks and non-column indexes are not moved to SQLite")
        return spec

    def _foreign_keys(self, conn: Any, relation: str, names: dict[str, str], spec: TableSpec) -> list[ForeignKeySpec]:
        """Used where the target tables are built from the mapping (pg_dump's post-data has them
        otherwise); one with a column left out is not moved, and the plan says so."""
        keys = []
        for local, schema, table, referenced, on_delete, on_update in conn.execute(FOREIGN_KEYS_SQL, [relation]):
            parent = table if schema == "public" else f"{schema}.{table}"
            mapped = [names.get(quote(column)) for column in local]
            if None in mapped:
                spec.problems.append(f"foreign key ({', '.join(local)}) → {parent} not moved: a column of it is "
                                     "left out")
                continue
            keys.append(ForeignKeySpec(tuple(mapped), parent, tuple(referenced),  # type: ignore[arg-type]
                                       FK_ACTIONS[on_delete], FK_ACTIONS[on_update]))
        return keys

    def _column(self, row: Sequence[Any], target_kind: str, target_name: str) -> ColumnSpec:
        name, pg_type, not_null, _identity = row
        kind = typemap.pg_kind(pg_type)
        target_type = typemap.sqlite_type_for(kind) if target_kind == "sqlite" else pg_type
        source = f"{quote(name)}::text" if kind in canonical.TEXT_KINDS else quote(name)  # parsed back by a text COPY
        note = _sqlite_note(kind) if target_kind == "sqlite" else ""
        return ColumnSpec(target_name, source, pg_type, target_type, kind, not_null=bool(not_null), note=note,
                          source_column=name)

    def _mapped_column(self, conn: Any, relation: str, by_name: dict[str, Any], column: ColumnMap,
                       target_kind: str) -> ColumnSpec:
        plain = None
        if column.expression is not None:
            expression = f"({column.expression})"
            source_type = self._expression_type(conn, relation, expression)
        else:
            source_name = column.source or column.target
            if source_name not in by_name:
                raise UsageError(f"{self.backend.label}: table {relation} has no column {source_name!r}",
                                      hint=f"Try: one of {', '.join(by_name)}")
            expression, source_type = quote(source_name), by_name[source_name][1]
            plain = source_name
        target_type = column.cast or source_type
        if column.cast:
            expression = f"({expression})::{column.cast}"
        kind = typemap.pg_kind(target_type)  # a cast is a PostgreSQL type, whatever the target
        if target_kind == "sqlite" and not column.cast:
            kind = typemap.pg_kind(source_type)
            target_type = typemap.sqlite_type_for(kind)
        if kind in canonical.TEXT_KINDS:
            expression = f"({expression})::text"
        note = "; ".join(filter(None, [f"expression {column.expression}" if column.expression else "",
                                       f"cast to {column.cast}" if column.cast else ""]))
        return ColumnSpec(column.target, expression, source_type, target_type, kind, note=note,
                          source_column=plain if not column.cast else None)

    def _expression_type(self, conn: Any, relation: str, expression: str) -> str:
        import psycopg

        try:
            return conn.execute(f"SELECT pg_typeof({expression})::text FROM {relation} LIMIT 1").fetchone()[0]
        except TypeError:
            return "text"
        except psycopg.Error as exc:
            bad_sql = isinstance(exc, psycopg.ProgrammingError | psycopg.DataError)  # syntax, unknown name, ...
            error = UsageError if bad_sql else OperationFailed
            raise error(f"{self.backend.label}: expression {expression} on {relation}: "
                        f"{self.backend.error_line(exc)}",
                        hint="Try: a PostgreSQL expression over the table's columns" if bad_sql else None) from exc

    def _row_estimate(self, conn: Any, relation: str) -> int | None:
        estimate = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                                [relation]).fetchone()
        return None if estimate is None or estimate[0] < 0 else int(estimate[0])

    # -- reading --------------------------------------------------------------------------------
    def bounds(self, conn: Any, spec: TableSpec, batch_rows: int) -> list[int]:
        """The first key of every chunk after the first. The key is a unique integer, so a range of
        ``batch_rows`` keys never holds more rows: where the keys are dense (the range at most twice
        the estimated rows) the bounds are cut from the smallest and largest key, which the index
        gives at once; else counted out on the whole key column (which reads every key)."""
        if spec.key is None:
            return []
        low, high = conn.execute(f"SELECT min({spec.key}), max({spec.key}) FROM {spec.source_sql}").fetchone()
        if low is None:
            return []
        if high - low < 2 * max(spec.row_estimate or 0, batch_rows):
            return list(range(low + batch_rows, high + 1, batch_rows))
        rows = conn.execute(f"SELECT k FROM (SELECT {spec.key} AS k, row_number() OVER (ORDER BY {spec.key}) AS n "
                            f"FROM {spec.source_sql}) s WHERE (n - 1) %% %s = 0 AND n > 1 ORDER BY k", [batch_rows])
        return [row[0] for row in rows]

    def read(self, conn: Any, spec: TableSpec, chunk: Chunk, *, with_key: bool = False,
             careful: bool = False) -> Iterator[tuple]:
        where, args = chunk.where(spec.key, self.param)
        key = f"{spec.key or 'NULL'}, " if with_key else ""
        cursor = conn.cursor()
        _load_infinity_as_text(cursor)
        cursor.execute(f"SELECT {key}{', '.join(c.source for c in spec.columns)} FROM {spec.source_sql}{where}", args)
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield from rows

    def row_bytes(self, conn: Any, spec: TableSpec) -> int:
        """Average bytes of a row, from the first 1000 rows (for progress in bytes)."""
        found = conn.execute(f"SELECT avg(pg_column_size(s.*)) FROM (SELECT * FROM {spec.source_sql} LIMIT 1000) s"
                             ).fetchone()
        return int(found[0] or 0)

    def chunk_counts(self, conn: Any, spec: TableSpec, bounds: list[int]) -> dict[int, int]:
        with _hashed_groups(conn):
            rows = conn.execute(f"SELECT {_bucket(spec.key, bounds)}, count(*) FROM {spec.source_sql} GROUP BY 1",
                                [bounds] if spec.key and bounds else []).fetchall()
        return {int(index): int(count) for index, count in rows}

    def chunk_sums(self, conn: Any, spec: TableSpec, bounds: list[int], *, as_target: bool,
                   scheme: str = canonical.CANONICAL, only: set[int] | None = None) -> dict[int, tuple[int, int]]:
        """{chunk: (rows, checksum)}, computed on the server, rows hashed by ``scheme``
        (:func:`canonical.server_scheme`); ``only``: of these chunks alone (None: all)."""
        row_hash, key, relation = self._hashed(conn, spec, as_target, scheme)
        where, args = _chunks_where(key, bounds, only)
        with _hashed_groups(conn):
            rows = conn.execute(f"SELECT {_bucket(key, bounds)}, count(*), sum({row_hash}) FROM {relation}{where} "
                                "GROUP BY 1", ([bounds] if key and bounds else []) + args).fetchall()
        return {int(index): (int(count), int(total or 0) % 2**64) for index, count, total in rows}

    def copy_out_sums(self, conn: Any, copy_sql: str, unit: str, line_sums: Any) -> tuple[int, int]:
        """(rows, ``line_sums`` summed over them) of a text ``COPY ... TO STDOUT``, read by ``psql`` as the
        backup reads a large table (no Python per row), or by libpq without it; in :data:`SESSION`'s settings."""
        from storagectl.backends.postgres.archive import psql_copy_out
        from storagectl.backends.postgres.copy import CopyOut

        copy = psql_copy_out(self.backend, conn, copy_sql, unit, search_path=True, line_sums=line_sums) or \
            CopyOut(conn, copy_sql, line_sums=line_sums)
        for _piece in copy:
            pass
        return copy.rows_read, copy.row_sum

    def row_hashes(self, conn: Any, spec: TableSpec, chunk: Chunk, *, as_target: bool,
                   scheme: str = canonical.CANONICAL) -> dict[str, int]:
        row_hash, key, relation = self._hashed(conn, spec, as_target, scheme)
        where, args = chunk.where(key, "%s") if key else ("", [])
        label = key or "ctid"
        return {str(k): h for k, h in conn.execute(f"SELECT {label}, {row_hash} FROM {relation}{where}", args)}

    def _hashed(self, conn: Any, spec: TableSpec, as_target: bool, scheme: str) -> tuple[str, str | None, str]:
        """(row hash SQL, chunk key, relation) of the source's or the target's table. The row text
        of a table whose columns are the moved ones, in order, is its whole-row value's (cheaper to
        build than ``ROW(...)``, and the same text)."""
        if as_target:
            names: list[str | None] = [c.name for c in spec.columns]
            expressions = [quote(c.name) for c in spec.columns]
            key, relation = (quote(spec.key_column) if spec.key_column else None), spec.target_sql
        else:
            names = [c.source_column for c in spec.columns]
            expressions, key, relation = [c.source for c in spec.columns], spec.key, spec.source_sql
        if scheme == canonical.CANONICAL:
            return canonical.pg_row_hash_sql(expressions, spec.kinds), key, relation
        if scheme == canonical.TYPED_FIELDS:
            types = [c.target_type for c in spec.columns]  # the same as the source's in this scheme
            return canonical.pg_typed_row_hash_sql(expressions, types, key), key, relation  # type: ignore[arg-type]
        if WHOLE_ROW not in names and conn.execute(ALL_COLUMNS_SQL, [relation]).fetchone()[0] == names:
            return canonical.pg_row_text_hash_sql([], whole_row=quote(WHOLE_ROW)), key, \
                f"{relation} AS {quote(WHOLE_ROW)}"
        return canonical.pg_row_text_hash_sql(expressions), key, relation

    @functools.cached_property
    def server_major(self) -> int:
        """The server's major version (for :func:`canonical.server_scheme`: float text changed in 12)."""
        with self.backend.connect() as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000

    # -- as a target ----------------------------------------------------------------------------
    def target_columns(self, conn: Any, spec: TableSpec) -> list[tuple[str, str]] | None:
        if conn.execute("SELECT to_regclass(%s)", [spec.target_sql]).fetchone()[0] is None:
            return None
        return [(row[0], row[1]) for row in conn.execute(COLUMNS_SQL, [spec.target_sql])]

    def create_table(self, conn: Any, spec: TableSpec) -> None:
        for statement in create_table_sql(spec, timescale=self.timescale):
            conn.execute(statement)

    def is_empty(self, conn: Any, spec: TableSpec) -> bool:
        return conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {spec.target_sql})").fetchone()[0]

    def empty_tables(self, conn: Any, specs: list[TableSpec]) -> None:
        """``--yes``: one TRUNCATE for all (foreign keys between them allow it; one from a table left
        out refuses it, and nothing is emptied)."""
        import psycopg

        names = ", ".join(spec.target_sql for spec in specs)
        try:
            conn.execute(f"TRUNCATE {names}")
        except psycopg.errors.FeatureNotSupported as exc:
            raise UsageError(f"{self.backend.label}: cannot empty {names}: {self.backend.error_line(exc)}",
                             hint="Try: move the referencing tables too, or empty them first") from exc

    def writer_session(self, conn: Any) -> None:
        """Rows go in without firing triggers or checking foreign keys against tables still loading (as
        ``pg_restore --disable-triggers``), where the role may; the verify checks the rows anyway."""
        import psycopg

        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET session_replication_role = replica")

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        """After a failure: a lost connection has rolled back on the server already."""
        import psycopg
        from psycopg import pq

        if conn.closed or conn.info.transaction_status in (pq.TransactionStatus.IDLE, pq.TransactionStatus.UNKNOWN):
            return
        with contextlib.suppress(psycopg.OperationalError):
            conn.execute("ROLLBACK")

    def load(self, conn: Any, spec: TableSpec, rows: Iterator[Sequence[Any]]) -> None:
        """Text COPY: every value goes as text and the server parses it into the column's type."""
        names = ", ".join(quote(c.name) for c in spec.columns)
        with conn.cursor().copy(f"COPY {spec.target_sql} ({names}) FROM STDIN") as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def load_text(self, conn: Any, spec: TableSpec, columns: list[str], pieces: Iterator[str]) -> None:
        """Text COPY data already formatted (whole lines) for ``columns``."""
        names = ", ".join(map(quote, columns))
        with conn.cursor().copy(f"COPY {spec.target_sql} ({names}) FROM STDIN") as copy:
            for piece in pieces:
                copy.write(piece)

    def finish_table(self, conn: Any, spec: TableSpec) -> None:
        for statement in finish_table_sql(spec, timescale=self.timescale):
            conn.execute(statement)

    def finish_all(self, conn: Any, specs: list[TableSpec], parallel: int = 1) -> None:
        """The foreign keys between the moved tables (``ref_table``: the target name, as select_specs
        set it), once every table holds its rows: each added ``NOT VALID`` (a moment's lock), then
        validated, up to ``parallel`` referencing tables at once on connections of their own. Added
        validated, two keys touching one table (a → b, b → c) would wait for each other (both lock b
        SHARE ROW EXCLUSIVE); a validation locks its own table SHARE UPDATE EXCLUSIVE and the referenced
        one ROW SHARE only. A key left ``NOT VALID`` by an interrupted run is validated by the resume."""
        pending: dict[str, list[str]] = {}
        moved = {spec.target: spec for spec in specs}
        for spec in specs:
            for number, key in enumerate(spec.foreign_keys, start=1):
                if key.ref_table not in moved:
                    continue
                name = f"{spec.target}_fk_{number}"[:63]
                found = conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = %s AND conrelid = "
                                     "%s::regclass", [name, spec.target_sql]).fetchone()
                if found is None:
                    # PostgreSQL before 18 refuses NOT VALID on a partitioned table's key: validated at once
                    deferred = not _partitioned(conn, spec.target_sql)
                    conn.execute(f"ALTER TABLE {spec.target_sql} ADD CONSTRAINT {quote(name)} "
                                 + key.references_sql(moved[key.ref_table].target_sql, quote)
                                 + (" NOT VALID" if deferred else ""))
                    found = (not deferred,)
                if not found[0]:
                    pending.setdefault(spec.target_sql, []).append(quote(name))
        self._validate(conn, pending, parallel)

    def _validate(self, conn: Any, pending: dict[str, list[str]], parallel: int) -> None:
        """``pending``: per referencing table, its constraints to validate."""
        def validate(table: str, on: Any) -> None:
            for name in pending[table]:
                _validate_key(on, table, name)

        def validate_alone(table: str) -> None:
            with self.connect() as on:
                validate(table, on)

        if parallel <= 1 or len(pending) <= 1:
            for table in pending:
                validate(table, conn)
            return
        from concurrent.futures import ThreadPoolExecutor

        from storagectl import interrupts

        with ThreadPoolExecutor(min(parallel, len(pending))) as pool:
            interrupts.map_results(pool, validate_alone, list(pending))


def _validate_key(conn: Any, table: str, name: str) -> None:
    """Validate one ``NOT VALID`` foreign key; copied rows that break it (the source did not enforce
    it: SQLite without ``PRAGMA foreign_keys``) stop the run with the row PostgreSQL names."""
    import psycopg

    try:
        conn.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
    except psycopg.errors.ForeignKeyViolation as exc:
        detail = (exc.diag.message_detail or "").strip().rstrip(".")
        raise OperationFailed(
            f"{table}: the copied rows break foreign key {name} ({detail or exc.diag.message_primary}); every row "
            f"is copied, and the key is left NOT VALID (it checks new rows only)",
            hint=f"Try: correct those rows (in the source, then run again with --yes; or in the target), then "
                 f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}") from None


def _partitioned(conn: Any, relation: str) -> bool:
    return bool(conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass", [relation]).fetchone()[0])


def _missing_privileges(conn: Any, relation: str, privileges: Sequence[str]) -> list[str]:
    """Of ``privileges``, those the user lacks on ``relation`` (asked one by one: has_table_privilege
    with a list is true when any of them is held)."""
    held = conn.execute("SELECT " + ", ".join(["has_table_privilege(%s, %s)"] * len(privileges)),
                        [value for privilege in privileges for value in (relation, privilege)]).fetchone()
    return [privilege for privilege, ok in zip(privileges, held, strict=True) if not ok]


def _sqlite_note(kind: str) -> str:
    if kind in canonical.TEXT_KINDS:
        return "stored as text"
    if kind in ("timestamptz", "timestamp", "date"):
        return "infinity/-infinity stored as the text 'infinity'/'-infinity'"
    if kind in ("float", "float4"):
        return "NaN stored as the text 'NaN' (SQLite would store NULL)"
    return ""


def _load_infinity_as_text(cursor: Any) -> None:
    """Dates and times read as Python values, except PostgreSQL's infinities (Python has none): their text."""
    from psycopg.types import datetime as pg_datetime

    for name, base in (("timestamptz", pg_datetime.TimestamptzLoader), ("timestamp", pg_datetime.TimestampLoader),
                       ("date", pg_datetime.DateLoader)):
        cursor.adapters.register_loader(name, _infinity_loader(base))


@functools.cache
def _infinity_loader(base: Any) -> Any:
    class InfinityAsText(base):  # type: ignore[misc, valid-type]
        def load(self, data: Any) -> Any:
            text = bytes(data)
            return text.decode() if text in (b"infinity", b"-infinity") else super().load(data)

    return InfinityAsText


def _chunks_where(key: str | None, bounds: list[int], only: set[int] | None) -> tuple[str, list[int]]:
    """A WHERE clause keeping the rows of the chunks ``only`` (None or no key: every row)."""
    if only is None or key is None:
        return "", []
    from storagectl.datamove.sql.spec import chunks_from_bounds

    parts, args = [], []
    for chunk in chunks_from_bounds(bounds):
        if chunk.index in only:
            where, values = chunk.where(key, "%s")
            parts.append(f"({where.removeprefix(' WHERE ') or 'true'})")
            args += values
    return " WHERE " + (" OR ".join(parts) or "false"), args


def _bucket(key: str | None, bounds: list[int]) -> str:
    return f"width_bucket({key}, %s::bigint[])" if key and bounds else "0"


@contextlib.contextmanager
def _hashed_groups(conn: Any) -> Iterator[None]:
    """Rows counted into their chunks by a hash aggregate. The planner takes ``width_bucket(key, ...)``
    for as many groups as keys and would sort every row first, the row's columns with it, spilling to
    disk (measured: a third of a verify's time); the groups are the chunks, a few. Not reset after an
    error (the connection may be in a failed transaction, and is given up)."""
    conn.execute("SET enable_sort = off")
    yield
    conn.execute("RESET enable_sort")


def create_table_sql(spec: TableSpec, *, timescale: bool = False) -> list[str]:
    """CREATE TABLE (columns only; keys and indexes come after the data), and a TimescaleDB target's
    ``create_hypertable`` on its time column."""
    columns = []
    for column in spec.columns:
        identity = " GENERATED BY DEFAULT AS IDENTITY" if column.name == spec.identity else ""
        not_null = " NOT NULL" if column.not_null or identity else ""
        columns.append(f"{quote(column.name)} {column.target_type}{identity}{not_null}")
    statements = [f"CREATE TABLE {spec.target_sql} ({', '.join(columns)})"]
    if spec.time_column:
        if not timescale:
            raise OperationFailed(f"{spec.target}: time_column needs a timescaledb target backend",
                                  hint="Try: a backend of kind timescaledb, or leave time_column out")
        statements.append(f"SELECT create_hypertable('{spec.target_sql.replace(chr(39), chr(39) * 2)}', "
                          f"'{spec.time_column.replace(chr(39), chr(39) * 2)}')")
    return statements


def finish_table_sql(spec: TableSpec, *, timescale: bool = False) -> list[str]:
    """After the data: primary key, indexes (IF NOT EXISTS: a resumed run repeats them), the identity
    moved past the copied maximum. On a hypertable, unique keys leaving out the time column cannot exist."""
    statements = []
    keeps_time = lambda columns: not spec.time_column or spec.time_column in columns  # noqa: E731
    if spec.primary_key and keeps_time(spec.primary_key):
        # named by the server (<table>_pkey, shortened to fit, another number where that name is taken: by a
        # table called orders_pkey, or a table whose 63-byte name the suffix would not fit)
        statements.append(f"DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = "
                          f"'{spec.target_sql.replace(chr(39), chr(39) * 2)}'::regclass AND contype = 'p') THEN "
                          f"ALTER TABLE {spec.target_sql} ADD PRIMARY KEY "
                          f"({', '.join(map(quote, spec.primary_key))}); END IF; END$$")
    for index in spec.indexes:
        if index.unique and not keeps_time(index.columns):
            continue
        unique = "UNIQUE " if index.unique else ""
        statements.append(f"CREATE {unique}INDEX IF NOT EXISTS {quote(index.name[:63])} ON {spec.target_sql} "
                          f"({', '.join(map(quote, index.columns))})")
    if spec.identity:
        literal = spec.target_sql.replace("'", "''")
        statements.append(f"SELECT setval(pg_get_serial_sequence('{literal}', '{spec.identity}'), "
                          f"coalesce(max({quote(spec.identity)}), 0) + 1, false) FROM {spec.target_sql}")
    return statements
