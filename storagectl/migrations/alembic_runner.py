"""SQL backends (PostgreSQL, TimescaleDB, SQLite): Alembic driven through its Python API.

The Alembic ``Config`` is built in memory: ``script_location`` is the backend's ``migrations``
directory and the connection is one storagectl opened itself (``Backend.connect``), so no URL or
password ever reaches Alembic. Every revision runs in its own transaction
(``transaction_per_migration``) and records its checksum in that same transaction.
"""

from __future__ import annotations

import io
import re
import sys
from abc import ABC, abstractmethod
from argparse import Namespace
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from storagectl.backends.base import Backend
from storagectl.errors import NotFound, OperationFailed, StoragectlError, UsageError
from storagectl.migrations import checksums, templates
from storagectl.migrations.base import (
    HistoryEntry,
    MigrationStatus,
    NewRevision,
    RevisionInfo,
    RunResult,
    Warn,
    require_directory,
)
from storagectl.migrations.lint import LintFinding, lint_source, lint_sql, one_line
from storagectl.migrations.locking import file_lock, lock_file_for, postgres_advisory_lock

# Offline output marks each revision: "-- Running upgrade a -> b, msg" / "-- Running downgrade b -> a, msg".
_RUNNING = re.compile(r"^-- Running (upgrade|downgrade) (.*?) -> ([^,\s]*).*$", re.MULTILINE)
_RELATIVE = re.compile(r"^[+-]\d+$")


class AlembicMigrator(ABC):
    """Migrations of one SQL backend; subclasses choose the dialect and the lock."""

    dialect_name: str
    driver_url: str

    def __init__(self, backend: Backend, directory: Path) -> None:
        self.backend = backend
        self.directory = directory

    # -- connections and locks (overridden per dialect) --------------------------------------
    @abstractmethod
    def _prepare(self, raw: Any, engine: Any) -> None:
        """Adjust the DBAPI connection (and engine) before SQLAlchemy uses it."""

    @abstractmethod
    def _lock(self, connection: Any, timeout: float) -> AbstractContextManager[None]:
        """Held while anything changes: one migrator per database at a time."""

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A SQLAlchemy connection over the backend's own DBAPI connection, always closed."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        with self.backend.connect() as raw:
            engine = create_engine(f"{self.driver_url}://", creator=lambda: raw, poolclass=StaticPool)
            self._prepare(raw, engine)
            try:
                with engine.connect() as connection:
                    yield connection
            finally:
                engine.dispose()

    @contextmanager
    def _locked(self, lock_timeout: float) -> Iterator[Any]:
        with self._connection() as connection, self._lock(connection, lock_timeout):
            yield connection

    # -- alembic plumbing ---------------------------------------------------------------------
    def _config(self, connection: Any = None, *, sql: io.StringIO | None = None,
                applied: list[str] | None = None, metadata: Any = None) -> Any:
        from alembic.config import Config

        # quiet: Alembic's own messages would go to stdout, which belongs to our results.
        config = Config(output_buffer=sql, stdout=io.StringIO(), cmd_opts=Namespace(quiet=True))
        config.set_main_option("script_location", str(self.directory).replace("%", "%%"))
        config.set_main_option("path_separator", "os")
        options: dict[str, Any] = {"transaction_per_migration": True, "include_name": _not_ours}
        if applied is not None:
            options["on_version_apply"] = checksums.recorder(self._script(config), applied)
        config.attributes.update(connection=connection, dialect_name=self.dialect_name,
                                 target_metadata=metadata, configure_options=options)
        return config

    def _script(self, config: Any = None) -> Any:
        from alembic.script import ScriptDirectory

        require_directory(self, "env.py")
        return ScriptDirectory.from_config(config or self._config())

    def _check_target(self, script: Any, revision: str) -> None:
        """Resolve a target before connecting: unknown revisions and multiple heads are caught here."""
        if revision in ("base", "heads") or _RELATIVE.match(revision):
            return
        with self._alembic_errors():
            script.revision_map.get_revisions(revision)  # the map raises the precise error class

    @contextmanager
    def _alembic_errors(self) -> Iterator[None]:
        from alembic.script.revision import MultipleHeads, ResolutionError
        from alembic.util import CommandError

        name = self.backend.name
        try:
            yield
        except MultipleHeads as exc:
            raise UsageError(
                f"backend {name!r}: multiple heads ({', '.join(exc.heads)}) in {self.directory}",
                hint=f"Try: storagectl migrate new --backend {name} --merge -m 'merge heads'",
            ) from None
        except ResolutionError as exc:
            raise NotFound(f"backend {name!r}: {_first_line(exc)}",
                           hint=f"Try: storagectl migrate history --backend {name}") from None
        except CommandError as exc:
            raise UsageError(f"backend {name!r}: {_first_line(exc)}") from None

    # -- commands -----------------------------------------------------------------------------
    def init(self) -> Path:
        if (self.directory / "env.py").exists():
            raise UsageError(f"backend {self.backend.name!r}: {self.directory} is already a migrations directory")
        (self.directory / "versions").mkdir(parents=True, exist_ok=True)
        for name, text in (("env.py", templates.ENV_PY), ("script.py.mako", templates.SCRIPT_PY_MAKO),
                           ("README", templates.README)):
            (self.directory / name).write_text(text, encoding="utf-8")
        return self.directory

    def new(self, message: str, *, autogenerate: bool = False, models: str | None = None,
            merge: bool = False) -> NewRevision:
        from alembic import command

        _check_new_options(autogenerate, models, merge)
        require_directory(self, "env.py")
        with self._alembic_errors():
            if merge:
                created = command.merge(self._config(), "heads", message=message)
            elif autogenerate:
                created = self._autogenerate(message, load_metadata(models or ""))
            else:
                created = command.revision(self._config(), message=message)
        return NewRevision(self.backend.name, created.revision, Path(created.path), message)

    def _autogenerate(self, message: str, metadata: Any) -> Any:
        from alembic import command

        with self._connection() as connection:
            created = command.revision(self._config(connection, metadata=metadata),
                                       message=message, autogenerate=True)
            connection.rollback()
        return created

    def up(self, to: str = "head", *, dry_run: bool = False, strict: bool = False,
           lock_timeout: float = 60.0, warn: Warn | None = None) -> RunResult:
        script = self._script()
        self._check_target(script, to)
        if dry_run:
            result = self._dry_run("upgrade", to)
            result.warnings = self._enforce(self._lint_sql(result.sql or ""), strict)
            _report(result.warnings, warn)
            return result
        with self._locked(lock_timeout) as connection:
            warnings = self._preflight(script, connection, to, strict)
            _report(warnings, warn)
            applied = self._migrate(connection, "upgrade", to, self._upgrade_plan(script, connection, to))
            current = _current(connection)
        return RunResult(self.backend.name, self.backend.kind, "up", applied, current, warnings=warnings)

    def down(self, to: str, *, dry_run: bool = False, lock_timeout: float = 60.0) -> RunResult:
        script = self._script()
        self._check_target(script, to)
        if dry_run:
            return self._dry_run("downgrade", to)
        with self._locked(lock_timeout) as connection:
            plan = self._downgrade_plan(script, connection, to)
            reverted = self._migrate(connection, "downgrade", to, plan)
            current = _current(connection)
        return RunResult(self.backend.name, self.backend.kind, "down", reverted, current)

    def stamp(self, revision: str, *, lock_timeout: float = 60.0) -> str | None:
        """Set the version table to ``revision`` without running anything; re-record checksums."""
        from alembic import command

        script = self._script()
        self._check_target(script, revision)
        with self._locked(lock_timeout) as connection:
            # One outer transaction: Alembic joins it, so the stamp and the checksums commit together.
            with connection.begin(), self._alembic_errors():
                command.stamp(self._config(connection), revision, purge=True)  # works from any state
                checksums.resync(connection, script, _ancestry(script, _heads(connection)))
            return _current(connection)

    def status(self) -> MigrationStatus:
        script = self._script()
        with self._connection() as connection:
            applied = self._applied(script, connection)
            heads = _heads(connection)
            rows = checksums.recorded(connection)
            connection.rollback()
        pending = [rev for rev in _ordered(script) if rev not in applied]
        return MigrationStatus(self.backend.name, self.backend.kind, _joined(heads),
                               _joined(tuple(script.get_heads())), pending, checksums.edited_revisions(script, rows))

    def history(self) -> list[HistoryEntry]:
        script = self._script()
        with self._connection() as connection:
            applied = self._applied(script, connection)
            rows = checksums.recorded(connection)
            connection.rollback()
        edited = set(checksums.edited_revisions(script, rows))
        return [
            HistoryEntry(rev.revision, _joined(_as_tuple(rev.down_revision)), rev.doc or "",
                         rev.revision in applied, _when(rows.get(rev.revision)), rev.revision in edited)
            for rev in script.walk_revisions()
        ]

    def heads(self) -> list[RevisionInfo]:
        script = self._script()
        return [self._info(script, rev) for rev in script.get_revisions("heads")]

    def show(self, revision: str) -> RevisionInfo:
        script = self._script()
        self._check_target(script, revision)
        with self._alembic_errors():
            found = script.get_revision(revision)
        return self._info(script, found, body=Path(found.path).read_text(encoding="utf-8"))

    def _info(self, script: Any, rev: Any, body: str | None = None) -> RevisionInfo:
        return RevisionInfo(self.backend.name, rev.revision, list(_as_tuple(rev.down_revision)), rev.doc or "",
                            Path(rev.path), rev.revision in script.get_heads(), body)

    # -- running ------------------------------------------------------------------------------
    def _preflight(self, script: Any, connection: Any, to: str, strict: bool) -> list[str]:
        """Lint the pending revisions and note edited applied ones; --strict refuses on any finding."""
        pending = self._upgrade_plan(script, connection, to)
        warnings = self._enforce(self._lint(script, connection, to, pending), strict)
        edited = checksums.edited_revisions(script, checksums.recorded(connection))
        connection.rollback()
        return warnings + [f"revision {rev} was edited after it was applied" for rev in edited]

    def _enforce(self, findings: list[LintFinding], strict: bool) -> list[str]:
        """Lint findings as warnings; with --strict, an error before anything is applied."""
        if strict and findings:
            name = self.backend.name
            raise OperationFailed(
                f"backend {name!r}: --strict and lint found {len(findings)} problem(s), nothing applied",
                details=[str(finding) for finding in findings],
                hint=f"Try: storagectl migrate up --backend {name} --dry-run; drop --strict to apply with warnings",
            )
        return [str(finding) for finding in findings]

    def _lint_sql(self, sql: str) -> list[LintFinding]:
        return [finding for rev, text in split_by_revision(sql) for finding in lint_sql(rev, text, self.dialect_name)]

    def _lint(self, script: Any, connection: Any, to: str, pending: list[str]) -> list[LintFinding]:
        if not pending:
            return []
        start = _joined(_heads(connection))
        try:
            sql = self._offline_sql("upgrade", f"{start}:{to}" if start else to)
        except Exception:  # a revision that queries while upgrading cannot render offline
            return [finding for rev in pending
                    for finding in lint_source(rev, Path(script.get_revision(rev).path).read_text(), self.dialect_name)]
        return self._lint_sql(sql)

    def _migrate(self, connection: Any, command_name: str, to: str, plan: list[str]) -> list[str]:
        from alembic import command

        done: list[str] = []
        start = _current(connection)
        connection.rollback()
        try:
            with self._alembic_errors():
                getattr(command, command_name)(self._config(connection, applied=done), to)
        except StoragectlError:
            raise
        except Exception as exc:
            connection.rollback()
            raise self._failure(exc, plan, done, start) from exc
        return done

    def _failure(self, exc: Exception, plan: list[str], done: list[str], start: str | None) -> OperationFailed:
        failed = plan[len(done)] if len(done) < len(plan) else "?"
        statement = getattr(exc, "statement", None)
        cause = getattr(exc, "orig", None) or exc
        reason = _first_line(cause) if getattr(exc, "orig", None) else f"{type(exc).__name__}: {_first_line(exc)}"
        left_at = done[-1] if done else (start or "base")
        where = f"; statement: {one_line(statement)}" if statement else ""
        return OperationFailed(
            self.backend.redact(f"backend {self.backend.name!r}: revision {failed} failed: {reason}{where}; "
                                f"database left at revision {left_at}"),
            hint=f"Try: fix the revision; then storagectl migrate up --backend {self.backend.name}",
        )

    def _dry_run(self, command_name: str, to: str) -> RunResult:
        with self._connection() as connection:
            start = _joined(_heads(connection))
            connection.rollback()
        if start and "," in start:
            raise UsageError(f"backend {self.backend.name!r}: --dry-run needs a single current revision, not {start}")
        revision_range = f"{start}:{to}" if start else to
        if command_name == "downgrade" and not start:
            return RunResult(self.backend.name, self.backend.kind, "down", [], None, sql="")
        sql = self._offline_sql(command_name, revision_range)
        revisions = [rev for rev, _ in split_by_revision(sql)]
        direction = "up" if command_name == "upgrade" else "down"
        return RunResult(self.backend.name, self.backend.kind, direction, revisions, start, sql=sql)

    def _offline_sql(self, command_name: str, revision_range: str) -> str:
        from alembic import command

        buffer = io.StringIO()
        with self._alembic_errors():
            getattr(command, command_name)(self._config(sql=buffer), revision_range, sql=True)
        return buffer.getvalue()

    def _applied(self, script: Any, connection: Any) -> set[str]:
        """Revisions at or below the database's current heads; a head unknown here is NotFound."""
        heads = _heads(connection)
        known = {rev.revision for rev in script.walk_revisions()}
        unknown = [head for head in heads if head not in known]
        if unknown:
            raise NotFound(
                f"backend {self.backend.name!r}: the database is at revision {', '.join(unknown)}, "
                f"which {self.directory} does not have",
                hint=f"Try: storagectl migrate history --backend {self.backend.name}; deploy the code that matches "
                     "this database, or migrate stamp a known revision",
            )
        return _ancestry(script, heads)

    def _upgrade_plan(self, script: Any, connection: Any, to: str) -> list[str]:
        """The revisions ``upgrade to`` will run, in order (used to name a failing one)."""
        applied = self._applied(script, connection)
        pending = [rev for rev in _ordered(script) if rev not in applied]
        if _RELATIVE.match(to):
            return pending[: int(to)]
        wanted = _ancestry(script, tuple(script.get_revisions(to)))
        return [rev for rev in pending if rev in wanted]

    def _downgrade_plan(self, script: Any, connection: Any, to: str) -> list[str]:
        applied = self._applied(script, connection)
        newest_first = [rev for rev in reversed(_ordered(script)) if rev in applied]
        if _RELATIVE.match(to):
            return newest_first[: abs(int(to))]
        kept = set() if to == "base" else _ancestry(script, tuple(script.get_revisions(to)))
        return [rev for rev in newest_first if rev not in kept]


class PostgresMigrator(AlembicMigrator):
    dialect_name = "postgresql"
    driver_url = "postgresql+psycopg"

    def _prepare(self, raw: Any, engine: Any) -> None:
        raw.autocommit = False  # Backend.connect opens in autocommit; Alembic needs transactions

    def _lock(self, connection: Any, timeout: float) -> AbstractContextManager[None]:
        return postgres_advisory_lock(connection, self.backend.label, timeout)


class SQLiteMigrator(AlembicMigrator):
    dialect_name = "sqlite"
    driver_url = "sqlite+pysqlite"

    def _prepare(self, raw: Any, engine: Any) -> None:
        # pysqlite does not BEGIN before DDL; take transactions over so each revision is atomic.
        from sqlalchemy import event

        raw.isolation_level = None
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))

    def _lock(self, connection: Any, timeout: float) -> AbstractContextManager[None]:
        path = self.backend.settings.path  # type: ignore[attr-defined]
        return file_lock(lock_file_for(Path(path)), self.backend.label, timeout)


# -- helpers -----------------------------------------------------------------------------------
def split_by_revision(sql: str) -> list[tuple[str, str]]:
    """(revision, its SQL) for each ``-- Running upgrade a -> b`` section of offline output."""
    marks = list(_RUNNING.finditer(sql))
    return [(mark[3] if mark[1] == "upgrade" else mark[2],
             sql[mark.end(): marks[i + 1].start() if i + 1 < len(marks) else len(sql)])
            for i, mark in enumerate(marks)]


def load_metadata(models: str) -> Any:
    """``package.module:attribute`` -> the SQLAlchemy MetaData autogenerate compares against."""
    from importlib import import_module

    module_name, _, attribute = models.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--models {models!r} must look like package.module:metadata")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` would have it
    try:
        target = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load --models {models}: {exc}") from None
    return getattr(target, "metadata", target)


def _check_new_options(autogenerate: bool, models: str | None, merge: bool) -> None:
    if autogenerate and not models:
        raise UsageError("--autogenerate needs --models package.module:metadata")
    if models and not autogenerate:
        raise UsageError("--models is only used with --autogenerate")
    if merge and autogenerate:
        raise UsageError("--merge and --autogenerate cannot be combined")


def _not_ours(name: str | None, type_: str, parent_names: Any) -> bool:
    """Keep storagectl's checksum table out of autogenerate."""
    return not (type_ == "table" and name == checksums.TABLE_NAME)


def _heads(connection: Any) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


def _current(connection: Any) -> str | None:
    heads = _heads(connection)
    connection.rollback()
    return _joined(heads)


def _ancestry(script: Any, heads: tuple[Any, ...]) -> set[str]:
    """Every revision at or below ``heads`` (revision ids or Script objects)."""
    found: set[str] = set()
    for head in heads:
        head_id = getattr(head, "revision", head)
        found.update(rev.revision for rev in script.iterate_revisions(head_id, "base"))
    return found


def _ordered(script: Any) -> list[str]:
    """All revisions, oldest first (the order Alembic applies them)."""
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _joined(values: tuple[str, ...]) -> str | None:
    return ", ".join(values) if values else None


def _when(row: tuple[str, Any] | None) -> str | None:
    return row[1].isoformat() if row and hasattr(row[1], "isoformat") else (str(row[1]) if row else None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _report(warnings: list[str], warn: Warn | None) -> None:
    if warn is not None:
        for warning in warnings:
            warn(warning)
