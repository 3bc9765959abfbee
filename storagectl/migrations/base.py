"""What every migrator returns, the Migrator protocol, and the registry of kinds that migrate."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

from storagectl.backends.base import Backend
from storagectl.errors import UsageError

Warn = Callable[[str], None]

MIGRATORS: dict[str, str] = {
    "postgres": "storagectl.migrations.alembic_runner:PostgresMigrator",
    "timescaledb": "storagectl.migrations.alembic_runner:PostgresMigrator",
    "sqlite": "storagectl.migrations.alembic_runner:SQLiteMigrator",
    "neo4j": "storagectl.migrations.cypher:CypherMigrator",
}


@dataclass
class RunResult:
    """What one ``up``/``down`` did on one backend (``sql`` is set for a dry run instead)."""

    backend: str
    kind: str
    direction: str
    revisions: list[str] = field(default_factory=list)
    current: str | None = None
    sql: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MigrationStatus:
    backend: str
    kind: str
    current: str | None
    head: str | None
    pending: list[str]
    edited: list[str]
    error: str | None = None  # `status --all`: why this backend could not be read; the others still are
    error_exit: int = 0

    @property
    def exit_code(self) -> int:
        """0 up to date, 1 pending, 6 edited, or the error's own code; the worst counts."""
        return max(self.error_exit, 6 if self.edited else 0, 1 if self.pending else 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["error_exit"]
        return {**data, "pending_count": len(self.pending), "exit_code": self.exit_code}


@dataclass
class HistoryEntry:
    revision: str
    parent: str | None
    message: str
    applied: bool
    applied_at: str | None = None
    edited: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RevisionInfo:
    """One revision as `migrate heads` / `migrate show` print it (read from the directory only)."""

    backend: str
    revision: str
    parents: list[str]
    message: str
    path: Path
    is_head: bool
    body: str | None = None  # `show`: the revision's upgrade code or Cypher statements

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NewRevision:
    backend: str
    revision: str
    path: Path
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Migrator(Protocol):
    """Schema migrations of one backend. Every method locks what it changes and closes what it opens."""

    backend: Backend
    directory: Path

    def init(self) -> Path: ...

    def new(self, message: str, *, autogenerate: bool = False, models: str | None = None,
            merge: bool = False) -> NewRevision: ...

    def up(self, to: str = "head", *, dry_run: bool = False, strict: bool = False,
           lock_timeout: float = 60.0, warn: Warn | None = None) -> RunResult: ...

    def down(self, to: str, *, dry_run: bool = False, lock_timeout: float = 60.0) -> RunResult: ...

    def status(self) -> MigrationStatus: ...

    def history(self) -> list[HistoryEntry]: ...

    def stamp(self, revision: str, *, lock_timeout: float = 60.0) -> str | None: ...

    def heads(self) -> list[RevisionInfo]: ...

    def show(self, revision: str) -> RevisionInfo: ...


def migrator_for(backend: Backend) -> Migrator:
    """The migrator registered for the backend's kind; a kind without migrations is a usage error."""
    target = MIGRATORS.get(backend.kind)
    if target is None:
        raise UsageError(
            f"backend {backend.name!r} is a {backend.kind} backend, which has no schema migrations",
            hint=f"Try: a backend of kind {', '.join(sorted(MIGRATORS))}",
        )
    directory = getattr(backend.settings, "migrations", None)
    if directory is None:
        raise UsageError(
            f"backend {backend.name!r} has no migrations directory",
            hint=f"Try: set backends.{backend.name}.migrations (e.g. migrations/{backend.name}) in the config, "
                 f"then storagectl migrate init --backend {backend.name}",
        )
    module_name, _, attribute = target.partition(":")
    return getattr(import_module(module_name), attribute)(backend, Path(directory))


def supports_migrations(backend: Backend) -> bool:
    return configures_migrations(backend.settings)


def configures_migrations(settings: Any) -> bool:
    """Settings of a kind that migrates with a ``migrations:`` directory set (read from the config
    alone: shell completion offers these backends to `migrate` without opening any)."""
    return settings.kind in MIGRATORS and getattr(settings, "migrations", None) is not None


def file_checksum(path: Path) -> str:
    """sha256 of a migration file; line endings normalised so a CRLF checkout is not an edit."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def require_directory(migrator: Migrator, marker: str | None = None) -> None:
    """The migrations directory (and its ``marker`` file) must exist before anything else."""
    directory = migrator.directory
    missing = not directory.is_dir() or (marker is not None and not (directory / marker).is_file())
    if missing:
        what = "does not exist" if not directory.is_dir() else f"has no {marker}"
        name = migrator.backend.name
        raise UsageError(
            f"backend {name!r}: migrations directory {directory} {what}",
            hint=f"Try: storagectl migrate init --backend {name}, or fix backends.{name}.migrations",
        )
