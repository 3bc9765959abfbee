"""``verify_backup`` and ``restore``: read a backup back, check it, and restore it into a backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as replace_options
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl import interrupts
from storagectl.archive.api import ContentSummary, OwnershipOptions, RestoreOptions, RestoreOutcome, recorded_summary
from storagectl.archive.keys import load_identities
from storagectl.archive.progress import ProgressCallback, no_progress
from storagectl.archive.reader import StoredArchive
from storagectl.backends import Backend, backend_from_config
from storagectl.backup.catalog import LATEST, FoundBackup, find_backup, latest_backup_id
from storagectl.backup.run import archive_family, require_backup_capable
from storagectl.backup.validation import ValidationReport, compare_summaries
from storagectl.config.methods import default_parallel
from storagectl.errors import IntegrityError, UsageError, raise_with_state
from storagectl.selection import Selection

if TYPE_CHECKING:  # plain settings from a config-cache hit too: no pydantic at run time
    from storagectl.config.models import Config


@dataclass
class ObjectCheck:
    name: str
    size: int
    raw_size: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class VerifyReport:
    backup: FoundBackup
    objects: list[ObjectCheck]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.objects)

    def failures(self) -> list[ObjectCheck]:
        return [check for check in self.objects if not check.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.backup.id, "destination": self.backup.destination.name, "ok": self.ok,
                "objects": [{"name": c.name, "size": c.size, "raw_size": c.raw_size, "ok": c.ok,
                             "error": c.error} for c in self.objects]}

    def raise_if_bad(self, consequence: str = "") -> None:
        bad = self.failures()
        if bad:
            raise IntegrityError(f"backup {self.backup.id}: {len(bad)} of {len(self.objects)} object(s) failed "
                                 f"verification; first: {bad[0].error}{consequence}",
                                 hint="Try: restore an older backup; this one cannot be trusted")


def identities_for(config: Config, found: FoundBackup, identity_file: Path | None) -> list[Any]:
    """``--identity FILE``, else the identity_file of the job that wrote an encrypted backup."""
    manifest = found.manifest
    if identity_file is not None:
        return load_identities(identity_file)
    job = config.jobs.get(manifest.job or "") if manifest.encryption else None
    if job and job.encryption and job.encryption.identity_file:
        return load_identities(job.encryption.identity_file)
    return []


def open_archive(config: Config, found: FoundBackup, identity_file: Path | None, action: str,
                 progress: ProgressCallback) -> StoredArchive:
    identities = identities_for(config, found, identity_file)
    return StoredArchive(found.destination, found.manifest, identities, action=action, progress=progress)


def verify_archive(archive: StoredArchive, found: FoundBackup, parallel: int = 1, *,
                   decode: bool = True, names: set[str] | None = None) -> VerifyReport:
    """Read every object (of ``names``, when given) to its end, ``parallel`` at a time (decoding and
    hashing release the GIL). Without ``decode`` only the stored bytes' size and SHA-256 are checked.
    Damaged objects are collected; wrong keys and outages raise."""
    from concurrent.futures import ThreadPoolExecutor

    def check(entry: Any) -> ObjectCheck:
        result = ObjectCheck(entry.name, entry.size, entry.raw_size)
        try:
            if decode:
                archive.verify(entry.name)
            else:
                archive.check_stored(entry.name)
        except IntegrityError as exc:
            result.error = exc.message
        return result

    pool = ThreadPoolExecutor(max(1, parallel))
    try:
        entries = [entry for entry in archive.manifest.objects if names is None or entry.name in names]
        return VerifyReport(found, interrupts.map_results(pool, check, entries))
    finally:  # on Ctrl-C/SIGTERM the objects not yet started are dropped, not read to the end
        pool.shutdown(wait=True, cancel_futures=True)


def verify_backup(config: Config, backup_id: str, destination: str | None = None,
                  identity_file: Path | None = None, progress: ProgressCallback = no_progress) -> VerifyReport:
    """Check every object's size and SHA-256 and decode it fully; touches no backend."""
    found = find_backup(config, backup_id, destination)
    try:
        return verify_archive(open_archive(config, found, identity_file, "verify", progress), found)
    except KeyboardInterrupt as exc:
        raise_with_state(exc, f"backup {found.manifest.id} was not fully verified; nothing was changed")


@dataclass
class RestorePlan:
    backup: FoundBackup
    target: Backend
    target_empty: bool
    replace: bool
    validate: bool
    parallel: int
    unfinished: str | None = None  # the backup whose restore into the target was cut off (see Backend)
    selection: Selection = Selection()  # a selective restore (in place) of this part; empty: all of it
    db: int | None = None  # restore --db: the one db of a Redis backup restored
    metadata: dict[str, Any] = field(default_factory=dict)  # the backup's, narrowed to ``db``
    ownership: OwnershipOptions = OwnershipOptions()  # restore --no-owner / --no-privileges / --role

    @property
    def selective(self) -> bool:
        return not self.selection.empty

    @property
    def resumes(self) -> bool:
        """The target holds only an unfinished restore of this very backup: a rerun may discard it."""
        return not self.target_empty and self.unfinished == self.backup.manifest.id

    @property
    def needs_yes(self) -> bool:
        """The restore would replace data the target holds, and ``replace`` does not allow it."""
        return not self.target_empty and not self.replace and not self.resumes

    def to_dict(self) -> dict[str, Any]:
        manifest = self.backup.manifest
        return {"id": manifest.id, "destination": self.backup.destination.name, "target": self.target.name,
                "target_kind": self.target.kind, "target_endpoint": self.target.endpoint(),
                "target_empty": self.target_empty, "replace": self.replace, "validate": self.validate,
                "parallel": self.parallel, "objects": len(manifest.objects), "size": manifest.size,
                "raw_size": manifest.raw_size, "encrypted": manifest.encryption is not None,
                "needs_yes": self.needs_yes,
                "unfinished_restore": self.unfinished, "db": self.db,
                "replace_method": None if self.target_empty else self._replace_method(),
                "backup_partial": manifest.partial, "selection": self.selection.to_dict() or None}

    def _replace_method(self) -> str:
        if self.selective:
            return self.target.selection_replace_method
        return self.target.replace_method_for(self.unfinished)


@dataclass
class RestoreResult:
    plan: RestorePlan
    dry_run: bool
    duration: float = 0.0
    verification: VerifyReport | None = None
    validation: ValidationReport | None = None
    notes: list[str] = field(default_factory=list)  # from the backend, for the operator
    preview: dict[str, Any] = field(default_factory=dict)  # --dry-run: Backend.restore_preview

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "dry_run": self.dry_run, "duration": round(self.duration, 3),
                "validation": self.validation.to_dict() if self.validation else None, "notes": self.notes,
                **self.preview}


def plan_restore(config: Config, found: FoundBackup, target: str | None, *, replace: bool, validate: bool,
                 parallel: int | None, selection: Selection = Selection(), db: int | None = None) -> RestorePlan:
    """Check target, kind and emptiness before anything is read or written."""
    manifest = found.manifest
    name = target or manifest.backend.get("name")
    if name not in config.backends and target is None:
        raise UsageError(f"backup {manifest.id} is of backend {name!r}, which is not in the config",
                         hint="Try: --to BACKEND")
    backend = require_backup_capable(backend_from_config(config, name))
    family = manifest.backend.get("archive_family", manifest.backend.get("kind"))
    if archive_family(backend) != family:
        raise UsageError(f"backup {manifest.id} holds a {family} backup; {backend.label} cannot restore it",
                         hint="Try: --to a backend of the same kind")
    metadata = dict(manifest.backend.get("metadata") or {})
    if db is not None:
        metadata = backend.select_db(metadata, db)
    backend.check_restore(metadata)
    backend.check_selection(selection)
    job = config.jobs.get(manifest.job or "")
    workers = parallel or (job.parallel if job else default_parallel())
    # A partial backup restores only what it holds, in place, like a selective restore of a full one.
    selection = Selection.from_dict(manifest.selection_options()).narrowed_by(selection)
    if not selection.empty:
        unfinished = backend.unfinished_restore()
        if unfinished is not None:  # its partial contents are no base to restore a part into
            raise UsageError(f"{backend.label} holds an unfinished restore of backup {unfinished}; a selective "
                             "restore goes into a complete database only",
                             hint=f"Try: storagectl restore {unfinished} --to {backend.name} to finish it first")
        return RestorePlan(found, backend, not backend.holds_selection(selection), replace, validate, workers,
                           selection=selection, db=db, metadata=metadata)
    empty = backend.is_empty()
    return RestorePlan(found, backend, empty, replace, validate, workers,
                       None if empty else backend.unfinished_restore(), db=db, metadata=metadata)


def prepare_restore(config: Config, backup_id: str, destination: str | None = None, target: str | None = None, *,
                    validate: bool = False, parallel: int | None = None, replace: bool = False,
                    ownership: OwnershipOptions = OwnershipOptions(), selection: Selection = Selection(),
                    db: int | None = None) -> RestorePlan:
    """Find the backup and plan its restore (see :func:`plan_restore`): what :func:`restore` does
    before it reads the archive. A caller that must show the plan or ask before restoring plans
    once and hands the plan to :func:`restore_planned`."""
    if target is not None:
        config.backend(target)  # an unknown name is a usage error (exit 2), as everywhere else
    if destination is not None:
        config.destination(destination)
    if backup_id == LATEST:
        backup_id = latest_backup_id(config, destination, target)
    found = find_backup(config, backup_id, destination)
    plan = plan_restore(config, found, target, replace=replace, validate=validate, parallel=parallel,
                        selection=selection, db=db)
    if ownership.chosen and not plan.target.restores_owners_and_privileges:
        raise UsageError(f"--no-owner, --no-privileges and --role apply to PostgreSQL restores; {plan.target.label} "
                         f"is {plan.target.kind}", hint="Try: leave those options out")
    plan.ownership = ownership
    return plan


def restore(config: Config, backup_id: str, destination: str | None = None, target: str | None = None, *,
            validate: bool = False, parallel: int | None = None, dry_run: bool = False, replace: bool = False,
            identity_file: Path | None = None, progress: ProgressCallback = no_progress,
            ownership: OwnershipOptions = OwnershipOptions(), selection: Selection = Selection(),
            db: int | None = None) -> RestoreResult:
    """Restore a backup into a backend. A non-empty target needs ``replace``.

    Every object is verified before the target is touched when ``validate`` is set or the target kind
    cannot restore atomically, so a damaged archive never leaves a half-restored target;
    ``validate`` also compares contents afterwards. A ``selection`` (or a partial backup) restores only
    that part, in place, touching nothing else in the target; ``validate`` then compares that part.
    ``db`` restores only that db of a Redis backup. A ``dry_run`` plans and opens the archive for
    what the target kind shows (e.g. the roles a PostgreSQL backup needs, a read of its schema)."""
    plan = prepare_restore(config, backup_id, destination, target, validate=validate, parallel=parallel,
                           replace=replace, ownership=ownership, selection=selection, db=db)
    return restore_planned(config, plan, dry_run=dry_run, identity_file=identity_file, progress=progress)


def restore_planned(config: Config, plan: RestorePlan, *, dry_run: bool = False, identity_file: Path | None = None,
                    progress: ProgressCallback = no_progress) -> RestoreResult:
    """:func:`restore` of a plan from :func:`prepare_restore` (its ``replace`` may since have been
    set, e.g. once the user agreed)."""
    found, replace = plan.backup, plan.replace
    if not plan.target_empty and not plan.resumes and not replace and not dry_run:
        raise _not_empty(plan)
    if not plan.target_empty and plan.unfinished is None and (replace or dry_run) and not plan.selective:
        plan.target.check_replace()  # rights, a staging db: before hours of reading, and in the plan
    archive = restored_archive(config, plan, identity_file, "restore", progress)
    result = RestoreResult(plan, dry_run)
    options = RestoreOptions(parallel=plan.parallel, replace_existing=replace, backup_id=found.manifest.id,
                             ownership=plan.ownership, selection=plan.selection)
    if dry_run:
        result.preview = plan.target.restore_preview(archive, options)
        return result
    clock = time.monotonic()
    if plan.validate or not plan.target.restores_atomically:
        # Size + SHA-256 of every stored object proves the archive is what the backup wrote. It is
        # decoded in full as well when it is encrypted (a wrong identity must fail before the target
        # is touched) or when a failure half-way would cost data: existing contents replaced in place
        # (a staged replacement keeps them until it is complete, so it is spared the second read).
        in_place = plan.selective or (not plan.target_empty and not plan.target.stages_replacement(archive.metadata))
        decode = found.manifest.encryption is not None or in_place
        needed = plan.target.objects_for_selection(archive.metadata, plan.selection) if plan.selective else None
        result.verification = verify_archive(open_archive(config, found, identity_file, "verify", progress), found,
                                             plan.parallel, decode=decode, names=needed)
        result.verification.raise_if_bad("; nothing was restored")
    expected = recorded_summary(archive.metadata)
    check = _staged_validation(result, expected, lambda: restored_archive(
        config, plan, identity_file, "validate", progress)) if plan.validate and not plan.selective else None
    options = replace_options(options, check_staged=check)
    outcome = plan.target.restore(archive, options)
    outcome = outcome if isinstance(outcome, RestoreOutcome) else RestoreOutcome()
    result.notes = list(outcome.notes)
    if plan.validate and result.validation is None:
        result.validation = _validate(plan, outcome, expected)
        if result.validation.comparable and not plan.selective:  # a selection: its counts and checksums
            items = restored_archive(config, plan, identity_file, "validate", progress)
            result.validation.add_items(plan.target.compare_items(items, outcome))
    result.duration = time.monotonic() - clock
    return result


def _validate(plan: RestorePlan, outcome: RestoreOutcome, expected: ContentSummary | None) -> ValidationReport:
    """The target against the backup: for a selective restore, exactly the part it restored
    (``outcome.expected``) against that part of the target."""
    if not plan.selective:
        actual = plan.target.content_summary(expected)
    else:
        expected = outcome.expected if outcome.expected is not None else expected
        actual = plan.target.content_summary(expected, plan.selection)  # type: ignore[call-arg]
        actual = actual.only(expected.units()) if expected is not None else actual
    return compare_summaries(expected, actual, outcome.skipped, outcome.tolerance)


def restored_archive(config: Config, plan: RestorePlan, identity_file: Path | None, action: str,
                     progress: ProgressCallback) -> StoredArchive:
    """The backup's archive as the target restores it: its metadata narrowed as planned (``--db``)."""
    archive = open_archive(config, plan.backup, identity_file, action, progress)
    archive.metadata = dict(plan.metadata)
    return archive


def _not_empty(plan: RestorePlan) -> UsageError:
    if plan.selective:
        return UsageError(f"{plan.target.label} already holds objects that {plan.selection.describe()} selects; "
                          "restoring would replace them (nothing else is touched)",
                          hint="Try: --yes to replace them, or --dry-run to see the plan")
    if plan.unfinished is not None:
        return UsageError(f"{plan.target.label} holds an unfinished restore of backup {plan.unfinished}, not of "
                          f"{plan.backup.manifest.id}", hint=f"Try: storagectl restore {plan.unfinished} --to "
                          f"{plan.target.name} to finish it, or --yes to replace it")
    return UsageError(f"{plan.target.label} is not empty; restoring would overwrite its data",
                      hint="Try: --yes to replace it, or --dry-run to see the plan")


def _staged_validation(result: RestoreResult, expected: ContentSummary | None,
                       archive: Callable[[], StoredArchive]) -> Callable[[Any, RestoreOutcome], None]:
    """The ``--validate`` comparison for backends that stage a replacement: a mismatch raises before
    the restored data replaces the target's old contents."""
    def check(staged: Any, outcome: RestoreOutcome) -> None:
        result.validation = compare_summaries(expected, staged.content_summary(expected), outcome.skipped,
                                              outcome.tolerance)
        if result.validation.comparable:
            result.validation.add_items(staged.compare_items(archive(), outcome))
        if not result.validation.ok:
            raise IntegrityError(f"restore of {result.plan.backup.id}: {result.validation.problem()}; "
                                 "the target was left as it was",
                                 hint=f"Try: storagectl backup verify {result.plan.backup.id}")
    return check
