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
from typing import TYPE_CHECKING, Any

from storagectl import interrupts
from storagectl.archive.api import ContentSummary, RestoreOutcome, record_summary
from storagectl.archive.progress import Estimate
from storagectl.backends.base import Backend
from storagectl.backends.sqlite_selection import copy_tables, keep_only, picks, selected_tables
from storagectl.config.methods import SettingsModel
from storagectl.errors import IntegrityError, NotFound, OperationFailed, PermissionDenied, StoragectlError, UsageError
from storagectl.fsutil import fsync_directory, take_over_file_identity
from storagectl.health import Check, CheckSpec, Status
from storagectl.units import human_bytes

if TYPE_CHECKING:
    from storagectl.backends.sqlite_settings import SQLiteSettings

SQLITE_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("file_size", "size of the database file", None, None, unit="bytes"),
        CheckSpec("journal_mode", "journal mode (wal recommended for concurrent use)"),
        CheckSpec("quick_check", "PRAGMA quick_check"),
        CheckSpec("freelist_pct", "free pages as a share of all pages", 25, 50, unit="%"),
    )
}


class SQLiteSettingsMethods:
    """What callers ask of a backend's settings beyond its fields: one code for the pydantic model
    (storagectl.backends.sqlite_settings) and its plain form read back from the config cache."""

    if TYPE_CHECKING:  # the model's field; not an annotation at run time, which pydantic would read
        path: Path

    def sqlalchemy_url(self) -> str:
        return f"sqlite:///{self.path}"


class SQLiteBackend(Backend):
    kind = "sqlite"
    Settings = SettingsModel("storagectl.backends.sqlite_settings:SQLiteSettings")
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
                tables = user_tables(copy)
            partial = not options.selection.empty
            if partial:  # the selected tables only, with row checksums (a selective restore proves those)
                keep = selected_tables(tables, options.selection, self.label)
                _sqlite_call(self, "cutting the snapshot down", lambda: keep_only(snapshot, keep))
            digest = hashlib.sha256()
            with ThreadPoolExecutor(1) as counter:  # counting runs in SQLite (GIL released) while it streams
                counted = counter.submit(_snapshot_summary if partial else _snapshot_counts, snapshot)
                with archive.create(SQLITE_OBJECT) as sink, open(snapshot, "rb") as stream:
                    while chunk := stream.read(COPY_CHUNK):
                        digest.update(chunk)  # C speed, GIL released: the file proves every row at once
                        sink.write(chunk)
                    summary = interrupts.result(counted)
                    sink.counts = {"rows": sum(summary.counts.values()), "tables": len(summary.counts)}
            if not partial:
                summary.checksums[FILE_UNIT] = f"sha256:{digest.hexdigest()}"
            record_summary(archive, summary)

    selection_fields = ("tables",)
    selection_replace_method = ("in place, in one transaction: the selected tables the target has are dropped and "
                                "copied in from the backup with their indexes and triggers; nothing else is touched, "
                                "and a failure leaves the target as it was")

    def holds_selection(self, selection: Any) -> bool:
        if self.is_empty():
            return False
        with self.connect() as connection:
            return any(picks(selection, table) for table in user_tables(connection))

    def restore(self, archive: Any, options: Any) -> RestoreOutcome | None:
        """Write a temp file next to the target, check its integrity, then rename it into place (or,
        for a selection, copy its tables in: sqlite_selection)."""
        target = self.settings.path.resolve()  # a symlinked path: the file it points to is replaced, the link kept
        if not options.selection.empty:
            return self._restore_selection(archive, options, target)
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

    def _restore_selection(self, archive: Any, options: Any, target: Path) -> RestoreOutcome:
        if not target.exists():
            with self.connect():  # create_if_missing, or the one-line "does not exist"
                pass
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".restore", dir=target.parent)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out, archive.open(SQLITE_OBJECT) as stream:
                shutil.copyfileobj(stream, out, COPY_CHUNK)
            self._check_integrity(temp)
            with contextlib.closing(sqlite3.connect(f"file:{temp}?mode=ro", uri=True)) as extracted:
                tables = selected_tables(user_tables(extracted), options.selection, f"backup {options.backup_id}")
                expected = table_summary(extracted).only(tables)
            timeout = self.settings.timeouts.statement or self.settings.timeouts.connect
            replaced = copy_tables(target, temp, tables, options.replace_existing, self.label, timeout)
        finally:
            temp.unlink(missing_ok=True)
        note = f"restored table(s) {', '.join(tables)} in place" + (f" (replaced: {', '.join(replaced)})"
                                                                   if replaced else "")
        return RestoreOutcome(notes=[note], expected=expected)

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

    def content_summary(self, like: ContentSummary | None = None, selection: Any = None) -> ContentSummary:
        """Rows per table and the SHA-256 of the database file, or, for a backup that recorded
        per-table row checksums (archives written before the file checksum, partial backups), those,
        computed the same way; with a ``selection`` only its tables, with row checksums."""
        with self.connect() as connection:
            if selection is not None and not selection.empty:
                return table_summary(connection, [t for t in user_tables(connection) if picks(selection, t)])
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


def _snapshot_summary(snapshot: Path) -> ContentSummary:
    with contextlib.closing(sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)) as copy:
        return table_summary(copy)


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


def table_summary(connection: sqlite3.Connection, tables: list[str] | None = None) -> ContentSummary:
    """Rows per table and an order-independent content checksum per table (of ``tables``, default
    all), streamed row by row."""
    summary = ContentSummary()
    for table in user_tables(connection) if tables is None else tables:
        quoted = '"' + table.replace('"', '""') + '"'
        count, total = 0, 0
        for row in connection.execute(f"SELECT * FROM {quoted}"):
            digest = hashlib.sha256("\x1f".join(map(repr, row)).encode()).digest()
            total = (total + int.from_bytes(digest[:16], "big")) % (1 << 128)
            count += 1
        summary.counts[table] = count
        summary.checksums[table] = f"{total:032x}"
    return summary
