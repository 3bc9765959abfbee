"""`storagectl backup list` without typer: importing typer alone takes ~45 ms of a start that should
stay under 100 ms (issue 19).

:func:`run_quickly` takes a command line that is exactly a `backup list` with plain options -- the
global ``-c/--config FILE``, ``-o/--output FORMAT``, ``-v/--verbose``, ``-q/--quiet``,
``--no-color`` and ``--debug``, then ``backup list`` with ``--from DEST``, ``-j/--job JOB``,
``-b/--backend BACKEND`` and ``-o/--output FORMAT`` -- and runs it as the typer command does: the
same AppState, logging and body (storagectl.cli.backup_views.list_view). For any other command line
(help, shell completion, another command, an option given twice, an unknown or malformed one, a
value typer would refuse) it returns None, and typer parses the command line as always, its errors
included. tests/test_cli_quick.py runs command lines both ways and compares what they print.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GLOBAL_VALUES = {"--config": "config", "-c": "config", "--output": "output", "-o": "output"}
GLOBAL_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--no-color": "no_color", "--debug": "debug"}
LIST_VALUES = {"--from": "from_", "--job": "job", "-j": "job", "--backend": "backend", "-b": "backend",
               "--output": "list_output", "-o": "list_output"}
FORMATS = ("table", "json")


def run_quickly(args: list[str]) -> int | None:
    """The exit code of `backup list` run from ``args`` without typer; None when ``args`` is anything
    else (typer runs it then)."""
    options = _backup_list_options(args)
    if options is None or "_STORAGECTL_COMPLETE" in os.environ:
        return None
    from storagectl.cli.appstate import AppState, OutputFormat
    from storagectl.cli.backup_views import list_view
    from storagectl.cli.main import configure_logging

    verbose, quiet = options.get("verbose", 0), "quiet" in options
    state = AppState(config_path=Path(options["config"]) if "config" in options else None,
                     output=OutputFormat(options.get("output", "table")), verbose=verbose, quiet=quiet,
                     color="no_color" not in options and "NO_COLOR" not in os.environ, debug="debug" in options)
    configure_logging(verbose, quiet)
    list_output = options.get("list_output")
    try:
        list_view(state, options.get("from_"), options.get("job"), options.get("backend"),
                  OutputFormat(list_output) if list_output else None)
    except BrokenPipeError:  # `backup list | head`: exit 1, and no error when Python flushes at exit (as click)
        sys.stdout = _FlushIgnoringBrokenPipe(sys.stdout)
        return 1
    return 0


def _backup_list_options(args: list[str]) -> dict[str, Any] | None:
    """The options of a plain `backup list` command line, by name; None for any other."""
    options: dict[str, Any] = {}
    tokens = iter(args)
    for token in tokens:  # the global options, up to the command
        if token == "backup":
            break
        if not _take(token, tokens, options, GLOBAL_VALUES, GLOBAL_FLAGS):
            return None
    else:
        return None
    if next(tokens, None) != "list":
        return None
    for token in tokens:
        if not _take(token, tokens, options, LIST_VALUES, {}):
            return None
    return options if _plain_values(options) else None


def _take(token: str, tokens: Iterator[str], options: dict[str, Any], values: dict[str, str],
          flags: dict[str, str]) -> bool:
    """Record the option ``token`` (and its value, ``--name=value`` or the next token); False for what
    this module leaves to typer."""
    if len(token) > 1 and token == "-" + "v" * (len(token) - 1):  # -v, -vv, ...
        options["verbose"] = options.get("verbose", 0) + len(token) - 1
        return True
    if token == "--verbose":
        options["verbose"] = options.get("verbose", 0) + 1
        return True
    if token in flags and flags[token] not in options:
        options[flags[token]] = True
        return True
    name, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
    if not equals and token[:2] in values and len(token) > 2 and not token.startswith("--"):
        name, equals, value = token[:2], "=", token[2:]  # -cFILE
    if name not in values or values[name] in options:
        return False
    if not equals:
        value = next(tokens, None)
        if value is None or value.startswith("-"):
            return False
    options[values[name]] = value
    return True


def _plain_values(options: dict[str, Any]) -> bool:
    """Values typer takes as they are: a format it knows, no empty string, and a config path that
    does not exist or is a readable non-directory (typer's path checks for ``dir_okay=False``)."""
    if any(options.get(name) not in (None, *FORMATS) for name in ("output", "list_output")):
        return False
    if any(value == "" for value in options.values()):
        return False
    config = options.get("config")
    return config is None or not os.path.exists(config) or (
        not os.path.isdir(config) and os.access(config, os.R_OK))


class _FlushIgnoringBrokenPipe:
    """stdout after the reader went away: flushing it (Python does at exit) raises nothing."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def flush(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
