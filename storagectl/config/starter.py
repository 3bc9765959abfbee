"""The starter configuration written by `storagectl config init`."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from storagectl.errors import UsageError
from storagectl.fsutil import atomic_write_text


def starter_config_text() -> str:
    return files("storagectl.resources").joinpath("quickstart.yaml").read_text(encoding="utf-8")


def write_starter_config(path: Path, overwrite: bool = False) -> Path:
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists", hint=f"Try: storagectl config init --force {path}")
    atomic_write_text(path, starter_config_text())
    return path
