"""The SQL data paths (SQLite/PostgreSQL/TimescaleDB in any direction): plan, run, verify."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl import interrupts
from storagectl.archive.progress import ProgressCallback, ProgressEvent
from storagectl.datamove.model import ItemPlan, MigrationPlan, RunResult
from storagectl.datamove.sql import checks, copy_sums, pg_to_pg, state
from storagectl.datamove.sql.copier import ChunkCopier
from storagectl.datamove.sql.engine import (
    TableJob,
    check_target,
    match_columns,
    narrowed,
    prepare,
    refusals_of,
    select_specs,
    side_for,
    stop_on_blockers,
)
from storagectl.datamove.sql.rows import RejectsFile
from storagectl.errors import interruption

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest


class SqlDataPath:
    def __init__(self, source_kind: str, target_kind: str) -> None:
        self.pair = f"{source_kind} → {target_kind}"
        self.target_dialect = "sqlite" if target_kind == "sqlite" else "postgres"

    def notes(self, request: DataMigrationRequest) -> list[str]:
        if request.parallel <= 1 or self.target_dialect != "sqlite":
            return []
        return [f"--parallel {request.parallel} is ignored for a sqlite target: its chunks are written one at a "
                "time by one writer (SQLite takes one writer at a time)"]

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, request: DataMigrationRequest) -> MigrationPlan:
        from storagectl.datamove.sql.profile import profile_table

        source, target = side_for(request.source), side_for(request.target)
        result = MigrationPlan(request.source.name, request.target.name, self.pair)
        with source.connect() as conn:
            specs = select_specs(source, conn, request, self.target_dialect)
            dump = pg_to_pg.uses_pg_dump(request.source, request.target, specs)
            result.blockers = check_target(target, specs, request, pg_dump=dump,
                                           dumped_schemas=_dumped_schemas(conn, request, dump))
            for spec in specs:
                bounds = source.bounds(conn, spec, request.batch_rows)
                item = ItemPlan(spec.source, spec.target, row_estimate=spec.row_estimate,
                                chunking=spec.chunking(request.batch_rows, len(bounds) + 1 if spec.key else None),
                                problems=list(spec.problems))
                if source.kind == "sqlite":
                    profile_table(source, conn, spec, item, to_postgres=self.target_dialect == "postgres")
                else:
                    item.columns = [_column_plan(column) for column in spec.columns]
                _note_identity(item.columns, spec.identity)
                if spec.time_column:
                    item.problems.append(f"hypertable on {spec.time_column}; unique keys without it are left out")
                result.items.append(item)
        return result

    # -- run ------------------------------------------------------------------------------------
    def run(self, request: DataMigrationRequest, progress: ProgressCallback) -> RunResult:
        source, target = side_for(request.source), side_for(request.target)
        result = RunResult(request.source.name, request.target.name, self.pair)
        rejects = _rejects_file(request) if request.on_error == "skip" else None
        if rejects is not None:
            rejects.check_writable()
        with ExitStack() as running:
            if source.kind == "sqlite" and target.kind == "postgres":  # see ChunkCopier._work
                running.enter_context(source.readers_started(request.parallel))
            running.enter_context(target.exclusive())
            move = self._copy(source, target, request, progress, rejects, running)
            result.items = move.items
            # the source as it is now, counted while the target builds its indexes and keys
            pool = running.enter_context(ThreadPoolExecutor(max(1, min(len(move.jobs), request.parallel))))
            drifts = [pool.submit(_count_drift, source, job) for job in move.jobs]
            tables = len(move.jobs)
            progress(ProgressEvent(INDEXES, "plan", "", total=tables, unit="tables"))
            with _saying_where("after all rows were copied and committed, while keys and indexes were built",
                               "Try: the same command with --resume to build them"), \
                    target.connect() as tconn, refusals_of(target):
                if move.schema is not None:
                    move.schema.finish(tconn)
                if move.dump:
                    pg_to_pg.set_sequences(tconn, move.sequences)
                self._finish(target, tconn, move.jobs, schema_done=move.dump, parallel=move.parallel)
            progress(ProgressEvent(INDEXES, "finish", "", done=tables))
            for drift in drifts:
                checks.raise_on_drift(interrupts.result(drift))
        if rejects is not None and rejects.count:
            result.rejects_path = rejects.path
        if request.verify:
            with _saying_where("while the copy, complete, was verified",
                               "Try: storagectl migrate data verify with the same --from/--to"):
                progress(ProgressEvent(VERIFY, "plan", "", total=len(move.jobs), unit="tables"))
                self._verify_jobs(source, target, move.jobs, result, request.show_diffs, move.parallel)
                progress(ProgressEvent(VERIFY, "finish", "", done=len(move.jobs)))
        return result

    def _copy(self, source: Any, target: Any, request: DataMigrationRequest, progress: ProgressCallback,
              rejects: RejectsFile | None, running: ExitStack) -> _Move:
        """The tables checked and created, and their rows copied, in one exported snapshot of a
        PostgreSQL source (released when the rows are in); pg_dump's post-data entered in ``running``."""
        move = _Move()
        with ExitStack() as reading:
            snapshot = reading.enter_context(pg_to_pg.exported_snapshot(source)) if source.kind == "postgres" else None
            with source.connect() as sconn:
                specs = select_specs(source, sconn, request, self.target_dialect)
                move.dump = snapshot is not None and pg_to_pg.uses_pg_dump(request.source, request.target, specs)
                # what would stop the run, found read-only as a plan finds it: nothing is written if so
                stop_on_blockers(target, specs, request, pg_dump=move.dump,
                                 dumped_schemas=_dumped_schemas(sconn, request, move.dump))
                with target.connect() as tconn:
                    whole = not narrowed(request)
                    create = (lambda missing: pg_to_pg.create_tables(source, target, tconn, snapshot, specs, missing,
                                                                     whole)) if move.dump else None
                    with refusals_of(target):
                        move.jobs = prepare(source, target, sconn, tconn, specs, request, create)
                    move.parallel = parallel = 1 if target.kind == "sqlite" else request.parallel
                    if move.dump:
                        move.sequences = pg_to_pg.owned_sequences(sconn, specs)
                        move.schema = pg_to_pg.pending_post_data(source, target, tconn, snapshot, specs, move.jobs,
                                                                 whole, parallel)
            if move.schema is not None:
                running.enter_context(move.schema)
            copier = ChunkCopier(source, target, request, progress, rejects, pipe=move.dump,
                                 on_loaded=move.schema.table_loaded if move.schema else None)
            move.items = copier.copy(move.jobs, parallel)
            if move.schema is not None:
                move.schema.dumped_sql()  # pg_dump has taken the snapshot before it goes
        return move

    def _finish(self, target: Any, tconn: Any, jobs: list[TableJob], *, schema_done: bool, parallel: int) -> None:
        """Keys, indexes and identities per table (unless pg_dump's post-data built them), up to
        ``parallel`` tables at once, largest first, each on its own connection; foreign keys once
        all are in."""
        pending = sorted((job for job in jobs if job.status != "done"), key=lambda job: job.spec.row_estimate or 0,
                         reverse=True)

        def finish(job: TableJob, conn: Any) -> None:
            if not schema_done:
                target.finish_table(conn, job.spec)
            state.set_status(conn, target.param, job.spec.target, "done")

        def finish_alone(job: TableJob) -> None:
            with target.connect() as conn:
                finish(job, conn)

        if parallel > 1 and len(pending) > 1 and not schema_done:
            with ThreadPoolExecutor(min(parallel, len(pending))) as pool:
                interrupts.map_results(pool, finish_alone, pending)
        else:
            for job in pending:
                finish(job, tconn)
        if not schema_done:
            target.finish_all(tconn, [job.spec for job in jobs], parallel)

    def _verify_jobs(self, source: Any, target: Any, jobs: list[TableJob], result: RunResult,
                     show_diffs: bool, parallel: int) -> None:
        """The target against what the copy sent where it summed its lines (:mod:`copy_sums`); the
        other chunks, and those whose sums differ, by the canonical checksums of both sides."""
        proven = copy_sums.proven_chunks(target, jobs, parallel) if target.kind == "postgres" else {}
        for job, item in zip(jobs, result.items, strict=True):
            chunks = {chunk.index for chunk in job.chunks}
            left = chunks - proven.get(job.spec.target, set())
            if not left:
                item.verified_by = copy_sums.COPY_SUMS
                item.checksum = f"copy-xxh64:{sum(job.copy_sums.values()) % 2**64:016x}"
                continue
            checked = checks.compare(source, target, job.spec, job.bounds, recorded=job.done, show_diffs=show_diffs,
                                     only=None if left == chunks else left)
            item.verified_by = copy_sums.CANONICAL if left == chunks else \
                f"{copy_sums.COPY_SUMS}; {copy_sums.CANONICAL} for {len(left)} of {len(chunks)} chunks"
            item.checksum = checked.checksum if left == chunks else None
            item.first_bad_chunk, item.diff_keys = checked.first_bad_chunk, checked.diff_keys
            if checked.status == "mismatch":
                item.status, item.detail = "mismatch", checked.detail
        result.verified = all(item.status != "mismatch" for item in result.items)

    # -- verify ---------------------------------------------------------------------------------
    def verify(self, request: DataMigrationRequest) -> RunResult:
        source, target = side_for(request.source), side_for(request.target)
        result = RunResult(request.source.name, request.target.name, self.pair)
        with source.connect() as sconn, target.connect() as tconn:
            specs = select_specs(source, sconn, request, self.target_dialect)
            known = state.exists(tconn, target.kind)
            plans = []
            for spec in specs:
                recorded = state.read(tconn, target.param, spec.target) if known else None
                bounds = recorded.bounds if recorded and recorded.started else source.bounds(
                    sconn, spec, request.batch_rows)
                _adopt_target_types(target, tconn, spec)
                plans.append((spec, bounds))
        for spec, bounds in plans:
            started = time.monotonic()
            item = checks.compare(source, target, spec, bounds, show_diffs=request.show_diffs)
            item.verified_by = copy_sums.CANONICAL
            item.duration_s = time.monotonic() - started
            result.items.append(item)
        result.verified = all(item.status == "equal" for item in result.items)
        return result


INDEXES, VERIFY = "indexes", "verify"  # the run's phases after the copy, as progress shows them


@dataclass
class _Move:
    jobs: list[TableJob] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    dump: bool = False  # PostgreSQL → PostgreSQL through pg_dump's schema
    schema: Any = None  # pg_to_pg.PostDataSchema still to apply
    sequences: list[Any] = field(default_factory=list)
    parallel: int = 1


@contextlib.contextmanager
def _saying_where(where: str, hint: str) -> Iterator[None]:
    """Ctrl-C (exit 130) or SIGTERM (143) in a step of the run after the copy, saying which and what next."""
    try:
        yield
    except KeyboardInterrupt as exc:
        raise interruption(exc, where=where, hint=hint) from exc


def _dumped_schemas(sconn: Any, request: DataMigrationRequest, dump: bool) -> list[str]:
    return pg_to_pg.dumped_schemas(sconn) if dump and not narrowed(request) else []


def _count_drift(source: Any, job: TableJob) -> str | None:
    with source.connect() as sconn:
        return checks.count_drift(source, sconn, job.spec, job.bounds, job.done)


def _adopt_target_types(target: Any, tconn: Any, spec: Any) -> None:
    from storagectl.errors import NotFound

    columns = target.target_columns(tconn, spec)
    if columns is None:
        raise NotFound(f"{target.backend.label} has no table {spec.target} to verify",
                       hint="Try: storagectl migrate data run with the same --from/--to first")
    match_columns(target, spec, columns)


IDENTITY_NOTE = "identity: values kept, the next one past the copied maximum"


def _column_plan(column: Any) -> Any:
    from storagectl.datamove.model import ColumnPlan

    return ColumnPlan(column.name, column.source_type, column.target_type, column.note)


def _note_identity(columns: list[Any], identity: str | None) -> None:
    """The plan says which column becomes an identity (the run creates it so and moves its sequence)."""
    for column in columns:
        if column.name == identity:
            column.note = f"{IDENTITY_NOTE}; {column.note}" if column.note else IDENTITY_NOTE


def _rejects_file(request: DataMigrationRequest) -> RejectsFile:
    if request.rejects_path is not None:
        return RejectsFile(request.rejects_path)
    directory = request.state_dir or Path.cwd()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return RejectsFile(directory / f"rejects-{request.source.name}-{request.target.name}-{stamp}.jsonl")

