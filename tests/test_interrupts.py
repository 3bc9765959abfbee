"""A signal that the kernel hands to a worker thread still stops the main thread's wait at once.

Linux delivers a process-directed SIGTERM/SIGINT to any thread; Python runs the handler in the main
thread only. These tests deliver the signal to the worker itself (``pthread_kill``), the case that
left `backup run` waiting for a COPY of 1,000 s after SIGTERM.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from storagectl import interrupts
from storagectl.backends.postgres.jobs import run_jobs

RELEASE_AFTER = 30.0  # seconds: only without the fix does anything wait this long


class Interrupt(BaseException):
    pass


@pytest.fixture
def usr1_interrupts():
    def handler(_signum, _frame):
        raise Interrupt

    previous = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, previous)


class BlockedStatement:
    """A connection whose statement runs until cancelled, or until the watchdog gives up."""

    def __init__(self, signal_after: float = 0.0) -> None:
        self.signal_after = signal_after
        self.released = threading.Event()
        self.released_by: str | None = None
        self.watchdog = threading.Timer(RELEASE_AFTER, self.release, args=("watchdog",))
        self.watchdog.start()

    def release(self, by: str) -> None:
        self.released_by = self.released_by or by
        self.released.set()

    def cancel_safe(self, timeout: float) -> None:
        self.release("cancel")

    def run(self) -> None:
        time.sleep(self.signal_after)  # 0: while the main thread may still start workers; else: in its join
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # the kernel's choice: this worker
        self.released.wait()


@pytest.mark.parametrize("signal_after", [0.0, 0.5])
def test_run_jobs_handles_a_signal_taken_by_a_worker_while_the_statement_runs(usr1_interrupts, signal_after):
    statement = BlockedStatement(signal_after)
    try:
        with pytest.raises(Interrupt):
            run_jobs(["copy big table"], 1, lambda: None, statement, lambda _conn, _job: statement.run())
    finally:
        statement.watchdog.cancel()
    assert statement.released_by == "cancel"  # the interrupt cancelled the statement; it did not end by itself


def test_map_results_handles_a_signal_taken_by_a_worker(usr1_interrupts):
    statement = BlockedStatement()
    with ThreadPoolExecutor(1) as pool:
        try:
            with pytest.raises(Interrupt):
                interrupts.map_results(pool, lambda _item: statement.run(), [1])
        finally:
            handled_first = not statement.released.is_set()
            statement.release("test")
            statement.watchdog.cancel()
    assert handled_first


def test_map_results_keeps_order_and_values():
    with ThreadPoolExecutor(3) as pool:
        assert interrupts.map_results(pool, lambda n: n * n, range(10)) == [n * n for n in range(10)]
