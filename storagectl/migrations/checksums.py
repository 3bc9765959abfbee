"""The ``storagectl_migrations`` table: a checksum of every applied revision file.

Rows are written by an Alembic ``on_version_apply`` callback, which runs inside each revision's
own transaction, so the table and ``alembic_version`` can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storagectl.migrations.base import file_checksum

TABLE_NAME = "storagectl_migrations"


def checksum_table() -> Any:
    import sqlalchemy as sa

    return sa.Table(
        TABLE_NAME, sa.MetaData(),
        sa.Column("revision", sa.String(64), primary_key=True),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )


def recorder(script: Any, applied: list[str]) -> Callable[..., None]:
    """An ``on_version_apply`` callback that keeps the table in step and lists what ran."""

    def on_version_apply(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        if step.is_stamp:
            return
        revisions = list(step.up_revision_ids)
        if step.is_upgrade:
            record(ctx.connection, script, revisions)
        else:
            forget(ctx.connection, revisions)
        applied.extend(revisions)

    return on_version_apply


def record(connection: Any, script: Any, revisions: Iterable[str]) -> None:
    table = checksum_table()
    table.create(connection, checkfirst=True)
    now = datetime.now(UTC)
    for revision in revisions:
        path = Path(script.get_revision(revision).path)
        connection.execute(table.delete().where(table.c.revision == revision))
        connection.execute(table.insert().values(revision=revision, checksum=file_checksum(path), applied_at=now))


def forget(connection: Any, revisions: Iterable[str]) -> None:
    table = checksum_table()
    table.create(connection, checkfirst=True)
    connection.execute(table.delete().where(table.c.revision.in_(list(revisions))))


def recorded(connection: Any) -> dict[str, tuple[str, datetime]]:
    """revision -> (checksum, applied_at); empty when nothing was ever applied. Reads only."""
    import sqlalchemy as sa

    if not sa.inspect(connection).has_table(TABLE_NAME):
        return {}
    table = checksum_table()
    rows = connection.execute(sa.select(table.c.revision, table.c.checksum, table.c.applied_at))
    return {row.revision: (row.checksum, row.applied_at) for row in rows}


def resync(connection: Any, script: Any, applied: set[str]) -> None:
    """After ``stamp``: rows for exactly the applied revisions, with the files' current checksums."""
    table = checksum_table()
    table.create(connection, checkfirst=True)
    connection.execute(table.delete())
    record(connection, script, sorted(applied))


def edited_revisions(script: Any, rows: dict[str, tuple[str, datetime]]) -> list[str]:
    """Applied revisions whose file no longer matches the checksum recorded when it ran."""
    edited = []
    for revision, (checksum, _) in rows.items():
        path = _revision_path(script, revision)
        if path is not None and file_checksum(path) != checksum:
            edited.append(revision)
    return sorted(edited)


def _revision_path(script: Any, revision: str) -> Path | None:
    """The file of ``revision``, or None when the directory no longer has it."""
    from alembic.util import CommandError

    try:
        found = script.get_revision(revision)
    except CommandError:
        return None
    return Path(found.path) if found is not None else None
