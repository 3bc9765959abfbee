"""Entry point: assembles the command groups and turns errors into exit codes, in one place."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from storagectl import __version__
from storagectl.cli.lazy import LazyCommand, LazyGroup
from storagectl.cli.state import AppState, OutputFormat, PlainUsage

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

    ctx.obj = AppState(
        config_path=config, output=output, verbose=verbose, quiet=quiet,
        color=not no_color and "NO_COLOR" not in os.environ, debug=debug,
    )
    _configure_logging(verbose, quiet)


def _configure_logging(verbose: int, quiet: bool) -> None:
    import logging  # here: `storagectl --help` runs no callback and needs no logging

    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    logger = logging.getLogger("storagectl")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class _RedactingFilter:
    """A logging filter (logging takes any object with a ``filter`` method)."""

    def filter(self, record: Any) -> bool:
        from storagectl.redact import redact_text

        record.msg = redact_text(record.getMessage())
        record.args = ()
        return True


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the only place where exceptions become messages and exit codes."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    from typer.exceptions import Abort, Exit, TyperException

    from storagectl.errors import ConfigError, ExitCode, StoragectlError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    # pydantic looks for plugins in every installed distribution's entry points when the config
    # models are built (~50 ms of each start); storagectl uses none. Set to anything else to keep them.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    signals = _SignalsAsInterrupts()
    try:
        with signals:
            result = app(args=args, prog_name="storagectl", standalone_mode=False)
        if result == ExitCode.INTERRUPTED and signals.received:
            # typer turns a KeyboardInterrupt that no command handled into a bare 130
            return _interrupted(signals.received)
        return result if isinstance(result, int) else 0
    except Exit as exc:
        return exc.exit_code
    except Abort:
        _error("aborted")
        return ExitCode.INTERRUPTED
    except TyperException as exc:  # usage errors: bad option, missing argument, ...
        exc.show()
        return getattr(exc, "exit_code", ExitCode.USAGE)
    except KeyboardInterrupt:
        return _interrupted(signals.received or "interrupted")
    except ConfigError as exc:
        _traceback_if(debug)
        for problem in exc.problems or [exc.message]:
            _error(problem)
        _hint(exc.hint or "Try: storagectl config validate")
        return exc.exit_code
    except StoragectlError as exc:
        _traceback_if(debug)
        _error(exc.message)
        for line in exc.details:
            sys.stderr.write(f"  {line}\n")
        _hint(exc.hint)
        return exc.exit_code
    except Exception as exc:
        from storagectl.redact import redact_text

        _traceback_if(debug)
        _error(f"internal error: {type(exc).__name__}: {redact_text(str(exc))} "
               "(a bug in storagectl; rerun with --debug for the traceback)")
        return ExitCode.INTERNAL


def _interrupted(what: str) -> int:
    from storagectl.errors import ExitCode

    _error(f"{what} before the command finished")
    return ExitCode.TERMINATED if what == "terminated" else ExitCode.INTERRUPTED


def _traceback_if(debug: bool) -> None:
    """--debug: the traceback (secrets masked) before the one-line error; the exit code stays."""
    if debug:
        import traceback

        from storagectl.redact import redact_text

        sys.stderr.write(redact_text(traceback.format_exc()))


class _SignalsAsInterrupts:
    """SIGTERM (systemd, Kubernetes, kill) unwinds like Ctrl-C, so every cleanup path runs: partial
    backups are removed, a staged restore is dropped; exit 143. Further SIGTERMs and Ctrl-Cs are
    ignored until the cleanup is done (SIGKILL still ends it). ``received`` says which signal stopped the run, so
    an interrupt that no command turned into a message still gets one. ``backup schedule`` installs
    its own handler."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalsAsInterrupts:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._terminate),
                              signal.SIGINT: signal.signal(signal.SIGINT, self._interrupt)}
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def _terminate(self, signum: int, frame: Any) -> None:
        import signal

        from storagectl.errors import Terminated

        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a repeated SIGTERM must not cut the cleanup short
        self.received = "terminated"
        raise Terminated

    def _interrupt(self, signum: int, frame: Any) -> None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        self.received = self.received or "interrupted"
        raise KeyboardInterrupt


def _error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def _hint(hint: str | None) -> None:
    if hint:
        sys.stderr.write(f"{hint}\n")
