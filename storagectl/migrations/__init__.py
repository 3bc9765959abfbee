"""Schema migrations: Alembic for SQL backends, versioned Cypher files for Neo4j.

``migrator_for(backend)`` returns the migrator registered for the backend's kind; the functions
here add the ``--all`` behaviour (every backend with ``migrations:``, in config order).
"""

from __future__ import annotations

from storagectl.backends import Backend, selected_backends
from storagectl.config.models import Config
from storagectl.errors import StoragectlError, UsageError
from storagectl.migrations.base import (
    HistoryEntry,
    MigrationStatus,
    Migrator,
    NewRevision,
    RunResult,
    Warn,
    migrator_for,
    supports_migrations,
)
from storagectl.migrations.locking import DEFAULT_LOCK_TIMEOUT


def migrating_backends(config: Config) -> list[Backend]:
    """Every backend with a ``migrations:`` directory, in config order."""
    found = [backend for backend in selected_backends(config, None) if supports_migrations(backend)]
    if not found:
        raise UsageError("no backend has a migrations directory",
                         hint="Try: set migrations: <dir> on a postgres, timescaledb, sqlite or neo4j backend")
    return found


def up_all(config: Config, *, dry_run: bool = False, strict: bool = False,
           lock_timeout: float = DEFAULT_LOCK_TIMEOUT, warn: Warn | None = None) -> list[RunResult]:
    """``up`` on every migrating backend in config order; stop at the first failure.

    The error raised for a failure keeps its class (and exit code) and says what was applied where.
    """
    results: list[RunResult] = []
    backends = migrating_backends(config)
    for index, backend in enumerate(backends):
        try:
            results.append(migrator_for(backend).up(dry_run=dry_run, strict=strict,
                                                    lock_timeout=lock_timeout, warn=warn))
        except StoragectlError as exc:
            not_attempted = [b.name for b in backends[index + 1:]]
            exc.message = f"{exc.message} ({progress_summary(results, not_attempted)})"
            raise
    return results


def progress_summary(results: list[RunResult], not_attempted: list[str]) -> str:
    """One line: what each earlier backend got, and which were never tried."""
    done = [f"{r.backend}: {len(r.revisions)} applied, now at {r.current or 'base'}" for r in results]
    parts = [f"before the failure {'; '.join(done)}" if done else "nothing applied on other backends"]
    if not_attempted:
        parts.append(f"not attempted: {', '.join(not_attempted)}")
    return "; ".join(parts)


def status_all(config: Config) -> list[MigrationStatus]:
    """Every migrating backend's status; one that cannot be read (no directory, unreachable) is a
    row with its error, and the others are still reported."""
    return [_status_or_error(backend) for backend in migrating_backends(config)]


def _status_or_error(backend: Backend) -> MigrationStatus:
    try:
        return migrator_for(backend).status()
    except StoragectlError as exc:
        error = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        return MigrationStatus(backend.name, backend.kind, None, None, [], [], error, int(exc.exit_code))


__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "HistoryEntry",
    "MigrationStatus",
    "Migrator",
    "NewRevision",
    "RunResult",
    "migrating_backends",
    "migrator_for",
    "progress_summary",
    "status_all",
    "up_all",
]
