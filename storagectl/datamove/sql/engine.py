"""Moving tables between SQL backends in committed, resumable chunks.

For each table: check the target (columns match, empty or ``--yes``), fix the chunk bounds (kept in
the state table, so a resumed run cuts the same chunks), then per chunk one target transaction that
loads the rows and records the chunk. A chunk whose rows the fast path cannot load is redone
carefully: every value checked, rejected rows reported (``--on-error stop``) or written to the
rejects file (``skip``). Then keys, indexes and identities; foreign keys once every table is in.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storagectl.archive.progress import Estimate, ProgressCallback, ProgressEvent
from storagectl.datamove.model import ItemResult
from storagectl.datamove.sql import canonical, pg_to_pg, state, typemap
from storagectl.datamove.sql.rows import ChunkTally, Reject, RejectsFile, RowMapper
from storagectl.datamove.sql.spec import Chunk, TableSpec, chunks_from_bounds
from storagectl.datamove.sql.sqlite_copy import SQLiteCopyReader
from storagectl.errors import BackendUnavailable, OperationFailed, StoragectlError, UsageError

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest

ACTION = "migrate"


class RowsRejected(OperationFailed):
    """A row the target cannot hold, under ``--on-error stop``: nothing of its chunk was committed."""


class IncompatibleTarget(UsageError):
    """An existing target table whose columns do not match the move."""


@dataclass
class TableJob:
    spec: TableSpec
    bounds: list[int]
    done: dict[int, tuple[int, int, int | None]] = field(default_factory=dict)
    status: str = "copying"
    resumed: bool = False
    create: bool = False
    empty_first: bool = False
    row_bytes: int = 0

    @property
    def chunks(self) -> list[Chunk]:
        return chunks_from_bounds(self.bounds)


def side_for(backend: Any) -> Any:
    if backend.kind == "sqlite":
        from storagectl.datamove.sql.sqlite_side import SQLiteSide

        return SQLiteSide(backend)
    from storagectl.datamove.sql.pg_side import PostgresSide

    return PostgresSide(backend)


def select_specs(source: Any, conn: Any, request: DataMigrationRequest, target_kind: str) -> list[TableSpec]:
    """The tables to move, described and mapped for the target, in source order."""
    available = source.table_names(conn)
    maps = {table_map.source: table_map for table_map in request.maps}
    chosen = list(request.selection.tables) + [name for name in maps if name not in request.selection.tables]
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise UsageError(f"{source.backend.label} has no table {', '.join(map(repr, unknown))}",
                         hint=f"Try: one of {', '.join(available) or '(no tables)'}")
    names = chosen or available
    names = [name for name in names if name not in request.selection.exclude]
    return [source.describe(conn, name, maps.get(name), target_kind) for name in names]


# -- preparing --------------------------------------------------------------------------------------
def prepare(source: Any, target: Any, sconn: Any, tconn: Any, specs: list[TableSpec],
            request: DataMigrationRequest, create_tables: Any = None) -> list[TableJob]:
    """Every check before any row moves; then the target tables created (by ``create_tables(specs)``
    when given, e.g. from pg_dump) and the chunks fixed."""
    state.ensure(tconn)
    jobs = [_check_table(target, tconn, spec, request) for spec in specs]
    missing = [job.spec for job in jobs if job.create]
    if create_tables is not None:
        create_tables(missing)
    for job in jobs:
        if job.resumed:
            continue
        if job.create and create_tables is None:
            target.create_table(tconn, job.spec)
        elif job.empty_first:
            target.empty_table(tconn, job.spec)
        job.bounds = source.bounds(sconn, job.spec, request.batch_rows)
        state.start(tconn, target.param, job.spec.target, job.spec.source, job.bounds)
    return jobs


def _check_table(target: Any, tconn: Any, spec: TableSpec, request: DataMigrationRequest) -> TableJob:
    found = state.read(tconn, target.param, spec.target)
    if found.started and found.status != "done":
        if not request.resume:
            raise UsageError(f"an earlier run into {spec.target} stopped after {len(found.chunks)} of "
                             f"{len(found.bounds) + 1} chunks",
                             hint="Try: the same command with --resume to continue it, or drop the target table "
                                  "to start over")
        _adopt_columns(target, tconn, spec)
        return TableJob(spec, found.bounds, found.chunks, found.status, resumed=True)
    columns = target.target_columns(tconn, spec)
    if columns is None:
        return TableJob(spec, [], create=True)
    _match_columns(target, spec, columns)
    empty = target.is_empty(tconn, spec)
    if not empty and not request.allow_nonempty_target:
        raise UsageError(f"target table {spec.target} is not empty",
                         hint="Try: --yes to replace its rows with the source's")
    return TableJob(spec, [], empty_first=not empty)


def _adopt_columns(target: Any, tconn: Any, spec: TableSpec) -> None:
    columns = target.target_columns(tconn, spec)
    if columns is not None:
        _match_columns(target, spec, columns)


def _match_columns(target: Any, spec: TableSpec, columns: list[tuple[str, str]]) -> None:
    """An existing table takes the rows if it has the same column names with types of the same kind;
    its own types then decide the mapping."""
    existing = dict(columns)
    ours = [column.name for column in spec.columns]
    if sorted(existing) != sorted(ours):
        missing = [name for name in ours if name not in existing]
        extra = [name for name in existing if name not in ours]
        detail = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                         f"not in the source {', '.join(extra)}" if extra else ""]))
        raise IncompatibleTarget(f"target table {spec.target} has other columns than the move ({detail})",
                                 hint="Try: a --map FILE naming the target columns, or drop the target table")
    kind_of = typemap.sqlite_kind if target.kind == "sqlite" else typemap.pg_kind
    for column in spec.columns:
        their_kind = kind_of(existing[column.name])
        if their_kind != column.kind and {their_kind, column.kind} != {"text", "other"}:
            raise IncompatibleTarget(f"target table {spec.target}: column {column.name} is {existing[column.name]}, "
                                     f"the move needs {column.target_type}",
                                     hint="Try: a cast for it in a --map FILE, or drop the target table")
        column.target_type = existing[column.name]  # text and other kinds hash alike


# -- copying ----------------------------------------------------------------------------------------
class TableCopier:
    """Copies one table's pending chunks on its own pair of connections."""

    def __init__(self, source: Any, target: Any, request: DataMigrationRequest, progress: ProgressCallback,
                 rejects: RejectsFile | None, stop: threading.Event, *, pipe: bool = False) -> None:
        self.source, self.target, self.request = source, target, request
        self.progress, self.rejects, self.stop = progress, rejects, stop
        self.pipe = pipe  # PostgreSQL → PostgreSQL: COPY straight into COPY

    def copy(self, job: TableJob) -> ItemResult:
        spec = job.spec
        started = time.monotonic()
        with ExitStack() as stack:
            sconn = stack.enter_context(self.source.connect())
            tconn = stack.enter_context(self.target.connect())
            classes = self.source.storage_classes(sconn, spec) if self.source.kind == "sqlite" else []
            mapper = RowMapper.for_sqlite(spec, classes) if classes else RowMapper.passthrough(spec)
            reader = SQLiteCopyReader(spec, classes) if classes and self.target.kind == "postgres" else None
            binary = pg_to_pg.binary_columns(sconn, spec) if self.pipe else None
            job.row_bytes = self._row_bytes(sconn, spec)
            name = f"{spec.source} → {spec.target}"
            total = (spec.row_estimate or 0) * job.row_bytes or None
            self.progress(ProgressEvent(ACTION, "start", name, total=total))
            done_rows = sum(rows + rejected for rows, rejected, _ in job.done.values())
            for chunk in job.chunks:
                if chunk.index in job.done or job.status != "copying":
                    continue
                if self.stop.is_set():
                    raise OperationFailed("stopped: another table failed")
                if binary is not None:
                    tally, rejected = self._pipe_chunk(sconn, tconn, spec, chunk, binary, len(job.chunks)), 0
                else:
                    tally, rejected = self._copy_chunk(sconn, tconn, spec, chunk, mapper, reader, len(job.chunks))
                job.done[chunk.index] = (tally.rows, rejected, tally.checksum if mapper.hash_rows else None)
                done_rows += tally.rows + rejected
                self.progress(ProgressEvent(ACTION, "advance", name, done=done_rows * job.row_bytes, total=total))
            if job.status == "copying":
                state.set_status(tconn, self.target.param, spec.target, "loaded")
            self.progress(ProgressEvent(ACTION, "finish", name, done=done_rows * job.row_bytes))
        rows = sum(rows for rows, _, _ in job.done.values())
        return ItemResult(spec.source, spec.target, "resumed" if job.resumed else "copied", rows=rows,
                          bytes=rows * job.row_bytes, duration_s=time.monotonic() - started,
                          rejected=sum(rejected for _, rejected, _ in job.done.values()), chunks=len(job.chunks))

    def _row_bytes(self, sconn: Any, spec: TableSpec) -> int:
        return self.source.row_bytes(sconn, spec)

    def _copy_chunk(self, sconn: Any, tconn: Any, spec: TableSpec, chunk: Chunk, mapper: RowMapper,
                    reader: SQLiteCopyReader | None, chunks: int) -> tuple[ChunkTally, int]:
        tally = ChunkTally()
        try:
            if reader is not None:
                return self._copy_text_chunk(sconn, tconn, spec, chunk, reader), 0
            rows = mapper.fast(_tagged(self.source.read(sconn, spec, chunk)), tally)
            self._commit_chunk(tconn, spec, chunk, list(rows) if self.target.kind == "sqlite" else rows, tally, 0)
            return tally, 0
        except Exception as exc:
            self.target.rollback(tconn)
            if not _is_data_error(exc):
                raise _chunk_failed(self.target if _from_target(exc) else self.source, spec, chunk, chunks,
                                    exc) from exc
        return self._copy_chunk_carefully(sconn, tconn, spec, chunk, mapper, chunks)

    def _pipe_chunk(self, sconn: Any, tconn: Any, spec: TableSpec, chunk: Chunk, binary: bool,
                    chunks: int) -> ChunkTally:
        self.target.begin(tconn)
        try:
            tally = ChunkTally(pg_to_pg.pipe_chunk(sconn, tconn, spec, chunk, binary))
            self._record(tconn, spec, chunk, tally, 0, [])
            self.target.commit(tconn)
        except Exception as exc:
            self.target.rollback(tconn)
            raise _chunk_failed(self.target, spec, chunk, chunks, exc) from exc
        except BaseException:
            self.target.rollback(tconn)
            raise
        return tally

    def _copy_text_chunk(self, sconn: Any, tconn: Any, spec: TableSpec, chunk: Chunk,
                         reader: SQLiteCopyReader) -> ChunkTally:
        self.target.begin(tconn)
        try:
            self.target.load_text(tconn, spec, reader.copy_columns, _tagged(reader.pieces(sconn, chunk)))
            tally = ChunkTally(reader.rows, reader.hash_sum)
            self._record(tconn, spec, chunk, tally, 0, [])
            self.target.commit(tconn)
        except BaseException:
            self.target.rollback(tconn)
            raise
        return tally

    def _copy_chunk_carefully(self, sconn: Any, tconn: Any, spec: TableSpec, chunk: Chunk, mapper: RowMapper,
                              chunks: int) -> tuple[ChunkTally, int]:
        rejects: list[Reject] = []
        keyed = list(mapper.careful(self.source.read(sconn, spec, chunk, with_key=True, careful=True),
                                    ChunkTally(), rejects, spec.source))
        self._stop_on_rejects(spec, rejects)
        try:
            return self._load_checked(tconn, spec, chunk, keyed, mapper, rejects), len(rejects)
        except Exception as exc:
            self.target.rollback(tconn)
            if not _is_data_error(exc):
                raise _chunk_failed(self.target, spec, chunk, chunks, exc) from exc
        return self._load_row_by_row(tconn, spec, chunk, keyed, mapper, rejects)

    def _load_checked(self, tconn: Any, spec: TableSpec, chunk: Chunk, keyed: list[tuple[Any, list[Any]]],
                      mapper: RowMapper, rejects: list[Reject]) -> ChunkTally:
        tally = _tally_of([row for _key, row in keyed], mapper)
        self._commit_chunk(tconn, spec, chunk, [row for _key, row in keyed], tally, len(rejects), rejects)
        return tally

    def _load_row_by_row(self, tconn: Any, spec: TableSpec, chunk: Chunk, keyed: list[tuple[Any, list[Any]]],
                         mapper: RowMapper, rejects: list[Reject]) -> tuple[ChunkTally, int]:
        """The target refused a row the checks passed (a range, a constraint): find it row by row."""
        loaded = []
        self.target.begin(tconn)
        try:
            for key, row in keyed:
                tconn.execute("SAVEPOINT storagectl_row")
                try:
                    self.target.load(tconn, spec, iter([row]))
                    tconn.execute("RELEASE SAVEPOINT storagectl_row")
                    loaded.append(row)
                except Exception as exc:
                    if not _is_data_error(exc):
                        raise
                    tconn.execute("ROLLBACK TO SAVEPOINT storagectl_row")
                    tconn.execute("RELEASE SAVEPOINT storagectl_row")
                    rejects.append(Reject(spec.source, key, None, self.target.backend.error_line(exc), row))
            self._stop_on_rejects(spec, rejects)
            tally = _tally_of(loaded, mapper)
            self._record(tconn, spec, chunk, tally, len(rejects), rejects)
            self.target.commit(tconn)
        except BaseException:
            self.target.rollback(tconn)
            raise
        return tally, len(rejects)

    def _commit_chunk(self, tconn: Any, spec: TableSpec, chunk: Chunk, rows: Any, tally: ChunkTally,
                      rejected: int, rejects: list[Reject] | None = None) -> None:
        self.target.begin(tconn)
        try:
            self.target.load(tconn, spec, iter(rows) if isinstance(rows, list) else rows)
            self._record(tconn, spec, chunk, tally, rejected, rejects or [])
            self.target.commit(tconn)
        except BaseException:
            self.target.rollback(tconn)
            raise

    def _record(self, tconn: Any, spec: TableSpec, chunk: Chunk, tally: ChunkTally, rejected: int,
                rejects: list[Reject]) -> None:
        checksum = tally.checksum if self.source.kind == "sqlite" else None
        state.record_chunk(tconn, self.target.param, spec.target, spec.source, chunk.index, tally.rows,
                           rejected, checksum)
        if rejects and self.rejects is not None:
            self.rejects.write(rejects, spec)  # written before the commit: a crash may repeat, never lose

    def _stop_on_rejects(self, spec: TableSpec, rejects: list[Reject]) -> None:
        if rejects and self.request.on_error == "stop":
            first = rejects[0]
            column = f" column {spec.columns[first.column_index].name}" if first.column_index is not None else ""
            raise RowsRejected(f"{spec.source}: row {spec.key_label or 'key'} {first.key}{column}: {first.reason} "
                               f"({len(rejects)} rejected row(s) in this chunk; nothing of it was committed)",
                               hint="Try: --on-error skip to write rejected rows to a rejects file and go on; "
                                    "storagectl migrate data plan lists them")


def _tally_of(rows: list[list[Any]], mapper: RowMapper) -> ChunkTally:
    tally = ChunkTally()
    hasher = canonical.row_hasher(mapper.kinds) if mapper.hash_rows else None
    for row in rows:
        tally.add(row, hasher)
    return tally


def _is_data_error(exc: BaseException) -> bool:
    """A value the target (or the SQLite reader) refused, as opposed to a lost connection."""
    if isinstance(exc, canonical.Rejected):
        return True
    if isinstance(exc, sqlite3.OperationalError) and "decode" in str(exc):
        return True
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)


def _tagged(rows: Iterator[Any]) -> Iterator[Any]:
    """Marks an error raised while reading the source, so it is reported against the source."""
    try:
        yield from rows
    except Exception as exc:
        exc._storagectl_side = "source"  # type: ignore[attr-defined]
        raise


def _from_target(exc: BaseException) -> bool:
    return getattr(exc, "_storagectl_side", "target") == "target"


def _chunk_failed(side: Any, spec: TableSpec, chunk: Chunk, chunks: int, exc: BaseException) -> StoragectlError:
    if isinstance(exc, StoragectlError):
        return exc
    where = f"{spec.source} chunk {chunk.index + 1} of {chunks}"
    message = f"{side.backend.label}: {where} failed: {side.backend.error_line(exc)}; the chunk was rolled back"
    try:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            return BackendUnavailable(message, hint="Try: the same command with --resume once the server is back")
    except ImportError:  # pragma: no cover
        pass
    return OperationFailed(message, hint="Try: fix the cause, then the same command with --resume")


def run_tables(copier: TableCopier, jobs: list[TableJob], parallel: int) -> Iterator[ItemResult]:
    """Largest first; the first failure stops the others after their current chunk."""
    ordered = sorted(jobs, key=lambda job: job.spec.row_estimate or 0, reverse=True)
    workers = max(1, min(parallel, len(ordered)))
    if workers == 1:
        for job in ordered:
            yield copier.copy(job)
        return
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(copier.copy, job) for job in ordered]
        try:
            for future in futures:
                yield future.result()
        except BaseException:
            copier.stop.set()
            raise


def estimate(jobs: list[TableJob]) -> Estimate:
    return Estimate(None, len(jobs))
