"""`storagectl inspect`: what is in each backend and how big it is; every figure exact, estimated or
sampled (JSON says which), within a time budget. Ctrl-C prints what was gathered, then exits 130.
The options are declared here; the bodies are inspect_views.py's (storagectl.cli.quick runs them too)."""

from __future__ import annotations

from typing import Annotated

import typer

from storagectl.cli import complete, inspect_views
from storagectl.cli.inspect_views import StatementSort, TableSort
from storagectl.cli.state import OutputOption, duration_value, state_of

app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                  help="What is in each backend and how big it is (overview when no view is named).")


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
    inspect_views.overview(state_of(ctx), ctx.invoked_subcommand, backend, budget, output)


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
    inspect_views.tables(state_of(ctx), backend, schema, sort, top, exact, chunks, budget, output)


@app.command("indexes")
def indexes(ctx: typer.Context, backend: BackendOption, top: TopOption = 50, budget: BudgetOption = None,
            output: OutputOption = None) -> None:
    """Indexes: size, scans, unused, duplicate, invalid (PostgreSQL, TimescaleDB, SQLite)."""
    inspect_views.indexes(state_of(ctx), backend, top, budget, output)


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
    inspect_views.queries(state_of(ctx), backend, top, sort, interval, budget, output)


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
    inspect_views.keys(state_of(ctx), backend, pattern, delimiter, depth, top, max_keys, pause, samples, budget, output)


@app.command("graph")
def graph(ctx: typer.Context, backend: BackendOption, budget: BudgetOption = None,
          output: OutputOption = None) -> None:
    """Neo4j: nodes per label, relationships per type, property keys, constraints and indexes."""
    inspect_views.graph(state_of(ctx), backend, budget, output)


@app.command("objects")
def objects(
    ctx: typer.Context, backend: BackendOption,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", metavar="PREFIX", help="Only keys under this prefix.")] = None,
    depth: Annotated[int, typer.Option("--depth", min=1, metavar="N", help="Prefix levels ('/') to group by.")] = 1,
    top: TopOption = 20, budget: BudgetOption = None, output: OutputOption = None,
) -> None:
    """S3: objects and bytes per prefix and storage class, noncurrent versions, incomplete uploads."""
    inspect_views.objects(state_of(ctx), backend, prefix, depth, top, budget, output)
