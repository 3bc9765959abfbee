"""Rendering shared by every command: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from storagectl.cli.state import AppState, OutputFormat

STATUS_STYLES = {
    "ok": "green", "warning": "yellow", "critical": "bold red", "unknown": "magenta",
    "keep": "green", "remove": "red", "pending": "yellow", "applied": "green",
}


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def styled_status(status: str) -> Any:
    from rich.text import Text

    return Text(status.upper(), style=STATUS_STYLES.get(status.lower(), ""))


def print_table(state: AppState, columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")  # never cut an id or a path with an ellipsis
    for row in rows:
        table.add_row(*[cell if isinstance(cell, Text) else Text(_cell(cell)) for cell in row])
    state.out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def note(state: AppState, message: str) -> None:
    """A human message on stderr, silenced by --quiet."""
    if not state.quiet:
        state.err.print(message, markup=False, highlight=False)


def plan_format(state: AppState, output: OutputFormat | None) -> OutputFormat:
    """A plan shown before a question is for the person answering it (stdout stays one JSON document)."""
    return OutputFormat.table if state.interactive else state.format(output)


def confirm(state: AppState, question: str, *, refusal: str, hint: str, interactive: bool | None = None,
            answers: TextIO | None = None) -> None:
    """Without --yes: on a terminal ask ``question`` (the plan was just shown) and return on "y";
    anywhere else refuse with ``refusal`` and ``hint``, as scripts and CI need. Declining changes
    nothing and exits 1. ``interactive`` and ``answers`` (default: the terminal) are for tests."""
    from storagectl.errors import OperationFailed, UsageError

    if not (state.interactive if interactive is None else interactive):
        raise UsageError(refusal, hint=hint)
    state.err.print(f"{question} [y/N] ", markup=False, highlight=False, end="")
    reply = (answers or sys.stdin).readline()
    if not reply.endswith("\n"):
        state.err.print("")  # end of input: the error goes on a line of its own
    if reply.strip().lower() not in ("y", "yes"):
        raise OperationFailed("not confirmed; nothing was changed", hint=hint)
