"""Threads in the archive pipeline: :class:`BackgroundWriter` lets a backend hand data to the
(compressing) archive writer without waiting for it; :class:`ChunkPipe` and friends bridge
push-style writers and pull-style readers for pyrage's streaming functions.

``pyrage.encrypt_io(reader, writer, recipients)`` and ``decrypt_io`` pull from a reader and push to a
writer. The archive pipeline is push-style on backup (backends write) and pull-style on restore
(backends read), so each age stage runs in its own thread, joined to the pipeline by a
:class:`ChunkPipe`: a bounded queue of chunks, which keeps memory constant.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable
from typing import Any

PIPE_DEPTH = 8  # chunks in flight between the two threads (each at most ~1 MiB)


class PipeClosed(Exception):
    """The other side of the pipe gave up; the pipeline is being torn down."""


class ChunkPipe:
    def __init__(self, depth: int = PIPE_DEPTH) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue(depth)
        self.aborted = threading.Event()

    def put(self, chunk: bytes | None) -> None:
        """Hand over ``chunk`` (``None`` = end of stream); waits while the pipe is full."""
        while not self.aborted.is_set():
            try:
                self.chunks.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue
        raise PipeClosed("pipeline aborted")

    def get(self) -> bytes | None:
        while not self.aborted.is_set():
            try:
                return self.chunks.get(timeout=0.1)
            except queue.Empty:
                continue
        raise PipeClosed("pipeline aborted")

    def abort(self) -> None:
        self.aborted.set()


class PipeReader(io.RawIOBase):
    """The reading end of a pipe, as a file object."""

    def __init__(self, pipe: ChunkPipe) -> None:
        self.pipe = pipe
        self.pending = memoryview(b"")
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending and not self.finished:
            chunk = self.pipe.get()
            if chunk is None:
                self.finished = True
            else:
                self.pending = memoryview(chunk)
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count


class PipeWriter(io.RawIOBase):
    """The writing end of a pipe, as a file object."""

    def __init__(self, pipe: ChunkPipe) -> None:
        self.pipe = pipe

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data):
            self.pipe.put(bytes(data))
        return len(data)


class Recording(io.RawIOBase):
    """Wraps a file object and remembers the first exception its read/write raised.

    pyrage turns exceptions raised inside its I/O callbacks into its own error types with only
    the message left; the recorded original is re-raised instead, so e.g. a full disk stays a
    full disk.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.inner.read(len(buffer))
        except BaseException as exc:
            self.error = self.error or exc
            raise
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        try:
            self.inner.write(data)
        except BaseException as exc:
            self.error = self.error or exc
            raise
        return len(data)


class Worker:
    """Runs ``target`` in a daemon thread and keeps what it raised for :meth:`join`."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target,), name=name, daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # handed to the joining thread
            self.error = exc

    def join(self) -> BaseException | None:
        self.thread.join()
        return self.error


class BackgroundWriter:
    """Hands pieces to ``write`` in one helper thread through a small bounded queue (a few MiB).

    A failure in ``write`` stops the producer at its next ``put`` and is re-raised there.
    """

    DEPTH = 4

    def __init__(self, write: Callable[[Any], Any]) -> None:
        self.write = write
        self.pieces: queue.Queue[Any] = queue.Queue(self.DEPTH)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, name="archive-writer", daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self.thread.start()
        return self

    def put(self, piece: Any) -> None:
        if self.error is not None:
            raise self.error
        self.pieces.put(piece)  # never blocks for long: the drain thread consumes until the sentinel

    def __exit__(self, kind: Any, exc: Any, traceback: Any) -> None:
        if exc is not None and self.error is None:
            self.error = exc  # the drain thread skips what is still queued
        self.pieces.put(None)
        self.thread.join()
        if exc is None and self.error is not None:
            raise self.error

    def _drain(self) -> None:
        while (piece := self.pieces.get()) is not None:
            if self.error is not None:
                continue
            try:
                if piece:
                    self.write(piece)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the producer thread
                self.error = exc
