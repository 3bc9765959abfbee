"""The SQL data paths (SQLite/PostgreSQL/TimescaleDB in any direction): plan, run, verify."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl import interrupts
from storagectl.archive.progress import ProgressCallback
from storagectl.datamove.model import ItemPlan, MigrationPlan, RunResult
from storagectl.datamove.sql import checks, pg_to_pg, state
from storagectl.datamove.sql.copier import ChunkCopier
from storagectl.datamove.sql.engine import (
    TableJob,
    check_target,
    match_columns,
    prepare,
    refusals_of,
    select_specs,
    side_for,
)
from storagectl.datamove.sql.rows import RejectsFile

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest


class SqlDataPath:
    def __init__(self, source_kind: str, target_kind: str) -> None:
        self.pair = f"{source_kind} → {target_kind}"
        self.target_dialect = "sqlite" if target_kind == "sqlite" else "postgres"

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, request: DataMigrationRequest) -> MigrationPlan:
        from storagectl.datamove.sql.profile import profile_table

        source, target = side_for(request.source), side_for(request.target)
        result = MigrationPlan(request.source.name, request.target.name, self.pair)
        with source.connect() as conn:
            specs = select_specs(source, conn, request, self.target_dialect)
            result.blockers = check_target(target, specs, request,
                                           pg_dump=pg_to_pg.uses_pg_dump(request.source, request.target, specs))
            for spec in specs:
                bounds = source.bounds(conn, spec, request.batch_rows)
                item = ItemPlan(spec.source, spec.target, row_estimate=spec.row_estimate,
                                chunking=spec.chunking(request.batch_rows, len(bounds) + 1 if spec.key else None),
                                problems=list(spec.problems))
                if source.kind == "sqlite":
                    profile_table(source, conn, spec, item, to_postgres=self.target_dialect == "postgres")
                else:
                    item.columns = [_column_plan(column) for column in spec.columns]
                if spec.time_column:
                    item.problems.append(f"hypertable on {spec.time_column}; unique keys without it are left out")
                result.items.append(item)
        return result

    # -- run ------------------------------------------------------------------------------------
    def run(self, request: DataMigrationRequest, progress: ProgressCallback) -> RunResult:
        source, target = side_for(request.source), side_for(request.target)
        result = RunResult(request.source.name, request.target.name, self.pair)
        rejects = _rejects_file(request) if request.on_error == "skip" else None
        with ExitStack() as reading:
            reading.enter_context(target.exclusive())
            snapshot = reading.enter_context(pg_to_pg.exported_snapshot(source)) if source.kind == "postgres" else None
            with source.connect() as sconn, target.connect() as tconn:
                specs = select_specs(source, sconn, request, self.target_dialect)
                dump = snapshot is not None and pg_to_pg.uses_pg_dump(request.source, request.target, specs)
                whole = not (request.selection.tables or request.selection.exclude_tables)
                create = (lambda missing: pg_to_pg.create_tables(source, target, tconn, snapshot, specs, missing,
                                                                 whole)) if dump else None
                with refusals_of(target):
                    jobs = prepare(source, target, sconn, tconn, specs, request, create)
            parallel = 1 if target.kind == "sqlite" else request.parallel
            copier = ChunkCopier(source, target, request, progress, rejects, pipe=dump)
            result.items = copier.copy(jobs, parallel)
            with target.connect() as tconn, refusals_of(target):
                if dump:
                    created = any(job.create for job in jobs) or not all(job.status == "done" for job in jobs)
                    pg_to_pg.finish(source, target, tconn, snapshot, specs, created, whole, parallel)
                self._finish(target, tconn, jobs, schema_done=dump, parallel=parallel)
        with source.connect() as sconn:  # after the snapshot: what the source holds now
            for job in jobs:
                checks.raise_on_drift(checks.count_drift(source, sconn, job.spec, job.bounds, job.done))
        if rejects is not None and rejects.count:
            result.rejects_path = rejects.path
        if request.verify:
            self._verify_jobs(source, target, jobs, result, request.show_diffs)
        return result

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
            target.finish_all(tconn, [job.spec for job in jobs])

    def _verify_jobs(self, source: Any, target: Any, jobs: list[TableJob], result: RunResult,
                     show_diffs: bool) -> None:
        for job, item in zip(jobs, result.items, strict=True):
            checked = checks.compare(source, target, job.spec, job.bounds, recorded=job.done, show_diffs=show_diffs)
            item.checksum, item.first_bad_chunk, item.diff_keys = checked.checksum, checked.first_bad_chunk, \
                checked.diff_keys
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
            item.duration_s = time.monotonic() - started
            result.items.append(item)
        result.verified = all(item.status == "equal" for item in result.items)
        return result


def _adopt_target_types(target: Any, tconn: Any, spec: Any) -> None:
    from storagectl.errors import NotFound

    columns = target.target_columns(tconn, spec)
    if columns is None:
        raise NotFound(f"{target.backend.label} has no table {spec.target} to verify",
                       hint="Try: storagectl migrate data run with the same --from/--to first")
    match_columns(target, spec, columns)


def _column_plan(column: Any) -> Any:
    from storagectl.datamove.model import ColumnPlan

    return ColumnPlan(column.name, column.source_type, column.target_type, column.note)


def _rejects_file(request: DataMigrationRequest) -> RejectsFile:
    if request.rejects_path is not None:
        return RejectsFile(request.rejects_path)
    directory = request.state_dir or Path.cwd()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return RejectsFile(directory / f"rejects-{request.source.name}-{request.target.name}-{stamp}.jsonl")

