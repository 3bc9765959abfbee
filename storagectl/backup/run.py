"""``run_backup``: one backend -> one archive at one destination, manifest written last."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from storagectl import __version__
from storagectl.archive.api import BackupOptions
from storagectl.archive.keys import parse_recipients
from storagectl.archive.lease import BackupLease
from storagectl.archive.manifest import BackupManifest, backup_prefix, new_backup_id
from storagectl.archive.progress import ProgressCallback, no_progress
from storagectl.archive.writer import ArchiveSession
from storagectl.backends import Backend, backend_from_config
from storagectl.backup.catalog import Leftovers, destination_named, remove_stale_partials
from storagectl.backup.plan import BackupPlan, plan_backups
from storagectl.config.methods import PARTIAL_AFTER_DEFAULT
from storagectl.destinations import Destination
from storagectl.errors import Interrupted, OperationFailed, StoragectlError, UsageError, one_error, raise_with_state
from storagectl.job_report import TakenBackup
from storagectl.selection import Selection

if TYPE_CHECKING:  # plain settings from a config-cache hit too: no pydantic at run time
    from storagectl.config.models import Config

log = logging.getLogger("storagectl.backup")

# Jobs without a retention policy (and ad-hoc runs) clean stale partials after the policy default.


@dataclass
class BackupResult:
    manifest: BackupManifest
    location: str
    duration: float
    cleaned: Leftovers = field(default_factory=Leftovers)  # stale leftovers of the group removed after it

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {"id": m.id, "job": m.job, "backend": m.backend["name"], "kind": m.backend["kind"],
                "destination": m.destination, "location": self.location.rstrip("/") + "/" + m.prefix, "size": m.size,
                "raw_size": m.raw_size, "objects": len(m.objects), "encrypted": m.encryption is not None,
                "started_at": m.started_at, "finished_at": m.finished_at, "duration": round(self.duration, 3),
                "partial": m.partial, "selection": m.selection,
                "partial_removed": self.cleaned.partial_removed,
                "aborted_uploads": [upload.key for upload in self.cleaned.aborted_uploads]}


@dataclass
class BackupRun:
    """What a run did: the backups taken and why the other backends' backups failed."""

    results: list[BackupResult] = field(default_factory=list)
    failures: list[StoragectlError] = field(default_factory=list)

    @property
    def error(self) -> StoragectlError | None:
        """The run's failure (each backend's reported, the highest exit code), None when all were taken."""
        return one_error(self.failures)

    @property
    def taken(self) -> list[TakenBackup]:
        return [TakenBackup(result.manifest.id, result.manifest.size) for result in self.results]


def run_each_backup(config: Config, job: str | None = None, backend: str | None = None,
                    destination: str | None = None, progress: ProgressCallback = no_progress,
                    selection: Selection = Selection(), skip: Collection[str] = (),
                    started: Mapping[str, Any] = MappingProxyType({})) -> BackupRun:
    """Back up every backend of the job but those in ``skip`` (or the one backend, only ``selection``
    of it when given), the next one also when one failed: one database down must not cost the others
    their backups. An interrupt (Ctrl-C, SIGTERM, the scheduler aborting) still ends the run at once.
    ``started``: transfers begun early by backend name (storagectl.backup.head_start)."""
    run = BackupRun()
    for plan in plan_backups(config, job, backend, destination, selection):
        if plan.backend in skip:
            continue
        head_start = started.get(plan.backend)
        try:
            run.results.append(run_plan(config, plan, progress, head_start))
        except (Interrupted, KeyboardInterrupt) as exc:
            if isinstance(exc, Interrupted):
                exc.details += [f"failed before it: {failure.message}" for failure in run.failures]
            exc.partial_run = run  # type: ignore[union-attr]  # the backups finished before it stay reported
            raise
        except StoragectlError as exc:
            run.failures.append(exc)
        finally:
            if head_start is not None:  # not taken (a failure, another method): the server stops sending
                head_start.close()
    return run


def partial_run(exc: BaseException) -> BackupRun:
    """The backups a run interrupted by ``exc`` had finished (complete, kept): for its report and hook."""
    return getattr(exc, "partial_run", None) or BackupRun()


def run_backup(config: Config, job: str | None = None, backend: str | None = None,
               destination: str | None = None, progress: ProgressCallback = no_progress,
               selection: Selection = Selection()) -> list[BackupResult]:
    """:func:`run_each_backup`, one result per backup; a failure raised once every backend was tried."""
    run = run_each_backup(config, job, backend, destination, progress, selection)
    if run.error is not None:
        raise run.error
    return run.results


def require_backup_capable(backend: Backend) -> Any:
    if not all(callable(getattr(backend, m, None)) for m in ("backup", "restore", "is_empty", "content_summary")):
        raise UsageError(f"{backend.label}: backup and restore of kind {backend.kind!r} is not supported")
    return backend


def archive_family(backend: Backend) -> str:
    """Kinds sharing an archive format (e.g. postgres and timescaledb) set ``archive_family``."""
    return getattr(backend, "archive_family", backend.kind)


def run_plan(config: Config, plan: BackupPlan, progress: ProgressCallback = no_progress,
             head_start: Any = None) -> BackupResult:
    backend = require_backup_capable(backend_from_config(config, plan.backend))
    destination = destination_named(config, plan.destination)
    settings = plan.settings
    recipients = parse_recipients(settings.encryption.recipients) if settings.encryption else []
    with backend.connect() as connection:
        server_version = backend.server_version(connection)
        estimate = backend.backup_estimate(connection)
    clock, started = time.monotonic(), datetime.now(UTC)
    backup_id = new_backup_id(started)
    session = ArchiveSession(destination, backup_prefix(plan.group, backup_id), codec=settings.compression.codec,
                             level=settings.compression.level, recipients=recipients, progress=progress,
                             estimate=estimate)
    try:
        with BackupLease(destination, session.prefix) as lease:  # no prune takes the folder meanwhile
            backend.backup(session, BackupOptions(parallel=settings.parallel, pg_bin_dir=config.tools.pg_bin_dir,
                                                  parallel_given="parallel" in settings.model_fields_set,
                                                  selection=plan.selection, head_start=head_start))
            manifest = _manifest(plan, backend, server_version, backup_id, started, session)
            lease.renew()
            session.write_manifest(manifest)
    except BaseException as exc:
        session.discard()
        if isinstance(exc, KeyboardInterrupt):
            raise_with_state(exc, f"no backup of {backend.label} was written; its partial objects were removed")
        failure = _backup_failure(backend, exc)
        if failure is exc:
            raise
        raise failure from exc
    cleaned = _clean_up_after(destination, plan)
    return BackupResult(manifest, destination.location(), time.monotonic() - clock, cleaned)


def _clean_up_after(destination: Destination, plan: BackupPlan) -> Leftovers:
    """Remove the group's stale partial backups and unfinished uploads. The backup is complete, so a
    failure here (e.g. S3 refusing to list multipart uploads) is a warning, not the run's failure."""
    settings = plan.settings
    partial_after = settings.retention.partial_after if settings.retention else PARTIAL_AFTER_DEFAULT
    try:
        return remove_stale_partials(destination, plan.group, partial_after)
    except StoragectlError as exc:
        log.warning("cleaning up stale partial backups of %s at destination %r failed: %s",
                    plan.group, destination.name, exc.message)
        return Leftovers()


def _manifest(plan: BackupPlan, backend: Backend, server_version: str, backup_id: str,
              started: datetime, session: ArchiveSession) -> BackupManifest:
    settings = plan.settings
    backend_info = {"name": backend.name, "kind": backend.kind, "archive_family": archive_family(backend),
                    "server_version": server_version, "endpoint": backend.endpoint(),
                    "metadata": session.metadata}
    encryption = {"scheme": "age", "recipients": list(settings.encryption.recipients)} if settings.encryption else None
    return BackupManifest(
        id=backup_id, group=plan.group, job=plan.job, backend=backend_info, destination=plan.destination,
        started_at=started.isoformat(), finished_at=datetime.now(UTC).isoformat(),
        compression={"codec": settings.compression.codec, "level": settings.compression.level},
        encryption=encryption, objects=list(session.entries), tool_version=__version__,
        selection=_selection_record(plan.selection, session.metadata))


def _selection_record(selection: Selection, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """What the manifest says a partial backup holds: its selection and, unit by unit, what matched."""
    if selection.empty:
        return None
    from storagectl.archive.api import recorded_summary

    summary = recorded_summary(metadata)
    return {**selection.to_dict(), "matched": dict(sorted(summary.counts.items())) if summary else {}}


def _backup_failure(backend: Backend, exc: BaseException) -> BaseException:
    if isinstance(exc, StoragectlError) or not isinstance(exc, Exception):
        return exc
    return OperationFailed(f"backup of {backend.label} failed: {type(exc).__name__}: {backend.redact(str(exc))}",
                           hint=f"Try: storagectl diag --backend {backend.name}")
