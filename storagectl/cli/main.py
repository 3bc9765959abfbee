"""Entry point: runs a command (storagectl.cli.app's, or a hot one from storagectl.cli.quick without
importing typer) and turns errors into exit codes, in one place."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any


def global_state(config: Any, output: Any, verbose: int, quiet: bool, no_color: bool, debug: bool) -> Any:
    """The root's work, for typer's callback and storagectl.cli.quick: the global options as the
    AppState every command reads, and logging set up."""
    from storagectl.cli.appstate import AppState

    state = AppState(config_path=config, output=output, verbose=verbose, quiet=quiet,
                     color=not no_color and "NO_COLOR" not in os.environ, debug=debug)
    configure_logging(verbose, quiet)
    return state


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log lines (secrets masked) to stderr: warnings, or more with -v/-vv, only errors with -q."""
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
    code = run(argv)
    # The process ends here. Interpreter shutdown would run full garbage collections over every object
    # of the imported modules (redis-py, pydantic, rich) only to free memory the OS takes back anyway:
    # 30-60 ms of each run, measured. Frozen objects are skipped by those collections; atexit handlers
    # and the teardown itself still run.
    gc.freeze()
    sys.exit(code)


def run(argv: list[str] | None = None, *, quick: bool = True) -> int:
    """``quick``: a hot command (`backup list`/`run`, `restore`, `inspect`) with plain options runs
    without typer (storagectl.cli.quick), as it would with it; tests run both ways and compare."""
    from storagectl.errors import ConfigError, ExitCode, SeveralFailed, StoragectlError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    # pydantic looks for plugins in every installed distribution's entry points when the config
    # models are built (~50 ms of each start); storagectl uses none. Set to anything else to keep them.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    signals = _SignalsAsInterrupts()
    try:
        with signals:
            result = _run_command(args, quick)
        if result == ExitCode.INTERRUPTED and signals.received:
            # typer turns a KeyboardInterrupt that no command handled into a bare 130
            return _interrupted(signals.received)
        return result if isinstance(result, int) else 0
    except KeyboardInterrupt:
        return _interrupted(signals.received or "interrupted")
    except ConfigError as exc:
        _traceback_if(debug)
        for problem in exc.problems or [exc.message]:
            _error(problem)
        _hint(exc.hint or "Try: storagectl config validate")
        return exc.exit_code
    except StoragectlError as exc:
        for error in exc.failures if isinstance(exc, SeveralFailed) else [exc]:
            _traceback_if(debug, error)
            _error(error.message)
            for line in error.details:
                sys.stderr.write(f"  {line}\n")
            _hint(error.hint)
        return exc.exit_code
    except Exception as exc:
        if (code := _typer_outcome(exc)) is not None:
            return code
        from storagectl.redact import redact_text

        _traceback_if(debug)
        _error(f"internal error: {type(exc).__name__}: {redact_text(str(exc))} "
               "(a bug in storagectl; rerun with --debug for the traceback)")
        return ExitCode.INTERNAL


def _run_command(args: list[str], quick: bool) -> Any:
    if quick:
        from storagectl.cli.quick import run_quickly

        if (code := run_quickly(args)) is not None:
            return code
    from storagectl.cli.app import app

    return app(args=args, prog_name="storagectl", standalone_mode=False)


def _typer_outcome(exc: Exception) -> int | None:
    """typer's Exit (its code), Abort and usage errors (bad option, missing argument, ...) as exit
    codes; None for any other exception (and when typer never ran, it raised none)."""
    if "typer.exceptions" not in sys.modules:
        return None
    from typer.exceptions import Abort, Exit, TyperException

    from storagectl.errors import ExitCode

    if isinstance(exc, Exit):
        return exc.exit_code
    if isinstance(exc, Abort):
        return aborted()
    if isinstance(exc, TyperException):
        exc.show()
        return getattr(exc, "exit_code", ExitCode.USAGE)
    return None


def aborted() -> int:
    """typer's Abort (an EOF at a question): one line, exit 130."""
    from storagectl.errors import ExitCode

    _error("aborted")
    return ExitCode.INTERRUPTED


def _interrupted(what: str) -> int:
    from storagectl.errors import ExitCode

    _error(f"{what} before the command finished")
    return ExitCode.TERMINATED if what == "terminated" else ExitCode.INTERRUPTED


def _traceback_if(debug: bool, error: BaseException | None = None) -> None:
    """--debug: the traceback (secrets masked) before the one-line error (of ``error``, default the one
    being handled); the exit code stays."""
    if debug:
        import traceback

        from storagectl.redact import redact_text

        text = traceback.format_exc() if error is None else "".join(traceback.format_exception(error))
        sys.stderr.write(redact_text(text))


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
