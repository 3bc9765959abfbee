"""What a data migration is asked to do and what it reports: plain data shared by every path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from storagectl.selection import Selection  # which items move: the model selective backups use

if TYPE_CHECKING:
    from storagectl.archive.progress import ProgressCallback
    from storagectl.backends.base import Backend
    from storagectl.errors import StoragectlError

OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class ColumnMap:
    """One target column: its source column, or a SQL expression evaluated on the source, and an
    optional cast (target type)."""

    target: str
    source: str | None = None
    expression: str | None = None
    cast: str | None = None


@dataclass(frozen=True)
class TableMap:
    """A renamed or reshaped table (from a named plan or ``--map FILE``)."""

    source: str
    target: str
    columns: tuple[ColumnMap, ...] = ()  # empty: every source column, same name
    time_column: str | None = None  # TimescaleDB target: make it a hypertable on this column
    renames: tuple[tuple[str, str], ...] = ()  # (source column, target column), with every column kept


@dataclass(frozen=True)
class DataMigrationRequest:
    source: Backend
    target: Backend
    selection: Selection = Selection()
    maps: tuple[TableMap, ...] = ()
    batch_rows: int = 50_000
    parallel: int = 1
    resume: bool = False
    on_error: OnError = "stop"
    verify: bool = True
    dry_run: bool = False
    allow_nonempty_target: bool = False  # --yes
    rejects_path: Path | None = None
    state_dir: Path | None = None  # Redis/Neo4j state files; default: next to the config file
    show_diffs: bool = False
    plan_name: str | None = None
    config_path: Path | None = None  # said in the command that resumes an interrupted run


@dataclass
class ColumnPlan:
    name: str
    source_type: str
    target_type: str
    note: str = ""  # e.g. "0/1 → boolean", "3 rows invalid UTF-8"
    losses: dict[str, int] = field(default_factory=dict)  # numeric(p,s): rows it would round / cannot hold


@dataclass
class RejectSample:
    key: str  # row key (primary key or rowid) or Redis key, printable
    column: str
    reason: str


@dataclass
class ItemPlan:
    """One table / keyspace / label set as the plan sees it."""

    source: str
    target: str
    columns: list[ColumnPlan] = field(default_factory=list)
    row_estimate: int | None = None
    chunking: str = ""  # "id ranges of 50000", "one chunk (no primary key)"
    problems: list[str] = field(default_factory=list)
    rejected_rows: int = 0
    reject_samples: list[RejectSample] = field(default_factory=list)


@dataclass
class MigrationPlan:
    source: str
    target: str
    pair: str  # "sqlite → postgres"
    items: list[ItemPlan] = field(default_factory=list)
    blockers: list[StoragectlError] = field(default_factory=list)  # what a run would stop with, in its order

    @property
    def rejected_rows(self) -> int:
        return sum(item.rejected_rows for item in self.items)


ItemStatus = Literal["copied", "resumed", "skipped", "failed", "equal", "mismatch", "planned"]


@dataclass
class ItemResult:
    source: str
    target: str
    status: ItemStatus
    rows: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    checksum: str | None = None  # content checksum over the canonical encoding
    rejected: int = 0
    chunks: int = 0
    first_bad_chunk: str | None = None
    diff_keys: list[str] = field(default_factory=list)
    detail: str = ""
    # how the item was verified: SQL "canonical" (both sides hashed), "copy sums" (the target against
    # the lines the run's copy sent), or both, naming the chunks compared the canonical way; Redis
    # "copy digest" or "full compare"
    verified_by: str | None = None


@dataclass
class RunResult:
    source: str
    target: str
    pair: str
    items: list[ItemResult] = field(default_factory=list)
    verified: bool | None = None  # None: not verified (--no-verify or --dry-run)
    duration_s: float = 0.0
    verify_s: float = 0.0  # of duration_s, the verify that ended a run (Redis)
    rejects_path: Path | None = None


class DataPath(Protocol):
    """One (source kind, target kind) pair. ``run`` must be resumable: committed chunks are recorded
    (SQL: a ``storagectl_data_migration`` table in the target; Redis/Neo4j: a state file)."""

    def plan(self, request: DataMigrationRequest) -> MigrationPlan: ...

    def run(self, request: DataMigrationRequest, progress: ProgressCallback) -> RunResult: ...

    def verify(self, request: DataMigrationRequest) -> RunResult: ...

    def notes(self, request: DataMigrationRequest) -> list[str]:
        """What the request asks that this pair does not do (an option it ignores), to say before a run."""
        ...
