"""Health-check values and their pure grading, shared by the backends and :mod:`storagectl.diag`.

It imports nothing of storagectl: every backend declares and grades its checks with these, and
``diag`` runs the backends, so neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Monitoring states, ordered by severity. ``exit_code`` follows the Nagios convention."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[self.value]

    @property
    def severity(self) -> int:
        # UNKNOWN outranks CRITICAL for the exit code, as in the monitoring-plugin convention.
        return self.exit_code


@dataclass(frozen=True)
class CheckSpec:
    """A graded check: ``warning``/``critical`` thresholds, and which direction is bad."""

    name: str
    description: str
    warning: float | None = None
    critical: float | None = None
    higher_is_worse: bool = True
    unit: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    value: Any
    display: str
    detail: str = ""


def grade(value: float | None, warning: float | None, critical: float | None, higher_is_worse: bool = True) -> Status:
    """OK, WARNING or CRITICAL for a measured value against its thresholds."""
    if value is None:
        return Status.UNKNOWN

    def beyond(limit: float | None) -> bool:
        if limit is None:
            return False
        return value >= limit if higher_is_worse else value <= limit

    if beyond(critical):
        return Status.CRITICAL
    if beyond(warning):
        return Status.WARNING
    return Status.OK


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)
