"""The hot commands without typer: importing typer alone takes ~45 ms of a start that should stay
under 100 ms (issue 19).

:func:`run_quickly` takes a command line of one of the commands in storagectl.cli.quick_table (`backup
list`, `backup run`, `restore`, `inspect` and its views; the table is generated from the typer app by
storagectl.cli.gen_quick) with plain options, and runs it as typer would: the root's, the group's and
the command's bodies -- the very functions the typer commands call -- with the values typer would
pass them. For any other command line (help, shell completion, another command, an option given twice
that is not repeatable, an unknown, clustered or malformed one, a value typer would refuse or that
only typer reads, ``--``) it returns None, and typer parses the command line as always, its errors
included. tests/test_cli_quick.py runs command lines both ways and compares what they print.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from storagectl.cli.quick_table import COMMANDS

_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


class _NotPlain(Exception):
    """The command line is one for typer."""


def run_quickly(args: list[str]) -> int | None:
    """The exit code of the command ``args`` names, run without typer; None when typer must run it."""
    if "_STORAGECTL_COMPLETE" in os.environ:
        return None
    try:
        levels = parsed_command_line(args)
    except _NotPlain:
        return None
    return _run_levels(levels)


def parsed_command_line(args: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each level of the command line (the root, groups, the command) as (path, values by parameter
    name); raises _NotPlain for a command line typer must read."""
    levels, path, position = [], "", 0
    while True:
        entry = COMMANDS[path]
        values, position = _level_values(entry, args, position)
        levels.append((path, values))
        if not entry["group"]:
            return levels
        if position == len(args):
            if entry["invoke_without_command"]:
                return levels
            raise _NotPlain  # typer shows the group's help
        if args[position] not in entry["subcommands"]:
            raise _NotPlain
        path = f"{path} {args[position]}".strip()
        position += 1


def _level_values(entry: dict[str, Any], args: list[str], position: int) -> tuple[dict[str, Any], int]:
    """The values of one level's parameters, from ``args[position:]``: a group's options up to its
    subcommand, a command's options and arguments (in any order) to the end."""
    params, given, arguments = entry["params"], {}, list(entry["arguments"])
    while position < len(args):
        token = args[position]
        position += 1
        if not token.startswith("-") and token:
            if entry["group"]:
                if not set(entry["required"]) <= set(given):
                    raise _NotPlain
                return _with_defaults(params, given), position - 1
            if not arguments:
                raise _NotPlain  # an extra argument: typer's error
            given[arguments.pop(0)] = token
            continue
        position = _take_option(entry, params, given, token, args, position)
    if arguments or not set(entry["required"]) <= set(given):
        raise _NotPlain  # a missing argument or option: typer's error
    return _with_defaults(params, given), position


def _take_option(entry: dict[str, Any], params: dict[str, Any], given: dict[str, Any], token: str, args: list[str],
                 position: int) -> int:
    """Record the option ``token`` (its value ``--name=value``, ``-xVALUE`` or the next token); the
    position after it."""
    options = entry["options"]
    name, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
    if not equals and token[:2] in options and len(token) > 2 and not token.startswith("--"):
        count_name = options[token[:2]]
        if params[count_name][0] == "count" and token == token[:2] + token[1] * (len(token) - 2):
            given[count_name] = given.get(count_name, 0) + len(token) - 1  # -vv
            return position
        name, equals, value = token[:2], "=", token[2:]
    if name not in options:
        raise _NotPlain
    param = options[name]
    kind = params[param][0]
    if kind in ("flag", "count"):
        if equals or (kind == "flag" and param in given):
            raise _NotPlain
        given[param] = True if kind == "flag" else given.get(param, 0) + 1
        return position
    if kind not in ("value", "multiple") or (kind == "value" and param in given):
        raise _NotPlain
    if not equals:
        if position == len(args):
            raise _NotPlain
        value, position = args[position], position + 1
    if value == "" or value.startswith("-"):
        raise _NotPlain
    read = _read_value(params[param], value)
    if kind == "multiple":
        given.setdefault(param, []).append(read)
    else:
        given[param] = read
    return position


def _read_value(spec: tuple[str, str | None, Any, Any], value: str) -> Any:
    """``value`` as typer passes it to the command; _NotPlain when typer would refuse it (its error)."""
    _, value_type, detail, _ = spec
    if value_type == "str":
        return value
    if value_type == "int":
        low, high = detail
        if not _WHOLE_NUMBER.fullmatch(value) or (low is not None and int(value) < low) or (
                high is not None and int(value) > high):
            raise _NotPlain
        return int(value)
    if value_type == "choice":
        choices = _named(detail)
        if value not in {member.value for member in choices}:
            raise _NotPlain  # typer's "not one of" (and its case-insensitive match of a near miss)
        return choices(value)
    if value_type == "parsed":
        try:
            return _named(detail)(value)
        except ValueError:
            raise _NotPlain from None
    if value_type == "path" and "\0" not in value and (
            not os.path.exists(value) or (not os.path.isdir(value) and os.access(value, os.R_OK))):
        return Path(value)  # typer's checks for dir_okay=False passed
    raise _NotPlain


def _with_defaults(params: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Every parameter a body takes: as given, else its default (a choice's made from its value)."""
    values = {}
    for name, (kind, value_type, detail, default) in params.items():
        if kind == "callback":
            continue
        if name in given:
            values[name] = given[name]
        elif value_type == "choice" and default is not None:
            values[name] = _named(detail)(default)
        else:
            values[name] = default
    return values


def _named(where: str) -> Any:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def _run_levels(levels: list[tuple[str, dict[str, Any]]]) -> int:
    """Run the root's body (the AppState), each group's and the command's, as typer invokes them;
    what typer's main does with Ctrl-C, an EOF and a closed stdout, too."""
    (_, root_values), *rest = levels
    state = _named(COMMANDS[""]["body"])(**root_values)
    try:
        for index, (path, values) in enumerate(rest):
            body = COMMANDS[path]["body"]
            if body is None:
                continue
            if COMMANDS[path]["group"]:
                invoked = rest[index + 1][0].rsplit(" ", 1)[-1] if index + 1 < len(rest) else None
                _named(body)(state, invoked, **values)
            else:
                _named(body)(state, **values)
    except KeyboardInterrupt:
        from storagectl.errors import ExitCode

        return ExitCode.INTERRUPTED  # typer: Exit(130)
    except EOFError:
        from storagectl.cli.main import aborted

        sys.stderr.write("\n")  # typer: a newline, then Abort
        return aborted()
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
            raise
        sys.stdout, sys.stderr = _FlushIgnoringBrokenPipe(sys.stdout), _FlushIgnoringBrokenPipe(sys.stderr)
        return 1  # `backup list | head`: exit 1, and no error when Python flushes at exit (as click)
    return 0


class _FlushIgnoringBrokenPipe:
    """A stream after the reader went away: flushing it (Python does at exit) raises nothing."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
