"""A token bucket shared by the threads that spend it: ``--rate`` bounds operations per second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up while idle (default: a tenth of a second's worth).
    :meth:`take` may overdraw: the caller then sleeps until the debt is paid, so over any period the
    tokens taken stay within ``burst + rate * seconds``. Clock and sleep are injected for tests."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 10)
        self.clock, self.sleep = clock, sleep
        self._tokens = 0.0  # no burst at the start: a run of a few seconds would overshoot by its share
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, count: int) -> float:
        """Spend ``count`` tokens, sleeping as long as that overdraws; returns the seconds slept."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate) - count
            self._stamp = now
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            self.sleep(wait)
        return wait
