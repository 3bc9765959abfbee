"""The real waiter (epoll over the clients' sockets) and the adapter that lets a blocking driver
(SQLite, boto3, the Neo4j driver) take part: each such client runs its operations in its own
thread and signals each finished batch through a pipe the loop waits on."""

from __future__ import annotations

import operator
import os
import queue
import select
import threading
from collections.abc import Callable
from typing import Any

OpResult = list[tuple[int, str | None]]
_FD = operator.itemgetter(0)  # of an epoll event (fd, events)
FD_SETSIZE = 1024  # select() raises ValueError for a descriptor from this on (glibc's fd_set)


class EpollWaiter:
    """Waits on every client's socket at once; the timeout is kept to the microsecond.

    epoll_wait takes whole milliseconds and Python rounds a timeout up to the next one: an open loop
    waiting 30 µs for its next slot slept 1 ms and sent that request (and the ones due meanwhile)
    late, and the lateness went into their corrected latency. A timeout with a part below the
    millisecond is therefore waited in select() on the epoll descriptor itself (readable when a
    client is; select takes microseconds), and the events are then taken without waiting. select()
    takes no descriptor from FD_SETSIZE (1024) on: past that (a thousand clients), whole milliseconds."""

    def __init__(self, clients: list[Any]) -> None:
        self._epoll = select.epoll()
        self._epoll_fd = [self._epoll.fileno()]
        self._selectable = self._epoll_fd[0] < FD_SETSIZE
        self._by_fd: dict[int, Any] = {}
        self._poll = self._epoll.poll
        for client in clients:
            fd = client.fileno()
            self._by_fd[fd] = client
            self._epoll.register(fd, select.EPOLLIN)

    def wait(self, timeout_s: float) -> list[Any]:
        if self._selectable and round(timeout_s * 1_000_000) % 1000:
            select.select(self._epoll_fd, [], [], timeout_s)
            timeout_s = 0.0
        # maps, not a comprehension: no Python frame per wake-up (this runs once per operation)
        return list(map(self._by_fd.__getitem__, map(_FD, self._poll(timeout_s))))

    def close(self) -> None:
        self._epoll.close()


def classify(exc: BaseException) -> str:
    """An error kind for counting: the driver's error code when it has one, else the class name."""
    for attribute in ("sqlstate", "code", "sqlite_errorname"):
        value = getattr(exc, attribute, None)
        if isinstance(value, str) and value:
            return value
    response = getattr(exc, "response", None)  # botocore ClientError
    if isinstance(response, dict) and response.get("Error", {}).get("Code"):
        return str(response["Error"]["Code"])
    return type(exc).__name__


Opener = Callable[[], tuple[Callable[[], None], Callable[[], None]]]


class ThreadClient:
    """Runs a blocking operation ``ops`` times per batch in a worker thread that also opens and
    closes the connection (``open_operation() -> (operation, close)``; SQLite connections belong to
    their thread). Exceptions of operations are counted by :func:`classify` kind, never raised into
    the loop; an exception while opening is raised by the constructor."""

    eager = True

    def __init__(self, open_operation: Opener) -> None:
        self._open_operation = open_operation
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._read_end, False)
        self._work: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._result: OpResult = []
        self._opened: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="bench-client", daemon=True)
        self._thread.start()
        failure = self._opened.get()
        if failure is not None:
            self._thread.join()
            self._close_pipe()
            raise failure

    def fileno(self) -> int:
        return self._read_end

    def send(self, ops: int) -> None:
        self._work.put(ops)

    def collect(self) -> OpResult:
        try:
            os.read(self._read_end, 64)
        except BlockingIOError:
            return []
        return self._result

    def _serve(self) -> None:
        try:
            operation, close = self._open_operation()
        except BaseException as exc:  # noqa: BLE001 - handed to the constructor, raised there
            self._opened.put(exc)
            return
        self._opened.put(None)
        try:
            while (ops := self._work.get()) is not None:
                self._result = _run_batch(operation, ops)
                os.write(self._write_end, b".")
        finally:
            close()

    def close(self) -> None:
        self._work.put(None)
        self._thread.join(timeout=30)
        self._close_pipe()

    def _close_pipe(self) -> None:
        os.close(self._read_end)
        os.close(self._write_end)


def _run_batch(operation: Callable[[], None], ops: int) -> OpResult:
    errors: dict[str, int] = {}
    for _ in range(ops):
        try:
            operation()
        except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
            kind = classify(exc)
            errors[kind] = errors.get(kind, 0) + 1
    failed = sum(errors.values())
    done: OpResult = [(ops - failed, None)] if ops > failed else []
    return done + [(count, kind) for kind, count in errors.items()]
