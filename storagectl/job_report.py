"""What a finished job run leaves for monitoring, however it was started (`backup schedule`,
`backup run --job`, a runbook, cron): the job's ``metrics_file`` and its on_success/on_failure hook.

Below both the scheduler and the CLI, so neither climbs into the other to be seen by monitoring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storagectl.errors import StoragectlError
from storagectl.hooks import HookEvent, run_hook
from storagectl.metrics import JobRunMetrics, write_job_metrics
from storagectl.redact import redact_text

if TYPE_CHECKING:  # plain settings from a config-cache hit too: no pydantic at run time
    from storagectl.config.models import Config, JobSettings

log = logging.getLogger("storagectl.jobs")


@dataclass(frozen=True)
class TakenBackup:
    id: str
    size: int


@dataclass
class JobOutcome:
    """How one run of a job ended."""

    job: str
    succeeded: bool
    duration: float = 0.0
    backups: list[TakenBackup] = field(default_factory=list)
    error: str | None = None


def report_job_outcome(settings: JobSettings, outcome: JobOutcome, *, hooks: bool = True) -> None:
    """Write the job's metrics file and run its hook (unless ``hooks`` is off). Never raises: a
    broken metrics path or hook is logged and must not turn a good backup into a failed one."""
    if settings.metrics_file is not None:
        size = sum(backup.size for backup in outcome.backups)
        metrics = JobRunMetrics(outcome.job, time.time(), outcome.duration, outcome.succeeded, size)
        try:
            write_job_metrics(settings.metrics_file, metrics)
        except (OSError, StoragectlError) as exc:
            log.error("job %s: cannot write metrics file %s: %s", outcome.job, settings.metrics_file, exc)
    hook = settings.on_success if outcome.succeeded else settings.on_failure
    if hooks and hook:
        event = HookEvent(outcome.job, "success" if outcome.succeeded else "failure",
                          tuple(b.id for b in outcome.backups), outcome.error, outcome.duration)
        run_hook(hook, event)  # logs its own failure


@contextmanager
def reported_job_run(config: Config, job: str | None, *, hooks: bool = True) -> Iterator[list[TakenBackup]]:
    """Time the block as one run of ``job`` and report how it ended; the block appends the backups
    it took to the list it is given. ``job`` None (an ad-hoc backup) reports nothing."""
    taken: list[TakenBackup] = []
    began = time.monotonic()
    try:
        yield taken
    except BaseException as exc:
        if job is not None:
            outcome = JobOutcome(job, False, time.monotonic() - began, taken, failure_reason(exc))
            report_job_outcome(config.job(job), outcome, hooks=hooks)
        raise
    if job is not None:
        report_job_outcome(config.job(job), JobOutcome(job, True, time.monotonic() - began, taken), hooks=hooks)


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, StoragectlError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"internal error: {type(exc).__name__}: {redact_text(str(exc))}"
