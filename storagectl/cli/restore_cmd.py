"""`storagectl restore ID`: restore a backup into a backend (core: storagectl.backup.restore)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from storagectl.cli import complete
from storagectl.cli.backup_cmd import (
    ExcludeTableOption,
    FromOption,
    IdentityOption,
    KeyTypeOption,
    LabelOption,
    LatestJobOption,
    PatternOption,
    SchemaOption,
    TableOption,
    selected_backup_id,
    selection_of,
)
from storagectl.cli.output import confirm, note, print_json, print_table, styled_status
from storagectl.cli.progress import progress_view
from storagectl.cli.state import AppState, DryRunOption, OutputFormat, OutputOption, YesOption, state_of
from storagectl.units import human_bytes

if TYPE_CHECKING:
    from storagectl.backup.restore import RestorePlan
    from storagectl.selection import Selection


def restore(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(
        metavar="BACKUP_ID",
        help="Backup id (see `storagectl backup list`), or `latest`: the newest backup of --backend "
        "(default: of --to), optionally of --job.", autocompletion=complete.backup_ids_or_latest)],
    from_: FromOption = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", metavar="BACKEND",
        help="With `latest`: restore the newest backup of this backend [default: --to].",
        autocompletion=complete.backend_names)] = None,
    job: LatestJobOption = None,
    to: Annotated[str | None, typer.Option(
        "--to", metavar="BACKEND", help="Target backend [default: the backed-up one].",
        autocompletion=complete.backend_names)] = None,
    validate: Annotated[bool, typer.Option(
        "--validate", help="Verify every checksum before touching the target, then compare counts and "
        "per-table checksums with the backup (Redis: every key's type, value and expiry too; exit 6 "
        "on any mismatch); a staged replacement is compared before it goes live.")] = False,
    parallel: Annotated[int | None, typer.Option(
        "--parallel", "-p", min=1, max=64, metavar="N", help="Objects restored at once.")] = None,
    db: Annotated[int | None, typer.Option(
        "--db", min=0, metavar="N", help="Redis: restore only db N of a backup of several dbs (into the "
        "target's db; a Redis Cluster takes one db only).")] = None,
    no_owner: Annotated[bool, typer.Option("--no-owner", help="PostgreSQL: leave out the backup's ALTER ... OWNER "
                                           "TO; objects belong to the restoring role.")] = False,
    no_privileges: Annotated[bool, typer.Option("--no-privileges", help="PostgreSQL: leave out GRANT/REVOKE and "
                                                "default privileges.")] = False,
    role: Annotated[str | None, typer.Option("--role", metavar="ROLE", help="PostgreSQL: restore as ROLE (SET ROLE),"
                                             " which then owns every object (implies --no-owner).")] = None,
    table: TableOption = None,
    schema: SchemaOption = None,
    exclude_table: ExcludeTableOption = None,
    pattern: PatternOption = None,
    key_type: KeyTypeOption = None,
    label: LabelOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    identity: IdentityOption = None,
    output: OutputOption = None,
) -> None:
    """Restore a backup. A non-empty target's data is replaced: asked first on a terminal, needs --yes elsewhere.

    `restore latest --backend prod-db --to staging-db` restores the newest backup of prod-db into
    staging-db; `restore latest --to app` the newest backup of app into app.

    PostgreSQL restores into a new database beside the target and swaps it in only when complete
    (and, with --validate, proven equal), so a failed restore leaves the target as it was; sessions
    still connected at the swap are disconnected. SQLite does the same with a temp file, Redis with
    a configured staging_db. Neo4j, and Redis without staging_db, replace in place: a restore that
    fails leaves the target empty or partial. --dry-run says which applies, and for PostgreSQL which
    roles the backup names and which the target lacks (for --no-owner / --no-privileges).

    --table/--schema/--exclude-table (PostgreSQL; --table for SQLite), --pattern/--type (Redis)
    and --label (Neo4j) restore only that part of the backup, in place, and touch nothing else in
    the target; a partial backup always restores that way. Only what the selection names is
    replaced (needs --yes when the target holds any of it); --validate compares exactly that part.
    PostgreSQL and SQLite restore the selected tables in one transaction: a failure leaves the
    target as it was.
    """
    from storagectl.archive.api import OwnershipOptions
    from storagectl.backup import prepare_restore, restore_planned
    from storagectl.backup.catalog import LATEST

    state = state_of(ctx)
    ownership = OwnershipOptions(not no_owner, not no_privileges, role)
    selection = selection_of(table, schema, exclude_table, pattern, key_type, label)
    if backup_id == LATEST and to is not None:
        state.quick_config.backend(to)  # an unknown target is named as the target, not as the source
    backup_id = selected_backup_id(state, backup_id, from_, job, backend or (to if backup_id == LATEST else None))
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


def _confirmed(state: AppState, plan: RestorePlan, from_: str | None, identity: Path | None,
               selection: Selection) -> RestorePlan:
    """On a terminal, a target holding data is not refused: the plan is shown and the user asked;
    the plan with ``replace`` once they agree."""
    import dataclasses

    from storagectl.backup import restore_planned

    _render(state, restore_planned(state.quick_config, plan, dry_run=True, identity_file=identity))
    target, backup_id = plan.target, plan.backup.id
    what = f"{plan.selection.describe()} in" if plan.selective else "the data of"
    confirm(state, f"Replace {what} {target.label} with backup {backup_id}?",
            refusal=f"{target.label} is not empty; restoring would overwrite its data",
            hint=f"Try: storagectl restore {backup_id}{f' --from {from_}' if from_ else ''} --to {target.name} "
                 f"{selection.command_words()}--yes")
    return dataclasses.replace(plan, replace=True)


def _render(state: AppState, result) -> None:
    plan = result.to_dict()
    if result.dry_run:
        if result.plan.selective:
            verb = "replace in" if not plan["target_empty"] else "restore into"
            action = f"{verb} backend {plan['target']} ({plan['target_endpoint']}) only " \
                     f"{result.plan.selection.describe()} from backup"
        else:
            verb = "replace the data of" if not plan["target_empty"] else "restore into the empty"
            action = f"{verb} backend {plan['target']} ({plan['target_endpoint']}) from backup"
        note(state, f"dry run: would {action} {plan['id']} at {plan['destination']}: {plan['objects']} object(s), "
                    f"{human_bytes(plan['raw_size'])}" + ("; objects verified first" if plan["validate"] else "")
                    + ("; the target holds some of it: needs --yes" if plan["needs_yes"] and result.plan.selective
                       else "; the target is not empty: needs --yes" if plan["needs_yes"] else ""))
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

