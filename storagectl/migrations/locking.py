"""One migrator per database at a time: a PostgreSQL advisory lock, or a file lock beside SQLite.

Both wait up to a timeout and then raise LockHeld naming the backend, so a second deploy waits
for the first, then finds nothing pending.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storagectl.errors import LockHeld

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 60.0
POLL_SECONDS = 0.2
# One fixed key: advisory locks are scoped to the database, so it means "migrating this database".
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"storagectl migrate").digest()[:8], "big", signed=True)


def wait_for(try_acquire: Callable[[], bool], timeout: float, *,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> bool:
    """Call ``try_acquire`` until it returns True or ``timeout`` seconds have passed."""
    deadline = clock() + timeout
    while True:
        if try_acquire():
            return True
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        sleep(min(POLL_SECONDS, remaining))


def lock_timeout_error(label: str, timeout: float, holder: str = "") -> LockHeld:
    held_by = f" (held by {holder})" if holder else ""
    return LockHeld(
        f"{label}: another migration run holds the migration lock{held_by}; gave up after {timeout:g}s",
        hint="Try: wait for the other deploy to finish, or raise --lock-timeout",
    )


@contextmanager
def postgres_advisory_lock(connection: Any, label: str, timeout: float) -> Iterator[None]:
    """A session-level advisory lock on ``connection`` (a SQLAlchemy connection, left idle)."""
    from sqlalchemy import text

    def try_lock() -> bool:
        locked = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}).scalar()
        connection.commit()
        return bool(locked)

    if not wait_for(try_lock, timeout):
        raise lock_timeout_error(label, timeout, _advisory_holder(connection))
    log.debug("%s: took advisory lock %d", label, ADVISORY_LOCK_KEY)
    try:
        yield
    finally:
        try:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
        except Exception as exc:  # a dead connection must not hide the error that killed it
            log.warning("%s: releasing the advisory lock failed (%s); it ends with the session", label, exc)


def _advisory_holder(connection: Any) -> str:
    from sqlalchemy import text

    row = connection.execute(text(
        "SELECT a.pid, coalesce(nullif(a.application_name, ''), 'unknown') FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = :key LIMIT 1"
    ), {"key": ADVISORY_LOCK_KEY}).first()
    connection.rollback()
    return f"pid {row[0]}, {row[1]}" if row else ""


def lock_file_for(database: Path) -> Path:
    return database.with_name(database.name + ".migrate.lock")


@contextmanager
def file_lock(path: Path, label: str, timeout: float) -> Iterator[None]:
    """An flock on ``path``; the kernel releases it if the process dies."""
    import filelock

    lock = filelock.FileLock(str(path))

    def try_lock() -> bool:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    if not wait_for(try_lock, timeout):
        raise lock_timeout_error(label, timeout, f"lock file {path}")
    try:
        yield
    finally:
        lock.release()
