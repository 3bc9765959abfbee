"""How a PostgreSQL restore reaches its target, so that one cut off at any point -- ``kill -9``
included -- leaves the target either as it was or complete.

Where the role may create databases, every restore, into an empty target too, is loaded beside
the target and renamed in (:mod:`~storagectl.backends.postgres.swap`). Where it may not, an empty target is restored in
place under a marker: the database's comment names the backup and keeps what the target held
before (comment, database-level settings, extensions). A rerun of the same backup then knows the
partial contents for what they are, discards them and restores again; a failure that empties the
target puts its settings and comment back (an extension's script may have changed them).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storagectl.archive.api import RestoreOptions, RestoreOutcome
from storagectl.backends.postgres import guard as pg_guard
from storagectl.backends.postgres import schema as pg_schema
from storagectl.backends.postgres import swap as pg_swap
from storagectl.backends.postgres.schema import quote_ident, quote_literal
from storagectl.errors import NotFound, OperationFailed, PermissionDenied, raise_with_state

if TYPE_CHECKING:
    from storagectl.backends.postgres.backend import PostgresBackend

log = logging.getLogger(__name__)

MARKER = "storagectl: unfinished restore of backup "
# load(into, options, undo): pre-data, data, post-data into an empty database; with undo a failure
# after pre-data empties it again (archive._restore_into)
Load = Callable[["PostgresBackend", RestoreOptions, bool], None]


@dataclass(frozen=True)
class Marker:
    """What an in-place restore writes into the target's comment while it runs."""

    backup: str
    pid: int
    host: str
    started: str
    comment: str | None  # the target's own, put back at the end
    settings: tuple[tuple[str | None, str], ...]  # its pg_db_role_setting entries: (role or None, "name=value")
    extensions: tuple[tuple[str, str, str], ...]  # what it had before: (name, schema, version)

    def text(self) -> str:
        return f"{MARKER}{self.backup}\n{json.dumps(asdict(self))}"

    @classmethod
    def parse(cls, comment: str | None) -> Marker | None:
        if not comment or not comment.startswith(MARKER):
            return None
        try:
            data = json.loads(comment.partition("\n")[2])
            return cls(**{**data, "settings": tuple(map(tuple, data["settings"])),
                          "extensions": tuple(map(tuple, data["extensions"]))})
        except (ValueError, TypeError, KeyError):
            return None  # not ours after all: an ordinary comment

    def describe(self) -> str:
        return f"backup {self.backup} (started {self.started} by pid {self.pid} on {self.host})"


@dataclass(frozen=True)
class TargetState:
    existing: list[str]  # user objects, e.g. "TABLE public.orders"
    marker: Marker | None
    extensions: tuple[tuple[str, str, str], ...]

    @property
    def unfinished(self) -> Marker | None:
        """The marker of a restore cut off after it created something (an empty target holds nothing to finish)."""
        return self.marker if self.existing else None


def read_state(backend: PostgresBackend) -> TargetState:
    with backend.connect() as conn:
        return TargetState(pg_schema.user_objects(conn), read_marker(conn), pg_swap.read_extensions(conn))


def read_marker(conn: Any) -> Marker | None:
    return Marker.parse(_comment(conn))


def restore(backend: PostgresBackend, options: RestoreOptions, load: Load) -> RestoreOutcome:
    """Into an empty target, or one holding an unfinished restore of this backup (or of any, with
    ``replace_existing``), or over a non-empty one with ``replace_existing``: staged where the role
    may, else in place (empty targets only)."""
    state = read_state(backend)
    unfinished = state.unfinished
    _refuse_non_empty(backend, state, options)
    if unfinished is not None:
        again = ("restored again" if unfinished.backup == options.backup_id else
                 f"backup {options.backup_id} is restored in its place")
        log.warning("%s: the database holds an unfinished restore of %s: it is discarded and %s",
                    backend.label, unfinished.describe(), again)
    before = state.marker.extensions if state.marker else state.extensions
    with ExitStack() as stack:
        try:
            props = pg_swap.check_replace(backend)
            if state.marker is not None:  # the target's own comment and settings, not the marker's
                props = replace(props, comment=state.marker.comment, settings=state.marker.settings)
            replacement = stack.enter_context(pg_swap.staged_replacement(
                backend, props, extensions=before if not state.existing or unfinished else (),
                kept=pg_swap.KEPT if state.existing else pg_swap.KEPT_EMPTY))
        except (PermissionDenied, NotFound) as exc:  # the rights or the maintenance database: nothing was changed
            if state.existing and unfinished is None:
                raise
            reason = exc.message.removeprefix(f"{backend.label}: ").removesuffix("; nothing was changed")
            log.warning("%s: restoring in place, as %s; a restore cut off half-way leaves it partial, marked for "
                        "a rerun of the same backup to finish (%s)", backend.label, reason, exc.hint)
            return restore_in_place(backend, options, load, state.marker)
        load(replacement.staged, replace(options, replace_existing=False), False)
        if options.check_staged is not None:
            options.check_staged(replacement.staged, RestoreOutcome())
    return RestoreOutcome(notes=replacement.notes)


def _refuse_non_empty(backend: PostgresBackend, state: TargetState, options: RestoreOptions) -> None:
    unfinished = state.unfinished
    if not state.existing or options.replace_existing or (unfinished and unfinished.backup == options.backup_id):
        return
    holds = (f"it holds an unfinished restore of {unfinished.describe()}" if unfinished else
             f"{len(state.existing)} objects, e.g. {state.existing[0]}")
    raise OperationFailed(
        f"{backend.label}: the target database is not empty ({holds}); nothing was restored",
        hint=f"Try: rerun the restore of backup {unfinished.backup} to finish it, or pass --yes to replace it"
        if unfinished else "Try: restore into an empty database, or pass --yes to replace its contents")


def restore_in_place(backend: PostgresBackend, options: RestoreOptions, load: Load,
                     marker: Marker | None) -> RestoreOutcome:
    """Into the target itself, under a marker (when the role may comment on the database)."""
    with backend.connect() as conn:
        database = backend.current_database()
        pg_guard.hold_guards(backend, conn, (database,))
        before = marker or _current_state(conn, database)
        if marker is not None:
            _discard_partial(backend, conn, database, marker)
        mark = replace(before, backup=options.backup_id or "?", pid=os.getpid(), host=socket.gethostname(),
                       started=datetime.now(UTC).isoformat(timespec="seconds"))
        marked = _set_comment(backend, conn, database, mark.text())
        try:
            load(backend, replace(options, replace_existing=False), True)
        except BaseException as exc:
            problem = _put_back_if_empty(backend, conn, database, before, marked)
            if problem:
                raise_with_state(exc, problem)
            raise
        if marked:
            _set_comment(backend, conn, database, before.comment)
    return RestoreOutcome()


def _current_state(conn: Any, database: str) -> Marker:
    settings = tuple(conn.execute(pg_swap.SETTINGS_SQL, [database]).fetchall())
    return Marker("", 0, "", "", _comment(conn), settings, pg_swap.read_extensions(conn))


def _comment(conn: Any) -> str | None:
    return conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                        "WHERE datname = current_database()").fetchone()[0]


def _discard_partial(backend: PostgresBackend, conn: Any, database: str, marker: Marker) -> None:
    import psycopg

    try:
        with conn.transaction():
            pg_schema.drop_user_objects(conn, [name for name, _, _ in marker.extensions])
            put_back_settings(conn, database, marker.settings)
    except psycopg.Error as exc:
        raise OperationFailed(f"{backend.label}: cannot discard the unfinished restore of {marker.describe()}: "
                              f"{backend.error_line(exc)}; nothing was changed",
                              hint="Try: drop and recreate the database, then rerun") from exc


def _set_comment(backend: PostgresBackend, conn: Any, database: str, comment: str | None) -> bool:
    import psycopg

    text = "NULL" if comment is None else quote_literal(comment)
    try:
        conn.execute(f"COMMENT ON DATABASE {quote_ident(database)} IS {text}")
        return True
    except psycopg.errors.InsufficientPrivilege:
        log.warning("%s: cannot mark database %r as being restored (not its owner): a restore cut off half-way "
                    "leaves it partial", backend.label, database)
        return False


def _put_back_if_empty(backend: PostgresBackend, conn: Any, database: str, before: Marker, marked: bool) -> str:
    """After a failed load: when it left the target empty, its settings and comment as they were
    (the marker stays on a partial target, for the rerun). Returns what could not be done."""
    import psycopg

    try:
        if pg_schema.user_objects(conn):
            return ""
        put_back_settings(conn, database, before.settings)
        if marked:
            _set_comment(backend, conn, database, before.comment)
        return ""
    except psycopg.Error as exc:
        return f"its database settings or comment could not be put back ({backend.error_line(exc)}): rerun the restore"


def put_back_settings(conn: Any, database: str, settings: tuple[tuple[str | None, str], ...]) -> None:
    """Make the database's pg_db_role_setting entries ``settings`` again (e.g. after an extension's
    script ran ``ALTER DATABASE ... SET search_path``), touching only the entries that differ (the
    others may be ones only a superuser may set)."""
    now, before = set(conn.execute(pg_swap.SETTINGS_SQL, [database]).fetchall()), set(settings)
    db = quote_ident(database)
    kept = {(role, entry.partition("=")[0]) for role, entry in before}
    for role, entry in now - before:
        name = entry.partition("=")[0]
        if (role, name) not in kept:
            where = f"ROLE {quote_ident(role)} IN DATABASE {db}" if role else f"DATABASE {db}"
            conn.execute(f"ALTER {where} RESET {quote_ident(name)}")
    for role, entry in before - now:
        conn.execute(pg_swap.setting_statement(db, role, entry))
