"""Backups and restores: the core functions behind `storagectl backup ...` and `storagectl restore`.

No typer or rich here: functions take the parsed config, return data and raise StoragectlError.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any

# Imported when first used (PEP 562), so ``backup list`` loads the catalog without the archive,
# backend and restore machinery.
_HOMES = {
    "catalog": ("DeletePlan", "FoundBackup", "delete_backup", "find_backup", "list_backups", "remove_stale_partials"),
    "restore": ("RestorePlan", "RestoreResult", "VerifyReport", "prepare_restore", "restore", "restore_planned",
                "verify_backup"),
    "plan": ("BackupPlan", "plan_backups"),
    "run": ("BackupResult", "BackupRun", "partial_run", "run_backup", "run_each_backup"),
    "validation": ("ValidationReport", "compare_summaries"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f"{__name__}.{_HOME[name]}")
    for exported in _HOMES[_HOME[name]]:
        globals()[exported] = getattr(module, exported)
    return globals()[name]


class _Package(types.ModuleType):
    """Importing the submodule ``restore`` would bind it here under the name of the function
    ``restore``, whichever imports it first: the function keeps the name (as when this package
    imported everything up front)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def show_backup(config: Any, backup_id: str, destination: str | None = None) -> Any:
    """The complete backup ``backup_id`` (a catalog.FoundBackup) with its manifest."""
    from storagectl.backup.catalog import find_backup

    return find_backup(config, backup_id, destination)


__all__ = [
    "BackupPlan",
    "BackupResult",
    "BackupRun",
    "DeletePlan",
    "FoundBackup",
    "RestorePlan",
    "RestoreResult",
    "ValidationReport",
    "VerifyReport",
    "compare_summaries",
    "delete_backup",
    "find_backup",
    "list_backups",
    "plan_backups",
    "prepare_restore",
    "remove_stale_partials",
    "restore",
    "restore_planned",
    "run_backup",
    "run_each_backup",
    "partial_run",
    "show_backup",
    "verify_backup",
]
