"""The SQL data paths (SQLite/PostgreSQL/TimescaleDB in any direction): plan, run, verify."""

from __future__ import annotations

import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl.archive.progress import ProgressCallback
from storagectl.datamove.model import ItemPlan, MigrationPlan, RunResult
from storagectl.datamove.sql import checks, pg_to_pg, state
from storagectl.datamove.sql.copier import ChunkCopier
from storagectl.datamove.sql.engine import TableJob, prepare, select_specs, side_for
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

        source = side_for(request.source)
        result = MigrationPlan(request.source.name, request.target.name, self.pair)
        with source.connect() as conn:
            for spec in select_specs(source, conn, request, self.target_dialect):
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
                whole = not (request.selection.tables or request.selection.exclude)
                create = (lambda missing: pg_to_pg.create_tables(source, target, tconn, snapshot, specs, missing,
                                                                 whole)) if dump else None
                jobs = prepare(source, target, sconn, tconn, specs, request, create)
                parallel = 1 if target.kind == "sqlite" else request.parallel
                schema = pg_to_pg.pending_post_data(source, target, tconn, snapshot, specs, jobs, whole,
                                                    parallel) if dump else None
            with schema or nullcontext():
                copier = ChunkCopier(source, target, request, progress, rejects, pipe=dump,
                                     on_loaded=schema.table_loaded if schema else None)
                result.items = copier.copy(jobs, parallel)
                with target.connect() as tconn:
                    if schema is not None:
                        schema.finish(tconn)
                    if dump:
                        pg_to_pg.move_sequences(source, tconn, specs)
                    self._finish(target, tconn, jobs, schema_done=dump)
        with source.connect() as sconn:  # after the snapshot: what the source holds now
            for job in jobs:
                checks.raise_on_drift(checks.count_drift(source, sconn, job.spec, job.bounds, job.done))
        if rejects is not None and rejects.count:
            result.rejects_path = rejects.path
        if request.verify:
            self._verify_jobs(source, target, jobs, result, request.show_diffs)
        return result

    def _finish(self, target: Any, tconn: Any, jobs: list[TableJob], *, schema_done: bool) -> None:
        """Keys, indexes and identities per table (unless pg_dump's post-data built them), foreign keys
        once all are in."""
        for job in jobs:
            if job.status != "done":
                if not schema_done:
                    target.finish_table(tconn, job.spec)
                state.set_status(tconn, target.param, job.spec.target, "done")
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
    from storagectl.datamove.sql.engine import _match_columns
    from storagectl.errors import NotFound

    columns = target.target_columns(tconn, spec)
    if columns is None:
        raise NotFound(f"{target.backend.label} has no table {spec.target} to verify",
                       hint="Try: storagectl migrate data run with the same --from/--to first")
    _match_columns(target, spec, columns)


def _column_plan(column: Any) -> Any:
    from storagectl.datamove.model import ColumnPlan

    return ColumnPlan(column.name, column.source_type, column.target_type, column.note)


def _rejects_file(request: DataMigrationRequest) -> RejectsFile:
    if request.rejects_path is not None:
        return RejectsFile(request.rejects_path)
    directory = request.state_dir or Path.cwd()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return RejectsFile(directory / f"rejects-{request.source.name}-{request.target.name}-{stamp}.jsonl")

