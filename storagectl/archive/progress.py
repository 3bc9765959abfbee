"""Progress reporting from the core: plain events to a callback; the CLI decides how to show them.

:class:`ProgressModel` folds the events into what a display needs — one overall figure per phase
(backup, verify, restore) with total, percentage, rate and ETA, a few live objects, and a count of
finished ones — at a cost that does not grow with the number of objects. It is pure apart from the
injected clock, and safe to feed from several threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

MAX_LIVE = 3  # live objects a display shows; the others are counted


@dataclass(frozen=True)
class ProgressEvent:
    action: str  # "backup", "restore", "verify"
    stage: Literal["plan", "start", "advance", "finish", "stop"]  # stop: the phase ended unfinished (Ctrl-C, error)
    object: str
    done: int = 0  # original (uncompressed) bytes so far
    total: int | None = None  # bytes expected, when known ("plan": of the whole phase, maybe an estimate)
    stored: int | None = None  # stored bytes, on "finish" of a backup object
    objects: int | None = None  # on "plan": objects expected, when known
    unit: str = "bytes"  # what done/total count, set by "plan" ("keys" for cache invalidate)


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    return None


@dataclass(frozen=True)
class Estimate:
    """What a phase is expected to move: from catalog statistics (backup) or a manifest."""

    bytes: int | None = None
    objects: int | None = None

    def plan(self, action: str) -> ProgressEvent:
        return ProgressEvent(action, "plan", "", total=self.bytes, objects=self.objects)


@dataclass(frozen=True)
class LiveObject:
    name: str
    done: int
    total: int | None


@dataclass(frozen=True)
class PhaseView:
    """One phase as a display shows it; ``total``/``fraction``/``eta`` are None when unknown."""

    action: str
    done: int
    total: int | None
    fraction: float | None
    rate: float  # bytes per second since the phase started
    eta: float | None  # seconds
    elapsed: float
    finished: int
    expected: int | None
    live: list[LiveObject]
    more_live: int  # live objects not in ``live``
    complete: bool
    unit: str = "bytes"


@dataclass
class _Phase:
    action: str
    started: float
    total: int | None = None
    expected: int | None = None
    finished: int = 0
    finished_bytes: int = 0
    active: dict[str, LiveObject] = field(default_factory=dict)
    ended: float | None = None
    stopped: bool = False  # ended unfinished (interrupted, failed): never shown as 100%
    unit: str = "bytes"

    def apply(self, event: ProgressEvent) -> None:
        if event.stage == "finish":
            self.active.pop(event.object, None)
            self.finished += 1
            self.finished_bytes += event.done
        elif event.stage in ("start", "advance"):
            self.active[event.object] = LiveObject(event.object, event.done, event.total)

    def view(self, now: float) -> PhaseView:
        done = self.finished_bytes + sum(item.done for item in self.active.values())
        end = self.ended if self.ended is not None else now
        elapsed = max(0.0, end - self.started)
        rate = done / elapsed if elapsed > 0 else 0.0
        total = max(self.total, done) if self.total else None  # 0: never analyzed, so unknown
        fraction = self._fraction(done, total)
        eta = (total - done) / rate if total is not None and rate > 0 and self.ended is None else None
        expected = max(self.expected, self.finished + len(self.active)) if self.expected is not None else None
        live = list(self.active.values())
        return PhaseView(self.action, done, total, fraction, rate, eta, elapsed, self.finished, expected,
                         live[:MAX_LIVE], max(0, len(live) - MAX_LIVE), self.ended is not None and not self.stopped,
                         self.unit)

    def _fraction(self, done: int, total: int | None) -> float | None:
        if self.ended is not None and not self.stopped:
            return 1.0
        if total is not None:  # an estimate may be short: never show 100% before the phase ends
            return min(done / total, 0.99)
        if self.expected:
            return min(self.finished / self.expected, 0.99)
        return None


class ProgressModel:
    """Events in, :class:`PhaseView` out. A ``plan`` event, or an event of another action than the
    current phase's, starts a new phase; the one before it is then complete."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._phases: list[_Phase] = []
        self._lock = threading.Lock()

    def update(self, event: ProgressEvent) -> None:
        with self._lock:
            phase = self._phase_for(event)
            if event.stage == "plan":
                phase.total, phase.expected, phase.unit = event.total, event.objects, event.unit
            elif event.stage == "stop":
                phase.ended, phase.stopped = self.clock(), True
            else:
                phase.apply(event)

    def _phase_for(self, event: ProgressEvent) -> _Phase:
        current = self._phases[-1] if self._phases else None
        if current is not None and current.action == event.action and current.ended is None and (
                event.stage != "plan" or not (current.finished or current.active)):
            return current
        for earlier in reversed(self._phases):  # a straggler of a phase already replaced
            if earlier.action == event.action and event.stage != "plan":
                return earlier
        now = self.clock()
        if current is not None and current.ended is None:
            current.ended = now
        self._phases.append(_Phase(event.action, now))
        return self._phases[-1]

    def end(self, complete: bool = True) -> None:
        """The work is over: every phase is complete (``complete=False``: it was interrupted, the open
        phases stay at the fraction they reached)."""
        with self._lock:
            now = self.clock()
            for phase in self._phases:
                if phase.ended is None:
                    phase.ended, phase.stopped = now, not complete

    def views(self) -> list[PhaseView]:
        with self._lock:
            now = self.clock()
            return [phase.view(now) for phase in self._phases]


class Throttle:
    """True from ``ready()`` at most once per ``interval`` seconds of the injected clock, the first
    time ``interval`` after construction."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def ready(self) -> bool:
        with self._lock:
            now = self.clock()
            if now - self._last < self.interval:
                return False
            self._last = now
            return True
