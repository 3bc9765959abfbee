"""Parallel workers for PostgreSQL backup and restore, one connection each, over jobs that may wait
for other jobs (an index build waits for its table's data, as in ``pg_restore -j``)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from storagectl import interrupts
from storagectl.backends.postgres.tools import kill_spawned
from storagectl.errors import BackendUnavailable, Interrupted, StoragectlError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """``work`` to run; handed out once every job that ``provides`` a key in ``after`` has finished."""

    work: Any
    provides: Hashable | None = None
    after: set[Hashable] = field(default_factory=set)


class JobBoard:
    """Hands out jobs whose prerequisites are done, in the order they were added; thread-safe."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.waiting = list(jobs)
        self.running = 0
        self.stopped = False
        self.providers = Counter(job.provides for job in self.waiting if job.provides is not None)
        unknown = {key for job in self.waiting for key in job.after} - set(self.providers)
        if unknown:
            raise ValueError(f"jobs wait for keys no job provides: {sorted(map(str, unknown))}")
        self.changed = threading.Condition()

    def take(self) -> Job | None:
        """The next runnable job; blocks while only running jobs could unlock one; None when all is done."""
        with self.changed:
            while not self.stopped:
                for index, job in enumerate(self.waiting):
                    if not any(self.providers[key] for key in job.after):
                        self.running += 1
                        return self.waiting.pop(index)
                if not self.running:
                    return None
                self.changed.wait()
            return None

    def finish(self, job: Job) -> None:
        with self.changed:
            self.running -= 1
            if job.provides is not None:
                self.providers[job.provides] -= 1
            self.changed.notify_all()

    def give_back(self, job: Job) -> None:
        """A job taken but not run (its worker could not connect): first in line for the others."""
        with self.changed:
            self.running -= 1
            self.waiting.insert(0, job)
            self.changed.notify_all()

    def stop(self) -> None:
        """After a failure: hand out nothing more."""
        with self.changed:
            self.stopped = True
            self.changed.notify_all()


def run_jobs(jobs: list[Any], workers: int, open_connection: Callable[[], Any], first_connection: Any,
             run: Callable[[Any, Any], None]) -> None:
    """Run ``run(conn, job)`` for every job on ``workers`` threads, each with its own connection.

    ``jobs`` are plain work items or :class:`Job` (with prerequisites). ``first_connection``
    (already open, owned by the caller) serves one thread; the others open theirs when they first
    get a job. A worker that cannot connect (e.g. max_connections reached) hands its job back and
    stops, so the work goes on with fewer workers. The first failure of a job stops the others
    taking new jobs and is re-raised.
    """
    board = JobBoard(job if isinstance(job, Job) else Job(job) for job in jobs)
    failures: list[BaseException] = []
    busy = BusyConnections()

    def drain(conn: Any, job: Job | None) -> None:
        while job is not None:
            with busy.running_on(conn):
                run(conn, job.work)
            board.finish(job)
            job = board.take()

    def worker(index: int) -> None:
        try:
            if index == 0:
                drain(first_connection, board.take())
            elif (job := board.take()) is not None:
                with ExitStack() as stack:
                    try:
                        conn = stack.enter_context(open_connection())
                    except BackendUnavailable as exc:
                        board.give_back(job)
                        log.warning("worker %d could not connect (%s); going on with fewer workers", index,
                                    exc.message)
                        return
                    drain(conn, job)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failures.append(exc)
            board.stop()

    threads = [threading.Thread(target=worker, args=(i,), name=f"pg-worker-{i}") for i in range(workers)]
    try:  # a signal can land while the first workers already run and the others start
        for thread in threads:
            thread.start()
        for thread in threads:
            interrupts.join(thread)
    except BaseException:  # Ctrl-C/SIGTERM lands here, in the main thread: no new jobs, the running
        board.stop()  # statements cancelled (a COPY of a big table could run for hours), and the
        busy.cancel_all()  # workers joined before the caller cleans up behind them
        kill_spawned()  # the psql readers of big tables run their COPY in sessions of their own
        for thread in threads:
            if thread.ident is not None:  # started
                interrupts.join(thread)
        raise
    if failures:
        raise _most_telling(failures)
    if board.waiting:  # only a cycle of prerequisites could leave jobs behind: never report success then
        raise RuntimeError(f"{len(board.waiting)} job(s) were never run: their prerequisites form a cycle")


class BusyConnections:
    """The connections running a job right now, so an interrupt can cancel their statements."""

    def __init__(self) -> None:
        self._running: set[Any] = set()
        self._lock = threading.Lock()
        self._cancelled = False

    @contextmanager
    def running_on(self, conn: Any) -> Iterator[None]:
        with self._lock:
            if self._cancelled:
                raise Interrupted("stopped before this job started")
            self._running.add(conn)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(conn)

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled = True
            running = list(self._running)
        for conn in running:
            try:
                conn.cancel_safe(timeout=5.0)
            except Exception as exc:  # noqa: BLE001 - the worker still ends when its statement does
                log.warning("could not cancel a running statement: %s", exc)


def _most_telling(failures: list[BaseException]) -> BaseException:
    """Prefer a StoragectlError (one clear line) over secondary failures in other threads."""
    for failure in failures:
        if isinstance(failure, StoragectlError):
            return failure
    return failures[0]
