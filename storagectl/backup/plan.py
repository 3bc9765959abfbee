"""``plan_backups``: what one ``backup run`` does, checked before any work and before the archive
machinery loads (so a Redis snapshot can be requested early: storagectl.backup.head_start)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from storagectl.errors import UsageError
from storagectl.selection import Selection

if TYPE_CHECKING:  # plain settings from a config-cache hit too: no pydantic at run time
    from storagectl.config.models import Config, JobSettings


@dataclass(frozen=True)
class BackupPlan:
    """What one backup run does; a job with several backends makes one plan per backend."""

    backend: str
    destination: str
    group: str  # folder at the destination: the job name, or the backend name for ad-hoc runs
    job: str | None
    settings: JobSettings
    selection: Selection = Selection()  # empty: a full backup


def plan_backups(config: Config, job: str | None = None, backend: str | None = None,
                 destination: str | None = None, selection: Selection = Selection()) -> list[BackupPlan]:
    """Check the options before any work: ``--job NAME`` or ``--backend NAME --to DEST``, and that
    each backend takes the selection (``--table`` ... or the job's ``select:``)."""
    if job and (backend or destination):
        raise UsageError("give either --job or --backend with --to, not both")
    if backend or destination:
        if not (backend and destination):
            raise UsageError("--backend and --to go together", hint="Try: backup run --backend NAME --to DEST")
        config.backend(backend)
        config.destination(destination)
        plans = [BackupPlan(backend, destination, backend, None, config.ad_hoc_job(backend, destination), selection)]
    else:
        job = job or _only_job(config)
        settings = config.job(job)
        if not selection.empty:
            option = selection.options()[0]
            raise UsageError(f"{option} goes with --backend/--to: job {job!r} backs up what its `select:` says "
                             "(everything without one), so its retention counts only backups of that selection",
                             hint=f"Try: backup run --backend NAME --to DEST {option} ..., or set `select:` "
                                  f"in job {job!r}")
        plans = [BackupPlan(name, settings.destination, job, job, settings, settings.selection())
                 for name in settings.backends]
    for plan in plans:
        if not plan.selection.empty:
            from storagectl.backends import backend_from_config

            backend_from_config(config, plan.backend).check_selection(plan.selection)
    return plans


def _only_job(config: Config) -> str:
    if len(config.jobs) == 1:
        return next(iter(config.jobs))
    known = ", ".join(config.jobs) or "none configured"
    raise UsageError(f"which job? configured jobs: {known}",
                     hint="Try: backup run --job NAME, or backup run --backend NAME --to DEST")
