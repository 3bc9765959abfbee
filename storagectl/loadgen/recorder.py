"""Latency accounting: HDR histograms (the `hdrhistogram` package) per second and in total.

Per operation only a dict counter is bumped (latency in whole microseconds -> count). Closing a
second stays cheap too, as it runs in the load loop, where every millisecond it takes is a millisecond
the answers wait unread (and counted in their latency) and, in an open loop, the schedule's requests
go out late: the second's p50/p99 come from its counts, which are added to the run's (at the HDR
histogram's resolution, so they stay bounded); the HDR histograms of the run are built from those
when asked for, after the run. (Building two HDR histograms per second took 1.5 ms a second in a
closed loop at 3,000 ops/s and 3.9 ms in an open loop at 10,000 ops/s.)
"""

from __future__ import annotations

from collections import _count_elements  # C in CPython (collections has a pure-Python one otherwise)
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: nothing is clamped (redis-benchmark clamps at 3 s)
SIGNIFICANT_FIGURES = 3
NS = 1_000_000_000
NEVER = 1 << 62  # ns: a second that does not end (an int: compared per op, faster than math.inf)
FLUSH_AT = 1024  # pending values: counted by then
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99_9", 99.9))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def histogram_from_counts(counts: dict[int, int]) -> HdrHistogram:
    histogram = new_histogram()
    for value, count in counts.items():
        histogram.record_value(min(max(value, LOWEST_US), HIGHEST_US), count)
    return histogram


SUB_BUCKET_BITS = 11  # 3 significant figures: HDR tells values apart to 1/2048 of their power of two


def add_counts(total: dict[int, int], counts: dict[int, int]) -> None:
    """``counts`` added into ``total``, each value at the HDR histogram's resolution (the lowest value
    it cannot tell apart), which keeps ``total`` bounded (~45,000 keys up to an hour) and changes no
    histogram built from it."""
    get = total.get
    for value, count in counts.items():
        shift = value.bit_length() - SUB_BUCKET_BITS
        if shift > 0:
            value = value >> shift << shift
        total[value] = get(value, 0) + count


def percentiles_of(counts: dict[int, int], percentiles: tuple[float, ...]) -> list[int]:
    """The values (us) at ``percentiles`` (ascending) of a count dict, by the HDR library's rule (the
    smallest value with at least ``round(p/100 * total)`` of the counts at or below it)."""
    total = sum(counts.values())
    wanted = [max(1, int(percentile / 100.0 * total + 0.5)) for percentile in percentiles]
    found: list[int] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        while len(found) < len(wanted) and seen >= wanted[len(found)]:
            found.append(value)
        if len(found) == len(wanted):
            break
    return found


def latency_summary(histogram: HdrHistogram) -> dict[str, float] | None:
    """min, p50 ... p99.9, max and mean in milliseconds; None when nothing was recorded."""
    if histogram.get_total_count() == 0:
        return None
    summary = {"min": histogram.get_min_value() / 1000.0}
    for name, percentile in PERCENTILES:
        summary[name] = histogram.get_value_at_percentile(percentile) / 1000.0
    summary["max"] = histogram.get_max_value() / 1000.0
    summary["mean"] = round(histogram.get_mean_value() / 1000.0, 3)
    return summary


@dataclass
class Second:
    """What completed during one second of the measured run."""

    index: int
    ops: int = 0
    errors: int = 0
    service: dict[int, int] = field(default_factory=dict)  # latency us -> count
    intended: dict[int, int] = field(default_factory=dict)

    def as_dict(self, open_loop: bool) -> dict[str, Any]:
        row: dict[str, Any] = {"second": self.index, "ops": self.ops, "errors": self.errors,
                               "p50_ms": None, "p99_ms": None}
        shown = self.intended if open_loop else self.service
        if shown:
            row["p50_ms"], row["p99_ms"] = (value / 1000.0 for value in percentiles_of(shown, (50.0, 99.0)))
        return row


class Recorder:
    """Collects completions of the measured phase. Times are integer nanoseconds from one clock, and
    completions come in the order of that clock (one engine reads it)."""

    def __init__(self, measure_start_ns: int, open_loop: bool, last_second: int | None = None) -> None:
        self.measure_start_ns = measure_start_ns
        # a timed run's in-flight ops finish just after its end: they count in its last second
        self.last_second = last_second
        self.open_loop = open_loop
        self.ops = 0  # of the closed seconds (all of them after finish())
        self.errors: dict[str, int] = {}
        self._totals: dict[str, dict[int, int]] = {"service": {}, "intended": {}}  # latency us -> count
        self._histograms: dict[str, HdrHistogram] = {}  # built from _totals when asked for
        self.seconds: list[dict[str, Any]] = []
        self.last_completion_ns = measure_start_ns
        self.on_second: Any = None  # callback(second_row) for a live view
        self.keep_seconds = False
        self.kept: list[Second] = []  # with keep_seconds: every closed second, for merging
        self.second_end_ns = NEVER  # when the current second ends: tick() before then does nothing
        # service times (us) of the current second's successful one-op batches, appended by the caller
        # (a list append instead of a record() call per op) and counted into the second by flush()
        self.pending: list[int] = []
        self._start_second(Second(0))

    @property
    def service(self) -> HdrHistogram:
        """Service time (send to answer) of the closed seconds."""
        return self._histogram("service")

    @property
    def intended(self) -> HdrHistogram:
        """Latency from the intended start (open loop) of the closed seconds."""
        return self._histogram("intended")

    def _histogram(self, name: str) -> HdrHistogram:
        if name not in self._histograms:
            self._histograms[name] = histogram_from_counts(self._totals[name])
        return self._histograms[name]

    def _start_second(self, second: Second) -> None:
        self._current = second
        self._service, self._intended = second.service, second.intended
        last = self.last_second is not None and second.index >= self.last_second
        self.second_end_ns = NEVER if last else self.measure_start_ns + (second.index + 1) * NS

    def record(self, ops: int, error: str | None, intended_ns: int, sent_ns: int, done_ns: int) -> None:
        """Per op: a dict counter (latency us -> count) of the current second; the second's op count
        is summed from those when it closes."""
        if done_ns >= self.second_end_ns:
            self.tick(done_ns)
        self.last_completion_ns = done_ns
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + ops
            self._current.errors += ops
            return
        service_us = (done_ns - sent_ns) // 1000
        service = self._service
        service[service_us] = service.get(service_us, 0) + ops
        if self.open_loop:
            intended_us = (done_ns - intended_ns) // 1000
            intended = self._intended
            intended[intended_us] = intended.get(intended_us, 0) + ops

    def flush(self) -> None:
        """Count ``pending`` into the current second (in C, ~50 ns a value: with the append, ~70 ns an
        op against ~100 for a dict counter bumped in Python) and empty it. Whoever appends calls tick()
        before appending a completion from or after ``second_end_ns``, and flushes every
        ``FLUSH_AT`` values, so the loop never stops for more than ~0.1 ms to count."""
        _count_elements(self._service, self.pending)
        self.pending.clear()

    def tick(self, now_ns: int) -> None:
        """Close the seconds that have passed, so the live view sees them on time."""
        if now_ns < self.second_end_ns:
            return
        self.flush()
        second = (now_ns - self.measure_start_ns) // NS
        if self.last_second is not None:
            second = min(second, self.last_second)
        self._close(self._current)
        for index in range(self._current.index + 1, second):
            self._close(Second(index))  # a second without completions (a stall) is a row of zeros
        self._start_second(Second(second))

    def _close(self, second: Second) -> None:
        if second.index < 0:
            return
        second.ops = sum(second.service.values()) + second.errors
        self.ops += second.ops
        if self.keep_seconds:
            self.kept.append(second)
        add_counts(self._totals["service"], second.service)
        if self.open_loop:
            add_counts(self._totals["intended"], second.intended)
        self._histograms.clear()
        row = second.as_dict(self.open_loop)
        self.seconds.append(row)
        if self.on_second is not None:
            self.on_second(row)

    def finish(self) -> None:
        """Close the last (partial) second."""
        self.flush()
        if self._current.service or self._current.errors or not self.seconds:
            self._close(self._current)
