"""Which tables a move takes and whether the target can take them: selection, descriptions, the checks
made before any row moves (columns match, empty or ``--yes``, an interrupted run resumed or refused),
target tables created and the chunk bounds fixed (kept in the state table, so a resumed run cuts
the same chunks). The chunks themselves are copied by :mod:`storagectl.datamove.sql.copier`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from storagectl.datamove.sql import canonical, state, typemap
from storagectl.datamove.sql.spec import Chunk, TableSpec, chunks_from_bounds
from storagectl.datamove.state import raise_first
from storagectl.errors import NotFound, PermissionDenied, StoragectlError, UsageError
from storagectl.selection import matches_any

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest

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
    copy_sums: dict[int, int] = field(default_factory=dict)  # chunk → XXH64 sum of the COPY lines it sent

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
    selection = request.selection
    selection.require_fields(("tables", "exclude_tables"), "a data move between SQL backends")
    available = source.table_names(conn)
    maps = {table_map.source: table_map for table_map in request.maps}
    # --table narrows (globs, in the order given): the maps then only say how the chosen tables move;
    # without it, mapped tables move
    wanted = list(selection.tables) or list(maps)
    found = {pattern: [name for name in available if matches_any(name, [pattern])] for pattern in wanted}
    unknown = [pattern for pattern, names in found.items() if not names]
    if unknown:
        raise UsageError(f"{source.backend.label} has no table {', '.join(map(repr, unknown))}",
                         hint=f"Try: one of {', '.join(available) or '(no tables)'}")
    names = list(dict.fromkeys(name for names in found.values() for name in names)) if wanted else available
    names = [name for name in names if not matches_any(name, selection.exclude_tables)]
    specs = [source.describe(conn, name, maps.get(name), target_kind) for name in names]
    _carry_foreign_keys(specs, target_kind)
    _refuse_shared_targets(specs, target_kind)
    onto_itself = [spec.source for spec in specs if spec.target == spec.source]
    if request.source.name == request.target.name and onto_itself:
        raise UsageError(f"{', '.join(onto_itself)} would be moved onto itself",
                         hint="Try: a map giving it another target name, or another target backend")
    return specs


def _refuse_shared_targets(specs: list[TableSpec], target_kind: str) -> None:
    """Two source tables moved into one target table (``public.orders`` and ``sales.orders`` into a
    SQLite target, whose names have no schema and ignore case): refused before anything is written."""
    from storagectl.datamove.sql.pg_side import split_name

    by_target: dict[str, list[str]] = {}
    for spec in specs:
        # a PostgreSQL target's name without a schema is in public, as split_name reads it: things is public.things
        key = spec.target.lower() if target_kind == "sqlite" else ".".join(split_name(spec.target))
        by_target.setdefault(key, []).append(spec.source)
    for target, sources in by_target.items():
        if len(sources) > 1:
            entries = [f"{{source: {sources[0]}}}", *(f"{{source: {name}, target: {name.replace('.', '_')}}}"
                                                      for name in sources[1:])]
            raise UsageError(f"tables {' and '.join(sources)} would all be moved into {target}",
                             hint=f"Try: a --map FILE naming their targets (tables: [{', '.join(entries)}]; a map "
                                  f"moves the tables it lists), or --exclude-table {sources[-1]}")


def _carry_foreign_keys(specs: list[TableSpec], target_kind: str) -> None:
    """Foreign keys as the target names them: the referenced table and columns follow a rename (a map
    or a plan). One whose referenced table is not moved, or whose referenced columns are not moved as
    they are, is left out, and the plan says so."""
    by_source = {spec.source: spec for spec in specs}
    for spec in specs:
        kept = []
        for key in spec.foreign_keys:
            described = f"foreign key ({', '.join(key.columns)}) → {key.ref_table}"
            parent = by_source.get(key.ref_table)
            renamed = {c.source_column: c.name for c in parent.columns if c.source_column} if parent else {}
            columns = tuple(renamed.get(column) for column in key.ref_columns)
            if parent is None:
                spec.problems.append(f"{described} not moved: {key.ref_table} is not moved with it")
            elif None in columns:
                spec.problems.append(f"{described} not moved: its referenced columns are not moved as they are")
            elif target_kind == "sqlite":
                spec.problems.append(f"{described} not moved: SQLite cannot add one to a table after its rows")
            else:
                kept.append(replace(key, ref_table=parent.target, ref_columns=columns))  # type: ignore[arg-type]
        spec.foreign_keys = kept


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
    replaced = [job.spec for job in jobs if job.empty_first and not job.resumed]
    if replaced:
        target.empty_tables(tconn, replaced)
    for job in jobs:
        if job.resumed:
            continue
        if job.create and create_tables is None:
            target.create_table(tconn, job.spec)
        job.bounds = source.bounds(sconn, job.spec, request.batch_rows)
        state.start(tconn, target.param, job.spec.target, job.spec.source, job.bounds)
    return jobs


def _check_table(target: Any, tconn: Any, spec: TableSpec, request: DataMigrationRequest,
                 recorded: bool = True) -> TableJob:
    """``recorded``: the target has a state table to read (a run creates it first; a plan does not)."""
    found = state.read(tconn, target.param, spec.target) if recorded else state.TableState(spec.target)
    if found.started and (found.status != "done" or request.resume):  # --resume: finished tables stay as they are
        if not request.resume:
            raise UsageError(f"an earlier run into {spec.target} stopped after {len(found.chunks)} of "
                             f"{len(found.bounds) + 1} chunks",
                             hint="Try: the same command with --resume to continue it, or drop the target table "
                                  "to start over")
        _adopt_columns(target, tconn, spec)
        return TableJob(spec, found.bounds, found.chunks, found.status, resumed=True, copy_sums=found.copy_sums)
    columns = target.target_columns(tconn, spec) if tconn is not None else None
    if columns is None:
        return TableJob(spec, [], create=True)
    match_columns(target, spec, columns)
    empty = target.is_empty(tconn, spec)
    if not empty and not request.allow_nonempty_target:
        raise UsageError(f"target table {spec.target} is not empty",
                         hint="Try: --yes to replace its rows with the source's")
    return TableJob(spec, [], empty_first=not empty)


# -- what a plan checks of the target, read-only -------------------------------------------------------
def check_target(target: Any, specs: list[TableSpec], request: DataMigrationRequest, *,
                 pg_dump: bool = False, dumped_schemas: list[str] | None = None, locked: bool = False
                 ) -> list[StoragectlError]:
    """The errors a run of ``request`` would stop with before any row moves, found without writing
    (the target opened read-only): the target unreachable, another run writing into it (unless
    ``locked``: this run holds its lock), an interrupted run without --resume, a table with other
    columns, a non-empty one without --yes, a schema that a table would be created in missing, a
    privilege the run needs; ``dumped_schemas`` (created by pg_dump's pre-data of a whole database)
    that the target has already. Existing tables lend their column types to ``specs``, as in a run."""
    try:
        with target.read_only() as tconn:
            other_run = None if locked else target.other_run(tconn)
            return [other_run] if other_run else _blockers(target, tconn, specs, request, pg_dump,
                                                           dumped_schemas or [])
    except StoragectlError as exc:  # unreachable, refused password, no such file
        return [exc]


def stop_on_blockers(target: Any, specs: list[TableSpec], request: DataMigrationRequest, *,
                     pg_dump: bool = False, dumped_schemas: list[str] | None = None) -> None:
    """A run's first step, before it writes anything and with the target's run lock held: the plan's
    checks (:func:`check_target`), the first error they find raised with the plan's message and exit
    code, the others under it."""
    raise_first(check_target(target, specs, request, pg_dump=pg_dump, dumped_schemas=dumped_schemas, locked=True))


def _blockers(target: Any, tconn: Any, specs: list[TableSpec], request: DataMigrationRequest,
              pg_dump: bool, dumped_schemas: list[str]) -> list[StoragectlError]:
    recorded = tconn is not None and state.exists(tconn, target.kind)
    blockers: list[StoragectlError] = []
    if refused := target.cannot_record(tconn, recorded):
        blockers.append(_refusal(target, refused))
    jobs = []
    for spec in specs:
        try:
            with refusals_of(target):  # reading a table the user may not read
                job = _check_table(target, tconn, spec, request, recorded)
        except StoragectlError as exc:
            blockers.append(exc)
            continue
        jobs.append(job)
        if refused := target.cannot_write(tconn, spec, create=job.create, emptied=job.empty_first,
                                          adds_keys=not pg_dump):
            blockers.append(_refusal(target, refused))
    created = [job.spec for job in jobs if job.create]
    dumped_whole = pg_dump and not narrowed(request)
    blockers += _missing_schemas(target, tconn, created, dumped_whole=dumped_whole)
    if created and dumped_whole and (present := target.present_schemas(tconn, dumped_schemas)):
        blockers.append(UsageError(f"{target.backend.label} has schema {', '.join(present)} already, which pg_dump's "
                                   "pre-data of the whole source database creates (and fails on)",
                                   hint=f"Try: --table {present[0]}.* to move its tables into the existing schema, "
                                        "or drop it on the target"))
    if pg_dump:
        from storagectl.datamove.sql.pg_to_pg import check_creatable

        try:
            check_creatable(specs, [job.spec for job in jobs if job.create])
        except StoragectlError as exc:
            blockers.append(exc)
    return blockers


def _missing_schemas(target: Any, tconn: Any, created: list[TableSpec], *, dumped_whole: bool
                     ) -> list[StoragectlError]:
    """A table is created in an existing schema: the run creates schemas only through pg_dump's
    pre-data of a whole database (with --table, pg_dump leaves them out)."""
    errors: list[StoragectlError] = []
    for schema, tables in target.missing_schemas(tconn, created).items():
        if dumped_whole:
            for spec in tables:
                spec.problems.append(f"schema {schema} is created by the run (pg_dump's pre-data)")
            continue
        errors.append(NotFound(f"{target.backend.label} has no schema {schema}, where the move creates "
                               f"{', '.join(spec.target for spec in tables)}; a run creates tables, not schemas",
                               hint=f"Try: CREATE SCHEMA {schema}; on the target, or a --map FILE naming a table "
                                    "in an existing schema"))
    return errors


def narrowed(request: DataMigrationRequest) -> bool:
    """Some tables chosen: PostgreSQL → PostgreSQL then dumps the schema of those tables alone."""
    return bool(request.selection.tables or request.selection.exclude_tables)


def _refusal(target: Any, what: str) -> PermissionDenied:
    return PermissionDenied(f"{target.backend.label}: {what}",
                            hint="Try: grant it to the target's user, or connect as a user who has it")


def permission_refused(side: Any, exc: BaseException) -> PermissionDenied | None:
    """A write the target's server or file refused for want of a privilege, as :class:`PermissionDenied`
    (exit 4, as the plan reports it); None: another error."""
    import sqlite3

    denied = isinstance(exc, sqlite3.OperationalError) and "readonly database" in str(exc)
    if not denied:
        try:
            import psycopg
        except ImportError:  # pragma: no cover
            return None
        denied = isinstance(exc, psycopg.errors.InsufficientPrivilege)
    return PermissionDenied(f"{side.backend.label}: {side.backend.error_line(exc)}",
                            hint="Try: grant the privilege to the target's user; then the same command with "
                                 "--resume") if denied else None


@contextlib.contextmanager
def refusals_of(target: Any) -> Iterator[None]:
    """A run's writes outside the chunks (state table, tables, keys): a refused privilege as
    :class:`PermissionDenied`."""
    try:
        yield
    except Exception as exc:
        if (refused := permission_refused(target, exc)) is not None:
            raise refused from exc
        raise


def _adopt_columns(target: Any, tconn: Any, spec: TableSpec) -> None:
    columns = target.target_columns(tconn, spec)
    if columns is not None:
        match_columns(target, spec, columns)


def match_columns(target: Any, spec: TableSpec, columns: list[tuple[str, str]]) -> None:
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
        if {their_kind, column.kind} == {"float", "float4"}:
            column.kind = "float4"  # a PostgreSQL real on either side: hashed to single precision
        elif their_kind != column.kind and not {their_kind, column.kind} <= {"text", *canonical.TEXT_KINDS}:
            raise IncompatibleTarget(f"target table {spec.target}: column {column.name} is {existing[column.name]}, "
                                     f"the move needs {column.target_type}",
                                     hint="Try: a cast for it in a --map FILE, or drop the target table")
        if column.verbatim and typemap.sqlite_affinity(existing[column.name]) != \
                typemap.sqlite_affinity(column.target_type):
            column.verbatim, column.note = False, ""  # the target would store some values otherwise: converted
        column.target_type = existing[column.name]  # text and other kinds hash alike
