"""Rendering shared by every command: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
import re
import sys
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from storagectl.cli.appstate import AppState, OutputFormat

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
    width = state.plain_stdout_width
    plain = plain_table(columns, rows, title, width) if width is not None else None
    if plain is not None:
        sys.stdout.write(plain)
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")  # never cut an id or a path with an ellipsis
    for row in rows:
        table.add_row(*[cell if isinstance(cell, Text) else Text(_cell(cell)) for cell in row])
    state.out.print(table)


def plain_table(columns: list[str], rows: list[list[Any]], title: str | None, width: int) -> str | None:
    """The table as rich draws it on a stream that takes no escape codes, ``width`` columns wide --
    without importing rich (~25 ms of a start, issue 19); None for what only rich draws so: a table
    wider than ``width``, a cell that is not plain data or not printable ASCII (rich measures wide
    characters and wraps itself), a title or header rich would read as markup or emoji."""
    if not columns:
        return None
    texts = [list(columns)]
    for row in rows:
        if not all(value is None or type(value) in _PLAIN_CELLS for value in row):
            return None
        texts.append([_cell(value) for value in row])
    if any(not _plain_ascii(text) for row in texts for text in row) or not all(_no_markup(h) for h in columns):
        return None
    widths = [max(len(row[i]) for row in texts) for i in range(len(columns))]
    total = sum(widths) + 3 * len(widths) + 1
    if total > width or (title is not None and not (_plain_ascii(title) and _no_markup(title))):
        return None

    def line(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (w + 2) for w in widths) + right + "\n"

    def cells(row: list[str], bar: str) -> str:
        return bar + bar.join(f" {text.ljust(w)} " for text, w in zip(row, widths, strict=True)) + bar + "\n"

    out = [title + "\n"] if title else []  # a piped console soft-wraps: the title is not centered
    out += [line("┏", "━", "┳", "┓"), cells(texts[0], "┃"), line("┡", "━", "╇", "┩")]
    out += [cells(row, "│") for row in texts[1:]]
    out.append(line("└", "─", "┴", "┘"))
    return "".join(out)


_PLAIN_CELLS = (str, int, float, bool, datetime, date, Path)


def _plain_ascii(text: str) -> bool:
    return all(" " <= char <= "~" for char in text)


def _no_markup(text: str) -> bool:
    return "[" not in text and ":" not in text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def note(state: AppState, message: str) -> None:
    """A human message on stderr, silenced by --quiet."""
    if state.quiet:
        return
    if not state.stderr_is_terminal and _as_rich_prints_it(message):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        return
    state.err.print(message, markup=False, highlight=False)


def print_line(state: AppState, text: str) -> None:
    """``text`` on stdout, as ``state.out.print(text, markup=False, highlight=False)`` writes it; on a
    pipe or a file without importing rich."""
    if state.plain_stdout_width is not None and _as_rich_prints_it(text):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    state.out.print(text, markup=False, highlight=False)


def _as_rich_prints_it(text: str) -> bool:
    """Text a console that writes no escape codes (and soft-wraps) prints unchanged: printable ASCII
    with nothing rich could read as an emoji code (``:name:``)."""
    return _plain_ascii(text) and re.search(r":\S*?:", text) is None


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
