"""`storagectl inspect`: what is in each backend and how big it is; every figure exact, estimated or
sampled (JSON says which), within a time budget. Ctrl-C prints what was gathered, then exits 130."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from storagectl.cli import complete
from storagectl.cli.output import note, print_json, print_line, print_table
from storagectl.cli.state import AppState, OutputFormat, OutputOption, duration_value, state_of

app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                  help="What is in each backend and how big it is (overview when no view is named).")


class TableSort(StrEnum):
    size = "size"
    rows = "rows"
    dead = "dead"
    name = "name"


class StatementSort(StrEnum):
    total = "total"
    calls = "calls"
    mean = "mean"
    rows = "rows"


BackendOption = Annotated[str, typer.Option("--backend", "-b", metavar="BACKEND", help="The backend to inspect.",
                                            autocompletion=complete.backend_names)]
BudgetOption = Annotated[float | None, typer.Option(
    "--budget", parser=duration_value, metavar="DURATION",
    help="Wall time per backend (10s, 2m); when it runs out, what was gathered is shown, marked incomplete.")]
TopOption = Annotated[int, typer.Option("--top", "-n", min=1, metavar="N", help="Show this many rows.")]


@app.callback()
def overview(
    ctx: typer.Context,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", metavar="BACKEND", help="Only this backend (repeatable). Default: all.",
        autocompletion=complete.backend_names)] = None,
    budget: BudgetOption = 10.0,
    output: OutputOption = None,
) -> None:
    """Per backend: kind, server version, total size, object counts and the biggest few items."""
    if output is not None:  # `inspect -o json tables ...` means the view's output too
        state_of(ctx).output = output
    if ctx.invoked_subcommand is None:
        _run(ctx, backend, "overview", output, budget=budget)


@app.command("tables")
def tables(
    ctx: typer.Context, backend: BackendOption,
    schema: Annotated[str | None, typer.Option(
        "--schema", metavar="SCHEMA", help="Only this schema (PostgreSQL).")] = None,
    sort: Annotated[TableSort, typer.Option(
        "--sort", metavar="ORDER", help="size, rows, dead or name.")] = TableSort.size,
    top: TopOption = 20,
    exact: Annotated[bool, typer.Option("--exact", help="Also count(*) every shown table.")] = False,
    chunks: Annotated[bool, typer.Option("--chunks", help="TimescaleDB: list chunks as tables too.")] = False,
    budget: BudgetOption = None, output: OutputOption = None,
) -> None:
    """Tables with rows, table / index / TOAST bytes, dead tuples, vacuum (PostgreSQL, TimescaleDB,
    SQLite)."""
    _run(ctx, [backend], "tables", output, schema=schema, sort=sort.value, top=top, exact=exact, chunks=chunks,
         budget=budget)


@app.command("indexes")
def indexes(ctx: typer.Context, backend: BackendOption, top: TopOption = 50, budget: BudgetOption = None,
            output: OutputOption = None) -> None:
    """Indexes: size, scans, unused, duplicate, invalid (PostgreSQL, TimescaleDB, SQLite)."""
    _run(ctx, [backend], "indexes", output, top=top, budget=budget)


@app.command("queries")
def queries(
    ctx: typer.Context, backend: BackendOption, top: TopOption = 20,
    sort: Annotated[StatementSort, typer.Option(
        "--sort", metavar="ORDER", help="total, calls, mean or rows.")] = StatementSort.total,
    interval: Annotated[float | None, typer.Option(
        "--interval", parser=duration_value, metavar="DURATION",
        help="Show the difference of two snapshots this far apart (what is slow right now).")] = None,
    budget: BudgetOption = None, output: OutputOption = None,
) -> None:
    """Top statements from pg_stat_statements (exit 3 when it is missing or not loaded)."""
    _run(ctx, [backend], "queries", output, top=top, sort=sort.value, interval=interval, budget=budget)


@app.command("keys")
def keys(
    ctx: typer.Context, backend: BackendOption,
    pattern: Annotated[str | None, typer.Option("--pattern", metavar="PATTERN", help="SCAN MATCH pattern.")] = None,
    delimiter: Annotated[str, typer.Option("--delimiter", metavar="TEXT", help="Separates prefix levels.")] = ":",
    depth: Annotated[int, typer.Option("--depth", min=1, metavar="N", help="Prefix levels to group by.")] = 2,
    top: TopOption = 20,
    max_keys: Annotated[int | None, typer.Option(
        "--max-keys", min=1, metavar="N", help="Stop after this many keys and extrapolate (marked sampled).")] = None,
    pause: Annotated[float, typer.Option("--interval", "-i", min=0.0, metavar="SEC",
                                         help="Sleep between SCAN batches.")] = 0.0,
    samples: Annotated[int | None, typer.Option(
        "--samples", min=0, metavar="N",
        help="MEMORY USAGE SAMPLES (0: all nested values; default: server's 5).")] = None,
    budget: BudgetOption = None, output: OutputOption = None,
) -> None:
    """Redis: keys by prefix (count, memory, TTLs, types) and the biggest keys."""
    _run(ctx, [backend], "keys", output, pattern=pattern, delimiter=delimiter, depth=depth, top=top,
         max_keys=max_keys, pause=pause, samples=samples, budget=budget)


@app.command("graph")
def graph(ctx: typer.Context, backend: BackendOption, budget: BudgetOption = None,
          output: OutputOption = None) -> None:
    """Neo4j: nodes per label, relationships per type, property keys, constraints and indexes."""
    _run(ctx, [backend], "graph", output, budget=budget)


@app.command("objects")
def objects(
    ctx: typer.Context, backend: BackendOption,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", metavar="PREFIX", help="Only keys under this prefix.")] = None,
    depth: Annotated[int, typer.Option("--depth", min=1, metavar="N", help="Prefix levels ('/') to group by.")] = 1,
    top: TopOption = 20, budget: BudgetOption = None, output: OutputOption = None,
) -> None:
    """S3: objects and bytes per prefix and storage class, noncurrent versions, incomplete uploads."""
    _run(ctx, [backend], "objects", output, prefix=prefix, depth=depth, top=top, budget=budget)


def _run(ctx: typer.Context, names: list[str] | None, view: str, output: Any, **options: Any) -> None:
    from storagectl.backends import selected_backends
    from storagectl.errors import Interrupted, UsageError
    from storagectl.inspect import InspectOptions, inspect_backends

    state = state_of(ctx)
    targets = selected_backends(state.quick_config, names)
    if not targets:
        raise UsageError("no backends configured", hint="Try: add a backend under `backends:` in the config")
    reports = inspect_backends(targets, view, InspectOptions(**options))
    if state.format(output) is OutputFormat.json:
        print_json({"view": view, "backends": [r.to_dict() for r in reports]})
    else:
        _render(state, reports)
    if any(r.stopped == "interrupted" for r in reports):
        raise Interrupted("interrupted; the report above has what was gathered until then")


def _render(state: AppState, reports: list) -> None:
    for report in reports:
        print_line(state, _heading(report))
        if report.summary:
            print_table(state, ["Figure", "Value"], [[name, _cell(v)] for name, v in report.summary.items()])
        for name, rows in report.sections.items():
            columns = list(dict.fromkeys(key for row in rows for key in row))
            print_table(state, columns, [[_cell(row.get(c)) for c in columns] for row in rows],
                        title=name.replace("_", " "))
        for line in report.notes:
            note(state, f"note: {report.backend}: {line}")


def _heading(report: Any) -> str:
    state = report.error or (f"incomplete ({report.stopped})" if report.stopped else "")
    version = f", {report.server_version}" if report.server_version else ""
    return f"{report.backend} ({report.kind}{version}){': ' + state if state else ''}"


def _cell(value: Any) -> str:
    """A figure for people: bytes in IEC units, ``~`` for estimates, ``±`` for sampled ones."""
    from storagectl.inspect import Figure, Provenance
    from storagectl.units import human_bytes

    if not isinstance(value, Figure):
        return _plain(value)
    if value.value is None:
        return "-"
    shown = human_bytes(value.value) if value.unit == "bytes" else _plain(value.value)
    if value.provenance is Provenance.SAMPLED:
        bound = human_bytes(value.error_bound) if value.unit == "bytes" else f"{value.error_bound:,.0f}"
        return f"~{shown} ±{bound}"
    return f"~{shown}" if value.provenance is Provenance.ESTIMATE else shown


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    return str(value)
