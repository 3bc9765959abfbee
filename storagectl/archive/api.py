"""The contract between the archive layer and the backends that back up into it.

The archive layer (``storagectl.archive``) turns each *object* a backend writes into a streamed,
compressed, optionally age-encrypted, SHA-256-checksummed object at a destination, and writes
``manifest.json`` last. Backends only see the two small protocols below: they never know about
codecs, encryption or where the bytes go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from storagectl.selection import Selection


class ObjectSink(Protocol):
    """A writable stream for one archive object. Set ``counts`` before the stream closes."""

    counts: dict[str, int]  # e.g. {"rows": 1500000} / {"keys": 10} / {"nodes": 5, "relationships": 7}

    def write(self, data: bytes | bytearray | memoryview) -> int: ...


class ArchiveWriter(Protocol):
    """What a backend writes a backup into. ``create`` may be called from several threads at once."""

    def create(self, name: str) -> AbstractContextManager[ObjectSink]:
        """A new object ``name`` (e.g. ``data/public.users.copy``); finalized when the block exits.

        If the block raises, the object is discarded and the whole backup fails.
        """
        ...

    def set_metadata(self, key: str, value: Any) -> None:
        """Backend-specific JSON-serializable facts stored in the manifest (``backend.metadata``)."""
        ...


class ArchiveReader(Protocol):
    """What a backend restores from. Streams are decoded and verified as they are read."""

    metadata: dict[str, Any]  # what the backend stored with set_metadata

    def names(self) -> list[str]:
        """Object names in the order they were finalized."""
        ...

    def counts(self, name: str) -> dict[str, int]: ...

    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        """The object's original bytes. Reading to EOF verifies size and SHA-256 and raises
        :class:`storagectl.errors.IntegrityError` on mismatch (and on a corrupt/truncated stream)."""
        ...


def read_exact(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes of an object stream (fewer only at its end): ``read`` may return less."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


@dataclass(frozen=True)
class BackupOptions:
    parallel: int = 4
    parallel_given: bool = False  # the job set `parallel`: honoured as given, never raised
    pg_bin_dir: Path | None = None  # tools.pg_bin_dir: where PostgreSQL backups take pg_dump from
    selection: Selection = field(default_factory=Selection)  # empty: everything
    head_start: Any = None  # a transfer begun before the backend was opened (storagectl.backup.head_start)


@dataclass(frozen=True)
class OwnershipOptions:
    """``restore --no-owner / --no-privileges / --role NAME``, for kinds that set
    ``restores_owners_and_privileges`` (PostgreSQL: :mod:`storagectl.backends.postgres.roles`)."""

    owners: bool = True  # False: objects belong to the restoring role
    privileges: bool = True  # False: no GRANT/REVOKE, no default privileges
    role: str | None = None  # run the restore as this role; objects belong to it (implies owners=False)

    @property
    def keeps_owners(self) -> bool:
        return self.owners and self.role is None

    @property
    def chosen(self) -> bool:
        return not self.owners or not self.privileges or self.role is not None


@dataclass(frozen=True)
class RestoreOptions:
    parallel: int = 4
    replace_existing: bool = False  # --yes: the target may be non-empty / keys may be replaced
    # Backends that stage a replacement (PostgreSQL --yes over a non-empty database: a new database
    # swapped in; Redis with a staging_db) call this with a backend over the staged data and the
    # RestoreOutcome so far before it goes live; raising keeps the old contents. Others never call
    # it (the caller validates after the restore).
    check_staged: Callable[[Any, RestoreOutcome], None] | None = None
    backup_id: str | None = None  # the backup being restored: a target may hold an unfinished restore of it
    ownership: OwnershipOptions = field(default_factory=OwnershipOptions)
    # Restore only this part of the backup, in place: nothing else in the target is touched (kinds
    # with Backend.selection_fields; empty: the whole backup replaces the target's contents).
    selection: Selection = field(default_factory=Selection)


@dataclass
class ContentSummary:
    """What a backend holds, for `restore --validate`: counts per unit and optional checksums."""

    counts: dict[str, int] = field(default_factory=dict)  # unit -> rows/keys/nodes...
    checksums: dict[str, str] = field(default_factory=dict)  # unit -> content checksum (SQL)

    def units(self) -> Iterator[str]:
        yield from sorted(set(self.counts) | set(self.checksums))

    def only(self, units: Iterable[str]) -> ContentSummary:
        """The part of the summary about ``units``."""
        keep = set(units)
        return ContentSummary({u: n for u, n in self.counts.items() if u in keep},
                              {u: c for u, c in self.checksums.items() if u in keep})


class BackupCapable(Protocol):
    """Implemented by backend kinds that can be backed up and restored."""

    def backup(self, archive: ArchiveWriter, options: BackupOptions) -> None: ...

    def restore(self, archive: ArchiveReader, options: RestoreOptions) -> None: ...

    def is_empty(self) -> bool:
        """True when a restore would overwrite nothing (no user tables / keys / nodes)."""
        ...

    def content_summary(self, like: ContentSummary | None = None) -> ContentSummary:
        """Counts (and for SQL per-table content checksums) of what the backend holds now. ``like``
        is what a backup recorded: checksums are computed the way it computed them (PostgreSQL:
        over the same COPY format per table); backends with one way ignore it."""
        ...


# -- additions (archive layer) -----------------------------------------------------------------
SUMMARY_METADATA_KEY = "content_summary"


def record_summary(archive: ArchiveWriter, summary: ContentSummary) -> None:
    """Store what the backend held *in the backed-up snapshot*, for ``restore --validate``.

    Backends call this inside :meth:`BackupCapable.backup`, computed from the same snapshot they
    archive (not from the live data afterwards), so a restore can be compared with it.
    """
    archive.set_metadata(SUMMARY_METADATA_KEY, {"counts": dict(summary.counts),
                                                "checksums": dict(summary.checksums)})


def recorded_summary(metadata: dict[str, Any]) -> ContentSummary | None:
    """The summary a backend recorded with :func:`record_summary`, if it did."""
    data = metadata.get(SUMMARY_METADATA_KEY)
    if not isinstance(data, dict):
        return None
    return ContentSummary(counts=dict(data.get("counts") or {}), checksums=dict(data.get("checksums") or {}))


@dataclass
class ItemCheck:
    """``restore --validate`` item by item: every item of a unit in the backup compared with the one the
    target holds (Redis: each key's type, value and absolute expiry)."""

    unit: str
    checked: int = 0
    mismatched: dict[str, int] = field(default_factory=dict)  # reason (missing, type, value, expiry) -> items
    examples: list[str] = field(default_factory=list)  # a few mismatching items with their reason
    method: str = ""  # how items were compared, for the note under the table

    @property
    def ok(self) -> bool:
        return not any(self.mismatched.values())

    def add(self, other: ItemCheck, examples: int = 5) -> ItemCheck:
        """This with ``other`` (another part of the same unit: a cluster's other primary) added in."""
        self.checked += other.checked
        for reason, count in other.mismatched.items():
            self.mismatched[reason] = self.mismatched.get(reason, 0) + count
        self.examples = (self.examples + other.examples)[:examples]
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "checked": self.checked, "mismatched": dict(self.mismatched),
                "examples": list(self.examples), "ok": self.ok}


@dataclass
class RestoreOutcome:
    """What :meth:`BackupCapable.restore` may return (returning None means "nothing to add").

    ``skipped`` counts units' items deliberately not restored (e.g. Redis keys whose absolute
    expiry passed between backup and restore); validation expects that many fewer.
    """

    skipped: dict[str, int] = field(default_factory=dict)
    # items restored that may legitimately be gone by the time they are counted (Redis keys whose
    # absolute expiry passes right after their RESTORE): a count up to this much lower still matches
    tolerance: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # A selective restore: what it put into the target, unit by unit (``--validate`` compares the
    # target with this, not with the whole backup). None: the backup's recorded summary.
    expected: ContentSummary | None = None
