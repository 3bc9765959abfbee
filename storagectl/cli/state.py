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
        """The config file, validated (and remembered for :attr:`quick_config`)."""
        from storagectl.config.cache import CachedConfig, default_cache_dir, load_config_remembered

        if isinstance(self._config, CachedConfig):
            self._config = self._config.full()
        elif self._config is None:
            self._config = load_config_remembered(self.config_path, default_cache_dir())
        return self._config

    @property
    def quick_config(self) -> Any:
        """The config as commands that only read it (`backup list`, `backup show`) take it: from the
        validated-config cache when nothing it was built from changed (no YAML, no pydantic), else
        validated now; see storagectl.config.cache."""
        if self._config is None:
            from storagectl.config.cache import default_cache_dir, load_config_quickly

            self._config = load_config_quickly(self.config_path, default_cache_dir())
        return self._config

    @property
    def interactive(self) -> bool:
        """Someone can answer a question: stdin and stderr (where it is asked) are terminals."""
        return sys.stdin.isatty() and sys.stderr.isatty()

    def format(self, override: OutputFormat | None) -> OutputFormat:
        return override or self.output

    @property
    def plain_stdout_width(self) -> int | None:
        """The width of stdout when rich would write it no escape codes (a pipe or a file, and neither
        $FORCE_COLOR nor $TTY_COMPATIBLE=1 says otherwise), as :attr:`out` sets it; None elsewhere."""
        compatible, force = os.environ.get("TTY_COMPATIBLE", ""), os.environ.get("FORCE_COLOR")
        if compatible == "1" or (compatible != "0" and (force or (force is None and sys.stdout.isatty()))):
            return None
        if not (sys.stdout.encoding or "").lower().startswith("utf"):
            return None  # rich would draw an ASCII box
        columns = os.environ.get("COLUMNS")
        return 200 if columns is None else int(columns) if columns.isdigit() else None

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
