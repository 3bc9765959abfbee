"""Entry point: assembles the command groups and turns errors into exit codes, in one place."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from storagectl import __version__
from storagectl.cli import backends_cmd, backup_cmd, config_cmd, diag_cmd, migrate_cmd, restore_cmd
from storagectl.cli.state import AppState, OutputFormat

app = typer.Typer(
    name="storagectl",
    help="Storage administration for operations teams: diagnostics, backups, restores, migrations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(migrate_cmd.app, name="migrate")
app.command("backends")(backends_cmd.backends)
app.command("diag")(diag_cmd.diag)
app.add_typer(backup_cmd.app, name="backup")
app.command("restore")(restore_cmd.restore)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"storagectl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Config file [default: $STORAGECTL_CONFIG, ./storagectl.yaml, user config dir].",
        dir_okay=False,
    )] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.table,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log lines (-vv debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colors (also $NO_COLOR).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.",
    )] = False,
) -> None:
    import os

    ctx.obj = AppState(
        config_path=config, output=output, verbose=verbose, quiet=quiet,
        color=not no_color and "NO_COLOR" not in os.environ, debug=debug,
    )
    _configure_logging(verbose, quiet)


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    logger = logging.getLogger("storagectl")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from storagectl.redact import redact_text

        record.msg = redact_text(record.getMessage())
        record.args = ()
        return True


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the only place where exceptions become messages and exit codes."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    from typer.exceptions import Abort, Exit, TyperException

    from storagectl.errors import ConfigError, ExitCode, StoragectlError, Terminated

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        with _sigterm_as_interrupt():
            result = app(args=args, prog_name="storagectl", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except Exit as exc:
        return exc.exit_code
    except Abort:
        _error("aborted")
        return ExitCode.INTERRUPTED
    except TyperException as exc:  # usage errors: bad option, missing argument, ...
        exc.show()
        return getattr(exc, "exit_code", ExitCode.USAGE)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            _error("terminated")
            return ExitCode.TERMINATED
        _error("interrupted")
        return ExitCode.INTERRUPTED
    except ConfigError as exc:
        if debug:
            raise
        for problem in exc.problems or [exc.message]:
            _error(problem)
        _hint(exc.hint or "Try: storagectl config validate")
        return exc.exit_code
    except StoragectlError as exc:
        if debug:
            raise
        _error(exc.message)
        _hint(exc.hint)
        return exc.exit_code
    except Exception as exc:
        if debug:
            raise
        from storagectl.redact import redact_text

        _error(f"internal error: {type(exc).__name__}: {redact_text(str(exc))} "
               "(a bug in storagectl; rerun with --debug for the traceback)")
        return ExitCode.INTERNAL


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (systemd, Kubernetes, kill) unwinds like Ctrl-C, so every cleanup path runs: partial
    backups are removed, a staged restore is dropped; exit 143. Further SIGTERMs are ignored until
    the cleanup is done (SIGKILL still ends it). ``backup schedule`` installs its own handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    from storagectl.errors import Terminated

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a repeated SIGTERM must not cut the cleanup short
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def _hint(hint: str | None) -> None:
    if hint:
        sys.stderr.write(f"{hint}\n")
