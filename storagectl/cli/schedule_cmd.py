"""`storagectl backup schedule` and `backup prune` (core: storagectl.schedule, storagectl.prune).

Registered on the `backup` group by :mod:`storagectl.cli.backup_cmd`.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from storagectl.cli import complete
from storagectl.cli.output import confirm, note, plan_format, print_json, print_table, styled_status
from storagectl.cli.state import AppState, DryRunOption, OutputFormat, OutputOption, YesOption, state_of

JobsOption = Annotated[list[str] | None, typer.Option(
    "--job", "-j", metavar="JOB", help="Only this job (repeatable). Default: every job.",
    autocompletion=complete.job_names)]


def schedule(
    ctx: typer.Context,
    list_: Annotated[bool, typer.Option("--list", help="Print each job's cron, timezone and next 5 fire times.")]
    = False,
    once: Annotated[bool, typer.Option("--once", help="Run the jobs that are due, then exit (cron, CronJobs).")]
    = False,
    job: JobsOption = None,
    grace: Annotated[float | None, typer.Option(
        "--grace", min=0, metavar="SECONDS", help="On SIGTERM/SIGINT, abort running jobs after this many seconds "
        "[default: let them finish; a second signal aborts].")] = None,
    output: OutputOption = None,
) -> None:
    """Run every job with a schedule at its cron time (backup, then retention), in the foreground.

    Logs every run; writes each job's metrics_file and runs its on_success/on_failure hook. Never
    runs one job twice at once (job lock: Redis with lock.backend, else a local file). A run that
    overruns skips the fires it missed; catchup: true runs a missed fire once at start. A backend
    that fails does not stop the job's others; the run is then failed and its retention skipped. On
    SIGTERM/SIGINT it starts nothing new, lets running jobs finish (or aborts them cleanly, leaving
    no partial backup that looks complete) and exits 0. With --once, exits 1 if any job failed.
    """
    from storagectl.errors import UsageError
    from storagectl.schedule import job_schedules, select_jobs

    state = state_of(ctx)
    if list_ and once:
        raise UsageError("give either --list or --once, not both")
    config = state.config
    scheduled, unscheduled = select_jobs(config, job)
    if list_:
        schedules = job_schedules(config, scheduled + unscheduled, datetime.now(UTC))
        _render_schedules(state, [s.to_dict() for s in schedules], output)
        return
    for name in unscheduled:
        note(state, f"job {name}: no schedule; skipped")
    if not scheduled:
        raise UsageError("no job to schedule: none of the selected jobs has a schedule",
                         hint="Try: add `schedule: \"@daily\"` to a job, or use storagectl backup run --job NAME")
    _run_scheduler(state, scheduled, once, grace, output)


def _run_scheduler(state: AppState, jobs: list[str], once: bool, grace: float | None,
                   output: OutputFormat | None) -> None:
    from storagectl.errors import OperationFailed
    from storagectl.locks import check_lock_backends
    from storagectl.schedule import FAILURE, BackupJobRunner, Scheduler, stop_on_signals

    config = state.config
    check_lock_backends(config, jobs)
    _log_runs(state)
    scheduler = Scheduler(config, BackupJobRunner(config), grace=grace)
    with stop_on_signals(scheduler):
        if not once:
            scheduler.run_forever(jobs)
            return
        runs = scheduler.run_due(jobs)
    _render_runs(state, [run.to_dict() for run in runs], output)
    failed = [run.job for run in runs if run.status == FAILURE]
    if failed:
        raise OperationFailed(f"{len(failed)} job(s) failed: {', '.join(failed)}",
                              hint="Try: the log lines above, or storagectl backup run --job NAME -v")


def _log_runs(state: AppState) -> None:
    """A scheduler logs every run by default; --quiet keeps errors only, -v adds more."""
    if not state.quiet and state.verbose == 0:
        for name in ("storagectl.schedule", "storagectl.prune"):
            logging.getLogger(name).setLevel(logging.INFO)


def _render_schedules(state: AppState, schedules: list[dict[str, Any]], output: OutputFormat | None) -> None:
    if state.format(output) is OutputFormat.json:
        print_json(schedules)
        return
    rows = [[s["job"], s["cron"] or "no schedule", s["timezone"], "\n".join(s["next"]) or "-"]
            for s in schedules]
    print_table(state, ["Job", "Cron", "Timezone", "Next fire times"], rows)


def _render_runs(state: AppState, runs: list[dict[str, Any]], output: OutputFormat | None) -> None:
    from storagectl.units import human_bytes

    if state.format(output) is OutputFormat.json:
        print_json(runs)
        return
    rows = [[r["job"], r["status"], r["fire"], ", ".join(r["backups"]) or "-",
             human_bytes(r["size"]) if r["backups"] else "-", f"{r['duration']:.1f}s", r["error"] or ""]
            for r in runs]
    print_table(state, ["Job", "Status", "Fire", "Backups", "Size", "Duration", "Problem"], rows)


def prune(
    ctx: typer.Context,
    job: JobsOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    output: OutputOption = None,
) -> None:
    """Apply each job's retention policy to the backups its destination holds.

    Prints every backup with keep or remove and the rules that kept it. Removing asks first on a
    terminal and needs --yes elsewhere; --dry-run only shows the plan. Never removes a job's newest
    complete backup nor one still being written; removes backups without a manifest once nothing
    has been written to them for retention.partial_after. A delete the destination refuses is an error.
    """
    from storagectl.locks import check_lock_backends
    from storagectl.prune import retention_jobs

    state = state_of(ctx)
    config = state.config
    jobs = retention_jobs(config, job)
    check_lock_backends(config, jobs)
    results = _prune_jobs(config, jobs, preview=dry_run or not yes)
    asking = not dry_run and not yes and any(result.removed for result in results)
    _render_prune(state, [result.to_dict() for result in results], plan_format(state, output) if asking else output)
    if asking:
        count = sum(len(result.removed) for result in results)
        confirm(state, f"Remove {count} backup(s)?", refusal="refusing to remove backups without --yes",
                hint="Try: storagectl backup prune" + "".join(f" --job {name}" for name in job or []) + " --yes")
        results = _prune_jobs(config, jobs, preview=False)
        _render_prune(state, [result.to_dict() for result in results], output)
    _fail_on_unreadable(results)


def _prune_jobs(config: Any, jobs: list[str], *, preview: bool) -> list[Any]:
    """Each job's retention, planned only (``preview``) or applied under the job's lock."""
    from storagectl.prune import prune_job

    now = datetime.now(UTC)
    results = []
    for name in jobs:
        with nullcontext() if preview else _job_locked(config, name):
            results.append(prune_job(config, name, now, dry_run=preview))
    return results


def _fail_on_unreadable(results: list[Any]) -> None:
    """Retention could not judge a backup whose manifest is unreadable: exit non-zero so it is seen."""
    from storagectl.errors import IntegrityError

    unreadable = [(result.job, backup_id, error)
                  for result in results for backup_id, error in result.unreadable.items()]
    if unreadable:
        job, backup_id, error = unreadable[0]
        raise IntegrityError(f"{len(unreadable)} backup(s) with an unreadable manifest were left alone, e.g. "
                             f"{backup_id} of job {job!r}: {error}",
                             hint=f"Try: storagectl backup show {backup_id}; remove it with storagectl backup "
                                  f"delete {backup_id} --yes once checked")


def _job_locked(config: Any, job: str) -> Any:
    """The job's lock, so retention never runs while the scheduler runs the same job."""
    from storagectl.locks import job_locked

    return job_locked(config, job)


def _render_prune(state: AppState, results: list[dict[str, Any]], output: OutputFormat | None) -> None:
    from storagectl.units import human_bytes

    if state.format(output) is OutputFormat.json:
        print_json(results)
        return
    rows = [[r["job"], b["backend"] or "-", b["id"], b["started_at"][:19], _holds(b), styled_status(b["action"]),
             ", ".join(b["reasons"]) or "no rule kept it"]
            for r in results for b in r["backups"]]
    print_table(state, ["Job", "Backend", "Backup", "Started", "Holds", "Action", "Reasons"], rows)
    uploads = [[r["job"], u["key"], _size(u["size"]), u["last_active"][:19]]
               for r in results for u in r["aborted_uploads"]]
    if uploads:
        print_table(state, ["Job", "Unfinished upload", "Size", "Last written"], uploads,
                    title="Unfinished uploads of dead runs, aborted" if not results[0]["dry_run"]
                    else "Unfinished uploads of dead runs, to abort")
    for r in results:
        remove, abort, free = ("would remove", "would abort", "would free") if r["dry_run"] \
            else ("removed", "aborted", "freed")
        note(state, f"job {r['job']}: {r['policy']}; {remove} {len(r['removed'])} backup(s) "
                    f"({len(r['partial_removed'])} partial), {abort} {len(r['aborted_uploads'])} unfinished "
                    f"upload(s); {free} {human_bytes(r['bytes_removed'])}")


def _holds(backup: dict[str, Any]) -> str:
    """What a backup folder holds: ``3 objects, 1.2 MiB + 2 unfinished``."""
    held = f"{backup['objects']} object(s), {_size(backup['bytes'])}"
    return held + (f" + {backup['unfinished_uploads']} unfinished" if backup["unfinished_uploads"] else "")


def _size(size: int | None) -> str:
    from storagectl.units import human_bytes

    return "?" if size is None else human_bytes(size)


# -- `backup run --prune` ------------------------------------------------------------------------
def check_run_prune(config: Any, job: str | None, backend: str | None, to: str | None) -> str:
    """Before `backup run --prune` takes a backup: the job whose retention will be applied."""
    from storagectl.backup import plan_backups
    from storagectl.errors import UsageError
    from storagectl.locks import check_lock_backends
    from storagectl.prune import retention_jobs

    if backend or to:
        raise UsageError("--prune applies a job's retention policy; use it with --job, not --backend/--to")
    name = plan_backups(config, job)[0].job
    retention_jobs(config, [name])
    check_lock_backends(config, [name])
    return name


def prune_after_run(state: AppState, job: str) -> None:
    """`backup run --prune`: the job's retention, after its backup, under the job's lock."""
    from storagectl.prune import prune_job

    with _job_locked(state.config, job):
        result = prune_job(state.config, job, datetime.now(UTC))
    removed = ", ".join(result.removed) or "nothing"
    aborted = f"; aborted {len(result.aborted_uploads)} unfinished upload(s)" if result.aborted_uploads else ""
    note(state, f"retention of job {job} ({result.policy}): removed {removed}{aborted}")
