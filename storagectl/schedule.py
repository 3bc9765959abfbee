"""The scheduler behind `backup schedule`: each job's backup at its cron time, then its retention.

Each scheduled job runs in a thread of its own, so jobs run concurrently with each other, but one
job never runs twice at once: an in-process guard per job, and a job lock shared by every process
that runs the job (a Redis lease when the job names ``lock.backend``, else a file lock under
:func:`storagectl.locks.default_lock_dir`).

Whether a fire has been served is read from the job's destination, never from local state: a fire
is served when the job's newest complete backup (for every backend of the job) started at or after
it. The check runs again once the lock is held, so two replicas woken by the same fire take one
backup between them, and a restarted container does not repeat a backup it already took.

* A backend of the job that fails does not stop the backups of the others; the run is then a
  failure (its hook gets the ids taken) and its retention is not applied.
* A run that overruns its next fires skips them, with a warning, instead of piling up.
* ``catchup: true`` runs a job once at start when its latest fire has not been served.
* ``run_due`` (``--once``) runs every job whose latest fire has not been served, then returns.
* :meth:`Scheduler.stop` (SIGTERM/SIGINT) stops scheduling; running jobs finish, or after
  ``grace`` seconds (or a second signal) are aborted through the backup layer, which deletes what
  an unfinished backup wrote, so nothing partial ever looks complete.

The clock is injected (:class:`Clock`), so tests never sleep for real time. All datetime arithmetic
is done in UTC (see :mod:`storagectl.cron`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from storagectl.config.models import Config
from storagectl.cron import fires_between, latest_fire_at_or_before, next_fire_times
from storagectl.errors import Interrupted, StoragectlError
from storagectl.interrupts import stop_signals_handled
from storagectl.job_report import JobOutcome, TakenBackup, report_job_outcome
from storagectl.locks import JobLock, JobLocks
from storagectl.prune import newest_complete_start, newest_complete_starts, prune_job
from storagectl.redact import redact_text

log = logging.getLogger("storagectl.schedule")

SUCCESS, FAILURE, ABORTED, SKIPPED, NOT_DUE = "success", "failure", "aborted", "skipped", "not due"


# -- clock ---------------------------------------------------------------------------------------
class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def wait_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Block until ``moment`` (True) or until ``stop`` is set (False)."""
        ...


class SystemClock:
    # Sleep in slices, so that a wall clock stepped by NTP or a resumed VM is noticed in time.
    SLICE = 30.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait_until(self, moment: datetime, stop: threading.Event) -> bool:
        target = moment.astimezone(UTC)
        while not stop.is_set():
            remaining = (target - self.now()).total_seconds()
            if remaining <= 0:
                return True
            stop.wait(min(remaining, self.SLICE))
        return False


# -- what the scheduler runs ---------------------------------------------------------------------
class JobRunner(Protocol):
    """What running a job means; :class:`BackupJobRunner` is storagectl's, tests may inject others."""

    def newest_backup_start(self, job: str) -> datetime | None:
        """When the job's newest complete run started, read from its destination."""
        ...

    def backup(self, job: str, fire: datetime,
               cancel: threading.Event) -> tuple[list[TakenBackup], StoragectlError | None]:
        """Take the backups the job still lacks for ``fire`` (a backend backed up since, by an earlier
        run that failed on another backend, is not backed up again), every backend's also when
        another failed: the backups taken and the run's failure (None: all taken). Once ``cancel``
        is set, stop (raise :class:`Interrupted`) and leave nothing complete-looking."""
        ...

    def apply_retention(self, job: str, now: datetime) -> list[str]:
        """Apply the job's retention policy, if it has one; the ids removed."""
        ...


class BackupJobRunner:
    """Jobs run through :mod:`storagectl.backup` and :mod:`storagectl.prune`."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def newest_backup_start(self, job: str) -> datetime | None:
        return newest_complete_start(self.config, job)

    def backup(self, job: str, fire: datetime,
               cancel: threading.Event) -> tuple[list[TakenBackup], StoragectlError | None]:
        from storagectl.backup import run_each_backup

        served = {backend for backend, start in newest_complete_starts(self.config, job).items()
                  if start.astimezone(UTC) >= fire.astimezone(UTC)}
        for backend in sorted(served):
            log.info("job %s: backend %s already has its backup for the fire at %s; not backed up again",
                     job, backend, fire.isoformat())

        def stop_when_cancelled(_event: Any) -> None:
            # Raised inside the archive writer: the backup layer then discards what the backup wrote.
            if cancel.is_set():
                raise Interrupted(f"job {job!r}: backup aborted (the scheduler is stopping or the job lock was lost)")

        run = run_each_backup(self.config, job=job, progress=stop_when_cancelled, skip=served)
        return run.taken, run.error

    def apply_retention(self, job: str, now: datetime) -> list[str]:
        if self.config.job(job).retention is None:
            return []
        return prune_job(self.config, job, now).removed


# -- schedules -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSchedule:
    job: str
    cron: str | None
    timezone: str
    next: list[datetime]

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "cron": self.cron, "timezone": self.timezone,
                "next": [fire.isoformat() for fire in self.next]}


def select_jobs(config: Config, names: list[str] | None) -> tuple[list[str], list[str]]:
    """The named jobs (default: all), split into (with a schedule, without one)."""
    chosen = names or list(config.jobs)
    settings = {name: config.job(name) for name in chosen}  # unknown names raise UsageError
    return ([n for n in chosen if settings[n].schedule], [n for n in chosen if not settings[n].schedule])


def job_schedules(config: Config, jobs: list[str], now: datetime, count: int = 5) -> list[JobSchedule]:
    """Each job's cron, timezone and next ``count`` fire times (none for a job without a schedule)."""
    schedules = []
    for job in jobs:
        settings = config.job(job)
        fires = (next_fire_times(settings.schedule, settings.timezone, now, count)
                 if settings.schedule else [])
        schedules.append(JobSchedule(job, settings.schedule, settings.timezone, fires))
    return schedules


# -- runs ----------------------------------------------------------------------------------------
@dataclass
class JobRun:
    """One run of a job for one fire, or why it did not run."""

    job: str
    fire: datetime | None
    status: str
    started_at: datetime | None = None
    duration: float = 0.0
    backups: list[TakenBackup] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ran(self) -> bool:
        return self.status in (SUCCESS, FAILURE, ABORTED)

    @property
    def size(self) -> int:
        return sum(backup.size for backup in self.backups)

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "fire": self.fire.isoformat() if self.fire else None, "status": self.status,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "duration": round(self.duration, 3), "backups": [b.id for b in self.backups],
                "size": self.size, "removed": self.removed, "error": self.error}


class Scheduler:
    def __init__(self, config: Config, runner: JobRunner, *, clock: Clock | None = None,
                 lock_for: Callable[[str], JobLock] | None = None, grace: float | None = None) -> None:
        self.config = config
        self.runner = runner
        self.clock = clock or SystemClock()
        self.lock_for = lock_for or JobLocks(config)
        self.grace = grace
        self.stopping = threading.Event()
        self.cancel = threading.Event()
        self._guards = {name: threading.Lock() for name in config.jobs}
        self._abort_timer: threading.Timer | None = None

    # -- stopping -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Start no new run; running ones finish, or are aborted after ``grace`` seconds.
        A second call aborts them at once."""
        if self.stopping.is_set():
            self.abort()
            return
        self.stopping.set()
        if self.grace is None:
            log.warning("stopping: no new runs; waiting for running jobs to finish (signal again to abort)")
            return
        log.warning("stopping: no new runs; running jobs are aborted in %gs", self.grace)
        self._abort_timer = threading.Timer(self.grace, self.abort)
        self._abort_timer.daemon = True
        self._abort_timer.start()

    def abort(self) -> None:
        """Abort running jobs cleanly: their unfinished backups are deleted."""
        if not self.cancel.is_set():
            log.warning("aborting running jobs")
        self.stopping.set()
        self.cancel.set()

    # -- modes --------------------------------------------------------------------------------
    def run_due(self, jobs: list[str]) -> list[JobRun]:
        """`--once`: run, concurrently, every job whose latest fire has not been served."""
        return _in_threads(self._run_if_due, jobs)

    def run_forever(self, jobs: list[str]) -> None:
        """Run each job at its fire times until :meth:`stop`; returns once every job thread ended."""
        _in_threads(self._job_loop, jobs)
        if self._abort_timer is not None:
            self._abort_timer.cancel()

    def _job_loop(self, job: str) -> None:
        settings = self.config.job(job)
        cursor = self.clock.now()
        if settings.catchup:
            cursor = self._catch_up(job, cursor)
        while not self.stopping.is_set():
            fire = next_fire_times(settings.schedule, settings.timezone, cursor, 1)[0]
            log.info("job %s: next run at %s", job, fire.isoformat())
            if not self.clock.wait_until(fire, self.stopping):
                return
            cursor = self._run_fire(job, fire)

    def _catch_up(self, job: str, now: datetime) -> datetime:
        run = self._run_if_due(job)
        if run.status == NOT_DUE or run.fire is None:
            return now
        log.info("job %s: catch-up run for the missed fire at %s: %s", job, run.fire.isoformat(), run.status)
        return self._after(job, run.fire)

    def _run_fire(self, job: str, fire: datetime) -> datetime:
        self.run_job(job, fire)
        return self._after(job, fire)

    def _after(self, job: str, fire: datetime) -> datetime:
        """Where to look for the next fire after a run for ``fire``: now, skipping overrun fires."""
        settings = self.config.job(job)
        now = self.clock.now()
        missed = fires_between(settings.schedule, settings.timezone, fire, now)
        if missed:
            log.warning("job %s: the run for %s overran; skipped %d fire(s), the last at %s",
                        job, fire.isoformat(), len(missed), missed[-1].isoformat())
        return max(now.astimezone(UTC), fire.astimezone(UTC))

    def _run_if_due(self, job: str) -> JobRun:
        settings = self.config.job(job)
        now = self.clock.now()
        fire = latest_fire_at_or_before(settings.schedule, settings.timezone, now)
        if fire is None:
            return JobRun(job, None, NOT_DUE)
        try:
            served = self._served(job, fire)
        except StoragectlError as exc:
            return self._finish(JobRun(job, fire, FAILURE, error=exc.message))
        if served:
            log.info("job %s: not due (the fire at %s has its backup)", job, fire.isoformat())
            return JobRun(job, fire, NOT_DUE)
        return self.run_job(job, fire)

    def _served(self, job: str, fire: datetime) -> bool:
        newest = self.runner.newest_backup_start(job)
        return newest is not None and newest.astimezone(UTC) >= fire.astimezone(UTC)

    # -- one run ------------------------------------------------------------------------------
    def run_job(self, job: str, fire: datetime) -> JobRun:
        """Run the job for ``fire`` unless it is running already (here or in another process) or
        the fire has been served meanwhile; log it, write its metrics and run its hook."""
        guard = self._guards[job]
        if not guard.acquire(blocking=False):
            return _skipped(job, fire, "it is still running in this process")
        try:
            return self._run_locked(job, fire)
        finally:
            guard.release()

    def _run_locked(self, job: str, fire: datetime) -> JobRun:
        try:
            lock = self.lock_for(job)
            acquired = lock.acquire()
        except Exception as exc:  # the lock backend went away after the start-up check
            error = f"cannot take the job lock: {type(exc).__name__}: {redact_text(str(exc))}"
            return self._finish(JobRun(job, fire, FAILURE, error=error))
        if not acquired:
            return _skipped(job, fire, f"another process holds its lock {lock.name!r}")
        try:
            run = self._run_unserved(job, fire, _CancelWhenLost(self.cancel, lock))
        finally:
            if lock.lost:
                log.error("job %s: its lock lease was lost during the run; another replica may have run it",
                          job)
            lock.release()
        return self._finish(run) if run.ran else run

    def _run_unserved(self, job: str, fire: datetime, cancel: _CancelWhenLost) -> JobRun:
        if self.stopping.is_set():
            return _skipped(job, fire, "the scheduler is stopping")
        try:
            if self._served(job, fire):
                return _skipped(job, fire, "another run has already taken the backup for this fire")
        except StoragectlError as exc:
            return JobRun(job, fire, FAILURE, error=exc.message)
        return self._execute(job, fire, cancel)

    def _execute(self, job: str, fire: datetime, cancel: _CancelWhenLost) -> JobRun:
        run = JobRun(job, fire, SUCCESS, started_at=self.clock.now())
        began = time.monotonic()
        log.info("job %s: starting (fire %s)", job, fire.isoformat())
        try:
            run.backups, failure = self.runner.backup(job, fire, cancel)
            if failure is not None:  # never prune after a run that missed a backend's backup
                raise failure
            if cancel.is_set():  # never prune on behalf of a run that no longer holds the job
                raise Interrupted(f"job {job!r}: retention skipped: the scheduler is stopping or the job lock was lost")
            run.removed = self.runner.apply_retention(job, self.clock.now())
        except Interrupted as exc:
            run.status, run.error = ABORTED, exc.message
            run.backups = [*run.backups, *getattr(getattr(exc, "partial_run", None), "taken", [])]
        except StoragectlError as exc:
            run.status, run.error = FAILURE, exc.message
        except Exception as exc:  # a bug in one run must not stop the scheduler
            run.status = FAILURE
            run.error = f"internal error: {type(exc).__name__}: {redact_text(str(exc))}"
        run.duration = time.monotonic() - began
        return run

    def _finish(self, run: JobRun) -> JobRun:
        """Log the run, write the job's metrics file and run its hook."""
        _log_run(run)
        outcome = JobOutcome(run.job, run.status == SUCCESS, run.duration, run.backups, run.error)
        report_job_outcome(self.config.job(run.job), outcome)
        return run


class _CancelWhenLost:
    """Set when the scheduler aborts runs or this run's lock lease is lost: another replica may
    have taken the job, so this run must stop rather than run the job twice at once."""

    def __init__(self, cancel: threading.Event, lock: Any) -> None:
        self.cancel = cancel
        self.lock = lock

    def is_set(self) -> bool:
        return self.cancel.is_set() or bool(self.lock.lost)


def _skipped(job: str, fire: datetime, why: str) -> JobRun:
    log.info("job %s: run for %s skipped: %s", job, fire.isoformat(), why)
    return JobRun(job, fire, SKIPPED, error=why)


def _log_run(run: JobRun) -> None:
    if run.status == SUCCESS:
        ids = ", ".join(b.id for b in run.backups) or "none"
        log.info("job %s: succeeded in %.1fs: backup %s, %d bytes; retention removed %d",
                 run.job, run.duration, ids, run.size, len(run.removed))
    else:
        log.error("job %s: %s after %.1fs: %s", run.job, "aborted" if run.status == ABORTED else "failed",
                  run.duration, run.error)


def _in_threads(function: Callable[[str], Any], jobs: list[str]) -> list[Any]:
    """``function(job)`` for every job, each in a thread of its own; results in job order."""
    results: dict[str, Any] = {}

    def call(job: str) -> None:
        try:
            results[job] = function(job)
        except Exception as exc:  # a bug must not end a job's thread silently
            error = f"internal error: {type(exc).__name__}: {redact_text(str(exc))}"
            log.error("job %s: %s (a bug in storagectl; rerun with --debug)", job, error)
            results[job] = JobRun(job, None, FAILURE, error=error)

    threads = [threading.Thread(target=call, args=(job,), name=f"job-{job}", daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # short joins keep the main thread free to handle signals
    return [results.get(job) for job in jobs]


@contextmanager
def stop_on_signals(scheduler: Scheduler) -> Iterator[None]:
    """SIGTERM/SIGINT stop the scheduler (a second one aborts running jobs); restored on exit."""

    def handle(signum: int, _frame: Any) -> None:
        log.warning("received %s", signal.Signals(signum).name)
        scheduler.stop()

    with stop_signals_handled(handle):
        yield
