"""Copying the chunks of the tables of a move: ``--parallel N`` workers, each with its own source and
target connection, take chunks (largest table first) from one queue, so a large table is copied by
several workers at once. Each chunk is one target transaction with its state row.

Per chunk, the fastest way that fits the pair: SQLite → PostgreSQL as COPY text built by SQLite
(:mod:`sqlite_copy`) in a reader process per worker (:mod:`reader_process`), PostgreSQL → PostgreSQL
COPY-to-COPY (:mod:`pg_to_pg`), otherwise rows converted in Python (:mod:`rows`). A chunk the fast
path cannot load is redone carefully.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storagectl import interrupts
from storagectl.archive.progress import ProgressCallback, ProgressEvent
from storagectl.datamove.model import ItemResult
from storagectl.datamove.sql import canonical, copy_sums, pg_to_pg, state
from storagectl.datamove.sql.engine import TableJob, permission_refused
from storagectl.datamove.sql.rows import ChunkTally, Reject, RejectsFile, RowMapper
from storagectl.datamove.sql.spec import Chunk, TableSpec
from storagectl.datamove.sql.sqlite_copy import SQLiteCopyReader
from storagectl.errors import BackendUnavailable, OperationFailed, StoragectlError, interruption

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest
    from storagectl.datamove.sql.reader_process import ReaderProcess

ACTION = "migrate"


class RowsRejected(OperationFailed):
    """A row the target cannot hold, under ``--on-error stop``: nothing of its chunk was committed."""


@dataclass
class TableWork:
    """One table while its chunks are copied: how its chunks are read, and its progress."""

    job: TableJob
    mapper: RowMapper
    reader: SQLiteCopyReader | None
    binary: bool | None  # PostgreSQL → PostgreSQL: COPY format of the pipe
    total: int | None
    started: float
    done_rows: int = 0
    pending: int = 0  # chunks of this run not copied yet
    table_index: int = 0  # its place in the tables a reader process was given
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def spec(self) -> TableSpec:
        return self.job.spec

    @property
    def name(self) -> str:
        return f"{self.spec.source} → {self.spec.target}"


class ChunkCopier:
    def __init__(self, source: Any, target: Any, request: DataMigrationRequest, progress: ProgressCallback,
                 rejects: RejectsFile | None, *, pipe: bool = False,
                 on_loaded: Callable[[TableSpec], None] | None = None) -> None:
        self.source, self.target, self.request = source, target, request
        self.progress, self.rejects = progress, rejects
        self.pipe = pipe  # PostgreSQL → PostgreSQL: COPY straight into COPY
        # called once per table as soon as all its rows are in (from the worker that committed its last
        # chunk, before that worker takes another), so its indexes can be built while others copy
        self.on_loaded = on_loaded
        self.stop = threading.Event()

    def copy(self, jobs: list[TableJob], parallel: int) -> list[ItemResult]:
        """Every pending chunk of ``jobs``; the results in the order of ``jobs``."""
        ordered = sorted(jobs, key=lambda job: job.spec.row_estimate or 0, reverse=True)
        with self.source.connect() as sconn:
            works = [self._work(sconn, job) for job in ordered]
        totals = [work.total for work in works]
        self.progress(ProgressEvent(ACTION, "plan", "", total=sum(t or 0 for t in totals) or None, objects=len(works)))
        for work in works:
            self.progress(ProgressEvent(ACTION, "start", work.name, total=work.total))
        queue = [(work, chunk) for work in works if work.job.status == "copying"
                 for chunk in work.job.chunks if chunk.index not in work.job.done]
        for work, _chunk in queue:
            work.pending += 1
        for work in works:
            if not work.pending:  # all in before this run (resumed)
                self._loaded(work)
        workers = max(1, min(parallel, len(queue)))
        taken = iter(queue)
        lock = threading.Lock()
        try:
            with self._reader_processes(works, workers if queue else 0) as processes:
                if workers == 1:
                    self._worker(taken, lock, processes[0] if processes else None)
                else:
                    self._run_workers(taken, lock, processes or [None] * workers)
        except KeyboardInterrupt as exc:  # Ctrl-C: exit 130; SIGTERM (Terminated): 143
            raise _interrupted(exc, works) from exc
        with self.target.connect() as tconn:
            for work in works:
                if work.job.status == "copying":
                    state.set_status(tconn, self.target.param, work.spec.target, "loaded")
                    work.job.status = "loaded"
        by_target = {work.spec.target: self._result(work) for work in works}
        return [by_target[job.spec.target] for job in jobs]

    @contextlib.contextmanager
    def _reader_processes(self, works: list[TableWork], count: int) -> Iterator[list[ReaderProcess]]:
        """SQLite → PostgreSQL: ``count`` reader processes, one per worker, started here in the main thread
        (their parent-death signal follows the thread that starts them), ended when the copy is."""
        processes: list[ReaderProcess] = []
        try:
            if all(work.reader is not None for work in works):
                processes += self.source.reader_processes([work.reader for work in works], count)
            for index, work in enumerate(works):
                work.table_index = index
            yield processes
        finally:
            for process in processes:
                process.close()

    def _run_workers(self, taken: Iterator[tuple[TableWork, Chunk]], lock: threading.Lock,
                     processes: list[ReaderProcess | None]) -> None:
        failures: list[BaseException] = []

        def work(process: ReaderProcess | None) -> None:
            try:
                self._worker(taken, lock, process)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.stop.set()
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(process,), name=f"migrate-data-{i}", daemon=True)
                   for i, process in enumerate(processes)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                interrupts.join(thread)
        except BaseException:
            self.stop.set()
            raise
        if failures:
            raise failures[0]

    def _worker(self, taken: Iterator[tuple[TableWork, Chunk]], lock: threading.Lock,
                process: ReaderProcess | None) -> None:
        with ExitStack() as stack:
            sconn = stack.enter_context(self.source.connect())
            tconn = stack.enter_context(self.target.connect())
            self.target.writer_session(tconn)
            while not self.stop.is_set():
                with lock:
                    item = next(taken, None)
                if item is None:
                    return
                self._chunk(sconn, tconn, *item, process)

    def _work(self, sconn: Any, job: TableJob) -> TableWork:
        spec = job.spec
        job.row_bytes = self.source.row_bytes(sconn, spec)
        # the rows go as SQLite joins their lines (no hashing); the verify compares the target with the
        # XXH64 sums of the lines sent (copy_sums), or rehashes both sides of a chunk copied otherwise
        reader = (SQLiteCopyReader(spec, hashing=False, row_bytes=job.row_bytes)
                  if self.source.kind == "sqlite" and self.target.kind == "postgres" else None)
        if reader is not None:  # the reader's SQL takes every value by its own storage class
            mapper = RowMapper.for_sqlite(spec, None, to_postgres=True)
        elif self.source.kind == "sqlite":  # SQLite → SQLite: values in classes the target takes pass as they are
            mapper = RowMapper.for_sqlite(spec, self.source.storage_classes(sconn, spec))
        else:
            mapper = RowMapper.passthrough(spec)
        binary = pg_to_pg.binary_columns(sconn, spec) if self.pipe else None
        work = TableWork(job, mapper, reader, binary, (spec.row_estimate or 0) * job.row_bytes or None,
                         time.monotonic(), sum(rows + rejected for rows, rejected, _ in job.done.values()))
        return work

    def _chunk(self, sconn: Any, tconn: Any, work: TableWork, chunk: Chunk, process: ReaderProcess | None) -> None:
        spec, chunks = work.spec, len(work.job.chunks)
        if work.binary is not None:
            tally, rejected = self._pipe_chunk(sconn, tconn, spec, chunk, work.binary, chunks), 0
        else:
            tally, rejected = self._copy_chunk(sconn, tconn, work, chunk, process)
        with work.lock:
            hashed = work.mapper.hash_rows and tally.hashed
            work.job.done[chunk.index] = (tally.rows, rejected, tally.checksum if hashed else None)
            if tally.copy_sum is None:
                work.job.copy_sums.pop(chunk.index, None)
            else:
                work.job.copy_sums[chunk.index] = tally.copy_sum
            work.done_rows += tally.rows + rejected
            done = work.done_rows
            work.pending -= 1
            loaded = not work.pending
        self.progress(ProgressEvent(ACTION, "advance", work.name, done=done * work.job.row_bytes, total=work.total))
        if loaded:
            self._loaded(work)

    def _loaded(self, work: TableWork) -> None:
        if self.on_loaded is not None:
            self.on_loaded(work.spec)

    def _result(self, work: TableWork) -> ItemResult:
        job = work.job
        self.progress(ProgressEvent(ACTION, "finish", work.name, done=work.done_rows * job.row_bytes))
        rows = sum(rows for rows, _, _ in job.done.values())
        return ItemResult(job.spec.source, job.spec.target, "resumed" if job.resumed else "copied", rows=rows,
                          bytes=rows * job.row_bytes, duration_s=time.monotonic() - work.started,
                          rejected=sum(rejected for _, rejected, _ in job.done.values()), chunks=len(job.chunks))

    def _copy_chunk(self, sconn: Any, tconn: Any, work: TableWork, chunk: Chunk,
                    process: ReaderProcess | None) -> tuple[ChunkTally, int]:
        spec, mapper, reader, chunks = work.spec, work.mapper, work.reader, len(work.job.chunks)
        tally = ChunkTally()
        try:
            if reader is not None:
                return self._copy_text_chunk(sconn, tconn, work, chunk, process), 0
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

    def _copy_text_chunk(self, sconn: Any, tconn: Any, work: TableWork, chunk: Chunk,
                         process: ReaderProcess | None) -> ChunkTally:
        spec, reader = work.spec, work.reader
        assert reader is not None
        self.target.begin(tconn)
        try:
            tally = ChunkTally(hashed=reader.hashing)
            pieces = (process.pieces(work.table_index, chunk, tally) if process is not None
                      else reader.pieces(sconn, chunk, tally))
            if self.request.verify:
                pieces = copy_sums.summed(pieces, tally, copy_sums.double_columns(spec))
            self.target.load_text(tconn, spec, reader.copy_columns, _tagged(pieces))
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
        checksum = tally.checksum if self.source.kind == "sqlite" and tally.hashed else None
        state.record_chunk(tconn, self.target.param, spec.target, spec.source, chunk.index, tally.rows,
                           rejected, checksum, tally.copy_sum)
        if rejects and self.rejects is not None:
            self.rejects.write(rejects, spec)  # written before the commit: a crash may repeat, never lose

    def _stop_on_rejects(self, spec: TableSpec, rejects: list[Reject]) -> None:
        if rejects and self.request.on_error == "stop":
            first = rejects[0]
            column = f" column {spec.columns[first.column_index].name}" if first.column_index is not None else ""
            raise RowsRejected(f"{spec.source}: row {spec.key_label or 'key'} {first.key}{column}: {first.reason} "
                               f"({len(rejects)} rejected row(s) in this chunk; nothing of it was committed)",
                               hint="Try: the same command with --resume --on-error skip to write rejected rows "
                                    "to a rejects file and go on; storagectl migrate data plan lists them")


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


def _interrupted(exc: KeyboardInterrupt, works: list[TableWork]) -> StoragectlError:
    """Ctrl-C or SIGTERM during the copy, saying how far it got: the chunks committed per table not
    yet all in (each chunk commits with its state row, so these are exactly the ones a resume skips)."""
    partly = [f"{len(work.job.done)} of {len(work.job.chunks)} chunks of {work.spec.target}"
              for work in works if len(work.job.done) < len(work.job.chunks)]
    tables = f" ({len(works) - len(partly)} of {len(works)} tables copied)" if len(works) > 1 else ""
    return interruption(exc, where=f"after {', '.join(partly) or 'all chunks'}{tables}; the copied chunks are "
                                   "committed", hint="Try: the same command with --resume to continue")


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
    if refused := permission_refused(side, exc):  # exit 4, as the plan says it
        return refused
    where = f"{spec.source} chunk {chunk.index + 1} of {chunks}"
    message = f"{side.backend.label}: {where} failed: {side.backend.error_line(exc)}; the chunk was rolled back"
    try:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            return BackendUnavailable(message, hint="Try: the same command with --resume once the server is back")
    except ImportError:  # pragma: no cover
        pass
    return OperationFailed(message, hint="Try: fix the cause, then the same command with --resume")
