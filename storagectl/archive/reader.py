"""StoredArchive: the :class:`~storagectl.archive.api.ArchiveReader` a backend restores from."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from storagectl.archive.codec import BATCH, DecodedObject, HashingReader, check_stored_bytes
from storagectl.archive.manifest import BackupManifest
from storagectl.archive.progress import Estimate, ProgressCallback, ProgressEvent, no_progress
from storagectl.destinations.base import Destination
from storagectl.errors import IntegrityError, NotFound, UsageError


class StoredArchive:
    """A backup's objects, decoded and verified as they are read. Safe to use from several threads."""

    def __init__(self, destination: Destination, manifest: BackupManifest, identities: list[Any] | None = None,
                 *, action: str = "restore", progress: ProgressCallback = no_progress) -> None:
        self.destination = destination
        self.manifest = manifest
        self.identities = identities or []
        self.metadata: dict[str, Any] = dict(manifest.backend.get("metadata") or {})
        self.action = action
        self.progress = progress
        self._planned = False
        self._plan_lock = threading.Lock()
        if manifest.encryption and not self.identities:
            raise UsageError(f"backup {manifest.id} is encrypted; an age identity is needed to read it",
                             hint="Try: --identity FILE, or encryption.identity_file in the job")

    def names(self) -> list[str]:
        return [entry.name for entry in self.manifest.objects]

    def counts(self, name: str) -> dict[str, int]:
        return dict(self.manifest.object(name).counts)

    def label(self, name: str) -> str:
        return f"backup {self.manifest.id}: object {name!r}"

    def _entry(self, name: str) -> Any:
        try:
            return self.manifest.object(name)
        except KeyError:
            raise NotFound(f"backup {self.manifest.id} has no object {name!r}") from None

    def _announce(self, stored: bool) -> None:
        """The phase's totals, from the manifest, before its first object (not at construction: a
        restore opens its archive before deciding whether anything is read at all)."""
        with self._plan_lock:
            if self._planned:
                return
            self._planned = True
        objects = self.manifest.objects
        size = sum(entry.size if stored else entry.raw_size for entry in objects)
        self.progress(Estimate(size, len(objects)).plan(self.action))

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        entry = self._entry(name)
        self._announce(stored=False)
        label = self.label(name)
        with self._stored(entry.key, label) as source:
            stream = DecodedObject(source, entry, self.identities, label)
            self.progress(ProgressEvent(self.action, "start", name, 0, entry.raw_size))
            try:
                yield _Reporting(stream, lambda done: self.progress(
                    ProgressEvent(self.action, "advance", name, done, entry.raw_size)))
            finally:
                stream.close()
        self.progress(ProgressEvent(self.action, "finish", name, entry.raw_size, entry.raw_size))

    @contextlib.contextmanager
    def _stored(self, key: str, label: str) -> Iterator[Any]:
        try:
            with self.destination.open_read(key) as source:
                yield source
        except NotFound as exc:
            raise IntegrityError(f"{label}: missing from the destination ({key})",
                                 hint="Try: restore an older backup; this one is incomplete") from exc

    def check_stored(self, name: str) -> int:
        """Read object ``name``'s stored bytes and check their size and SHA-256, without decoding
        them (a fraction of the cost of :meth:`verify`); returns the stored size."""
        entry = self._entry(name)
        self._announce(stored=True)
        self.progress(ProgressEvent(self.action, "start", name, 0, entry.size))
        with self._stored(entry.key, self.label(name)) as source:
            check_stored_bytes(HashingReader(source), entry, self.label(name))
        self.progress(ProgressEvent(self.action, "finish", name, entry.size, entry.size))
        return entry.size

    def verify(self, name: str) -> int:
        """Read object ``name`` to the end, which checks size, SHA-256 and decoding; its raw size."""
        with self.open(name) as stream:
            total = 0
            while chunk := stream.read(BATCH):
                total += len(chunk)
        return total


class _Reporting:
    """A read-only stream that reports progress at most once per MiB."""

    def __init__(self, stream: DecodedObject, report: Any) -> None:
        self.stream = stream
        self.report = report
        self.done = 0
        self.reported = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size) if size is not None and size >= 0 else self.stream.readall()
        self._count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        count = self.stream.readinto(buffer)
        self._count(count)
        return count

    def readable(self) -> bool:
        return True

    def _count(self, count: int) -> None:
        self.done += count
        if self.done - self.reported >= BATCH:
            self.reported = self.done
            self.report(self.done)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(BATCH):
            yield chunk
