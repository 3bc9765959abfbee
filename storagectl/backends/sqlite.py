"""SQLite backend: a database file, opened read-write but never created by accident."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Literal

from storagectl import interrupts
from storagectl.archive.api import ContentSummary, RestoreOutcome, record_summary
from storagectl.archive.progress import Estimate
from storagectl.backends.base import Backend
from storagectl.config.models import BackendSettings
from storagectl.config.types import ConfigPath
from storagectl.errors import IntegrityError, NotFound, OperationFailed, PermissionDenied, StoragectlError, UsageError
from storagectl.fsutil import fsync_directory, take_over_file_identity
from storagectl.health import Check, CheckSpec, Status
from storagectl.units import human_bytes

SQLITE_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("file_size", "size of the database file", None, None, unit="bytes"),
        CheckSpec("journal_mode", "journal mode (wal recommended for concurrent use)"),
        CheckSpec("quick_check", "PRAGMA quick_check"),
        CheckSpec("freelist_pct", "free pages as a share of all pages", 25, 50, unit="%"),
    )
}


class SQLiteSettings(BackendSettings):
    kind: Literal["sqlite"] = "sqlite"
    path: ConfigPath
    create_if_missing: bool = False
    migrations: ConfigPath | None = None

    check_names: ClassVar[tuple[str, ...]] = tuple(SQLITE_CHECKS)

    def sqlalchemy_url(self) -> str:
        return f"sqlite:///{self.path}"


class SQLiteBackend(Backend):
    kind = "sqlite"
    Settings = SQLiteSettings
    CHECKS = SQLITE_CHECKS
    restores_atomically = True
    replace_method = ("restored to a temp file beside it that replaces the file when complete; a failed "
                      "restore leaves the target as it was")
    settings: SQLiteSettings

    def endpoint(self) -> str:
        return str(self.settings.path)

    def _open(self) -> sqlite3.Connection:
        path = self.settings.path
        if self.settings.create_if_missing and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(path).close()
        if not path.is_file():
            raise NotFound(
                f"{self.label}: database file does not exist",
                hint="Try: check path in the config (relative paths are relative to the config file)",
            )
        busy = self.settings.timeouts.statement or self.settings.timeouts.connect
        return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=busy)

    def _close(self, connection: sqlite3.Connection) -> None:
        connection.close()

    def translate_error(self, exc: BaseException) -> StoragectlError:
        return OperationFailed(f"{self.label}: cannot open: {exc}",
                               hint="Try: check the file is a SQLite database and readable")

    def ping(self, connection: sqlite3.Connection) -> None:
        connection.execute("SELECT 1").fetchone()

    def server_version(self, connection: sqlite3.Connection) -> str:
        return connection.execute("SELECT sqlite_version()").fetchone()[0]

    def diagnose(self, connection: sqlite3.Connection) -> list[Check]:
        try:
            return self._checks(connection)
        except sqlite3.DatabaseError as exc:
            return [Check("quick_check", Status.CRITICAL, str(exc), "failed", str(exc))]

    def _checks(self, connection: sqlite3.Connection) -> list[Check]:
        size = self.settings.path.stat().st_size
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(20)")]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        free_pct = round(100.0 * free / pages, 1) if pages else 0.0
        healthy = problems == ["ok"]
        return [
            self.graded("file_size", size, human_bytes(size)),
            self.info("journal_mode", mode),
            Check("quick_check", Status.OK if healthy else Status.CRITICAL, problems,
                  "ok" if healthy else f"{len(problems)} problem(s)",
                  "" if healthy else "; ".join(problems[:3])),
            self.graded("freelist_pct", free_pct, f"{free_pct:g}%", "VACUUM reclaims free pages"),
        ]

    # -- backup / restore (storagectl.archive.api.BackupCapable) -----------------------------
    def backup_estimate(self, connection: sqlite3.Connection) -> Estimate:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        return Estimate(pages * connection.execute("PRAGMA page_size").fetchone()[0], 1)

    def backup(self, archive: Any, options: Any) -> None:
        """Snapshot with SQLite's online backup API (consistent while in use), then stream the copy."""
        # The snapshot lives beside the database, not in /tmp: /tmp is often a RAM-backed tmpfs.
        scratch_parent = self.settings.path.parent
        with tempfile.TemporaryDirectory(prefix=".storagectl-snapshot-", dir=scratch_parent) as scratch:
            snapshot = Path(scratch) / "snapshot.sqlite"
            with self.connect() as source, contextlib.closing(sqlite3.connect(snapshot)) as copy:
                _sqlite_call(self, "snapshot", lambda: source.backup(copy))
            digest = hashlib.sha256()
            with ThreadPoolExecutor(1) as counter:  # counting runs in SQLite (GIL released) while it streams
                counted = counter.submit(_snapshot_counts, snapshot)
                with archive.create(SQLITE_OBJECT) as sink, open(snapshot, "rb") as stream:
                    while chunk := stream.read(COPY_CHUNK):
                        digest.update(chunk)  # C speed, GIL released: the file proves every row at once
                        sink.write(chunk)
                    summary = interrupts.result(counted)
                    sink.counts = {"rows": sum(summary.counts.values()), "tables": len(summary.counts)}
            summary.checksums[FILE_UNIT] = f"sha256:{digest.hexdigest()}"
            record_summary(archive, summary)

    def restore(self, archive: Any, options: Any) -> None:
        """Write a temp file next to the target, check its integrity, then rename it into place."""
        target = self.settings.path.resolve()  # a symlinked path: the file it points to is replaced, the link kept
        if not options.replace_existing and not self.is_empty():
            raise UsageError(f"{self.label} is not empty", hint="Try: --yes to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".restore", dir=target.parent)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out, archive.open(SQLITE_OBJECT) as stream:
                shutil.copyfileobj(stream, out, COPY_CHUNK)
                out.flush()
                os.fsync(out.fileno())
            self._check_integrity(temp)
            if options.check_staged is not None:
                options.check_staged(type(self)(self.name, self.settings.model_copy(update={"path": temp})),
                                     RestoreOutcome())
            self._replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def _check_integrity(self, path: Path) -> None:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as copy:
            # A 64 MiB page cache (bounded) halves the check: the default 2 MiB re-reads index pages
            copy.execute(f"PRAGMA cache_size = -{CHECK_CACHE_KIB}")
            problems = [row[0] for row in copy.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise IntegrityError(f"{self.label}: restored database fails PRAGMA integrity_check: "
                                 f"{'; '.join(problems)}; the target was not touched")

    def _replace(self, restored: Path, target: Path) -> None:
        self._keep_file_identity(restored, target)
        if target.exists():
            # Fold the old WAL into the old file first: a stale -wal must never be applied to the new one.
            with self.connect() as old:
                busy = old.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:
                raise OperationFailed(f"{self.label}: the database is in use (its WAL cannot be checkpointed); "
                                      "the target was not touched",
                                      hint="Try: stop the processes using the database, then restore again")
        os.replace(restored, target)
        fsync_directory(target.parent)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)

    def _keep_file_identity(self, restored: Path, target: Path) -> None:
        try:
            take_over_file_identity(restored, target)
        except PermissionError as exc:
            owner = target.stat()
            raise PermissionDenied(
                f"{self.label}: cannot give the restored file the target's owner (uid {owner.st_uid}, "
                f"gid {owner.st_gid}): {exc.strerror}; the target was not touched",
                hint="Try: run the restore as the file's owner or as root") from exc

    def is_empty(self) -> bool:
        path = self.settings.path
        if not path.is_file() or path.stat().st_size == 0:
            return True
        with self.connect() as connection:
            return not user_tables(connection)

    def content_summary(self, like: ContentSummary | None = None) -> ContentSummary:
        """Rows per table and the SHA-256 of the database file, or, for a backup that recorded
        per-table row checksums (archives written before the file checksum), those, computed the
        same way."""
        with self.connect() as connection:
            if like is not None and set(like.checksums) - {FILE_UNIT}:
                return table_summary(connection)
            summary = table_counts(connection)
        summary.checksums[FILE_UNIT] = f"sha256:{file_sha256(self.settings.path)}"
        return summary


SQLITE_OBJECT = "database.sqlite"
# The restored file is the backed-up snapshot byte for byte, so the SHA-256 of the whole file proves
# every row of every table (and the schema); earlier backups recorded a checksum per table instead.
FILE_UNIT = "database file"
COPY_CHUNK = 1024 * 1024
CHECK_CACHE_KIB = 64 * 1024


def _sqlite_call(backend: SQLiteBackend, what: str, call: Any) -> Any:
    try:
        return call()
    except sqlite3.Error as exc:
        raise OperationFailed(f"{backend.label}: {what} failed: {exc}") from exc


def user_tables(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name")
    return [row[0] for row in rows]


def _snapshot_counts(snapshot: Path) -> ContentSummary:
    with contextlib.closing(sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)) as copy:
        return table_counts(copy)


def table_counts(connection: sqlite3.Connection) -> ContentSummary:
    """Rows per table (``count(*)`` runs in SQLite, not per row in Python)."""
    summary = ContentSummary()
    for table in user_tables(connection):
        quoted = '"' + table.replace('"', '""') + '"'
        summary.counts[table] = connection.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    return summary


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def table_summary(connection: sqlite3.Connection) -> ContentSummary:
    """Rows per table and an order-independent content checksum per table, streamed row by row."""
    summary = ContentSummary()
    for table in user_tables(connection):
        quoted = '"' + table.replace('"', '""') + '"'
        count, total = 0, 0
        for row in connection.execute(f"SELECT * FROM {quoted}"):
            digest = hashlib.sha256("\x1f".join(map(repr, row)).encode()).digest()
            total = (total + int.from_bytes(digest[:16], "big")) % (1 << 128)
            count += 1
        summary.counts[table] = count
        summary.checksums[table] = f"{total:032x}"
    return summary
