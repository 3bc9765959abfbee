"""Finding backups at destinations: list, show, locate by id, delete, clean stale partial ones.

Everything is worked out from what the destination holds (its manifests), never from local state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from storagectl.archive.lease import LEASE_TTL, lease_is_live, live_lease
from storagectl.archive.manifest import MANIFEST_NAME, BackupManifest, backup_prefix, is_backup_id
from storagectl.destinations import Destination, StoredObject, UnfinishedUpload, open_destination
from storagectl.errors import BackendUnavailable, IntegrityError, LockHeld, NotFound, UsageError

if TYPE_CHECKING:
    from storagectl.config.models import Config

log = logging.getLogger("storagectl.backup")


@dataclass
class FoundBackup:
    """One backup folder at one destination; ``manifest`` is None for a partial (failed/running) one.
    ``unfinished`` holds its unfinished uploads when it was found with them (see :func:`backup_folders`)."""

    destination: Destination
    group: str
    id: str
    objects: list[StoredObject] = field(default_factory=list)
    manifest: BackupManifest | None = None
    unfinished: list[UnfinishedUpload] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    @property
    def prefix(self) -> str:
        return backup_prefix(self.group, self.id)

    @property
    def has_manifest(self) -> bool:
        """Whether a manifest is stored (read or not)."""
        return any(obj.key == self.prefix + MANIFEST_NAME for obj in self.objects)

    @property
    def last_active(self) -> datetime:
        """When anything was last written to the folder, unfinished uploads included."""
        return max([obj.modified for obj in self.objects] + [up.last_active for up in self.unfinished])

    @property
    def size(self) -> int:
        """Bytes held: stored objects plus what unfinished uploads hold (when the destination says)."""
        return sum(obj.size for obj in self.objects) + sum(up.size or 0 for up in self.unfinished)

    def in_progress(self, now: datetime, partial_after: float) -> bool:
        """No manifest yet, and a live lease or a write less than ``partial_after`` seconds before ``now``:
        a backup being written, which nothing may remove."""
        return not self.has_manifest and self._active(now, partial_after)

    def is_leftover(self, now: datetime, partial_after: float) -> bool:
        """No manifest, and not in progress: what a failed or killed run left behind."""
        return not self.has_manifest and not self._active(now, partial_after)

    def _active(self, now: datetime, partial_after: float) -> bool:
        recent = now - self.last_active <= timedelta(seconds=partial_after)
        return recent or lease_is_live(self.objects, now)

    def stale_uploads(self, now: datetime, partial_after: float) -> list[UnfinishedUpload]:
        """Unfinished uploads left by a dead run: idle for longer than ``partial_after``, in a folder
        that is not in progress."""
        if self.in_progress(now, partial_after):
            return []
        cutoff = now - timedelta(seconds=partial_after)
        return [upload for upload in self.unfinished if upload.last_active < cutoff]

    def to_dict(self) -> dict[str, Any]:
        summary = summarize(self.manifest) if self.manifest else {"id": self.id, "group": self.group}
        return {**summary, "destination": self.destination.name, "location": self.destination.location(),
                "complete": self.complete}


def summarize(manifest: BackupManifest) -> dict[str, Any]:
    return {
        "id": manifest.id, "group": manifest.group, "job": manifest.job,
        "backend": manifest.backend.get("name"), "kind": manifest.backend.get("kind"),
        "server_version": manifest.backend.get("server_version"),
        "started_at": manifest.started_at, "finished_at": manifest.finished_at,
        "size": manifest.size, "raw_size": manifest.raw_size, "objects": len(manifest.objects),
        "encrypted": manifest.encryption is not None,
        "partial": manifest.partial, "selection": manifest.selection,
    }


def destination_named(config: Config, name: str) -> Destination:
    return open_destination(name, config.destination(name))


def searched_destinations(config: Config, name: str | None) -> list[Destination]:
    """``--from NAME``, or every configured destination (jobs' destinations first)."""
    if name is not None:
        return [destination_named(config, name)]
    names = list(dict.fromkeys([job.destination for job in config.jobs.values()] + list(config.destinations)))
    if not names:
        raise UsageError("no destinations configured", hint="Try: add one under `destinations:` in the config")
    return [destination_named(config, n) for n in names]


def read_manifest(destination: Destination, key: str) -> BackupManifest:
    with destination.open_read(key) as stream:
        data = stream.read()
    return BackupManifest.from_json(data, f"destination {destination.name!r}: {key}")


def backup_folders(destination: Destination, group: str = "", *, unfinished: bool = False) -> Iterator[FoundBackup]:
    """Every ``<group>/<id>/`` folder, complete or not (manifests are read lazily by callers).

    With ``unfinished``, also each folder's unfinished uploads (an extra listing, and on S3 the
    ListBucketMultipartUploads permission), including folders that hold nothing else: what a
    process killed during its first object leaves behind.
    """
    prefix = f"{group}/" if group else ""
    folders: dict[tuple[str, str], FoundBackup] = {}

    def folder_of(key: str) -> FoundBackup | None:
        parts = key.split("/")
        if len(parts) < 3:
            return None
        if (parts[0], parts[1]) not in folders:
            folders[(parts[0], parts[1])] = FoundBackup(destination, parts[0], parts[1])
        return folders[(parts[0], parts[1])]

    for stored in destination.list(prefix):
        if (folder := folder_of(stored.key)) is not None:
            folder.objects.append(stored)
    for upload in destination.list_unfinished(prefix) if unfinished else ():
        if (folder := folder_of(upload.key)) is not None:
            folder.unfinished.append(upload)
    yield from folders.values()


def with_manifest(found: FoundBackup) -> FoundBackup:
    key = f"{found.group}/{found.id}/{MANIFEST_NAME}"
    if any(stored.key == key for stored in found.objects):
        found.manifest = read_manifest(found.destination, key)
    return found


def folders_at(config: Config, destination: str | None, *,
               unfinished: bool = False) -> tuple[list[FoundBackup], list[str]]:
    """Backup folders of ``--from DEST`` (errors raise), or of every reachable destination; with
    ``unfinished``, with their unfinished uploads (see :func:`backup_folders`).

    Without ``--from`` an unreachable destination is skipped with a warning and named in the second
    value, so a restore from the local copy still works while S3 is down.
    """
    folders, unreachable = [], []
    for dest in searched_destinations(config, destination):
        try:
            folders += list(backup_folders(dest, unfinished=unfinished))
        except BackendUnavailable as exc:
            if destination is not None:
                raise
            log.warning("skipping unreachable destination %r: %s", dest.name, exc.message)
            unreachable.append(dest.name)
    return folders, unreachable


def list_backups(config: Config, destination: str | None = None, job: str | None = None,
                 backend: str | None = None) -> list[FoundBackup]:
    """Complete backups, oldest first; folders without a manifest are not backups and are skipped."""
    found = []
    for folder in folders_at(config, destination)[0]:
        try:
            folder = with_manifest(folder)
        except IntegrityError as exc:
            log.warning("skipping %s: %s", folder.id, exc)
            continue
        if folder.manifest and _matches(folder.manifest, job, backend):
            found.append(folder)
    # Ids sort by time only to the second; the manifest's start time orders backups within one.
    return sorted(found, key=lambda f: (datetime.fromisoformat(f.manifest.started_at), f.id, f.destination.name))


def _matches(manifest: BackupManifest, job: str | None, backend: str | None) -> bool:
    return (job is None or manifest.job == job) and (backend is None or manifest.backend.get("name") == backend)


LATEST = "latest"


def resolve_backup_id(config: Config, backup_id: str, destination: str | None = None, *,
                      job: str | None = None, backend: str | None = None) -> FoundBackup | None:
    """``latest`` (with ``--job``/``--backend``) -> the newest complete backup they select; an
    explicit id -> None (the caller looks it up). Selectors with an explicit id are a usage error."""
    if backup_id != LATEST:
        if job or backend:
            raise UsageError(f"--job/--backend choose which backup `latest` means; {backup_id} is already an id",
                             hint=f"Try: drop --job/--backend, or use `latest` instead of {backup_id}")
        return None
    return latest_backup(config, destination, job=job, backend=backend)


def latest_backup(config: Config, destination: str | None = None, *, job: str | None = None,
                  backend: str | None = None) -> FoundBackup:
    """The newest complete backup of ``backend`` and/or ``job``; several backends of a job are ambiguous."""
    if job is None and backend is None:
        raise UsageError("`latest` needs --backend NAME or --job NAME: whose newest backup is meant?",
                         hint="Try: storagectl backup list, then --backend NAME")
    for name, lookup in ((job, config.job), (backend, config.backend)):
        if name is not None:
            lookup(name)  # an unknown name is a usage error (exit 2)
    listed = list_backups(config, destination, job=job, backend=backend)
    # A partial backup stands in only for its own job's selection, never for a full backup.
    wanted = config.job(job).selection().to_dict() if job else {}
    found = [f for f in listed if f.manifest.selection_options() == wanted]
    selector = " and ".join(f"{what} {name!r}" for what, name in (("job", job), ("backend", backend)) if name)
    if not found:
        skipped = len(listed) - len(found)
        other = (f" ({skipped} partial or differently selected backup(s) left out: name one by its id)"
                 if skipped else "")
        raise NotFound(f"no complete {'full ' if skipped and not wanted else ''}backup of {selector} in "
                       f"{destination or 'any configured destination'}{other}", hint="Try: storagectl backup list")
    backends = sorted({f.manifest.backend.get("name") or "?" for f in found})
    if backend is None and len(backends) > 1:
        raise UsageError(f"`latest` of job {job!r} is ambiguous: it backs up {', '.join(backends)}",
                         hint=f"Try: --job {job} --backend {backends[0]}")
    return found[-1]


def latest_backup_id(config: Config, destination: str | None, backend: str | None) -> str:
    """The id of the newest complete backup of ``backend`` (``restore latest --to BACKEND``)."""
    return latest_backup(config, destination, backend=backend).id


def find_backup(config: Config, backup_id: str, destination: str | None = None, *,
                allow_partial: bool = False) -> FoundBackup:
    """The backup ``backup_id``; NotFound when absent or incomplete, UsageError when ambiguous,
    IntegrityError when its manifest is unreadable (unless ``allow_partial``: then without one, and
    found with its unfinished uploads, also when it holds nothing else)."""
    folders, unreachable = folders_at(config, destination, unfinished=allow_partial)
    matches = [folder for folder in folders if folder.id == backup_id]
    if not matches and unreachable:
        raise BackendUnavailable(
            f"backup {backup_id} not found in the reachable destinations; unreachable: {', '.join(unreachable)}",
            hint="Try: storagectl diag, or --from DESTINATION once it is reachable")
    if not matches:
        where = destination or "any configured destination"
        raise NotFound(f"backup {backup_id} not found in {where}", hint="Try: storagectl backup list")
    if len(matches) > 1:
        names = ", ".join(f"{m.destination.name}:{m.group}" for m in matches)
        raise UsageError(f"backup id {backup_id} is ambiguous: found in {names}",
                         hint="Try: --from DESTINATION")
    try:
        found = with_manifest(matches[0])
    except IntegrityError:
        if not allow_partial:
            raise
        found = matches[0]  # an unreadable manifest: as removable as a partial backup
    if found.manifest is None and not allow_partial:
        raise NotFound(
            f"backup {backup_id} at destination {found.destination.name!r} has no {MANIFEST_NAME}: "
            "it is incomplete (failed or still running) and cannot be used",
            hint=f"Try: storagectl backup delete {backup_id} --yes to remove it, or storagectl backup list")
    return found


@dataclass
class DeletePlan:
    backup: FoundBackup
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.backup.to_dict(), "objects_removed": len(self.backup.objects),
                "unfinished_removed": len(self.backup.unfinished), "bytes_removed": self.backup.size,
                "dry_run": self.dry_run}


def delete_backup(config: Config, backup_id: str, destination: str | None = None, *,
                  dry_run: bool = False, now: datetime | None = None) -> DeletePlan:
    """Remove one backup (partial ones too, and a folder holding only unfinished uploads). The
    manifest goes first, so a half-deleted backup never looks complete. A backup still being
    written (no manifest, a live lease) is refused, as ``prune`` leaves it alone; the folder is
    looked at again just before the removal, as the run may have renewed its lease since."""
    found = find_backup(config, backup_id, destination, allow_partial=True)
    _refuse_in_progress(found, now or datetime.now(UTC))
    if not dry_run:
        _refuse_in_progress(looked_at_again(found), now or datetime.now(UTC))
        remove_folder(found)
    return DeletePlan(found, dry_run)


def _refuse_in_progress(found: FoundBackup, now: datetime) -> None:
    lease = None if found.has_manifest else live_lease(found.objects, now)
    if lease is not None:
        age = max(0, round((now - lease.modified).total_seconds()))
        raise LockHeld(f"backup {found.id} at destination {found.destination.name!r} is still being written: its "
                       f"lease {lease.key} was renewed {age}s ago; nothing was deleted",
                       hint=f"Try: let that run finish, or stop it; its lease expires {LEASE_TTL:.0f}s after the "
                            f"last renewal, then rerun storagectl backup delete {found.id}")


def remove_folder(found: FoundBackup) -> None:
    """Its manifest first (so a half-removed backup never looks complete), then the other objects,
    then the unfinished uploads it was found with."""
    keys = sorted((o.key for o in found.objects), key=lambda key: not key.endswith("/" + MANIFEST_NAME))
    found.destination.delete(keys[:1])
    found.destination.delete(keys[1:])
    found.destination.abort_unfinished(found.unfinished)


def looked_at_again(found: FoundBackup) -> FoundBackup:
    """The folder as its destination holds it now (objects only): a run that seemed dead when a
    prune listed the folder may have renewed its lease or written its manifest since."""
    return FoundBackup(found.destination, found.group, found.id, list(found.destination.list(found.prefix)),
                       unfinished=found.unfinished)


@dataclass
class Leftovers:
    """What a clean-up removed: folders of failed or killed runs, and unfinished uploads aborted."""

    partial_removed: list[str] = field(default_factory=list)
    aborted_uploads: list[UnfinishedUpload] = field(default_factory=list)


def remove_stale_partials(destination: Destination, group: str, older_than: float,
                          now: datetime | None = None) -> Leftovers:
    """Remove ``group``'s leftovers of failed or killed runs: folders without a manifest that are not
    in progress (see :meth:`FoundBackup.in_progress`), with their unfinished uploads, and stale
    unfinished uploads in the other folders."""
    now = now or datetime.now(UTC)
    removed = Leftovers()
    for folder in backup_folders(destination, group, unfinished=True):
        if not is_backup_id(folder.id):
            continue
        if folder.is_leftover(now, older_than) and looked_at_again(folder).is_leftover(now, older_than):
            remove_folder(folder)
            removed.partial_removed.append(folder.id)
            removed.aborted_uploads += folder.unfinished
        else:
            stale = folder.stale_uploads(now, older_than)
            destination.abort_unfinished(stale)
            removed.aborted_uploads += stale
    return removed
