"""Waits in the main thread that Ctrl-C and SIGTERM can cut short.

Python runs signal handlers in the main thread only, when it next executes bytecode. Linux hands a
signal sent to the process (``kill``, systemd's and Kubernetes' SIGTERM, the terminal's Ctrl-C) to
any thread that does not block it. When a worker thread takes it, a main thread blocked in an
untimed ``join()`` or ``Future.result()`` is not woken: the handler runs when the work ends, which
for the COPY of a big table can be hours. Waiting in short slices lets the handler run within a
slice, so the caller's cleanup (cancelling statements, removing partial objects) starts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

SLICE = 0.25  # seconds: how late a signal taken by a worker thread may be handled

T = TypeVar("T")
R = TypeVar("R")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals_handled(handler: Callable[[int, object], None]) -> Iterator[None]:
    """Ctrl-C and SIGTERM go to ``handler`` inside the block; the handlers before it come back after
    (one installed outside Python, seen as None, as the default)."""
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before if handler_before is not None else signal.SIG_DFL)


def join(thread: threading.Thread) -> None:
    while thread.is_alive():
        thread.join(SLICE)


def result(future: Future[T]) -> T:
    while True:
        try:
            return future.result(timeout=SLICE)
        except FutureTimeout:
            continue


def map_results(executor: Executor, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``list(executor.map(function, items))``, waiting interruptibly."""
    return [result(future) for future in [executor.submit(function, item) for item in items]]
