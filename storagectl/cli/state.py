"""The options commands share (typer annotations and parsers) and the way to the global ones
(``state_of``); the global options themselves are storagectl.cli.appstate's AppState."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand

from storagectl.cli.appstate import AppState, OutputFormat

__all__ = ["AppState", "DryRunOption", "OutputFormat", "OutputOption", "PlainUsage", "YesOption", "duration_value",
           "size_value", "state_of"]


OutputOption = Annotated[
    OutputFormat | None,
    typer.Option("--output", "-o", metavar="FORMAT",
        help="table for people, json for scripts (overrides the global -o)."),
]
YesOption = Annotated[bool, typer.Option(
    "--yes", "-y", help="Proceed without asking (without it: asks on a terminal, refuses elsewhere).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]


def duration_value(value: str) -> float:
    """An option's duration (``10s``, ``2m``, ``500ms``): a ``parser=`` for typer."""
    from storagectl.units import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def size_value(value: str) -> int:
    """An option's size in bytes (``64MiB``, ``512k``): a ``parser=`` for typer."""
    from storagectl.units import parse_byte_size

    try:
        return parse_byte_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


class _NamedArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.metavar else super().display_type_rich(ctx)


class PlainUsage(TyperCommand):
    """For commands with a required argument: help reads `Usage: storagectl backup show [OPTIONS]
    BACKUP_ID` and `BACKUP_ID  Backup id.`; typer would write `{BACKUP_ID}` and `BACKUP_ID <str>`,
    which read as template placeholders."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _NamedArgument

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:].replace("}", "", 1) if p.startswith("{") and "}" in p else p for p in pieces]  # {KEYS}...


def state_of(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj
