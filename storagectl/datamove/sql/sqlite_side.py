"""SQLite as source or target of a data move: its catalog, chunk reads, loads and checksums."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from storagectl.datamove.sql import canonical, typemap
from storagectl.datamove.sql.spec import (
    Chunk,
    ColumnSpec,
    ForeignKeySpec,
    IndexSpec,
    TableSpec,
    chunk_index,
    chunks_from_bounds,
)
from storagectl.errors import OperationFailed, StoragectlError, UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from storagectl.backends.sqlite import SQLiteBackend
    from storagectl.datamove.model import ColumnMap, TableMap
    from storagectl.datamove.sql.reader_process import ReaderProcess
    from storagectl.datamove.sql.sqlite_copy import SQLiteCopyReader

STATE_TABLE = "storagectl_data_migration"
FETCH_ROWS = 5000
AS_STORED = "copied as stored"  # a verbatim column, as the plan notes it


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _surrogate_text(raw: bytes) -> str:
    """Careful reads: text that is not UTF-8 keeps its bytes (as surrogates) to be rejected, not fail the read."""
    return raw.decode("utf-8", "surrogateescape")


class SQLiteSide:
    kind = "sqlite"
    param = "?"

    def __init__(self, backend: SQLiteBackend) -> None:
        self.backend = backend
        self._started: list[ReaderProcess] = []  # reader processes not handed out yet

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with self.backend.connect() as conn:
            conn.isolation_level = None  # transactions only where this module opens them
            yield conn

    @contextlib.contextmanager
    def readers_started(self, count: int) -> Iterator[None]:
        """``count`` reader processes started now, for :meth:`reader_processes` to hand out: early in a run,
        while storagectl is small (see :mod:`reader_process`); those never handed out ended with it."""
        try:
            self._started = [self._new_reader() for _ in range(count)]
            yield
        finally:
            _close_all(self._started)
            self._started = []

    def reader_processes(self, readers: list[SQLiteCopyReader], count: int) -> list[ReaderProcess]:
        """``count`` processes that read chunks of ``readers``' tables from this file (:mod:`reader_process`):
        those started beforehand first; any more of those are ended."""
        started, self._started = self._started, []
        processes = started[:count]
        try:
            _close_all(started[count:])
            processes += [self._new_reader() for _ in range(count - len(processes))]
            for process in processes:
                process.serve(readers)
        except BaseException:
            _close_all(processes)
            raise
        return processes

    def _new_reader(self) -> ReaderProcess:
        from storagectl.datamove.sql.reader_process import ReaderProcess

        settings = self.backend.settings
        busy_timeout = settings.timeouts.statement or settings.timeouts.connect
        return ReaderProcess(self.backend.label, settings.path, busy_timeout)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One writing run per target file: an flock beside it, released by the kernel if the process dies."""
        from storagectl.locks import held

        settings = self.backend.settings
        if not settings.create_if_missing and not settings.path.is_file():
            with self.backend.connect():  # its one-line "does not exist", before the lock makes a folder and a file
                pass
        with held(self._run_lock(), self._run_what):
            yield

    def other_run(self, conn: sqlite3.Connection | None) -> StoragectlError | None:
        """The error :meth:`exclusive` would raise, found by trying its lock (a plan's look); a lock
        file that does not exist is not created."""
        from storagectl.locks import probe

        if not self._run_lock_path.exists():
            return None
        return probe(self._run_lock(), self._run_what)

    def missing_schemas(self, conn: sqlite3.Connection | None, specs: Sequence[TableSpec]
                        ) -> dict[str, list[TableSpec]]:
        return {}  # one file, one namespace

    def present_schemas(self, conn: sqlite3.Connection | None, names: Sequence[str]) -> list[str]:
        return []

    @property
    def _run_what(self) -> str:
        return f"a migrate data run into {self.backend.label}"

    @property
    def _run_lock_path(self) -> Path:
        path = self.backend.settings.path
        return path.with_name(f".{path.name}.migrate-data.lock")

    def _run_lock(self) -> Any:
        from storagectl.locks import FileLock

        return FileLock(self._run_lock_path, f"migrate data into {self.backend.settings.path.name}")

    @contextlib.contextmanager
    def read_only(self) -> Iterator[sqlite3.Connection | None]:
        """A connection that cannot write (a plan's look at the target); None when the file does not
        exist and a run would create it."""
        path = self.backend.settings.path
        if not path.is_file():
            if self.backend.settings.create_if_missing:
                yield None
                return
            with self.backend.connect():  # the run's own error: the file does not exist
                pass
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            conn.isolation_level = None
            yield conn

    # -- what a run needs of the target (a plan asks; None: nothing missing) ------------------------
    def cannot_record(self, conn: sqlite3.Connection | None, recorded: bool) -> str | None:
        """A run writes the file and, beside it, its journal and lock file."""
        import os

        path = self.backend.settings.path
        if path.exists() and not os.access(path, os.W_OK):
            return f"cannot write {path}"
        directory = path.parent
        while not directory.exists():  # created with the file
            directory = directory.parent
        return None if os.access(directory, os.W_OK | os.X_OK) else \
            f"cannot write in {directory}, where a run keeps its journal and lock files"

    def cannot_write(self, conn: sqlite3.Connection | None, spec: TableSpec, *, create: bool, emptied: bool,
                     adds_keys: bool) -> str | None:
        return None  # SQLite has no per-table privileges: the file's are checked once (cannot_record)

    # -- catalog --------------------------------------------------------------------------------
    def table_names(self, conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                            "AND name <> ? ORDER BY name", [STATE_TABLE])
        return [row[0] for row in rows]

    def describe(self, conn: sqlite3.Connection, name: str, table_map: TableMap | None, target_kind: str) -> TableSpec:
        info = [row for row in conn.execute(f"PRAGMA table_xinfo({quote(name)})") if row[6] in (0, 1)]
        has_rowid = _has_rowid(conn, name)
        pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        ipk = pk[0] if has_rowid and len(pk) == 1 and _declared(info, pk[0]).upper() == "INTEGER" else None
        # chunks and pieces are cut by a unique integer key: an INTEGER PRIMARY KEY only where it is the
        # rowid's alias (not one declared PRIMARY KEY DESC, which may hold NULLs and text), else the rowid
        alias = ipk if ipk and not _pk_indexed(conn, name) else None
        target_name = table_map.target if table_map else name
        # a PostgreSQL target's name is schema.table where it has a dot, as a PostgreSQL source's is
        target_sql = quote(target_name) if target_kind == "sqlite" or "." not in target_name else \
            ".".join(map(quote, target_name.split(".", 1)))
        spec = TableSpec(source=name, source_sql=quote(name), target=target_name, target_sql=target_sql,
                         columns=[], primary_key=tuple(pk), key_label=alias or "rowid")
        if table_map and table_map.columns:
            spec.columns = [self._mapped_column(conn, name, info, column, target_kind) for column in table_map.columns]
            spec.transformed = True
        else:
            renames = dict(table_map.renames) if table_map else {}
            spec.columns = [self._column(row, target_kind, renames.get(row[1], row[1])) for row in info]
        target_names = {quote(column.source_column): column.name for column in spec.columns if column.source_column}
        if has_rowid:
            spec.key = quote(alias) if alias else "rowid"
            spec.key_column = target_names.get(quote(alias)) if alias else None
        spec.primary_key = tuple(target_names[quote(c)] for c in pk if quote(c) in target_names)
        if ipk and quote(ipk) in target_names and target_kind != "sqlite":
            spec.identity = target_names[quote(ipk)]
        spec.indexes, skipped = self._indexes(conn, name, target_names)
        spec.problems += skipped
        spec.foreign_keys, held_back = self._foreign_keys(conn, name, target_names)
        spec.problems += held_back
        spec.row_estimate = self._row_estimate(conn, name)
        spec.time_column = table_map.time_column if table_map else None
        if not has_rowid:
            spec.problems.append("WITHOUT ROWID table: copied as one chunk")
        return spec

    def _column(self, row: Sequence[Any], target_kind: str, target_name: str) -> ColumnSpec:
        declared = row[2] or ""
        target_type = typemap.sqlite_to_pg(declared) if target_kind != "sqlite" else (declared or "")
        kind = _kind(target_type, target_kind)
        verbatim = target_kind == "sqlite"
        return ColumnSpec(target_name, quote(row[1]), declared or "(none)", target_type, kind,
                          not_null=bool(row[3]) or bool(row[5]), source_column=row[1], verbatim=verbatim,
                          note=AS_STORED if verbatim else "")

    def _mapped_column(self, conn: sqlite3.Connection, table: str, info: list[Any], column: ColumnMap,
                       target_kind: str) -> ColumnSpec:
        by_name = {row[1]: row for row in info}
        plain = None
        if column.expression is not None:
            source, declared = column.expression, self._expression_type(conn, table, column.expression)
        else:
            source_name = column.source or column.target
            if source_name not in by_name:
                raise UsageError(f"{self.backend.label}: table {table!r} has no column {source_name!r}",
                                      hint=f"Try: one of {', '.join(by_name)}")
            source, declared = quote(source_name), by_name[source_name][2] or ""
            plain = source_name
        target_type = column.cast or (typemap.sqlite_to_pg(declared) if target_kind != "sqlite" else declared)
        note = f"expression {column.expression}" if column.expression else ""
        if column.cast:
            note = (note + "; " if note else "") + f"cast to {column.cast}"
        verbatim = target_kind == "sqlite" and plain is not None and not column.cast
        return ColumnSpec(column.target, source, declared or "(expression)", target_type,
                          _kind(target_type, target_kind), note=AS_STORED if verbatim else note,
                          source_column=plain, verbatim=verbatim)

    def _expression_type(self, conn: sqlite3.Connection, table: str, expression: str) -> str:
        try:
            found = {row[0] for row in conn.execute(
                f"SELECT DISTINCT typeof({expression}) FROM {quote(table)}")} - {"null"}
        except sqlite3.Error as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            error = OperationFailed if busy else UsageError  # else: syntax, unknown column or function
            raise error(f"{self.backend.label}: expression {expression!r} on {table!r}: {exc}",
                        hint="Try: an SQLite expression over the table's columns") from exc
        if found == {"integer"}:
            return "INTEGER"
        if found <= {"integer", "real"} and found:
            return "REAL"
        return "BLOB" if found == {"blob"} else "TEXT"

    def _indexes(self, conn: sqlite3.Connection, table: str, names: dict[str, str]
                 ) -> tuple[list[IndexSpec], list[str]]:
        indexes, skipped = [], []
        for _seq, index, unique, origin, partial in conn.execute(f"PRAGMA index_list({quote(table)})"):
            if origin == "pk":
                continue
            columns = [row[2] for row in conn.execute(f"PRAGMA index_info({quote(index)})")]
            mapped = [names.get(quote(c)) if c is not None else None for c in columns]
            if partial or None in mapped:
                skipped.append(f"index {index} not moved (partial, on an expression or on a column left out)")
                continue
            indexes.append(IndexSpec(index, tuple(mapped), bool(unique)))  # type: ignore[arg-type]
        return indexes, skipped

    def _foreign_keys(self, conn: sqlite3.Connection, table: str, names: dict[str, str]
                      ) -> tuple[list[ForeignKeySpec], list[str]]:
        """The table's foreign keys that can move, and what keeps the others back."""
        problems: list[str] = []
        groups: dict[int, list[Any]] = {}
        for row in conn.execute(f"PRAGMA foreign_key_list({quote(table)})"):
            groups.setdefault(row[0], []).append(row)
        keys = []
        for rows in groups.values():
            local = [names.get(quote(row[3])) for row in rows]
            parent = rows[0][2]
            referenced = [row[4] for row in rows]
            if None in referenced:  # REFERENCES parent: its primary key
                referenced = [r[1] for r in sorted((r for r in conn.execute(f"PRAGMA table_info({quote(parent)})")
                                                    if r[5]), key=lambda r: r[5])]
            if None in local or len(referenced) != len(local):
                why = "a column of it is left out" if None in local else f"{parent} has no matching primary key"
                problems.append(f"foreign key ({', '.join(row[3] for row in rows)}) → {parent} not moved: {why}")
                continue
            keys.append(ForeignKeySpec(tuple(local), parent, tuple(referenced),  # type: ignore[arg-type]
                                       on_delete=rows[0][6].upper(), on_update=rows[0][5].upper()))
        return keys, problems

    def _row_estimate(self, conn: sqlite3.Connection, table: str) -> int:
        return conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]

    # -- reading --------------------------------------------------------------------------------
    def bounds(self, conn: sqlite3.Connection, spec: TableSpec, batch_rows: int) -> list[int]:
        """The key of every ``batch_rows``-th row after the first: each found by stepping over the
        keys from the previous one in the key's b-tree (no row decoded, nothing sorted)."""
        if spec.key is None:
            return []
        key, table = spec.key, spec.source_sql
        bounds: list[int] = []
        found = conn.execute(f"SELECT {key} FROM {table} ORDER BY {key} LIMIT 1 OFFSET ?", [batch_rows]).fetchone()
        while found is not None:
            bounds.append(found[0])
            found = conn.execute(f"SELECT {key} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT 1 OFFSET ?",
                                 [found[0], batch_rows - 1]).fetchone()
        return bounds

    def read(self, conn: sqlite3.Connection, spec: TableSpec, chunk: Chunk, *, with_key: bool = False,
             careful: bool = False) -> Iterator[tuple]:
        where, args = chunk.where(spec.key, self.param)
        key = f"{spec.key or 'NULL'}, " if with_key else ""
        select = f"SELECT {key}{', '.join(c.source for c in spec.columns)} FROM {spec.source_sql}{where}"
        if careful:
            conn.text_factory = _surrogate_text
        try:
            cursor = conn.execute(select, args)
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield from rows
        finally:
            conn.text_factory = str

    def storage_classes(self, conn: sqlite3.Connection, spec: TableSpec) -> list[set[str]]:
        """Per column, the storage classes (``typeof``) its values use: one scan for all columns."""
        found: list[set[str]] = [set() for _ in spec.columns]
        typeofs = ", ".join(f"typeof({column.source})" for column in spec.columns)
        for row in conn.execute(f"SELECT DISTINCT {typeofs} FROM {spec.source_sql}"):
            for classes, name in zip(found, row, strict=True):
                classes.add(name)
        return found

    def row_bytes(self, conn: sqlite3.Connection, spec: TableSpec) -> int:
        """Average bytes of a row's values, from the first 1000 rows (for progress in bytes)."""
        lengths = " + ".join(f"coalesce(length(CAST({c.source} AS BLOB)), 0)" for c in spec.columns) or "0"
        found = conn.execute(f"SELECT avg({lengths}) FROM (SELECT * FROM {spec.source_sql} LIMIT 1000)").fetchone()
        return int(found[0] or 0) + len(spec.columns)

    def chunk_counts(self, conn: sqlite3.Connection, spec: TableSpec, bounds: list[int]) -> dict[int, int]:
        """Rows per chunk, one range count each (in C, on the key's b-tree)."""
        counts = {}
        for chunk in chunks_from_bounds(bounds if spec.key else []):
            where, args = chunk.where(spec.key, self.param)
            counts[chunk.index] = conn.execute(f"SELECT count(*) FROM {spec.source_sql}{where}", args).fetchone()[0]
        return counts

    # -- as a target ----------------------------------------------------------------------------
    def target_columns(self, conn: sqlite3.Connection, spec: TableSpec) -> list[tuple[str, str]] | None:
        rows = conn.execute(f"PRAGMA table_info({spec.target_sql})").fetchall()
        return [(row[1], row[2]) for row in rows] or None

    def create_table(self, conn: sqlite3.Connection, spec: TableSpec) -> None:
        columns = [f"{quote(c.name)} {c.target_type}{' NOT NULL' if c.not_null else ''}" for c in spec.columns]
        if spec.primary_key:
            columns.append(f"PRIMARY KEY ({', '.join(map(quote, spec.primary_key))})")
        conn.execute(f"CREATE TABLE {spec.target_sql} ({', '.join(columns)})")

    def is_empty(self, conn: sqlite3.Connection, spec: TableSpec) -> bool:
        return conn.execute(f"SELECT 1 FROM {spec.target_sql} LIMIT 1").fetchone() is None

    def empty_tables(self, conn: sqlite3.Connection, specs: list[TableSpec]) -> None:
        for spec in specs:
            conn.execute(f"DELETE FROM {spec.target_sql}")

    def writer_session(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA foreign_keys = OFF")  # the order tables load in is not theirs

    def begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def load(self, conn: sqlite3.Connection, spec: TableSpec, rows: Iterator[Sequence[Any]]) -> None:
        insert = f"INSERT INTO {spec.target_sql} ({', '.join(quote(c.name) for c in spec.columns)}) VALUES "
        adapt = [None if c.verbatim else _sqlite_value_adapter(c.kind) for c in spec.columns]
        if any(adapt):
            rows = ([f(v) if f and v is not None else v for f, v in zip(adapt, row, strict=True)] for row in rows)
        verbatim = [i for i, c in enumerate(spec.columns) if c.verbatim]
        held: list[Sequence[Any]] = []  # rows holding a StoredText, which binds as a blob
        if verbatim:
            rows = _holding_back(rows, verbatim, held)
        conn.executemany(f"{insert}({', '.join('?' * len(spec.columns))})", rows)
        for row in held:
            marks = ", ".join("CAST(? AS TEXT)" if type(v) is canonical.StoredText else "?" for v in row)
            conn.execute(f"{insert}({marks})", row)

    def finish_table(self, conn: sqlite3.Connection, spec: TableSpec) -> None:
        for index in spec.indexes:
            unique = "UNIQUE " if index.unique else ""
            conn.execute(f"CREATE {unique}INDEX IF NOT EXISTS {quote(index.name)} ON {spec.target_sql} "
                         f"({', '.join(map(quote, index.columns))})")

    def finish_all(self, conn: sqlite3.Connection, specs: list[TableSpec], parallel: int = 1) -> None:
        return None  # SQLite cannot add foreign keys to an existing table; the plan says so

    # -- checksums (Python: SQLite has no md5) ----------------------------------------------------
    def chunk_sums(self, conn: sqlite3.Connection, spec: TableSpec, bounds: list[int], *, as_target: bool,
                   scheme: str = canonical.CANONICAL, only: set[int] | None = None) -> dict[int, tuple[int, int]]:
        """:meth:`all_chunk_sums` of the chunks ``only`` (None: all); the source's own chunks are read
        alone, others (grouped by the target's key) all and left out after."""
        found = self.all_chunk_sums(conn, spec, bounds, as_target=as_target, scheme=scheme, only=only)
        return found if only is None else {index: sums for index, sums in found.items() if index in only}

    def all_chunk_sums(self, conn: sqlite3.Connection, spec: TableSpec, bounds: list[int], *, as_target: bool,
                       scheme: str = canonical.CANONICAL, only: set[int] | None = None
                       ) -> dict[int, tuple[int, int]]:
        """{chunk: (rows, checksum)} over the mapped values: SQLite encodes most of each row in SQL
        (:class:`SQLiteCopyReader`); a table holding what that cannot read (invalid UTF-8, junk) is
        hashed value by value in Python instead. ``scheme``: canonical only (the others are PostgreSQL's)."""
        _canonical_only(scheme)
        from storagectl.datamove.sql.sqlite_copy import SQLiteCopyReader

        if any(column.verbatim for column in spec.columns):  # each value by its storage class, in Python
            return self._chunk_sums_in_python(conn, spec, bounds, as_target=as_target)
        view = _as_target(spec) if as_target else spec
        group = view.key if (view.key is not None and (not as_target or spec.key_column is not None)) else None
        sums: dict[int, list[int]] = {}
        try:
            reader = SQLiteCopyReader(view)
            if group and not as_target:  # the source's own key: the rowid or its alias
                return reader.chunk_sums(conn, bounds, only)
            for key, row_hash in reader.hashes(conn, group):
                entry = sums.setdefault(chunk_index(bounds, key) if group else 0, [0, 0])
                entry[0] += 1
                entry[1] += row_hash
        except (sqlite3.OperationalError, canonical.Rejected):
            return self._chunk_sums_in_python(conn, spec, bounds, as_target=as_target)
        return {index: (rows, total % 2**64) for index, (rows, total) in sums.items()}

    def _chunk_sums_in_python(self, conn: sqlite3.Connection, spec: TableSpec, bounds: list[int], *,
                              as_target: bool) -> dict[int, tuple[int, int]]:
        hasher = _values_hasher(spec.kinds)
        if as_target:
            columns = [quote(c.name) for c in spec.columns]
            key, relation = (quote(spec.key_column) if spec.key_column else None), spec.target_sql
        else:
            columns, key, relation = [c.source for c in spec.columns], spec.key, spec.source_sql
        group = key is not None and (not as_target or spec.key_column is not None)
        sums: dict[int, list[int]] = {}
        select = f"SELECT {key if group else 'NULL'}, {', '.join(columns)} FROM {relation}"
        conn.text_factory = _surrogate_text
        try:
            for row in conn.execute(select):
                index = chunk_index(bounds, row[0]) if group else 0
                entry = sums.setdefault(index, [0, 0])
                entry[0] += 1
                entry[1] += hasher(row[1:])
        finally:
            conn.text_factory = str
        return {index: (rows, total % 2**64) for index, (rows, total) in sums.items()}

    def row_hashes(self, conn: sqlite3.Connection, spec: TableSpec, chunk: Chunk, *, as_target: bool,
                   scheme: str = canonical.CANONICAL) -> dict[str, int]:
        _canonical_only(scheme)
        hasher = _values_hasher(spec.kinds)
        if as_target:
            columns, key = [quote(c.name) for c in spec.columns], quote(spec.key_column) if spec.key_column else None
            relation = spec.target_sql
        else:
            columns, key, relation = [c.source for c in spec.columns], spec.key, spec.source_sql
        where, args = chunk.where(key, "?") if key else ("", [])
        found: dict[str, int] = {}
        conn.text_factory = _surrogate_text  # as the chunk sums read them
        try:
            for row in conn.execute(f"SELECT {key or 'rowid'}, {', '.join(columns)} FROM {relation}{where}", args):
                found[str(row[0])] = hasher(row[1:])
        finally:
            conn.text_factory = str
        return found


def _holding_back(rows: Iterator[Sequence[Any]], columns: list[int], held: list[Sequence[Any]]
                  ) -> Iterator[Sequence[Any]]:
    """``rows`` but those with a :class:`canonical.StoredText` in ``columns``, which go to ``held``."""
    stored = canonical.StoredText
    for row in rows:
        if any(type(row[i]) is stored for i in columns):
            held.append(row)
        else:
            yield row


def _close_all(processes: list[ReaderProcess]) -> None:
    for process in processes:
        process.close()


def _canonical_only(scheme: str) -> None:
    if scheme != canonical.CANONICAL:
        raise ValueError("SQLite hashes rows by their canonical fields only")


def _as_target(spec: TableSpec) -> TableSpec:
    """The spec read from its target table: the same columns, by their target names."""
    from dataclasses import replace

    columns = [replace(column, source=quote(column.name), source_column=column.name) for column in spec.columns]
    return replace(spec, source_sql=spec.target_sql, columns=columns,
                   key=quote(spec.key_column) if spec.key_column else None)


def _values_hasher(kinds: list[str]) -> Any:
    """``row_hash(values)`` of a row's values as read, each converted for its kind first."""
    if all(kind == canonical.VERBATIM for kind in kinds):
        return canonical.stored_row_hash
    convert = [canonical.converter(kind) for kind in kinds]
    hasher = canonical.row_hasher(kinds)
    return lambda values: hasher([None if v is None else _lenient(f, v) for f, v in zip(convert, values, strict=True)])


def _lenient(convert: Any, value: Any) -> Any:
    """A value that would be rejected hashes as its text: it differs from the target's, as it should."""
    try:
        return convert(value)
    except canonical.Rejected:
        return canonical.RejectedValue(f"rejected:{value!r}")


def _sqlite_value_adapter(kind: str) -> Any:
    if kind in ("timestamptz", "timestamp"):
        return _timestamp_text
    if kind == "date":
        return lambda v: v.isoformat() if hasattr(v, "isoformat") else v
    if kind == "numeric":
        return lambda v: str(v) if not isinstance(v, int | float) else v
    if kind in ("float", "float4"):
        return _nan_as_text
    return None


def _nan_as_text(value: Any) -> Any:
    """SQLite stores a NaN as NULL: the text 'NaN' instead, which reads back as the same float."""
    return "NaN" if value != value else value


def _timestamp_text(value: Any) -> Any:
    """UTC as ``YYYY-MM-DD HH:MM:SS.ffffff``: what SQLite's date functions read."""
    if not hasattr(value, "isoformat"):
        return value
    if getattr(value, "tzinfo", None) is not None:
        value = value.astimezone(canonical.EPOCH.tzinfo).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


def _kind(target_type: str, target_kind: str) -> str:
    return typemap.sqlite_kind(target_type) if target_kind == "sqlite" else typemap.pg_kind(target_type)


def _has_rowid(conn: sqlite3.Connection, table: str) -> bool:
    try:
        conn.execute(f"SELECT rowid FROM {quote(table)} LIMIT 0")
        return True
    except sqlite3.OperationalError:
        return False


def _pk_indexed(conn: sqlite3.Connection, table: str) -> bool:
    """The table's primary key has an index of its own: it is not the rowid's alias."""
    return any(row[3] == "pk" for row in conn.execute(f"PRAGMA index_list({quote(table)})"))


def _declared(info: list[Any], column: str) -> str:
    return next((row[2] or "") for row in info if row[1] == column)
