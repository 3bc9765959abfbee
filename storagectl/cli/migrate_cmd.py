"""`storagectl migrate`: schema migrations (Alembic for SQL backends, versioned Cypher for Neo4j)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from storagectl.cli import complete
from storagectl.cli.output import confirm, note, print_json, print_table
from storagectl.cli.state import (
    AppState,
    DryRunOption,
    OutputFormat,
    OutputOption,
    PlainUsage,
    YesOption,
    state_of,
)

if TYPE_CHECKING:
    from storagectl.migrations import MigrationStatus, Migrator, RunResult

app = typer.Typer(
    no_args_is_help=True,
    help="Schema migrations: Alembic for postgres/timescaledb/sqlite, versioned Cypher files for neo4j.",
)

BackendOption = Annotated[str | None, typer.Option(
    "--backend", "-b", metavar="BACKEND",
    help="The backend to migrate. Default: the only backend with migrations: set.",
    autocompletion=complete.backend_names,
)]
AllOption = Annotated[bool, typer.Option("--all", help="Every backend with migrations:, in config order.")]
def _add_data_group() -> None:
    from storagectl.cli import migrate_data_cmd

    app.add_typer(migrate_data_cmd.app, name="data")


_add_data_group()

LockTimeoutOption = Annotated[float, typer.Option(
    "--lock-timeout", min=0, metavar="SECONDS",
    help="Seconds to wait for another migration run to finish before giving up (exit 7).",
)]
DEFAULT_LOCK_TIMEOUT = 60.0


def _migrator(state: AppState, name: str | None) -> Migrator:
    from storagectl.backends import backend_from_config, only_backend
    from storagectl.migrations import migrating_backends, migrator_for

    if name is not None:
        return migrator_for(backend_from_config(state.config, name))
    return migrator_for(only_backend(migrating_backends(state.config), "backends with migrations",
                                     hint="Try: --backend NAME, or --all where the command accepts it"))


def _check_all(all_backends: bool, backend: str | None) -> None:
    from storagectl.errors import UsageError

    if all_backends and backend:
        raise UsageError("give either --all or --backend, not both")


@app.command("init")
def init(ctx: typer.Context, backend: BackendOption = None) -> None:
    """Create the backend's migrations directory (an Alembic script directory, or a Cypher folder)."""
    migrator = _migrator(state_of(ctx), backend)
    directory = migrator.init()
    name = migrator.backend.name
    note(state_of(ctx), f"created {directory}; next: storagectl migrate new --backend {name} -m 'create tables'")


@app.command("new")
def new(
    ctx: typer.Context,
    message: Annotated[str, typer.Option("--message", "-m", metavar="TEXT", help="What the revision changes.")],
    backend: BackendOption = None,
    autogenerate: Annotated[bool, typer.Option(
        "--autogenerate", help="Fill the revision from the difference between --models and the database.",
    )] = False,
    models: Annotated[str | None, typer.Option(
        "--models", metavar="MODULE:ATTR", help="SQLAlchemy MetaData to compare against, as package.module:metadata.",
    )] = None,
    merge: Annotated[bool, typer.Option("--merge", help="A revision that merges all current heads.")] = False,
    output: OutputOption = None,
) -> None:
    """Create a revision file (SQL: versions/<rev>_<slug>.py; neo4j: V<n>__<slug>.cypher) to edit."""
    state = state_of(ctx)
    created = _migrator(state, backend).new(message, autogenerate=autogenerate, models=models, merge=merge)
    if state.format(output) is OutputFormat.json:
        print_json(created.to_dict())
    else:
        state.out.print(f"created revision {created.revision}: {created.path}", markup=False)


@app.command("up")
def up(
    ctx: typer.Context,
    backend: BackendOption = None,
    all_backends: AllOption = False,
    to: Annotated[str, typer.Option("--to", metavar="REVISION", help="Target revision (default: head).")] = "head",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the SQL of the pending revisions; change nothing.",
    )] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Treat lint warnings as errors: apply nothing if any pending revision has one.",
    )] = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    output: OutputOption = None,
) -> None:
    """Apply the pending revisions, each in its own transaction, under a per-database lock."""
    from storagectl.errors import UsageError
    from storagectl.migrations import up_all

    state = state_of(ctx)
    _check_all(all_backends, backend)
    if all_backends and to != "head":
        raise UsageError("--to names a revision of one backend; it cannot be combined with --all")
    options = {"dry_run": dry_run, "strict": strict, "lock_timeout": lock_timeout,
               "warn": lambda text: note(state, f"warning: {text}")}
    results = up_all(state.config, **options) if all_backends else [_migrator(state, backend).up(to, **options)]
    _render_runs(state, results, output)


@app.command("down")
def down(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", metavar="REVISION",
        help="Revision to go back to (base: undo everything).")],
    backend: BackendOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    output: OutputOption = None,
) -> None:
    """Revert applied revisions down to --to (runs their downgrade()). On a terminal it shows the SQL
    and asks first; elsewhere it needs --yes."""
    state = state_of(ctx)
    migrator = _migrator(state, backend)
    name = migrator.backend.name
    if not (yes or dry_run):
        plan = migrator.down(to, dry_run=True) if state.interactive else None
        if plan is not None:  # for the person answering, beside the question (stdout keeps the result)
            state.err.print(plan.sql or "", markup=False, highlight=False, soft_wrap=True)
        confirm(state, f"Revert {len(plan.revisions) if plan else 0} revision(s) of backend {name}?",
                refusal="migrate down reverts schema changes and may drop data; refusing without --yes",
                hint=f"Try: storagectl migrate down --backend {name} --to {to} --dry-run; then the same with --yes")
    result = migrator.down(to, dry_run=dry_run, lock_timeout=lock_timeout)
    _render_runs(state, [result], output)


@app.command("status")
def status(
    ctx: typer.Context,
    backend: BackendOption = None,
    all_backends: AllOption = False,
    output: OutputOption = None,
) -> None:
    """Current vs head revision and pending count; exit 1 when anything is pending, 6 when edited.

    With --all, a backend that cannot be read (no migrations directory, unreachable) is a row with
    its error and the others are still reported; the exit code is the worst of all rows.
    """
    from storagectl.migrations import status_all

    state = state_of(ctx)
    _check_all(all_backends, backend)
    reports = status_all(state.config) if all_backends else [_migrator(state, backend).status()]
    _render_status(state, reports, output)
    worst = max(report.exit_code for report in reports)
    if worst:
        raise typer.Exit(worst)


@app.command("history")
def history(ctx: typer.Context, backend: BackendOption = None, output: OutputOption = None) -> None:
    """Every revision, newest first, with whether and when it was applied."""
    state = state_of(ctx)
    entries = _migrator(state, backend).history()
    if state.format(output) is OutputFormat.json:
        print_json([entry.to_dict() for entry in entries])
        return
    rows = [[e.revision, e.parent, "yes" if e.applied else "no", e.applied_at,
             "EDITED" if e.edited else "-", e.message] for e in entries]
    print_table(state, ["Revision", "Parent", "Applied", "Applied at", "Edited", "Message"], rows)


@app.command("stamp", cls=PlainUsage)
def stamp(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(metavar="REVISION",
        help="Revision to record as current (head, base, or an id).")],
    backend: BackendOption = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Record REVISION as applied without running anything (adopt an existing schema, accept edits)."""
    state = state_of(ctx)
    migrator = _migrator(state, backend)
    current = migrator.stamp(revision, lock_timeout=lock_timeout)
    note(state, f"{migrator.backend.name}: stamped at {current or 'base'}")


@app.command("current")
def current(ctx: typer.Context, backend: BackendOption = None, all_backends: AllOption = False,
            output: OutputOption = None) -> None:
    """The revision the database is at (as `alembic current`); reads the database, changes nothing."""
    from storagectl.migrations import status_all

    state = state_of(ctx)
    _check_all(all_backends, backend)
    reports = status_all(state.config) if all_backends else [_migrator(state, backend).status()]
    # a backend that could not be read is neither at its head nor not: null, "-" in the table
    rows = [{"backend": r.backend, "kind": r.kind, "current": r.current,
             "is_head": None if r.error else r.current == r.head, "error": r.error} for r in reports]
    if state.format(output) is OutputFormat.json:
        print_json(rows)
    else:
        print_table(state, ["Backend", "Kind", "Current", "Head?", "Error"],
                    [[r["backend"], r["kind"], "-" if r["error"] else r["current"] or "base",
                      {True: "yes", False: "no", None: "-"}[r["is_head"]], r["error"] or ""] for r in rows])
    worst = max(report.error_exit for report in reports)
    if worst:
        raise typer.Exit(worst)


@app.command("heads")
def heads(ctx: typer.Context, backend: BackendOption = None, output: OutputOption = None) -> None:
    """The head revision(s) of the migrations directory (as `alembic heads`); two or more need a merge."""
    state = state_of(ctx)
    found = _migrator(state, backend).heads()
    if state.format(output) is OutputFormat.json:
        print_json([info.to_dict() for info in found])
        return
    print_table(state, ["Revision", "Parents", "Message", "File"],
                [[i.revision, ", ".join(i.parents) or "base", i.message, i.path] for i in found])


@app.command("show", cls=PlainUsage)
def show(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(metavar="REVISION", help="Revision id, head, or a Cypher version.")],
    backend: BackendOption = None,
    output: OutputOption = None,
) -> None:
    """One revision: id, parents, message, file and its code (as `alembic show`)."""
    state = state_of(ctx)
    info = _migrator(state, backend).show(revision)
    if state.format(output) is OutputFormat.json:
        print_json(info.to_dict())
        return
    summary = [["Revision", info.revision], ["Parents", ", ".join(info.parents) or "base"],
               ["Head", "yes" if info.is_head else "no"], ["Message", info.message], ["File", info.path]]
    print_table(state, ["Field", "Value"], summary)
    state.out.print(info.body or "", markup=False, highlight=False, soft_wrap=True)


def _render_runs(state: AppState, results: list[RunResult], output: OutputFormat | None) -> None:
    if state.format(output) is OutputFormat.json:
        print_json([result.to_dict() for result in results])
        return
    if any(result.sql is not None for result in results):
        for result in results:
            header = f"-- backend {result.backend}: {len(result.revisions)} revision(s) {result.direction}\n"
            state.out.print(header + (result.sql or ""), markup=False, highlight=False, soft_wrap=True)
        return
    rows = [[r.backend, r.kind, ", ".join(r.revisions) or "nothing to do", r.current or "base"] for r in results]
    verb = "Applied" if all(r.direction == "up" for r in results) else "Reverted"
    print_table(state, ["Backend", "Kind", verb, "Now at"], rows)


def _render_status(state: AppState, reports: list[MigrationStatus], output: OutputFormat | None) -> None:
    if state.format(output) is OutputFormat.json:
        print_json([report.to_dict() for report in reports])
        return
    rows = [[r.backend, r.kind, "-" if r.error else r.current or "base", r.head or "-",
             "-" if r.error else len(r.pending), ", ".join(r.edited) or "-", r.error or ""] for r in reports]
    print_table(state, ["Backend", "Kind", "Current", "Head", "Pending", "Edited", "Error"], rows)
