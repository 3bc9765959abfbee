"""The body of `storagectl restore`, without typer: it also runs from storagectl.cli.quick.
restore_cmd.py declares the options and calls :func:`restore_view`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storagectl.cli.appstate import AppState, OutputFormat
from storagectl.cli.backup_views import selected_backup_id, selection_of
from storagectl.cli.output import confirm, note, print_json, print_table, styled_status
from storagectl.cli.progress import progress_view
from storagectl.units import human_bytes

if TYPE_CHECKING:
    from storagectl.backup.restore import RestorePlan
    from storagectl.selection import Selection


def restore_view(state: AppState, backup_id: str, from_: str | None, backend: str | None, job: str | None,
                 to: str | None, validate: bool, parallel: int | None, db: int | None, no_owner: bool,
                 no_privileges: bool, role: str | None, table: list[str] | None, schema: list[str] | None,
                 exclude_table: list[str] | None, pattern: list[str] | None, key_type: list[str] | None,
                 label: list[str] | None, dry_run: bool, yes: bool, identity: Path | None,
                 output: OutputFormat | None) -> None:
    """`restore`: plan (asking on a terminal when the target holds data), restore, report; exit 6 when
    --validate finds a difference."""
    from storagectl.archive.api import OwnershipOptions
    from storagectl.backup import prepare_restore, restore_planned
    from storagectl.backup.catalog import LATEST

    ownership = OwnershipOptions(not no_owner, not no_privileges, role)
    selection = selection_of(table, schema, exclude_table, pattern, key_type, label)
    if backup_id == LATEST and to is not None:
        state.quick_config.backend(to)  # an unknown target is named as the target, not as the source
    backup_id = selected_backup_id(state, backup_id, from_, job, _latest_of(state, backup_id, job, backend, to))
    # Planned once (the backup's manifest read, the target checked): the question and the restore share it.
    plan = prepare_restore(state.quick_config, backup_id, from_, to, validate=validate, parallel=parallel, replace=yes,
                           ownership=ownership, selection=selection, db=db)
    if plan.needs_yes and not dry_run and state.interactive:
        plan = _confirmed(state, plan, from_, identity, selection)
    with progress_view(state) as progress:
        result = restore_planned(state.quick_config, plan, dry_run=dry_run, identity_file=identity, progress=progress)
    if state.format(output) is OutputFormat.json:
        print_json(result.to_dict())
    else:
        _render(state, result)
    if result.validation is not None and not result.validation.ok:
        from storagectl.errors import IntegrityError

        raise IntegrityError(f"restore of {backup_id} finished but {result.validation.problem()}",
                             hint="Try: storagectl backup verify " + backup_id)


def _latest_of(state: AppState, backup_id: str, job: str | None, backend: str | None, to: str | None) -> str | None:
    """Whose newest backup `latest` means: --backend; else with --job, the job's only backend (or
    --to when the job backs it up; several others stay ambiguous, named by the error); else --to."""
    from storagectl.backup.catalog import LATEST

    if backup_id != LATEST or backend is not None:
        return backend
    if job is None:
        return to
    backends = state.quick_config.job(job).backends
    if to in backends:
        return to
    return backends[0] if len(backends) == 1 else None


def _confirmed(state: AppState, plan: RestorePlan, from_: str | None, identity: Path | None,
               selection: Selection) -> RestorePlan:
    """On a terminal, a target holding data is not refused: the plan is shown and the user asked;
    the plan with ``replace`` once they agree."""
    import dataclasses

    from storagectl.backup import restore_planned

    _render(state, restore_planned(state.quick_config, plan, dry_run=True, identity_file=identity), asking=True)
    target, backup_id = plan.target, plan.backup.id
    what = f"{plan.selection.describe()} in" if plan.selective else "the data of"
    confirm(state, f"Replace {what} {target.label} with backup {backup_id}?",
            refusal=f"{target.label} is not empty; restoring would overwrite its data",
            hint=f"Try: storagectl restore {backup_id}{f' --from {from_}' if from_ else ''} --to {target.name} "
                 f"{selection.command_words()}--yes")
    return dataclasses.replace(plan, replace=True)


def _render(state: AppState, result, asking: bool = False) -> None:
    """``asking``: the plan shown before the confirmation question (not a dry run's report)."""
    plan = result.to_dict()
    if result.dry_run:
        if result.plan.selective:
            verb = "replace in" if not plan["target_empty"] else "restore into"
            action = f"{verb} backend {plan['target']} ({plan['target_endpoint']}) only " \
                     f"{result.plan.selection.describe()} from backup"
        else:
            verb = "replace the data of" if not plan["target_empty"] else "restore into the empty"
            action = f"{verb} backend {plan['target']} ({plan['target_endpoint']}) from backup"
        needs_yes = ("" if asking or not plan["needs_yes"] else "; the target holds some of it: needs --yes"
                     if result.plan.selective else "; the target is not empty: needs --yes")
        note(state, f"{'this restore will' if asking else 'dry run: would'} {action} {plan['id']} at "
                    f"{plan['destination']}: {plan['objects']} object(s), {human_bytes(plan['raw_size'])}"
                    + ("; objects verified first" if plan["validate"] else "") + needs_yes)
        if plan["replace_method"]:
            note(state, f"replacing: {plan['replace_method']}")
        for key, values in result.preview.items():
            note(state, f"{key.replace('_', ' ')}: {', '.join(values) or 'none'}")
        return
    note(state, f"restored backup {plan['id']} into {plan['target']} in {plan['duration']:.1f}s")
    for line in result.notes:
        note(state, line)
    if result.validation is not None:
        rows = [[c.unit, c.expected_count, c.actual_count, _checksum(c), styled_status("ok" if c.ok else "critical")]
                for c in result.validation.checks]
        print_table(state, ["Unit", "Expected", "Restored", "Checksum", "Status"], rows, title="validation")
        for line in result.validation.notes:
            note(state, line)


def _checksum(check) -> str:
    if check.expected_checksum is None:
        return "-"
    return "match" if check.expected_checksum == check.actual_checksum else "DIFFERS"

