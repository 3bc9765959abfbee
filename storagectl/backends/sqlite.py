"""SQLite backend: a database file, opened read-write but never created by accident."""

from __future__ import annotations

import sqlite3
from typing import ClassVar, Literal

from storagectl.backends.base import Backend
from storagectl.backends.postgres import _human_bytes
from storagectl.config.models import BackendSettings
from storagectl.config.types import ConfigPath
from storagectl.diag import Check, CheckSpec, Status
from storagectl.errors import NotFound, OperationFailed, StoragectlError

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
            self.graded("file_size", size, _human_bytes(size)),
            self.info("journal_mode", mode),
            Check("quick_check", Status.OK if healthy else Status.CRITICAL, problems,
                  "ok" if healthy else f"{len(problems)} problem(s)",
                  "" if healthy else "; ".join(problems[:3])),
            self.graded("freelist_pct", free_pct, f"{free_pct:g}%", "VACUUM reclaims free pages"),
        ]
