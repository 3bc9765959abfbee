"""Neo4j: a directory of versioned ``V001__name.cypher`` files, applied in order, recorded in the graph.

Each applied file becomes a ``(:StorageCtlMigration {version, description, checksum, applied_at})``
node, written in the same transaction as the file's statements, so a failing file leaves the graph
as it was and a rerun is a no-op. An applied file whose checksum changed is an integrity error.
Runs are serialised by a ``(:StorageCtlMigrationLock)`` node under a uniqueness constraint: only
one run can create it, and it is deleted when the run ends.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storagectl.backends.base import Backend
from storagectl.errors import IntegrityError, NotFound, OperationFailed, StoragectlError, UsageError
from storagectl.migrations.base import (
    HistoryEntry,
    MigrationStatus,
    NewRevision,
    RevisionInfo,
    RunResult,
    Warn,
    file_checksum,
    require_directory,
)
from storagectl.migrations.lint import one_line, split_statements
from storagectl.migrations.locking import lock_timeout_error, wait_for

FILE_NAME = re.compile(r"^V(\d+)__(\w+)\.cypher$")
LOCK_CONSTRAINT = ("CREATE CONSTRAINT storagectl_migration_lock IF NOT EXISTS "
                   "FOR (l:StorageCtlMigrationLock) REQUIRE l.name IS UNIQUE")
VERSION_CONSTRAINT = ("CREATE CONSTRAINT storagectl_migration_version IF NOT EXISTS "
                      "FOR (m:StorageCtlMigration) REQUIRE m.version IS UNIQUE")
TAKE_LOCK = "CREATE (:StorageCtlMigrationLock {name: 'migrate', owner: $owner, acquired_at: datetime()})"
LOCK_HOLDER = ("MATCH (l:StorageCtlMigrationLock {name: 'migrate'}) "
               "RETURN l.owner AS owner, toString(l.acquired_at) AS acquired_at")
RELEASE_LOCK = "MATCH (l:StorageCtlMigrationLock {name: 'migrate', owner: $owner}) DELETE l"
APPLIED = ("MATCH (m:StorageCtlMigration) RETURN m.version AS version, m.description AS description, "
           "m.checksum AS checksum, toString(m.applied_at) AS applied_at ORDER BY m.version")
RECORD = ("CREATE (:StorageCtlMigration {version: $version, description: $description, "
          "checksum: $checksum, applied_at: datetime()})")
CONSTRAINT_VIOLATION = "Neo.ClientError.Schema.ConstraintValidationFailed"


@dataclass(frozen=True)
class CypherMigration:
    version: int
    description: str
    path: Path

    @property
    def label(self) -> str:
        return f"V{self.version:03d}"

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text(encoding="utf-8"))

    def checksum(self) -> str:
        return file_checksum(self.path)


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    description: str
    checksum: str
    applied_at: str | None


def scan_directory(directory: Path) -> list[CypherMigration]:
    """The migration files, by version; badly named ``.cypher`` files and duplicate versions are errors."""
    found: dict[int, CypherMigration] = {}
    for path in sorted(directory.glob("*.cypher")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise UsageError(f"{path}: migration files must be named V<number>__<description>.cypher")
        version = int(match[1])
        if version in found:
            raise UsageError(f"{path}: version {version} is also used by {found[version].path.name}")
        found[version] = CypherMigration(version, match[2].replace("_", " "), path)
    return [found[version] for version in sorted(found)]


def parse_version(text: str) -> int:
    match = re.fullmatch(r"[Vv]?(\d+)", text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a Cypher migration version; use a number such as 3 or V003")
    return int(match[1])


class CypherMigrator:
    """Versioned Cypher migrations of one Neo4j backend."""

    def __init__(self, backend: Backend, directory: Path) -> None:
        self.backend = backend
        self.directory = directory

    # -- files --------------------------------------------------------------------------------
    def init(self) -> Path:
        if self.directory.is_dir() and any(self.directory.glob("*.cypher")):
            raise UsageError(f"backend {self.backend.name!r}: {self.directory} already holds migrations")
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def new(self, message: str, *, autogenerate: bool = False, models: str | None = None,
            merge: bool = False) -> NewRevision:
        if autogenerate or models or merge:
            raise UsageError("--autogenerate, --models and --merge are for SQL backends, not neo4j")
        migrations = self._files()
        version = migrations[-1].version + 1 if migrations else 1
        slug = re.sub(r"\W+", "_", message.strip().lower()).strip("_") or "migration"
        path = self.directory / f"V{version:03d}__{slug}.cypher"
        path.write_text(f"// {message}\n// Statements end with ';' at the end of a line.\n", encoding="utf-8")
        return NewRevision(self.backend.name, f"V{version:03d}", path, message)

    def _files(self) -> list[CypherMigration]:
        require_directory(self)
        return scan_directory(self.directory)

    # -- commands -----------------------------------------------------------------------------
    def up(self, to: str = "head", *, dry_run: bool = False, strict: bool = False,
           lock_timeout: float = 60.0, warn: Warn | None = None) -> RunResult:
        migrations = self._targets(to)
        if dry_run:
            return self._dry_run(migrations)
        with self.backend.connect() as driver, self._locked(driver, lock_timeout):
            applied = self._applied(driver)
            self._verify(migrations, applied)
            pending = [m for m in migrations if m.version not in applied]
            current = _label(max(applied, default=None))
            for migration in pending:
                self._apply(driver, migration, last_good=current)
                current = migration.label
            newest = max([*applied, *(m.version for m in pending)], default=None)
        return RunResult(self.backend.name, self.backend.kind, "up", [m.label for m in pending], _label(newest))

    def down(self, to: str, *, dry_run: bool = False, lock_timeout: float = 60.0) -> RunResult:
        raise UsageError(
            f"backend {self.backend.name!r}: Cypher migrations only go forward",
            hint=f"Try: storagectl migrate new --backend {self.backend.name} -m 'undo ...'; "
                 "give it statements that reverse the change",
        )

    def stamp(self, revision: str, *, lock_timeout: float = 60.0) -> str | None:
        """Record every file up to ``revision`` as applied without running it (baselining a graph)."""
        migrations = self._targets(revision)
        with self.backend.connect() as driver, self._locked(driver, lock_timeout):
            applied = self._applied(driver)
            with self.backend.session(driver) as session:
                for migration in (m for m in migrations if m.version not in applied):
                    session.run(RECORD, _record_params(migration)).consume()
        return migrations[-1].label if migrations else None

    def status(self) -> MigrationStatus:
        migrations = self._files()
        with self.backend.connect() as driver:
            applied = self._applied(driver)
        pending = [m.label for m in migrations if m.version not in applied]
        head = migrations[-1].version if migrations else None
        return MigrationStatus(self.backend.name, self.backend.kind, _label(max(applied, default=None)),
                               _label(head), pending, [m.label for m in _edited(migrations, applied)])

    def history(self) -> list[HistoryEntry]:
        migrations = self._files()
        with self.backend.connect() as driver:
            applied = self._applied(driver)
        edited = {m.version for m in _edited(migrations, applied)}
        entries = [HistoryEntry(m.label, _label(previous.version) if previous else None, m.description,
                                m.version in applied, getattr(applied.get(m.version), "applied_at", None),
                                m.version in edited)
                   for previous, m in zip([None, *migrations], migrations, strict=False)]
        return list(reversed(entries))

    def heads(self) -> list[RevisionInfo]:
        """Versioned files form one line: the head is the highest version."""
        migrations = self._files()
        return [self._info(migrations, migrations[-1])] if migrations else []

    def show(self, revision: str) -> RevisionInfo:
        migrations = self._files()
        target = self._targets(revision)[-1] if migrations else None
        if target is None:
            raise NotFound(f"backend {self.backend.name!r}: no migrations in {self.directory}",
                           hint=f"Try: storagectl migrate new --backend {self.backend.name} -m 'first change'")
        return self._info(migrations, target, body=target.path.read_text(encoding="utf-8"))

    def _info(self, migrations: list[CypherMigration], migration: CypherMigration,
              body: str | None = None) -> RevisionInfo:
        parents = [m.label for m in migrations if m.version < migration.version][-1:]
        return RevisionInfo(self.backend.name, migration.label, parents, migration.description, migration.path,
                            migration is migrations[-1], body)

    # -- internals ----------------------------------------------------------------------------
    def _targets(self, to: str) -> list[CypherMigration]:
        migrations = self._files()
        if to in ("head", "heads"):
            return migrations
        version = parse_version(to)
        if version not in {m.version for m in migrations}:
            raise NotFound(f"backend {self.backend.name!r}: no migration V{version:03d} in {self.directory}",
                           hint=f"Try: storagectl migrate history --backend {self.backend.name}")
        return [m for m in migrations if m.version <= version]

    def _dry_run(self, migrations: list[CypherMigration]) -> RunResult:
        with self.backend.connect() as driver:
            applied = self._applied(driver)
        self._verify(migrations, applied)
        pending = [m for m in migrations if m.version not in applied]
        sql = "".join(f"// {m.label} {m.description}\n" + "".join(f"{s};\n" for s in m.statements())
                      for m in pending)
        return RunResult(self.backend.name, self.backend.kind, "up", [m.label for m in pending],
                         _label(max(applied, default=None)), sql=sql)

    def _applied(self, driver: Any) -> dict[int, AppliedMigration]:
        with self.backend.session(driver) as session:
            rows = session.run(APPLIED).data()
        return {int(row["version"]): AppliedMigration(int(row["version"]), row["description"], row["checksum"],
                                                      row["applied_at"]) for row in rows}

    def _verify(self, migrations: list[CypherMigration], applied: dict[int, AppliedMigration]) -> None:
        edited = _edited(migrations, applied)
        if edited:
            names = ", ".join(m.path.name for m in edited)
            raise IntegrityError(
                f"backend {self.backend.name!r}: applied migration file(s) changed since they ran: {names}",
                hint=f"Try: storagectl migrate history --backend {self.backend.name}; restore the file(s) as "
                     "applied and put the change in a new V file",
            )

    def _apply(self, driver: Any, migration: CypherMigration, last_good: str | None) -> None:
        """All statements and the record in one transaction: the file applies whole or not at all."""
        running = ""
        try:
            with self.backend.session(driver) as session, session.begin_transaction() as tx:
                for index, statement in enumerate(migration.statements(), start=1):
                    running = f" at statement {index}: {one_line(statement)}"
                    tx.run(statement).consume()
                running = " recording it"
                tx.run(RECORD, _record_params(migration)).consume()
                tx.commit()
        except StoragectlError:
            raise
        except Exception as exc:
            raise OperationFailed(
                self.backend.redact(f"backend {self.backend.name!r}: migration {migration.path.name} failed{running}: "
                                    f"{_message(exc)}; graph left at {last_good or 'no migrations'}"),
                hint=f"Try: fix the file (it was not recorded); then storagectl migrate up --backend "
                     f"{self.backend.name}",
            ) from exc

    @contextmanager
    def _locked(self, driver: Any, timeout: float) -> Iterator[None]:
        owner = f"storagectl-{uuid.uuid4().hex[:12]}"
        with self.backend.session(driver) as session:
            session.run(LOCK_CONSTRAINT).consume()
            session.run(VERSION_CONSTRAINT).consume()
            if not wait_for(lambda: _try_lock(session, owner), timeout):
                raise lock_timeout_error(self.backend.label, timeout, _holder(session))
        try:
            yield
        finally:
            with self.backend.session(driver) as session:
                session.run(RELEASE_LOCK, {"owner": owner}).consume()


def _try_lock(session: Any, owner: str) -> bool:
    from neo4j.exceptions import ClientError

    try:
        session.run(TAKE_LOCK, {"owner": owner}).consume()
    except ClientError as exc:
        if exc.code != CONSTRAINT_VIOLATION:
            raise
        return False
    return True


def _holder(session: Any) -> str:
    row = session.run(LOCK_HOLDER).single()
    return f"{row['owner']} since {row['acquired_at']}" if row else ""


def _edited(migrations: list[CypherMigration], applied: dict[int, AppliedMigration]) -> list[CypherMigration]:
    return [m for m in migrations if m.version in applied and applied[m.version].checksum != m.checksum()]


def _record_params(migration: CypherMigration) -> dict[str, Any]:
    return {"version": migration.version, "description": migration.description, "checksum": migration.checksum()}


def _label(version: int | None) -> str | None:
    return f"V{version:03d}" if version is not None else None


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0]
