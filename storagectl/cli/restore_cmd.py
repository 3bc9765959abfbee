"""`storagectl restore ID`: restore a backup into a backend (core: storagectl.backup.restore)."""

from __future__ import annotations

from typing import Annotated

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
)
from storagectl.cli.restore_views import restore_view
from storagectl.cli.state import DryRunOption, OutputOption, YesOption, state_of


def restore(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(
        metavar="BACKUP_ID",
        help="Backup id (see `storagectl backup list`), or `latest`: the newest backup of --backend "
        "(default: of --to), optionally of --job.", autocompletion=complete.backup_ids_or_latest)],
    from_: FromOption = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", metavar="BACKEND",
        help="With `latest`: restore the newest backup of this backend [default: --to, or the only "
        "backend of --job].",
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
    restore_view(state_of(ctx), backup_id, from_, backend, job, to, validate, parallel, db, no_owner, no_privileges,
                 role, table, schema, exclude_table, pattern, key_type, label, dry_run, yes, identity,
                 output)  # also run without typer: storagectl.cli.quick
