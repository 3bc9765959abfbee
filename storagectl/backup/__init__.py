"""Backups and restores: the core functions behind `storagectl backup ...` and `storagectl restore`.

No typer or rich here: functions take the parsed config, return data and raise StoragectlError.
"""

from storagectl.backup.catalog import (
    DeletePlan,
    FoundBackup,
    delete_backup,
    find_backup,
    list_backups,
    remove_stale_partials,
)
from storagectl.backup.restore import RestorePlan, RestoreResult, VerifyReport, restore, verify_backup
from storagectl.backup.run import BackupPlan, BackupResult, plan_backups, run_backup
from storagectl.backup.validation import ValidationReport, compare_summaries


def show_backup(config, backup_id: str, destination: str | None = None) -> FoundBackup:
    """The complete backup ``backup_id`` with its manifest."""
    return find_backup(config, backup_id, destination)


__all__ = [
    "BackupPlan",
    "BackupResult",
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
    "remove_stale_partials",
    "restore",
    "run_backup",
    "show_backup",
    "verify_backup",
]
