"""PostgreSQL backup and restore through the archive contract (:mod:`storagectl.archive.api`).

Backup: one REPEATABLE READ transaction exports a snapshot; ``pg_dump --snapshot`` writes the
schema (pre-data and post-data sections, plain SQL) and worker connections that imported the same
snapshot stream every table with ``COPY ... TO STDOUT``, largest first, in parallel: tables holding
bytea in binary format where every column type allows it (:func:`.schema.binary_copy_tables`),
the others in text. ``pg_dump`` runs beside the workers from the start (it connects on its own); a
large table is copied as several ctid ranges side by side (:mod:`~storagectl.backends.postgres.ranges`).
A table is stored in parts of about ``PART_BYTES`` of COPY data; the manifest metadata records per
table its COPY format, parts, row count and content checksum
(:func:`~storagectl.backends.postgres.copy.row_checksum`), and every sequence's ``last_value``/``is_called``.
Large objects are read by one more worker (:mod:`~storagectl.backends.postgres.largeobjects`; pg_dump leaves them out).

Restore into an empty database: pre-data in one transaction, then the large objects (created with
their OIDs, owners, ACLs and comments, in batches) and ``COPY ... FROM STDIN`` of every part in
parallel (the large objects' data once they exist), each table's index builds as soon as its parts
are in, sequences, then the rest of post-data (foreign keys, triggers, and pg_dump's own ``REFRESH
MATERIALIZED VIEW`` in dependency order). If any step after pre-data fails, everything the restore
created is dropped again: the target is left empty. Over a non-empty database (``replace_existing``)
the same restore goes into a new database that is swapped in only when complete
(:mod:`storagectl.backends.postgres.swap`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from storagectl import interrupts
from storagectl.archive.api import (
    ArchiveReader,
    ArchiveWriter,
    BackupOptions,
    ContentSummary,
    OwnershipOptions,
    RestoreOptions,
    RestoreOutcome,
    record_summary,
)
from storagectl.archive.pipe import BackgroundWriter
from storagectl.backends.postgres import largeobjects as pg_largeobjects
from storagectl.backends.postgres import ranges as pg_ranges
from storagectl.backends.postgres import roles as pg_roles
from storagectl.backends.postgres import schema as pg_schema
from storagectl.backends.postgres.copy import (
    BINARY_HEADER,
    BINARY_TRAILER,
    CopyOut,
    LineSums,
    PsqlCopyOut,
    checksum_format,
    row_checksum,
)
from storagectl.backends.postgres.jobs import Job, run_jobs
from storagectl.backends.postgres.largeobjects import LargeObjectLoad, LargeObjects
from storagectl.backends.postgres.subset import (
    SchemaSubset,
    drop_tables,
    existing_tables,
    filter_schema_sql,
    picks,
    put_back_foreign_keys,
    require_referenced,
    select_tables,
    table_names,
)
from storagectl.backends.postgres.tools import (
    IndexBuild,
    PgDump,
    PostData,
    client_tool,
    connection_env,
    find_pg_dumps,
    kill_spawned,
    split_post_data,
)
from storagectl.errors import BackendUnavailable, IntegrityError, OperationFailed, UsageError, raise_with_state
from storagectl.rowsum import line_crc32_sum
from storagectl.selection import Selection

if TYPE_CHECKING:
    from concurrent.futures import Future

    from storagectl.backends.postgres.backend import PostgresBackend

log = logging.getLogger(__name__)
# 4: format 3 plus large objects, written only for a database that has some (so that older versions,
# which refuse format 4 by its number, still restore every backup without them); 3: a COPY format
# per table (binary or text); 2: all tables text; 1 (pre-release): one object per table
FORMAT_VERSION = 4
FORMAT_WITHOUT_LARGE_OBJECTS = 3
READABLE_FORMATS = (2, 3, 4)
READ_BYTES = 1 << 20
PART_BYTES = 64 << 20  # raw COPY data per archive object; larger tables are stored in parts
# Text tables from this size on (on disk) are read through psql (copy.PsqlCopyOut): starting it
# costs ~30 ms, which libpq's per-row reading of a smaller table does not reach.
PSQL_MIN_BYTES = 16 << 20
PRE_DATA = "schema/pre-data.sql"
POST_DATA = "schema/post-data.sql"
# Fixed output settings so COPY text is identical for backup, restore and content_summary().
SESSION_SETTINGS = (
    "SET DateStyle = ISO; SET IntervalStyle = postgres; SET TimeZone = 'UTC'; "
    "SET extra_float_digits = 3; SET bytea_output = hex; SET statement_timeout = 0"
)
# And an empty search_path, as pg_dump's: reg* values (regclass, regtype, ...) come out
# schema-qualified, so they name the same objects when read back. Format 2 archives were written
# with the server's default search_path and are read back with it.
EMPTY_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', '', false)"


@dataclass(frozen=True)
class TableCopy:
    """What the backup recorded for one table (stored in the manifest metadata)."""

    schema: str
    name: str
    objects: list[str]  # the table's parts, in COPY order
    rows: int
    checksum: str  # copy.row_checksum
    copy_format: str = "text"  # "binary" or "text" (format 2 archives: always text)

    @property
    def unit(self) -> str:
        return pg_schema.qualified(self.schema, self.name)

    def copy_in_sql(self) -> str:
        return pg_schema.Table(self.schema, self.name, copy_format=self.copy_format).copy_in_sql()


# -- backup -------------------------------------------------------------------------------------
def backup(backend: PostgresBackend, archive: ArchiveWriter, options: BackupOptions) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="pg-dump-find") as finder:
        found = finder.submit(find_pg_dumps, options.pg_bin_dir)  # while connecting: their versions take a while
        _backup(backend, archive, options, found)


def _backup(backend: PostgresBackend, archive: ArchiveWriter, options: BackupOptions,
            pg_dumps: Future[list[PgDump]]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with backend.connect() as holder, _pg_errors(backend, "backing up the database"):
        _prepare_session(holder)
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        facts = pg_schema.server_facts(holder)
        pg_dump = PgDump.for_server(facts["server_version_num"], facts["server_version"], options.pg_bin_dir,
                                    interrupts.result(pg_dumps))
        tables = tables_to_copy(holder)
        selected = _selected(backend, tables, options.selection)
        tables = [table for table in tables if selected is None or (table.schema, table.name) in selected]
        subsets: dict[str, SchemaSubset] = {}
        dump_schema = _schema_dump_job(backend, pg_dump, snapshot, archive, selected, subsets)
        # pg_dump connects on its own: it runs beside the copies from the start, taking no worker
        # (unless the job asks for one thing at a time)
        with ThreadPoolExecutor(1, thread_name_prefix="pg-schema") as beside, _ending_tools_on_failure():
            schema_dump = beside.submit(dump_schema, None) if options.parallel > 1 else None
            pg_schema.lock_tables(holder, tables)  # as pg_dump does: no DROP/ALTER under our feet
            sequences = pg_schema.read_sequences(holder)
            large_objects: list[LargeObjects] = []
            jobs = [] if schema_dump else [dump_schema]
            if pg_largeobjects.count(holder) and selected is None:  # large objects belong to no table
                jobs.append(_large_objects_job(backend, archive, large_objects))
            copies = _copy_tables_out(backend, holder, snapshot, tables, options, archive, jobs,
                                      facts["server_version_num"])
            if schema_dump:
                interrupts.result(schema_dump)
        holder.execute("COMMIT")
    for key, value in facts.items():
        archive.set_metadata(key, value)
    archive.set_metadata("format", FORMAT_VERSION if large_objects else FORMAT_WITHOUT_LARGE_OBJECTS)
    archive.set_metadata("pg_dump_version", pg_dump.version)
    if selected is not None:
        sequences = _selection_requires(backend, archive, sequences, subsets)
    archive.set_metadata("sequences", sequences)
    contents: dict[str, Any] = {"tables": [asdict(copy) for copy in copies]}
    if large_objects:
        contents["large_objects"] = asdict(large_objects[0])
    for key, value in contents.items():
        archive.set_metadata(key, value)
    record_summary(archive, expected_summary(contents))


def _selected(backend: PostgresBackend, tables: list[pg_schema.Table],
              selection: Selection) -> set[tuple[str, str]] | None:
    """The (schema, name) of the tables a selective backup copies; None: every table."""
    if selection.empty:
        return None
    if any(table.schema.startswith("_timescaledb") for table in tables):
        raise UsageError(f"{backend.label}: a selective backup of a TimescaleDB database is not supported (hypertable "
                         "rows live in chunk tables a selection would leave out)", hint="Try: a full backup")
    return set(select_tables(((t.schema, t.name) for t in tables), selection, f"{backend.label}"))


def _selection_requires(backend: PostgresBackend, archive: ArchiveWriter, sequences: list[dict[str, Any]],
                        subsets: dict[str, SchemaSubset]) -> list[dict[str, Any]]:
    """A selective backup's sequences (those of its tables) and, in the metadata, the tables its
    foreign keys point at: a restore needs them in the target (a warning now, as pg_dump -t gives none)."""
    kept = subsets[PRE_DATA].sequences
    references = sorted(set().union(*(subset.references for subset in subsets.values())))
    if references:
        names = ", ".join(f"{schema}.{name}" for schema, name in references)
        log.warning("%s: the selected tables have foreign keys to tables left out of the backup (%s): a restore "
                    "needs those tables in the target", backend.label, names)
    archive.set_metadata("selection_requires", {"tables": [list(pair) for pair in references]})
    return [seq for seq in sequences if (seq["schema"], seq["name"]) in kept]


@contextmanager
def _ending_tools_on_failure() -> Iterator[None]:
    """On a failure or a signal, end pg_dump (and any psql) before its thread is waited for: it may
    wait on a lock for good."""
    try:
        yield
    except BaseException:
        kill_spawned()
        raise


def _schema_dump_job(backend: PostgresBackend, pg_dump: PgDump, snapshot: str, archive: ArchiveWriter,
                     selected: set[tuple[str, str]] | None = None,
                     subsets: dict[str, SchemaSubset] | None = None) -> Callable[[Any], None]:
    """Both sections at once: each pg_dump spends most of its ~0.3 s waiting for catalog queries.
    With ``selected`` only the entries of those tables are kept (their subsets land in ``subsets``)."""
    from concurrent.futures import ThreadPoolExecutor

    def dump_section(section: str, name: str) -> None:
        if selected is None:
            with archive.create(name) as sink:
                pg_dump.dump_section(backend, section, snapshot, sink.write)
            return
        dumped = bytearray()  # the schema SQL, not data: small enough to hold
        pg_dump.dump_section(backend, section, snapshot, dumped.extend)
        subset = filter_schema_sql(bytes(dumped).decode("utf-8"), selected)
        with archive.create(name) as sink:
            sink.write(subset.sql.encode("utf-8"))
        if subsets is not None:
            subsets[name] = subset

    def dump_schema(_conn: Any) -> None:
        with ThreadPoolExecutor(2, thread_name_prefix="pg-dump") as pool:
            sections = [pool.submit(dump_section, section, name)
                        for section, name in (("pre-data", PRE_DATA), ("post-data", POST_DATA))]
            for section in sections:
                section.result()
    return dump_schema


def _large_objects_job(backend: PostgresBackend, archive: ArchiveWriter,
                       found: list[LargeObjects]) -> Callable[[Any], None]:
    """Every large object, on one snapshot connection: metadata lines and data parts in one pass."""
    def back_up(conn: Any) -> None:
        parts = ObjectParts(archive, pg_largeobjects.DATA_STEM, header=pg_largeobjects.RECORDS_MAGIC,
                            suffix=pg_largeobjects.DATA_SUFFIX, count="chunks")
        with _pg_errors(backend, "backing up large objects"), archive.create(pg_largeobjects.METADATA) as sink:
            sink.counts = {"objects": 0}
            stream = pg_largeobjects.BackupStream(conn, sink)
            write_parts(stream.pieces(), parts)
        found.append(stream.result(parts.names))
    return back_up


def _copy_tables_out(backend: PostgresBackend, holder: Any, snapshot: str, tables: list[pg_schema.Table],
                     options: BackupOptions, archive: ArchiveWriter, first_jobs: list[Callable[[Any], None]],
                     server_version: int = 0) -> list[TableCopy]:
    """The largest table, ``first_jobs`` (the large objects, the schema dump when it does not run
    beside), then the other tables largest first; the holder connection copies too. Large tables
    are copied in ctid ranges side by side (:mod:`~storagectl.backends.postgres.ranges`), each
    range into parts of its own."""
    names = {(table.schema, table.name): stem for table, stem in object_names(tables).items()}
    done = pg_ranges.RangeResults()
    workers = max(1, min(options.parallel, backend.settings.pool.max_size - 1))  # a lone table is split too
    pieces = pg_ranges.split_tables(holder, tables, workers, server_version)

    def copy_one(conn: Any, table: pg_schema.Table) -> None:
        parts = ObjectParts(archive, names[table.schema, table.name], binary=table.copy_format == "binary",
                            numbers=done.part_numbers(table))
        rows, crc32_sum = copy_out_sums(backend, conn, table, parts, snapshot=snapshot)
        done.add(table, parts.names, rows, crc32_sum)

    largest_first = sorted(pieces, key=lambda t: t.size, reverse=True)
    # The largest table first, to the holder (connected already: the first worker), so the longest
    # job does not wait for a connection.
    jobs: list[Any] = [*largest_first[:1], *first_jobs, *largest_first[1:]]
    run_jobs(jobs, max(1, min(workers, len(jobs))), lambda: _snapshot_connection(backend, snapshot), holder,
             lambda conn, job: job(conn) if callable(job) else copy_one(conn, job))
    results = []
    for table in sorted(tables, key=lambda t: (t.schema, t.name)):
        objects, rows, crc32_sum = done.table(table.schema, table.name)
        results.append(TableCopy(table.schema, table.name, objects, rows,
                                 row_checksum(crc32_sum, table.copy_format), table.copy_format))
    return results


def tables_to_copy(conn: Any) -> list[pg_schema.Table]:
    """The tables a backup copies, each marked with its COPY format. TimescaleDB databases stay
    with text: Timescale documents restoring them through pg_restore, which copies text."""
    from storagectl.backends.postgres.backend import timescaledb_version

    return pg_schema.list_tables(conn, binary=not timescaledb_version(conn))


def object_names(tables: list[pg_schema.Table]) -> dict[pg_schema.Table, str]:
    """Readable, filesystem- and S3-safe object name stems (parts add ``.NNNN.copy``); the exact
    table names live in metadata."""
    ordered = sorted(tables, key=lambda t: (t.schema, t.name))
    return {table: f"data/{index:05d}-{_slug(table.schema)}.{_slug(table.name)}"
            for index, table in enumerate(ordered, start=1)}


def _slug(identifier: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", identifier)[:40] or "_"


@contextmanager
def _snapshot_connection(backend: PostgresBackend, snapshot: str, *, format_2: bool = False) -> Iterator[Any]:
    with backend.connect() as conn:
        _prepare_session(conn, empty_search_path=not format_2)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        yield conn
        conn.execute("COMMIT")


def _prepare_session(conn: Any, encoding: str | None = None, *, empty_search_path: bool = True,
                     role: str | None = None) -> None:
    if role is not None:  # restore --role: objects are created by, and so belong to, that role
        conn.execute("SELECT pg_catalog.set_config('role', %s, false)", [role])
    conn.execute(SESSION_SETTINGS)
    if empty_search_path:
        conn.execute(EMPTY_SEARCH_PATH)
    conn.execute("SELECT pg_catalog.set_config('client_encoding', %s, false)",
                 [encoding or conn.execute("SHOW server_encoding").fetchone()[0]])


def copy_out(backend: PostgresBackend, conn: Any, table: pg_schema.Table, parts: ObjectParts | None, *,
             snapshot: str | None = None, format_2: bool = False) -> tuple[int, str]:
    """Stream one table's COPY data into ``parts`` (None: only count and checksum it); returns
    (rows, checksum) (``format_2``: the checksum as archive format 2 recorded it). ``conn`` is in
    a transaction on ``snapshot``, which a psql session reading a large table imports too.

    Never holds more than a few ~1 MiB pieces of the table; the parts are written in a helper
    thread, so compressing one piece overlaps with receiving the next.
    """
    rows, crc32_sum = copy_out_sums(backend, conn, table, parts, snapshot=snapshot, format_2=format_2)
    return rows, row_checksum(crc32_sum, table.copy_format, format_2=format_2)


def copy_out_sums(backend: PostgresBackend, conn: Any, table: pg_schema.Table, parts: ObjectParts | None, *,
                  snapshot: str | None = None, format_2: bool = False) -> tuple[int, int]:
    """:func:`copy_out` with the crc32 sum of the rows instead of the checksum: the sums of a
    table's ranges (``Table.page_range``) add up to the table's."""
    copy = _copy_reader(backend, conn, table, snapshot, format_2)
    with _copy_errors(backend, table.unit):
        if parts is None:
            for _piece in copy:
                pass
        else:
            write_parts(_with_rows(copy), parts)
    if copy.rows != copy.rows_read:
        raise IntegrityError(f"{table.unit}: COPY reported {copy.rows} rows but sent {copy.rows_read}")
    return copy.rows, copy.row_sum


def _copy_reader(backend: PostgresBackend, conn: Any, table: pg_schema.Table, snapshot: str | None,
                 format_2: bool) -> CopyOut | PsqlCopyOut:
    """psql for a large text table (no Python per row), libpq for the others: both checksum alike."""
    if snapshot is None or table.copy_format != "text" or table.size < PSQL_MIN_BYTES or \
            (psql := psql_copy_out(backend, conn, table.copy_out_sql(), table.unit, snapshot=snapshot,
                                   search_path=format_2)) is None:
        return CopyOut(conn, table.copy_out_sql(), binary=table.copy_format == "binary")
    return psql


def psql_copy_out(backend: PostgresBackend, conn: Any, copy_sql: str, unit: str, *, snapshot: str | None = None,
                  search_path: bool = False, line_sums: LineSums = line_crc32_sum) -> PsqlCopyOut | None:
    """The text rows of ``copy_sql`` (a ``COPY ... TO STDOUT``) read by a ``psql`` of their own, in the
    database of ``conn`` with its client encoding, the :data:`SESSION_SETTINGS` and ``snapshot`` when
    given (``search_path``: the server's default one kept, else empty); None: no psql is installed."""
    psql = client_tool("psql")
    if psql is None:
        return None
    # conn's database: a restore validates a staged copy under another name than the configured one
    conninfo, env = connection_env(backend.settings.conninfo_params(conn.info.dbname))
    encoding = conn.info.parameter_status("client_encoding")  # set by _prepare_session
    session = [SESSION_SETTINGS, *([] if search_path else [EMPTY_SEARCH_PATH]),
               f"SELECT pg_catalog.set_config('client_encoding', '{encoding}', false)"]
    in_snapshot = ["-c", f"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'"] \
        if snapshot else []
    # The session's setup prints nothing (\o /dev/null); then only the COPY's rows reach stdout.
    command = [psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", f"--dbname={conninfo}",
               "-c", r"\o /dev/null", "-c", "; ".join(session), *in_snapshot,
               "-c", r"\o", "-c", copy_sql, *(["-c", "COMMIT"] if snapshot else [])]
    return PsqlCopyOut(command, env, lambda code, errors: _psql_failed(backend, unit, code, errors),
                       line_sums=line_sums)


def _psql_failed(backend: PostgresBackend, unit: str, code: int, errors: str) -> Exception:
    detail = backend.redact(errors).strip().splitlines()
    message = f"{backend.label}: copying {unit} failed (psql exit {code}): {detail[0] if detail else 'no message'}"
    if code == 2:  # psql: the connection to the server went bad
        return BackendUnavailable(message, hint="Try: check the server log and that the server is up, then rerun")
    return OperationFailed(message, hint="Try: check the server log for details")


def _with_rows(copy: CopyOut | PsqlCopyOut) -> Iterator[tuple[bytes, int]]:
    rows_before = 0
    for piece in copy:
        yield piece, copy.rows_read - rows_before
        rows_before = copy.rows_read


def write_parts(pieces: Iterator[tuple[bytes, int]], parts: ObjectParts) -> None:
    """``(piece, records in it)`` into ``parts``, written in a helper thread, so compressing one
    piece overlaps with receiving the next."""
    try:
        with BackgroundWriter(parts.write) as writer:
            for item in pieces:
                writer.put(item)
    except BaseException as exc:
        parts.abort(exc)
        raise
    parts.finish()


class ObjectParts:
    """One table's COPY data (or the large objects' data records) as archive objects of about
    ``PART_BYTES`` each, split between rows (records).

    Restore loads the parts of a table side by side, so the largest table no longer bounds the
    restore time on its own. Fed ``(piece, rows in it)`` from one thread at a time. With ``binary``
    each part is a complete binary COPY stream: header, tuples, trailer; ``header`` starts each part
    otherwise. ``count`` names what ``counts`` counts.
    """

    def __init__(self, archive: ArchiveWriter, stem: str, *, binary: bool = False, header: bytes = b"",
                 suffix: str = ".copy", count: str = "rows", numbers: Iterator[int] | None = None) -> None:
        self.archive = archive
        self.numbers = numbers  # shared by the ObjectParts of one table's ranges; else 1, 2, ...
        self.stem = stem
        self.header, self.trailer = (BINARY_HEADER, BINARY_TRAILER) if binary else (header, b"")
        self.suffix = suffix
        self.count = count
        self.names: list[str] = []
        self.part: ExitStack | None = None
        self.sink: Any = None
        self.size = self.rows = 0  # of the part being written

    def write(self, item: tuple[bytes, int]) -> None:
        piece, rows = item
        if self.sink is None or self.size >= PART_BYTES:
            self._next_part()
        self.sink.write(piece)
        self.size += len(piece)
        self.rows += rows
        self.sink.counts = {self.count: self.rows}

    def _next_part(self) -> None:
        self._close_part()
        self.part = ExitStack()
        number = next(self.numbers) if self.numbers is not None else len(self.names) + 1
        self.names.append(f"{self.stem}.{number:04d}{self.suffix}")
        self.sink = self.part.enter_context(self.archive.create(self.names[-1]))
        self.sink.counts = {self.count: 0}
        self.size = self.rows = 0
        if self.header:
            self.sink.write(self.header)

    def _close_part(self) -> None:
        if self.part is not None:
            if self.trailer:
                self.sink.write(self.trailer)
            self.part.close()
            self.part = self.sink = None

    def finish(self) -> None:
        if not self.names:  # an empty table still gets its (empty) part
            self._next_part()
        self._close_part()

    def abort(self, exc: BaseException) -> None:
        """Let the archive discard the unfinished part (the failure propagates afterwards)."""
        if self.part is not None:
            part, self.part, self.sink = self.part, None, None
            with suppress(BaseException):
                part.__exit__(type(exc), exc, exc.__traceback__)


def _copy_errors(backend: PostgresBackend, unit: str) -> AbstractContextManager[None]:
    return _pg_errors(backend, f"copying {unit}")


@contextmanager
def _pg_errors(backend: PostgresBackend, doing: str) -> Iterator[None]:
    """psycopg errors as one-line storagectl errors, secrets redacted."""
    import psycopg

    try:
        yield
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(
            f"{backend.label}: connection lost while {doing}: {backend.error_line(exc)}",
            hint="Try: check the server log and that the server is up, then rerun",
        ) from exc
    except psycopg.Error as exc:
        raise OperationFailed(
            f"{backend.label}: {doing} failed: {backend.error_line(exc)}",
            hint="Try: check the server log for details",
        ) from exc



# -- content summary --------------------------------------------------------------------------------
def content_summary(backend: PostgresBackend, like: ContentSummary | None = None,
                    parallel: int = 4, selection: Selection | None = None) -> ContentSummary:
    """Row counts and content checksums of every table now, computed exactly as backup does: each
    table in the COPY format of its checksum in ``like`` (what a backup recorded), else in the
    format a backup would choose now; like a format 2 backup when ``like`` is one. The large objects'
    count and checksum too (unit ``large objects``) when there are any or ``like`` has them."""
    summary = ContentSummary()
    lock = threading.Lock()
    recorded = {unit: checksum_format(checksum) for unit, checksum in (like.checksums if like else {}).items()}
    format_2 = "format-2" in recorded.values()

    def summarize(conn: Any, job: pg_schema.Table | str) -> None:
        if isinstance(job, pg_schema.Table):
            unit, (rows, checksum) = job.unit, copy_out(backend, conn, job, None, snapshot=snapshot,
                                                         format_2=format_2)
        else:
            with _pg_errors(backend, "reading large objects"):
                unit, (rows, checksum) = job, pg_largeobjects.summarize(conn)
        with lock:
            summary.counts[unit] = rows
            summary.checksums[unit] = checksum

    with backend.connect() as holder:
        _prepare_session(holder, empty_search_path=not format_2)
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        tables = tables_to_copy(holder)
        if selection is not None:
            tables = [table for table in tables if picks(selection, (table.schema, table.name))]
        if like is not None:
            tables = [replace(table, copy_format="binary" if recorded.get(table.unit) == "binary" else "text")
                      for table in tables]
        tables.sort(key=lambda t: t.size, reverse=True)
        # A database without large objects is summarized as before unless the backup had some.
        recorded_objects = like is not None and pg_largeobjects.UNIT in like.counts
        objects = selection is None and (recorded_objects or pg_largeobjects.count(holder))
        jobs: list[Any] = [pg_largeobjects.UNIT] if objects else []
        jobs += tables
        workers = max(1, min(parallel, backend.settings.pool.max_size, len(jobs)))
        run_jobs(jobs, workers, lambda: _snapshot_connection(backend, snapshot, format_2=format_2), holder,
                 summarize)
        holder.execute("COMMIT")
    return summary


def expected_summary(metadata: dict[str, Any]) -> ContentSummary:
    """What the backup recorded, in the same shape as :func:`content_summary`."""
    summary = ContentSummary()
    for entry in metadata.get("tables", []):
        copy = TableCopy(**entry)
        summary.counts[copy.unit] = copy.rows
        summary.checksums[copy.unit] = copy.checksum
    if metadata.get("large_objects"):
        objects = LargeObjects(**metadata["large_objects"])
        summary.counts[pg_largeobjects.UNIT] = objects.count
        summary.checksums[pg_largeobjects.UNIT] = objects.checksum
    return summary


def is_empty(backend: PostgresBackend) -> bool:
    """No user objects (relations, routines, types, schemas; see :func:`.schema.user_objects`)."""
    with backend.connect() as conn:
        return not pg_schema.user_objects(conn)


# -- restore ------------------------------------------------------------------------------------------
def restore(backend: PostgresBackend, archive: ArchiveReader, options: RestoreOptions) -> RestoreOutcome:
    """Staged beside the target and renamed in where the role may, else in place into an empty
    target under a marker (:mod:`~storagectl.backends.postgres.target`)."""
    from storagectl.backends.postgres import target as pg_target

    copies = tables_of(archive)
    pg_largeobjects.recorded(archive)  # checked before the target is touched
    if options.ownership.role is not None:
        _require_role(backend, options.ownership.role)
    if not options.selection.empty:
        return restore_selection(backend, archive, copies, options)
    return pg_target.restore(backend, options, lambda into, opts, undo: _restore_into(
        into, archive, copies, opts, undo=undo))


def _restore_into(backend: PostgresBackend, archive: ArchiveReader, copies: list[TableCopy],
                  options: RestoreOptions, *, undo: bool) -> None:
    """Pre-data, data, sequences, post-data into an empty database. With ``undo`` a failure after
    pre-data drops what the restore created again (the target is left empty)."""
    from storagectl.backends.postgres import timescaledb

    ownership = options.ownership
    pre_data, post_data = _schema_sql(archive, PRE_DATA, ownership), _schema_sql(archive, POST_DATA, ownership)
    timescale = archive.metadata.get("timescaledb")
    with backend.connect() as conn:
        _refuse_non_empty(backend, conn, options)
        # pg_dump's pre-data empties search_path itself, after TimescaleDB's CREATE EXTENSION (which
        # needs a schema to create in) ran.
        _prepare_session(conn, archive.metadata.get("encoding"), empty_search_path=False, role=ownership.role)
        extensions_before = pg_schema.extension_names(conn)  # e.g. from template1: kept by an undo
        with _annotate_failure("the target database is unchanged") if undo else nullcontext(), conn.transaction():
            if timescale:
                timescaledb.prepare_restore(conn, timescale)
            _run_schema_sql(backend, conn, pre_data, "pre-data")
        with _undo_on_failure(conn, timescale, extensions_before) if undo else nullcontext():
            post = split_post_data(post_data) if not timescale else PostData(post_data, [], post_data)
            _load_tables_and_build_indexes(backend, conn, archive, copies, post, options)
            with conn.transaction():
                conn.execute("SET LOCAL maintenance_work_mem = '256MB'")  # index builds sort in memory
                pg_schema.set_sequences(conn, archive.metadata.get("sequences", []))
                _run_schema_sql(backend, conn, post.rest, "post-data")
            if timescale:
                timescaledb.finish_restore(conn)


def restore_selection(backend: PostgresBackend, archive: ArchiveReader, copies: list[TableCopy],
                      options: RestoreOptions) -> RestoreOutcome:
    """The tables ``options.selection`` picks, in place, in one transaction (:mod:`.subset`): nothing
    else in the target changes, and a failure leaves it as it was."""
    if archive.metadata.get("timescaledb"):
        raise UsageError(f"{backend.label}: a selective restore of a TimescaleDB backup is not supported; "
                         "nothing was restored", hint="Try: restore the whole backup into a scratch database")
    chosen = set(select_tables(((copy.schema, copy.name) for copy in copies), options.selection,
                               f"backup {options.backup_id}"))
    copies = [copy for copy in copies if (copy.schema, copy.name) in chosen]
    pre = filter_schema_sql(_schema_sql(archive, PRE_DATA, options.ownership), chosen)
    post = filter_schema_sql(_schema_sql(archive, POST_DATA, options.ownership), chosen)
    sequences = [seq for seq in archive.metadata.get("sequences", [])
                 if (seq["schema"], seq["name"]) in pre.sequences]
    with backend.connect() as conn:
        _prepare_session(conn, archive.metadata.get("encoding"), empty_search_path=False, role=options.ownership.role)
        require_referenced(backend, conn, post.references)
        with _annotate_failure("the selective restore was rolled back: the target database is unchanged"), \
                _pg_errors(backend, "restoring the selected tables"), conn.transaction():
            replaced = existing_tables(conn, chosen)
            if replaced and not options.replace_existing:
                raise OperationFailed(f"{backend.label}: the target already has {table_names(replaced)}; nothing was "
                                      "restored", hint="Try: --yes to replace those tables (nothing else is touched)")
            foreign_keys = drop_tables(conn, replaced)
            with _selection_hint():
                _run_schema_sql(backend, conn, pre.sql, "pre-data")
            format_2 = archive.metadata.get("format") == 2
            for copy in copies:
                for name in copy.objects:
                    rows = archive.counts(name).get("rows", 0)
                    copy_in(backend, conn, archive, TablePart(copy, name, rows, format_2))
            pg_schema.set_sequences(conn, sequences)
            _run_schema_sql(backend, conn, post.sql, "post-data")
            put_back_foreign_keys(backend, conn, foreign_keys)
    restored = {copy.unit for copy in copies}
    notes = [f"restored {len(copies)} table(s) in place: {table_names(chosen)}"
             + (f" (replaced: {table_names(replaced)})" if replaced else "")]
    notes += [f"foreign key {fk.name} of {fk.schema}.{fk.table} was put back and checked" for fk in foreign_keys]
    return RestoreOutcome(notes=notes, expected=expected_summary(archive.metadata).only(restored))


@contextmanager
def _selection_hint() -> Iterator[None]:
    """A selective restore creates only the selected tables (as pg_restore -t): say what they need."""
    try:
        yield
    except OperationFailed as exc:
        exc.hint = ("Try: create what the selected tables need in the target first (their schema, types, "
                    "functions: a selective restore creates only the tables), or restore the whole backup")
        raise


def _require_role(backend: PostgresBackend, role: str) -> None:
    with backend.connect() as conn:
        if pg_roles.missing_roles(conn, {role}):
            raise UsageError(f"{backend.label}: role {role!r} (--role) does not exist on the target server; "
                             "nothing was restored", hint=f"Try: CREATE ROLE {role} on the target, or another --role")


def _refuse_non_empty(backend: PostgresBackend, conn: Any, options: RestoreOptions) -> None:
    existing = pg_schema.user_objects(conn)
    if existing and not options.replace_existing:
        raise OperationFailed(
            f"{backend.label}: the target database is not empty ({len(existing)} objects, e.g. {existing[0]}); "
            "nothing was restored",
            hint="Try: restore into an empty database, or pass --yes to replace its contents",
        )


@contextmanager
def _undo_on_failure(conn: Any, timescale: str | None, keep_extensions: set[str]) -> Iterator[None]:
    """A failed pre-data transaction rolls back; a failure after it drops what the restore created
    (extensions the database had before stay), so the target is left empty rather than
    half-restored, and the error message says which."""
    try:
        yield
    except BaseException as exc:
        emptied = _try_empty(conn, timescale, keep_extensions)
        raise_with_state(exc, "the target database was left empty" if emptied else
                        "the target database could not be emptied and holds a partial restore: drop and recreate it")


@contextmanager
def _annotate_failure(state: str) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        raise_with_state(exc, state)


def _try_empty(conn: Any, timescale: str | None, keep_extensions: set[str]) -> bool:
    import psycopg

    from storagectl.backends.postgres import timescaledb

    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        if timescale:
            timescaledb.finish_restore(conn)
        pg_largeobjects.unlink_all(conn)
        with conn.transaction():
            pg_schema.drop_user_objects(conn, keep_extensions)
        return True
    except psycopg.Error:
        return False


def _schema_sql(archive: ArchiveReader, name: str, ownership: OwnershipOptions) -> str:
    """pg_dump's SQL as the restore runs it: without psql's guard lines, and without the owners and
    privileges ``ownership`` leaves out."""
    return pg_roles.filter_schema(strip_psql_restrict(read_object(archive, name).decode("utf-8")), ownership)


def roles_preview(backend: PostgresBackend, archive: ArchiveReader, options: RestoreOptions) -> dict[str, Any]:
    """For ``restore --dry-run``: the roles the schema SQL still names with these options (owners,
    grantees) and which of them the target server lacks."""
    ownership = options.ownership
    needed = pg_largeobjects.roles_named(archive, ownership)
    for name in (PRE_DATA, POST_DATA):
        for roles in pg_roles.roles_named(_schema_sql(archive, name, ownership)).values():
            needed |= roles
    with backend.connect() as conn:
        missing = pg_roles.missing_roles(conn, needed | ({ownership.role} if ownership.role else set()))
    return {"roles_needed": sorted(needed), "roles_missing": missing}


def strip_psql_restrict(sql_text: str) -> str:
    r"""Drop pg_dump's ``\restrict``/``\unrestrict`` psql guard lines (PostgreSQL 15.14+, 16.10+, 17.6+).

    They only stop psql from running meta-commands; the SQL goes to the server directly, where
    no meta-command is ever interpreted.
    """
    return re.sub(r"^\\(un)?restrict [A-Za-z0-9]+[ \t]*$", "", sql_text, flags=re.MULTILINE)


def _run_schema_sql(backend: PostgresBackend, conn: Any, sql_text: str, section: str) -> None:
    import psycopg

    try:
        conn.execute(sql_text.encode("utf-8"))  # no parameters: one simple-protocol multi-statement query
    except psycopg.Error as exc:
        # No cleanup statement here: the transaction is aborted and would mask this error.
        raise OperationFailed(f"{backend.label}: restoring the {section} schema failed: "
                              f"{backend.error_line(exc)}",
                              hint="Try: check that the roles and extensions the backup uses exist (restore "
                                   "--dry-run lists missing roles; --no-owner/--no-privileges leave them out)"
                              ) from exc
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")


def _load_tables_and_build_indexes(backend: PostgresBackend, conn: Any, archive: ArchiveReader,
                                   copies: list[TableCopy], post: PostData, options: RestoreOptions) -> None:
    """Table parts, largest first, and index builds (indexes, primary-key/unique constraints) side by
    side, like ``pg_restore -j``: each index build starts as soon as all of its table's parts are
    in, so small tables' indexes are built while the largest table still loads; unlike
    ``pg_restore``, a large table's parts load in parallel too. Each part and each build is its own
    transaction (a failure empties the target)."""
    format_2 = archive.metadata.get("format") == 2
    parts = [TablePart(copy, name, archive.counts(name).get("rows", 0), format_2)
             for copy in copies for name in copy.objects]
    loads = [Job(part, provides=(part.table.schema, part.table.name))
             for part in sorted(parts, key=lambda part: part.rows, reverse=True)]
    tables = {(copy.schema, copy.name) for copy in copies}
    builds = [Job(build, after={build.table} if build.table in tables else tables) for build in post.index_builds]
    objects, object_parts = pg_largeobjects.restore_jobs(archive, options.ownership)
    jobs = objects + loads + object_parts + builds
    workers = max(1, min(options.parallel, backend.settings.pool.max_size, len(jobs)))
    if archive.metadata.get("timescaledb"):
        workers = 1  # Timescale documents restore as one serial session between pre/post_restore
    index_memory = f"{max(64, 512 // workers)}MB"

    def run(c: Any, work: TablePart | IndexBuild | LargeObjectLoad) -> None:
        if isinstance(work, TablePart):
            copy_in(backend, c, archive, work)
        elif isinstance(work, LargeObjectLoad):
            load_large_objects(backend, c, archive, work)
        else:
            c.execute(f"SET maintenance_work_mem = '{index_memory}'")
            _run_schema_sql(backend, c, post.preamble + work.statement, "post-data (index build)")

    encoding, role = archive.metadata.get("encoding"), options.ownership.role
    run_jobs(jobs, workers, lambda: _restore_connection(backend, encoding, role), conn, run)


@contextmanager
def _restore_connection(backend: PostgresBackend, encoding: str | None, role: str | None) -> Iterator[Any]:
    with backend.connect() as conn:
        _prepare_session(conn, encoding, role=role)
        yield conn


@dataclass(frozen=True)
class TablePart:
    table: TableCopy
    object: str
    rows: int  # as recorded in the manifest
    format_2: bool = False  # written with the default search_path (see EMPTY_SEARCH_PATH)


def copy_in(backend: PostgresBackend, conn: Any, archive: ArchiveReader, part: TablePart) -> None:
    """One part of a table's COPY data into the (just created) table, in its own transaction."""
    unit = part.table.unit
    with _copy_errors(backend, unit), conn.transaction(), conn.cursor() as cursor:
        if part.format_2:
            cursor.execute("SET LOCAL search_path TO DEFAULT")
        with archive.open(part.object) as stream, cursor.copy(part.table.copy_in_sql()) as sink:
            while chunk := stream.read(READ_BYTES):
                sink.write(memoryview(chunk))  # psycopg sends it in 128 KiB slices: views, not copies
        loaded = cursor.rowcount
    if loaded != part.rows:
        raise IntegrityError(f"{unit}: restored {loaded} rows from {part.object}, the backup recorded {part.rows}",
                             hint="Try: storagectl backup verify ID")


def load_large_objects(backend: PostgresBackend, conn: Any, archive: ArchiveReader, load: LargeObjectLoad) -> None:
    doing = "creating large objects" if load.metadata else f"restoring large objects from {load.object}"
    with _pg_errors(backend, doing), archive.open(load.object) as stream:
        if load.metadata:
            done = pg_largeobjects.create_objects(conn, stream, load.object, load.ownership)
        else:
            with conn.transaction():
                done = pg_largeobjects.write_contents(conn, stream, load.object)
    if done != load.expected:
        raise IntegrityError(f"{load.object}: restored {done} {'objects' if load.metadata else 'chunks'}, "
                             f"the backup recorded {load.expected}", hint="Try: storagectl backup verify ID")


def read_object(archive: ArchiveReader, name: str) -> bytes:
    """A schema object in full (pre/post-data SQL: the size of the schema, not of the data)."""
    if name not in archive.names():
        raise IntegrityError(f"archive object {name} is missing", hint="Try: storagectl backup verify ID")
    with archive.open(name) as stream:
        return stream.read()


def tables_of(archive: ArchiveReader) -> list[TableCopy]:
    metadata = archive.metadata
    version = metadata.get("format")
    if version not in READABLE_FORMATS or (version == 2 and metadata.get("copy_format") != "text"):
        raise IntegrityError(
            f"unsupported PostgreSQL archive format {metadata.get('format')!r}",
            hint="Try: restore with the storagectl version that wrote this backup",
        )
    try:
        copies = [TableCopy(**entry) for entry in metadata.get("tables", [])]
    except TypeError as exc:  # written by a development build between formats
        raise IntegrityError(f"the archive's table list is not format {version} ({exc})",
                             hint="Try: restore with the storagectl version that wrote this backup") from None
    present = set(archive.names())
    missing = [name for copy in copies for name in copy.objects if name not in present]
    if missing:
        raise IntegrityError(f"archive object {missing[0]} is missing ({len(missing)} in all)",
                             hint="Try: storagectl backup verify ID")
    for copy in copies:
        if copy.copy_format not in ("text", "binary"):
            raise IntegrityError(f"{copy.unit}: unknown COPY format {copy.copy_format!r} in the manifest",
                                 hint="Try: restore with the storagectl version that wrote this backup")
        part_rows = sum(archive.counts(name).get("rows", 0) for name in copy.objects)
        if not copy.objects or part_rows != copy.rows:
            raise IntegrityError(f"{copy.unit}: the manifest lists {len(copy.objects)} part(s) with {part_rows} rows "
                                 f"for a table of {copy.rows} rows", hint="Try: storagectl backup verify ID")
    return copies
