"""Global options, shared by every command through ``ctx.obj``; config and consoles load lazily."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand

if TYPE_CHECKING:
    from rich.console import Console

    from storagectl.config import Config


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    OutputFormat | None,
    typer.Option("--output", "-o", metavar="FORMAT",
        help="table for people, json for scripts (overrides the global -o)."),
]
YesOption = Annotated[bool, typer.Option(
    "--yes", "-y", help="Proceed without asking (without it: asks on a terminal, refuses elsewhere).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]


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


@dataclass
class AppState:
    config_path: Path | None = None
    output: OutputFormat = OutputFormat.table
    verbose: int = 0
    quiet: bool = False
    color: bool = True
    debug: bool = False
    _config: Any = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from storagectl.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    @property
    def interactive(self) -> bool:
        """Someone can answer a question: stdin and stderr (where it is asked) are terminals."""
        return sys.stdin.isatty() and sys.stderr.isatty()

    def format(self, override: OutputFormat | None) -> OutputFormat:
        return override or self.output

    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        # Piped output (logs, grep) gets a wide fixed width instead of rich's 80 columns.
        tty = sys.stdout.isatty()
        width = None if tty or "COLUMNS" in os.environ else 200
        return Console(no_color=not self.color, highlight=False, soft_wrap=not tty, width=width)

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        # Log lines to a pipe or file stay one line each (no hard wrap), so they can be grepped.
        return Console(stderr=True, no_color=not self.color, highlight=False, soft_wrap=not sys.stderr.isatty())


def state_of(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj
