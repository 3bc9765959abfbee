"""The command line: the command groups, assembled, and the global options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from storagectl import __version__
from storagectl.cli.lazy import LazyCommand, LazyGroup
from storagectl.cli.main import global_state
from storagectl.cli.state import OutputFormat, PlainUsage

# The commands, each imported only when it runs (`storagectl --help` imports none of them). To add
# one: a line here, name -> LazyCommand(module, attribute: its typer.Typer or its function, the
# first sentence of its help, as `storagectl --help` shows it[, cls for a function's command class]).
# tests/test_cli_startup.py checks every summary against the command's own help.
COMMANDS = {
    "backends": LazyCommand("storagectl.cli.backends_cmd", "backends",
                            "List the configured backends: name, kind, endpoint (secrets masked), description."),
    "diag": LazyCommand("storagectl.cli.diag_cmd", "diag",
                        "Check every backend concurrently: reachability, auth, version, latency and health checks."),
    "restore": LazyCommand("storagectl.cli.restore_cmd", "restore", "Restore a backup.", cls=PlainUsage),
    "config": LazyCommand("storagectl.cli.config_cmd", "app", "Validate, show and create the configuration file."),
    "migrate": LazyCommand("storagectl.cli.migrate_cmd", "app", "Schema migrations: Alembic for postgres/timescaledb/"
                           "sqlite, versioned Cypher files for neo4j."),
    "backup": LazyCommand("storagectl.cli.backup_cmd", "app", "Take, list, show, verify and delete backups."),
    "inspect": LazyCommand("storagectl.cli.inspect_cmd", "app",
                           "What is in each backend and how big it is (overview when no view is named)."),
    "cache": LazyCommand("storagectl.cli.cache_cmd", "app",
                         "Redis cache operations: keys, safe invalidation, hit rates, pub/sub, keyspace watch, "
                         "warm-up from a backup."),
    "bench": LazyCommand("storagectl.cli.bench_cmd", "app",
                         "Load-test a backend with honest percentiles; compare two results."),
}


class _RootGroup(LazyGroup):
    table = COMMANDS


app = typer.Typer(
    name="storagectl",
    help="Storage administration for operations teams: diagnostics, backups, restores, migrations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    cls=_RootGroup,
)
_RootGroup.app = app


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"storagectl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", metavar="FILE",
        help="Config file [default: $STORAGECTL_CONFIG, ./storagectl.yaml, user config dir].",
        dir_okay=False,
    )] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", metavar="FORMAT",
        help="table or json.")] = OutputFormat.table,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log lines (-vv debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colors (also $NO_COLOR).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.",
    )] = False,
) -> None:
    ctx.obj = global_state(config, output, verbose, quiet, no_color, debug)  # also storagectl.cli.quick's
