"""Which restores are alive: a running restore holds session-level advisory locks named after the
databases it works on (the target, its staging database). They end with the session, so a
``kill -9`` of storagectl releases them too and the next restore can tell a leftover from a
database in use."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from storagectl.errors import OperationFailed

if TYPE_CHECKING:
    from storagectl.backends.postgres.backend import PostgresBackend

GUARD_CLASS = 0x5354  # first key of storagectl's advisory locks ("ST"); the second is a hash of a database name


def guard_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


GUARD_HOLDERS_SQL = """
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid AND objid = %s::oid
AND objsubid = 2 AND granted AND pid <> pg_backend_pid()
"""


def guard_held(conn: Any, name: str) -> bool:
    """Whether another session (of any database) holds the guard of database ``name``."""
    return conn.execute(GUARD_HOLDERS_SQL, [GUARD_CLASS, guard_key(name)]).fetchone()[0] > 0


def hold_guards(backend: PostgresBackend, conn: Any, names: tuple[str, ...]) -> None:
    """Session-level advisory locks saying a live restore works on the databases ``names`` (the
    target first); they end with ``conn``'s session, however storagectl ends. Raises when another
    restore into the target is running."""
    if conn.info.server_version >= 140000:  # a server-wide idle_session_timeout must not end the guard early
        conn.execute("SET idle_session_timeout = 0")
    for name in names:
        taken = conn.execute("SELECT pg_try_advisory_lock(%s::int, %s::int)", [GUARD_CLASS, guard_key(name)])
        if not taken.fetchone()[0] or guard_held(conn, name):  # the lock is per database: look at all of them
            conn.execute("SELECT pg_advisory_unlock_all()")
            raise OperationFailed(f"{backend.label}: another storagectl restore into {names[0]!r} is running; "
                                  "nothing was changed", hint="Try: wait for it to finish, then rerun")
