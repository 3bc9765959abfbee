"""The small interface every destination kind implements (after litestream's ReplicaClient).

Keys are ``/``-separated paths relative to the destination root (a directory or a bucket prefix).
A stream opened with :meth:`Destination.put_stream` becomes visible under its key only when the
block exits cleanly; if the block raises, nothing is left under the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol


class WritableStream(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> int: ...


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class UnfinishedUpload:
    """A write that has not become an object: in progress, or left behind by a killed process
    (a local temp file, an S3 multipart upload). :meth:`Destination.list` never shows these."""

    key: str  # the key it is being written to
    last_active: datetime  # when it was last written to
    size: int | None  # bytes held so far
    handle: str  # what abort needs: a temp file's key, an S3 upload id


class Destination(Protocol):
    name: str

    def location(self) -> str:
        """Where the destination is, safe to print (``/var/backups``, ``s3://bucket/prefix/``)."""
        ...

    def put_stream(self, key: str) -> AbstractContextManager[WritableStream]:
        """Write ``key`` all-or-nothing from a stream of bytes."""
        ...

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Read ``key``; raises :class:`storagectl.errors.NotFound` when it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every complete object whose key starts with ``prefix``, in no particular order."""
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Remove ``keys``; a key that is already gone is not an error, a refused delete is."""
        ...

    def exists(self, key: str) -> bool: ...

    def list_unfinished(self, prefix: str = "") -> Iterator[UnfinishedUpload]:
        """Every unfinished write whose key starts with ``prefix``, in no particular order."""
        ...

    def abort_unfinished(self, uploads: Iterable[UnfinishedUpload]) -> None:
        """Discard these unfinished writes; one already gone is not an error, a refused abort is."""
        ...


def check_key(key: str) -> str:
    """Reject keys that could escape the destination root (e.g. from a tampered manifest)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        from storagectl.errors import IntegrityError

        raise IntegrityError(f"invalid object key {key!r}")
    return key
