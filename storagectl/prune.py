"""`backup prune`: a job's retention policy applied to what its destination actually holds.

Nothing here reads local state: the backups of a job are the folders under ``<job>/`` at the job's
destination. A folder with a readable ``manifest.json`` is a complete backup; one without is a
failed or running one, which never counts toward any ``keep_*`` rule (see
:mod:`storagectl.retention`), so a run of failures cannot push good backups out.

Retention is worked out separately for each backend of a job: a job with two backends stores two
backups per run, and ``keep_last 7`` means seven of each.

A folder without a manifest is **in progress** while its run's lease is live (see
:mod:`storagectl.archive.lease`) or something was written to it less than ``retention.partial_after``
ago (default 1 day): it is kept. Otherwise it is the leftover of a failed or killed run and is
removed, with its unfinished uploads (local temp files, S3 multipart uploads); a folder holding
nothing else is found through them. Stale unfinished uploads in the folders that are kept (and not in
progress) are aborted too. Just before a leftover is removed its folder is listed again, so a run
that renewed its lease or finished meanwhile is left alone.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from storagectl.archive.manifest import is_backup_id
from storagectl.backup.catalog import (
    FoundBackup,
    backup_folders,
    destination_named,
    looked_at_again,
    remove_folder,
    with_manifest,
)
from storagectl.config.models import Config, JobSettings, RetentionPolicy
from storagectl.destinations import Destination, UnfinishedUpload
from storagectl.errors import IntegrityError, StoragectlError, UsageError
from storagectl.retention import IN_PROGRESS, BackupRef, RetentionDecision, describe_policy, plan_retention

log = logging.getLogger("storagectl.prune")


@dataclass(frozen=True)
class StoredBackup:
    """One backup folder of a job, as its destination holds it."""

    folder: FoundBackup
    backend: str | None  # from the manifest; None for a folder without one
    started_at: datetime
    selection: str = ""  # a partial backup's selection (manifest.selection_options as JSON); "" when full

    @property
    def retention_group(self) -> tuple[str | None, str]:
        """Backups counted together by the keep rules: one backend, one selection."""
        return self.backend, self.selection

    @property
    def complete(self) -> bool:
        return self.folder.manifest is not None

    def ref(self, now: datetime, partial_after: float) -> BackupRef:
        return BackupRef(self.folder.id, self.started_at, self.complete,
                         self.folder.in_progress(now, partial_after))


@dataclass(frozen=True)
class PruneEntry:
    """Keep or remove one backup, and the rules behind it."""

    backup: StoredBackup
    decision: RetentionDecision

    def to_dict(self) -> dict[str, Any]:
        folder = self.backup.folder
        return {"id": folder.id, "backend": self.backup.backend, "partial": bool(self.backup.selection),
                "started_at": self.backup.started_at.isoformat(), "complete": self.backup.complete,
                "action": self.decision.action, "reasons": list(self.decision.reasons),
                "objects": len(folder.objects), "bytes": folder.size, "unfinished_uploads": len(folder.unfinished)}


@dataclass
class PruneResult:
    job: str
    destination: str
    policy: str
    dry_run: bool
    entries: list[PruneEntry] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # backup id -> why its manifest can't be read
    stray_uploads: list[UnfinishedUpload] = field(default_factory=list)  # stale ones in folders kept

    @property
    def removed(self) -> list[str]:
        return [entry.backup.folder.id for entry in self._removals()]

    @property
    def aborted_uploads(self) -> list[UnfinishedUpload]:
        """Every unfinished upload aborted: those of the folders removed, then the stray ones."""
        return [upload for entry in self._removals() for upload in entry.backup.folder.unfinished] + \
            self.stray_uploads

    @property
    def bytes_removed(self) -> int:
        removed = sum(entry.backup.folder.size for entry in self._removals())
        return removed + sum(upload.size or 0 for upload in self.stray_uploads)

    def _removals(self) -> list[PruneEntry]:
        return [entry for entry in self.entries if not entry.decision.keep]

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "destination": self.destination, "policy": self.policy,
                "dry_run": self.dry_run, "removed": self.removed,
                "partial_removed": [e.backup.folder.id for e in self._removals() if not e.backup.complete],
                "aborted_uploads": [{"key": up.key, "size": up.size, "last_active": up.last_active.isoformat()}
                                    for up in self.aborted_uploads],
                "bytes_removed": self.bytes_removed,
                "backups": [entry.to_dict() for entry in self.entries],
                "unreadable": [{"id": backup_id, "error": error} for backup_id, error in self.unreadable.items()]}


def retention_jobs(config: Config, names: list[str] | None) -> list[str]:
    """The named jobs (all jobs with a retention policy when none is named); each must have one."""
    chosen = names or [name for name, job in config.jobs.items() if job.retention is not None]
    for name in chosen:
        if config.job(name).retention is None:
            raise UsageError(f"job {name!r} has no retention policy, so there is nothing to prune",
                             hint=f"Try: add `retention:` (e.g. keep_daily: 7) to job {name!r}")
    if not chosen:
        raise UsageError("no job has a retention policy",
                         hint="Try: add `retention:` (e.g. keep_daily: 7) to a job in the config")
    return chosen


def prune_job(config: Config, job: str, now: datetime, dry_run: bool = False) -> PruneResult:
    """Plan the job's retention over its stored backups and, unless ``dry_run``, delete the removals.

    A delete the destination refuses raises (PermissionDenied, OperationFailed, ...) naming the
    backup and how many were removed before it.
    """
    settings = config.job(job)
    policy = _policy_of(job, settings)
    unreadable: dict[str, str] = {}
    destination = destination_named(config, settings.destination)
    entries = plan_job(_job_backups(destination, job, unreadable), policy, now, ZoneInfo(settings.timezone))
    stray = [upload for entry in entries if entry.decision.keep
             for upload in entry.backup.folder.stale_uploads(now, policy.partial_after)]
    result = PruneResult(job, settings.destination, describe_policy(policy), dry_run, entries, unreadable, stray)
    if not dry_run:
        _delete_removals(job, result, now, policy.partial_after)
        _abort_stray_uploads(job, result, destination)
    return result


def plan_job(stored: list[StoredBackup], policy: RetentionPolicy, now: datetime,
             tz: ZoneInfo) -> list[PruneEntry]:
    """One entry per stored backup, newest first; retention applied per backend and selection: a
    partial backup (a job's `select:` changed since) never takes a full backup's place, nor the reverse."""
    by_backend: dict[tuple[str | None, str], list[StoredBackup]] = defaultdict(list)
    for backup in stored:
        by_backend[backup.retention_group].append(backup)
    entries = []
    for group in by_backend.values():
        by_id = {backup.folder.id: backup for backup in group}
        refs = [backup.ref(now, policy.partial_after) for backup in group]
        entries += [PruneEntry(by_id[d.backup.id], d) for d in plan_retention(refs, policy, now, tz)]
    return sorted(entries, key=lambda e: (e.backup.started_at.astimezone(UTC), e.backup.folder.id),
                  reverse=True)


def job_backups(config: Config, job: str, unreadable: dict[str, str] | None = None) -> list[StoredBackup]:
    """Every backup folder of ``job`` at its destination, complete or not, with its unfinished uploads,
    in no particular order. Folders whose manifest cannot be read are left out (and added to
    ``unreadable``)."""
    return _job_backups(destination_named(config, config.job(job).destination), job, unreadable)


def _job_backups(destination: Destination, job: str, unreadable: dict[str, str] | None) -> list[StoredBackup]:
    found = (_stored(folder, job, unreadable) for folder in backup_folders(destination, job, unfinished=True)
             if _is_job_folder(folder, job))
    return [backup for backup in found if backup is not None]


def newest_complete_start(config: Config, job: str) -> datetime | None:
    """When the job's newest complete run started, from its destination: the oldest of its backends'
    newest complete backups (a run that backed up only some backends has not served its fire).
    None when some backend of the job has no complete backup."""
    newest = newest_complete_starts(config, job)
    return min(newest.values()) if len(newest) == len(config.job(job).backends) else None


def newest_complete_starts(config: Config, job: str) -> dict[str, datetime]:
    """When each of the job's backends' newest complete backup (of the job's selection) started;
    a backend without one is left out."""
    settings = config.job(job)
    destination = destination_named(config, settings.destination)
    wanted, newest = set(settings.backends), {}
    selection = selection_key(settings.selection().to_dict())
    folders = [f for f in backup_folders(destination, job) if _is_job_folder(f, job) and f.has_manifest]
    for folder in sorted(folders, key=lambda f: f.id, reverse=True):
        backup = _stored(folder, job)
        if backup is not None and backup.backend in wanted and backup.selection == selection:
            newest.setdefault(backup.backend, backup.started_at)
        if len(newest) == len(wanted):
            break
    return newest


def _policy_of(job: str, settings: JobSettings) -> RetentionPolicy:
    if settings.retention is None:
        raise UsageError(f"job {job!r} has no retention policy, so there is nothing to prune",
                         hint=f"Try: add `retention:` (e.g. keep_daily: 7) to job {job!r}")
    return settings.retention


def _delete_removals(job: str, result: PruneResult, now: datetime, partial_after: float) -> None:
    removed = 0
    for position, entry in enumerate(result.entries):
        if entry.decision.keep:
            continue
        if not entry.backup.complete and _came_alive(entry, now, partial_after):
            log.info("job %s: backup %s came back to life while pruning; left alone", job, entry.backup.folder.id)
            result.entries[position] = PruneEntry(entry.backup, RetentionDecision(entry.decision.backup, True,
                                                                                  (IN_PROGRESS,)))
            continue
        try:
            remove_folder(entry.backup.folder)
        except StoragectlError as exc:
            # The destination's own error (and so its exit code), saying what prune was doing.
            exc.message = (f"prune of job {job!r}: could not remove backup {entry.backup.folder.id} "
                           f"({removed} removed before it): {exc.message}")
            raise
        removed += 1
        log.info("job %s: removed backup %s (%s)", job, entry.backup.folder.id,
                 "no rule kept it" if entry.backup.complete else "partial")


def _came_alive(entry: PruneEntry, now: datetime, partial_after: float) -> bool:
    """Whether a leftover, listed again just before its removal, has a manifest or a live lease now:
    its run was only stalled when prune first looked."""
    return not looked_at_again(entry.backup.folder).is_leftover(now, partial_after)


def _abort_stray_uploads(job: str, result: PruneResult, destination: Destination) -> None:
    try:
        destination.abort_unfinished(result.stray_uploads)
    except StoragectlError as exc:
        exc.message = f"prune of job {job!r}: could not abort a stale unfinished upload: {exc.message}"
        raise
    for upload in result.stray_uploads:
        log.info("job %s: aborted the unfinished upload %s", job, upload.key)


def _is_job_folder(folder: FoundBackup, job: str) -> bool:
    return folder.group == job and is_backup_id(folder.id)


def _stored(folder: FoundBackup, job: str, unreadable: dict[str, str] | None = None) -> StoredBackup | None:
    try:
        with_manifest(folder)
    except IntegrityError as exc:
        # Never delete what we cannot read: an operator has to look at it.
        log.warning("job %s: backup %s left alone: %s", job, folder.id, exc)
        if unreadable is not None:
            unreadable[folder.id] = exc.message
        return None
    manifest = folder.manifest
    if manifest is not None and manifest.job != job:
        return None  # an ad-hoc backup of a backend that happens to share the job's name
    if manifest is None:
        return StoredBackup(folder, None, id_started_at(folder.id))
    started = datetime.fromisoformat(manifest.started_at)
    return StoredBackup(folder, manifest.backend.get("name"), started, selection_key(manifest.selection_options()))


def selection_key(options: dict[str, Any]) -> str:
    """A selection as a comparable string ("" for a full backup)."""
    import json

    return json.dumps(options, sort_keys=True) if options else ""


def id_started_at(backup_id: str) -> datetime:
    """The UTC start time a backup id encodes (``20261121T234501Z-1a2b3c``), to the second."""
    return datetime.strptime(backup_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
