"""Global options, shared by every command (through ``ctx.obj``, or from the quick path of
storagectl.cli.quick); the config and the consoles load lazily. No typer here: `backup list` runs
without it."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from storagectl.config import Config


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


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
        """The config as commands that only read it (`backup list/show/run`, `restore`, `inspect`) take
        it: from the validated-config cache when nothing it was built from changed (plain settings
        objects: no YAML, no pydantic), else validated now; see storagectl.config.cache."""
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
        if _rich_terminal(sys.stdout):
            return None
        if not (sys.stdout.encoding or "").lower().startswith("utf"):
            return None  # rich would draw an ASCII box
        columns = os.environ.get("COLUMNS")
        return 200 if columns is None else int(columns) if columns.isdigit() else None

    @property
    def stderr_is_terminal(self) -> bool:
        """``self.err.is_terminal`` without importing rich (~25 ms): whether progress gets bars or lines."""
        return _rich_terminal(sys.stderr)

    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        # Piped output (logs, grep) gets a wide fixed width instead of rich's 80 columns.
        tty = sys.stdout.isatty()
        width = None if tty or "COLUMNS" in os.environ else 200
        return Console(no_color=not self.color, highlight=False, soft_wrap=not tty, width=width)

    @property
    def err(self) -> Console:
        """One stderr console, also when the progress display's timer thread asks at the same moment
        (``cached_property`` has no lock from Python 3.12 on)."""
        with _ERR_LOCK:
            if "_err" not in self.__dict__:
                self.__dict__["_err"] = self._new_err()
            return self.__dict__["_err"]

    def _new_err(self) -> Console:
        from rich.console import Console

        # Log lines to a pipe or file stay one line each (no hard wrap), so they can be grepped.
        return Console(stderr=True, no_color=not self.color, highlight=False, soft_wrap=not sys.stderr.isatty())


_ERR_LOCK = threading.Lock()


def _rich_terminal(stream: Any) -> bool:
    """rich's Console.is_terminal for ``stream``: $TTY_COMPATIBLE (1 or 0) decides, then a non-empty
    $FORCE_COLOR, then isatty()."""
    compatible, force = os.environ.get("TTY_COMPATIBLE", ""), os.environ.get("FORCE_COLOR")
    if compatible in ("0", "1"):
        return compatible == "1"
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False
