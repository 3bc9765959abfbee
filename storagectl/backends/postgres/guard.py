"""Which restores are alive: a running restore holds session-level advisory locks named after the
databases it works on (the target, its staging database). They end with the session, so a
``kill -9`` of storagectl releases them too and the next restore can tell a leftover from a
database in use."""

from __future__ import annotations

import hashlib
import zlib
from typing import TYPE_CHECKING, Any

from storagectl.errors import OperationFailed

if TYPE_CHECKING:
    from storagectl.backends.postgres.backend import PostgresBackend

# A guard is pg_advisory_lock(bigint) of a 64-bit hash of the database name: with 31 bits, two
# names of one server shared a key often enough for a false "another restore is running".
GUARD_SALT = b"storagectl-guard"  # keeps the keys apart from other applications' hashes of the same names
# Before 64-bit keys a guard was pg_advisory_lock(int4, int4) of LEGACY_GUARD_CLASS ("ST") and a
# 31-bit CRC of the name. A guard held that way (an older storagectl still running) still counts
# as held, so its restore is neither overlapped nor its databases taken for leftovers.
LEGACY_GUARD_CLASS = 0x5354


def guard_key(name: str) -> int:
    """The signed 64-bit advisory lock key of database ``name``'s guard."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8, key=GUARD_SALT).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_ids(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: (classid, objid), the high and the low half (objsubid 1)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def legacy_guard_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


GUARD_HOLDERS_SQL = """
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
AND ((classid = %s::oid AND objid = %s::oid AND objsubid = 1)
     OR (classid = %s::oid AND objid = %s::oid AND objsubid = 2))
"""


def guard_held(conn: Any, name: str) -> bool:
    """Whether another session (of any database) holds the guard of database ``name``."""
    params = [*lock_ids(guard_key(name)), LEGACY_GUARD_CLASS, legacy_guard_key(name)]
    return conn.execute(GUARD_HOLDERS_SQL, params).fetchone()[0] > 0


def hold_guards(backend: PostgresBackend, conn: Any, names: tuple[str, ...]) -> None:
    """Session-level advisory locks saying a live restore works on the databases ``names`` (the
    target first); they end with ``conn``'s session, however storagectl ends. Raises when another
    restore into the target is running."""
    if conn.info.server_version >= 140000:  # a server-wide idle_session_timeout must not end the guard early
        conn.execute("SET idle_session_timeout = 0")
    for name in names:
        taken = conn.execute("SELECT pg_try_advisory_lock(%s::bigint)", [guard_key(name)])
        if not taken.fetchone()[0] or guard_held(conn, name):  # the lock is per database: look at all of them
            conn.execute("SELECT pg_advisory_unlock_all()")
            raise OperationFailed(f"{backend.label}: another storagectl restore into {names[0]!r} is running; "
                                  "nothing was changed", hint="Try: wait for it to finish, then rerun")
