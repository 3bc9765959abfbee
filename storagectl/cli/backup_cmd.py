"""`storagectl backup ...`: take, list, show, verify and delete backups (core: storagectl.backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from storagectl.cli import complete, schedule_cmd
from storagectl.cli.backup_views import counts_text, describe_selection, list_view, run_view, selected_backup_id
from storagectl.cli.output import confirm, note, plan_format, print_json, print_table, styled_status
from storagectl.cli.state import (
    AppState,
    DryRunOption,
    OutputFormat,
    OutputOption,
    PlainUsage,
    YesOption,
    state_of,
)
from storagectl.units import human_bytes

app = typer.Typer(no_args_is_help=True, help="Take, list, show, verify and delete backups.")

FromOption = Annotated[str | None, typer.Option(
    "--from", metavar="DEST", help="Destination to look in. Default: search every configured destination.",
    autocompletion=complete.destination_names)]
LatestJobOption = Annotated[str | None, typer.Option(
    "--job", "-j", metavar="JOB", help="With `latest`: the newest backup of this job.",
    autocompletion=complete.job_names)]
LatestBackendOption = Annotated[str | None, typer.Option(
    "--backend", "-b", metavar="BACKEND", help="With `latest`: the newest backup of this backend.",
    autocompletion=complete.backend_names)]
BackupIdArgument = Annotated[str, typer.Argument(
    metavar="BACKUP_ID", help="Backup id, or `latest` with --backend and/or --job.",
    autocompletion=complete.backup_ids_or_latest)]
TableOption = Annotated[list[str] | None, typer.Option(
    "--table", "-t", metavar="TABLE", help="PostgreSQL/SQLite: only this table (schema.name or name; "
    "glob * ? [..]); repeatable.")]
SchemaOption = Annotated[list[str] | None, typer.Option(
    "--schema", "-n", metavar="SCHEMA", help="PostgreSQL: only tables of this schema (glob); repeatable; "
    "with --table, the tables of these schemas that --table names.")]
ExcludeTableOption = Annotated[list[str] | None, typer.Option(
    "--exclude-table", "-T", metavar="TABLE", help="PostgreSQL: leave this table out (glob); repeatable.")]
PatternOption = Annotated[list[str] | None, typer.Option(
    "--pattern", metavar="GLOB", help="Redis: only keys matching this pattern (SCAN MATCH glob); repeatable.")]
KeyTypeOption = Annotated[list[str] | None, typer.Option(
    "--type", metavar="TYPE", help="Redis: only keys of this type (string, list, set, zset, hash, stream); "
    "repeatable.", autocompletion=complete.redis_types)]
LabelOption = Annotated[list[str] | None, typer.Option(
    "--label", metavar="LABEL", help="Neo4j: only nodes with this label and the relationships between such "
    "nodes; repeatable.")]


IdentityOption = Annotated[Path | None, typer.Option(
    "--identity", "-i", dir_okay=False, metavar="FILE", help="age identity file for encrypted backups "
    "[default: the job's encryption.identity_file].")]


@app.command("run")
def run(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", "-j", metavar="JOB", help="Job to run (default: the only job).",
                                            autocompletion=complete.job_names)] = None,
    backend: Annotated[str | None, typer.Option("--backend", "-b", metavar="BACKEND", help="Back up this backend ...",
                                                autocompletion=complete.backend_names)] = None,
    to: Annotated[str | None, typer.Option("--to", metavar="DEST", help="... to this destination.",
                                           autocompletion=complete.destination_names)] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Then apply the job's retention policy.")] = False,
    no_hooks: Annotated[bool, typer.Option(
        "--no-hooks", help="Do not run the job's on_success/on_failure hook (its metrics_file is still written).",
    )] = False,
    table: TableOption = None,
    schema: SchemaOption = None,
    exclude_table: ExcludeTableOption = None,
    pattern: PatternOption = None,
    key_type: KeyTypeOption = None,
    label: LabelOption = None,
    output: OutputOption = None,
) -> None:
    """Take a backup of a job's backends (or of one backend) and print the new backup's id.

    A job's run writes its metrics_file and runs its on_success/on_failure hook, as a scheduled
    run does. With -o json: always a list, one object (id, backend, destination, size, duration,
    partial, selection, ...) per backup.

    --table/--schema/--exclude-table, --pattern/--type and --label take a partial backup of one
    backend (with --backend/--to; a job's selection is its `select:`). Its manifest records the
    selection and what matched; `backup list` marks it partial.
    """
    run_view(state_of(ctx), job, backend, to, prune, no_hooks, table, schema, exclude_table, pattern, key_type,
             label, output)  # also run without typer: storagectl.cli.quick


@app.command("list")
def list_(
    ctx: typer.Context,
    from_: FromOption = None,
    job: Annotated[str | None, typer.Option("--job", "-j", metavar="JOB", help="Only backups of this job.",
                                            autocompletion=complete.job_names)] = None,
    backend: Annotated[str | None, typer.Option("--backend", "-b", metavar="BACKEND",
                                                help="Only backups of this backend.",
                                                autocompletion=complete.backend_names)] = None,
    output: OutputOption = None,
) -> None:
    """List complete backups, oldest first (folders without a manifest are not backups)."""
    list_view(state_of(ctx), from_, job, backend, output)  # also run without typer: storagectl.cli.quick


@app.command("show", cls=PlainUsage)
def show(ctx: typer.Context, backup_id: BackupIdArgument, from_: FromOption = None, job: LatestJobOption = None,
         backend: LatestBackendOption = None, output: OutputOption = None) -> None:
    """Show a backup's manifest: backend, times, and every object with size, SHA-256 and counts."""
    from storagectl.backup import show_backup

    state = state_of(ctx)
    backup_id = selected_backup_id(state, backup_id, from_, job, backend)
    found = show_backup(state.quick_config, backup_id, from_)
    manifest = found.manifest
    if state.format(output) is OutputFormat.json:
        print_json({**manifest.to_dict(), "location": found.destination.location()})
        return
    summary = found.to_dict()
    summary["selection"] = describe_selection(summary["selection"]) if summary["partial"] else "full backup"
    print_table(state, ["Field", "Value"], [[key, value] for key, value in summary.items()], title=backup_id)
    rows = [[o.name, human_bytes(o.raw_size), human_bytes(o.size), o.sha256[:16], counts_text(o.counts)]
            for o in manifest.objects]
    print_table(state, ["Object", "Original", "Stored", "SHA-256", "Counts"], rows)


@app.command("verify", cls=PlainUsage)
def verify(ctx: typer.Context, backup_id: BackupIdArgument, from_: FromOption = None, job: LatestJobOption = None,
           backend: LatestBackendOption = None, identity: IdentityOption = None,
           output: OutputOption = None) -> None:
    """Read every object back, check size and SHA-256 and decode it fully; touches no backend.

    Exit 6 when any object is damaged, truncated or missing. `backup verify latest --backend NAME`
    checks the newest backup of NAME (a nightly runbook step).
    """
    from storagectl.backup import verify_backup
    from storagectl.cli.progress import progress_view

    state = state_of(ctx)
    backup_id = selected_backup_id(state, backup_id, from_, job, backend)
    with progress_view(state) as progress:
        report = verify_backup(state.config, backup_id, from_, identity, progress)
    if state.format(output) is OutputFormat.json:
        print_json(report.to_dict())
    else:
        rows = [[c.name, human_bytes(c.size), styled_status("ok" if c.ok else "critical"), c.error or ""]
                for c in report.objects]
        print_table(state, ["Object", "Stored", "Status", "Problem"], rows, title=f"verify {backup_id}")
    report.raise_if_bad()


@app.command("delete", cls=PlainUsage)
def delete(ctx: typer.Context, backup_id: Annotated[str, typer.Argument(
               metavar="BACKUP_ID", help="Backup id.", autocompletion=complete.backup_ids)],
           from_: FromOption = None, yes: YesOption = False, dry_run: DryRunOption = False,
           output: OutputOption = None) -> None:
    """Delete a backup (also an incomplete one, or a folder a killed run left with only temp files or
    multipart uploads). Asks first on a terminal; elsewhere needs --yes. --dry-run shows what would go.
    A backup still being written (its lease renewed in the last 5 minutes) is refused (exit 7)."""
    from storagectl.backup import delete_backup

    state = state_of(ctx)
    if not yes and not dry_run:
        plan = delete_backup(state.config, backup_id, from_, dry_run=True).to_dict()
        _render_delete(state, plan, plan_format(state, output))
        confirm(state, f"Delete backup {backup_id} at {plan['destination']}?",
                refusal=f"refusing to delete backup {backup_id} without --yes",
                hint=f"Try: storagectl backup delete {backup_id} --yes")
    plan = delete_backup(state.config, backup_id, from_, dry_run=dry_run)
    _render_delete(state, plan.to_dict(), output)


def _render_delete(state: AppState, info: dict[str, Any], output: OutputFormat | None) -> None:
    if state.format(output) is OutputFormat.json:
        print_json(info)
        return
    verb = "would remove" if info["dry_run"] else "removed"
    unfinished = f", {info['unfinished_removed']} unfinished write(s)" if info["unfinished_removed"] else ""
    note(state, f"{verb} backup {info['id']} at {info['destination']}: {info['objects_removed']} object(s)"
                f"{unfinished}, {human_bytes(info['bytes_removed'])}")


# `backup schedule` and `backup prune` live in schedule_cmd.py.
app.command("schedule")(schedule_cmd.schedule)
app.command("prune")(schedule_cmd.prune)
