"""The bodies of `backup list` and `backup run`, and what `backup show` and `restore` share with them,
without typer: these commands also run from storagectl.cli.quick, which never imports it. The typer
commands in backup_cmd.py parse the options and call these functions."""

from __future__ import annotations

from typing import Any

from storagectl.cli.appstate import AppState, OutputFormat
from storagectl.cli.output import note, print_json, print_line, print_table
from storagectl.units import human_bytes

LIST_COLUMNS = ["ID", "Job", "Backend", "Kind", "Destination", "Finished", "Size", "Objects", "Encrypted", "Contents"]


def list_view(state: AppState, from_: str | None, job: str | None, backend: str | None,
              output: OutputFormat | None) -> None:
    """`backup list`: complete backups, oldest first, as JSON or a table."""
    from storagectl.backup import list_backups

    found = [backup.to_dict() for backup in list_backups(state.quick_config, from_, job, backend)]
    if state.format(output) is OutputFormat.json:
        print_json(found)
        return
    rows = [[b["id"], b["job"], b["backend"], b["kind"], b["destination"], b["finished_at"][:19],
             human_bytes(b["size"]), b["objects"], "yes" if b["encrypted"] else "no",
             describe_selection(b["selection"]) if b["partial"] else "full"] for b in found]
    print_table(state, LIST_COLUMNS, rows)


def run_view(state: AppState, job: str | None, backend: str | None, to: str | None, prune: bool, no_hooks: bool,
             table: list[str] | None, schema: list[str] | None, exclude_table: list[str] | None,
             pattern: list[str] | None, key_type: list[str] | None, label: list[str] | None,
             output: OutputFormat | None) -> None:
    """`backup run`: the backups taken (a job's run reported as a scheduled one is), then their ids; a
    backend that failed is reported after them (the others were still backed up) and fails the run."""
    from storagectl.backup.head_start import head_start
    from storagectl.backup.plan import plan_backups

    selection = selection_of(table, schema, exclude_table, pattern, key_type, label)
    plans = plan_backups(state.quick_config, job, backend, to, selection)
    pruned_job = _prune_checked(state, job, backend, to) if prune else None
    with head_start(state.quick_config, plans[0]) as started:  # a transfer the imports below overlap
        from storagectl.backup import partial_run, run_each_backup
        from storagectl.cli.progress import progress_view
        from storagectl.errors import StoragectlError
        from storagectl.job_report import reported_job_run

        with reported_job_run(state.quick_config, plans[0].job, hooks=not no_hooks) as taken:  # job None: ad hoc
            try:
                with progress_view(state) as progress:
                    run = run_each_backup(state.quick_config, job, backend, to, progress, selection, started=started)
            except (StoragectlError, KeyboardInterrupt) as exc:  # interrupted: what finished before is kept
                finished = partial_run(exc)
                taken += finished.taken
                _report_run(state, [result.to_dict() for result in finished.results], output)
                raise
            taken += run.taken
            if pruned_job and run.error is None:  # retention never counts on a run that missed a backend
                from storagectl.cli.schedule_cmd import prune_after_run

                prune_after_run(state, pruned_job)
            _report_run(state, [result.to_dict() for result in run.results], output)
            if run.error is not None:
                raise run.error  # the job's run failed: its hook and metrics say so, main reports each backend


def _report_run(state: AppState, taken: list[dict[str, Any]], output: OutputFormat | None) -> None:
    if state.format(output) is OutputFormat.json:
        print_json(taken)
        return
    for info in taken:
        _report_taken(state, info)


def _prune_checked(state: AppState, job: str | None, backend: str | None, to: str | None) -> str:
    from storagectl.cli.schedule_cmd import check_run_prune  # imports typer: --prune is a rarer run

    return check_run_prune(state.config, job, backend, to)


def _report_taken(state: AppState, info: dict[str, Any]) -> None:
    partial = f" (partial: {describe_selection(info['selection'])})" if info["partial"] else ""
    note(state, f"backup {info['id']} of {info['backend']} to {info['destination']}{partial}: "
                f"{human_bytes(info['size'])} in {info['duration']:.1f}s")
    if info["partial_removed"] or info["aborted_uploads"]:
        note(state, f"removed stale partial backup(s): {', '.join(info['partial_removed']) or 'none'}; "
                    f"aborted {len(info['aborted_uploads'])} unfinished upload(s) of dead runs")
    print_line(state, info["id"])


def selection_of(tables: list[str] | None, schemas: list[str] | None, exclude_tables: list[str] | None,
                 patterns: list[str] | None, types: list[str] | None, labels: list[str] | None) -> Any:
    """The --table/--schema/--exclude-table/--pattern/--type/--label options as a Selection."""
    from storagectl.selection import Selection

    return Selection(tuple(tables or ()), tuple(schemas or ()), tuple(exclude_tables or ()), tuple(patterns or ()),
                     tuple(types or ()), tuple(labels or ()))


def selected_backup_id(state: AppState, backup_id: str, from_: str | None, job: str | None,
                       backend: str | None) -> str:
    """An explicit id as given; ``latest`` resolved to the newest backup --job/--backend select, named on stderr."""
    from storagectl.backup.catalog import resolve_backup_id

    found = resolve_backup_id(state.quick_config, backup_id, from_, job=job, backend=backend)
    if found is None:
        return backup_id
    info = found.to_dict()
    note(state, f"latest: backup {found.id} of backend {info['backend']} (job {info['job'] or '-'}, "
                f"finished {info['finished_at'][:19]}) at {info['destination']}")
    return found.id


def describe_selection(selection: dict[str, Any] | None) -> str:
    """A partial backup's selection in one line: ``--table public.users (public.users 120 rows)``."""
    from storagectl.selection import Selection

    chosen = Selection.from_dict(selection).describe()
    matched = (selection or {}).get("matched") or {}
    return f"{chosen}; matched {counts_text(matched) or 'nothing'}"


def counts_text(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())
