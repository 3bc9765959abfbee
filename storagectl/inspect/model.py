"""What `inspect` reports: figures that carry their provenance, one report shape for every kind,
the wall-time budget, and the sampling statistics behind extrapolated figures (pure)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Provenance(StrEnum):
    EXACT = "exact"  # counted or measured in full
    ESTIMATE = "estimate"  # the server's own estimate (``source`` says which), or a lower bound
    SAMPLED = "sampled"  # extrapolated from ``n`` sampled items, within ``error_bound``


@dataclass(frozen=True)
class Figure:
    """One number and how it was obtained. ``unit`` only tells tables how to show it (bytes: IEC);
    JSON carries raw numbers, sizes in bytes (field names ending in ``_bytes``)."""

    value: Any
    provenance: Provenance = Provenance.EXACT
    source: str | None = None
    n: int | None = None
    error_bound: float | None = None
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "provenance": self.provenance.value}
        for name in ("source", "n", "error_bound"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data


def exact(value: Any, unit: str = "", source: str | None = None) -> Figure:
    return Figure(value, Provenance.EXACT, source=source, unit=unit)


def estimate(value: Any, source: str, unit: str = "") -> Figure:
    return Figure(value, Provenance.ESTIMATE, source=source, unit=unit)


def in_bytes(value: Any, provenance: Provenance = Provenance.EXACT, source: str | None = None) -> Figure:
    return Figure(value, provenance, source=source, unit="bytes")


@dataclass
class Report:
    """One backend, one view. ``summary`` holds figures; ``sections`` are named lists of rows (plain
    identity fields plus figures). A report stopped early (budget, key limit, Ctrl-C, an error after
    some data was gathered) says so in ``stopped`` and is still printed."""

    backend: str
    kind: str
    view: str
    server_version: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.stopped is None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "kind": self.kind, "view": self.view,
            "server_version": self.server_version, "complete": self.complete, "stopped": self.stopped,
            "error": self.error, "summary": _plain(self.summary),
            "sections": {name: [_plain(row) for row in rows] for name, rows in self.sections.items()},
            "notes": list(self.notes),
        }


def _plain(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value.to_dict() if isinstance(value, Figure) else value for key, value in mapping.items()}


class BudgetExhausted(Exception):
    """Raised inside a view when the wall-time budget runs out; the report keeps what was gathered."""


@dataclass
class Budget:
    """Wall time for one backend's view (``--budget``); None means unbounded. The clock is injectable."""

    seconds: float | None
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float | None:
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - (self.clock() - self.started))

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def check(self) -> None:
        if self.expired():
            raise BudgetExhausted

    def bounded(self, limit: float) -> float:
        """``limit`` seconds, or less when the budget has less left."""
        left = self.remaining()
        return limit if left is None else min(limit, left)


# -- extrapolating from a sample ----------------------------------------------------------------------
# Error bounds are 4 standard errors: 99.99% if the sampled items are a random sample and the mean is
# near-normal; 3 missed too often on skewed key sizes (README "inspect keys").
Z_BOUND = 4.0


@dataclass
class Tally:
    """Sum and sum of squares of one per-item quantity over the sampled items (0 for items that do not
    belong to the group), enough to extrapolate a group total with its standard error."""

    count: int = 0
    total: int = 0
    squares: int = 0

    def add(self, value: int) -> None:
        self.count += 1
        self.total += value
        self.squares += value * value


def extrapolate(tally_total: float, tally_squares: float, sampled: int, population: int) -> tuple[float, float]:
    """Estimate of the population total of a quantity seen ``tally_total`` times in ``sampled`` items
    drawn without replacement from ``population``, and its error bound (``Z_BOUND`` standard errors,
    finite-population corrected). Exact (bound 0) when everything was sampled."""
    if sampled <= 0:
        return 0.0, float("inf") if population else 0.0
    if sampled >= population:
        return float(tally_total), 0.0
    mean = tally_total / sampled
    variance = max(0.0, tally_squares / sampled - mean * mean) * sampled / max(1, sampled - 1)
    correction = 1.0 - sampled / population
    standard_error = population * math.sqrt(variance / sampled * correction)
    return population * mean, Z_BOUND * standard_error


def scaled(total: int, squares: int, sampled: int, population: int, unit: str = "") -> Figure:
    """A group total as exact (everything seen) or sampled with its error bound."""
    if sampled >= population:
        return Figure(total, Provenance.EXACT, unit=unit)
    value, bound = extrapolate(total, squares, sampled, population)
    return Figure(round(value), Provenance.SAMPLED, n=sampled, error_bound=round(bound, 1), unit=unit)
