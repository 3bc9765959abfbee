"""ArchiveSession: the :class:`~storagectl.archive.api.ArchiveWriter` a backend backs up into."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from storagectl.archive.codec import EncodingSink, HashingWriter
from storagectl.archive.manifest import MANIFEST_NAME, BackupManifest, ObjectEntry, object_key
from storagectl.archive.progress import Estimate, ProgressCallback, ProgressEvent, no_progress
from storagectl.destinations.base import Destination
from storagectl.errors import IntegrityError, OperationFailed


class ArchiveSession:
    """Objects of one backup under ``prefix``; thread-safe, so backends may create objects in parallel."""

    def __init__(self, destination: Destination, prefix: str, *, codec: str = "brotli", level: int = 4,
                 recipients: list[Any] | None = None, progress: ProgressCallback = no_progress,
                 estimate: Estimate | None = None) -> None:
        self.destination = destination
        self.prefix = prefix
        self.codec = codec
        self.level = level
        self.recipients = recipients or []
        self.progress = progress
        self.metadata: dict[str, Any] = {}
        self.entries: list[ObjectEntry] = []
        self._names: set[str] = set()
        self._sequence = 0
        self._lock = threading.Lock()
        progress((estimate or Estimate()).plan("backup"))

    def _reserve(self, name: str) -> str:
        with self._lock:
            if name in self._names:
                raise OperationFailed(f"archive object {name!r} written twice (a bug in the backend)")
            self._names.add(name)
            self._sequence += 1
            return object_key(self.prefix, self._sequence, name, self.codec, bool(self.recipients))

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[EncodingSink]:
        key = self._reserve(name)
        self.progress(ProgressEvent("backup", "start", name))
        on_progress = lambda done: self.progress(ProgressEvent("backup", "advance", name, done))  # noqa: E731
        with self.destination.put_stream(key) as stream:
            stored = HashingWriter(stream)
            sink = EncodingSink(stored, self.codec, self.level, self.recipients, on_progress)
            try:
                yield sink
                sink.finish()
            except BaseException:
                sink.abort()
                raise
        entry = ObjectEntry(name, key, stored.size, stored.sha256.hexdigest(), sink.raw_size, self.codec,
                            "age" if self.recipients else None, dict(sink.counts))
        with self._lock:
            self.entries.append(entry)
        self.progress(ProgressEvent("backup", "finish", name, sink.raw_size, sink.raw_size, stored.size))

    def set_metadata(self, key: str, value: Any) -> None:
        with self._lock:
            self.metadata[key] = value

    def write_manifest(self, manifest: BackupManifest) -> None:
        """The last write of a backup: from here on it exists. Only when every object it names is
        stored with its size, checked just before and again just after (a failed second check
        removes the manifest again): something else (a prune, a delete) may have removed them."""
        self._check_stored(manifest)
        key = self.prefix + MANIFEST_NAME
        with self.destination.put_stream(key) as stream:
            stream.write(manifest.to_json())
        try:
            self._check_stored(manifest)
        except IntegrityError:
            with contextlib.suppress(Exception):  # the missing objects are what the user must see
                self.destination.delete([key])
            raise

    def _check_stored(self, manifest: BackupManifest) -> None:
        stored = {obj.key: obj.size for obj in self.destination.list(self.prefix)}
        missing = [entry for entry in manifest.objects if stored.get(entry.key) != entry.size]
        if missing:
            raise IntegrityError(
                f"backup {manifest.id} failed: {len(missing)} of {len(manifest.objects)} object(s) are missing or "
                f"truncated at destination {self.destination.name!r} (e.g. {missing[0].key}), so it has no "
                "manifest",
                hint="Try: run the backup again; something removed its objects while it ran (a `backup delete`, "
                     "or a prune while this run could not renew its lease for minutes)")

    def discard(self) -> None:
        """Remove whatever this backup wrote; it failed and must not look complete."""
        with contextlib.suppress(Exception):  # the original failure is what the user must see
            self.destination.delete([obj.key for obj in self.destination.list(self.prefix)])
