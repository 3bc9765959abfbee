"""Cron expressions: validation and next fire times. Pure functions; the clock is passed in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def normalize_cron(expression: str) -> str:
    """The 5-field form of a cron expression or alias."""
    expression = " ".join(expression.split())
    return ALIASES.get(expression.lower(), expression)


def validate_cron(expression: str) -> str:
    """Return the expression if it is a valid 5-field cron or alias, else raise ValueError."""
    from croniter import croniter

    normalized = normalize_cron(expression)
    fields = normalized.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a 5-field cron expression (minute hour day month weekday) "
            f"or one of {', '.join(sorted(ALIASES))}"
        )
    if not croniter.is_valid(normalized):
        raise ValueError(
            f"{expression!r} is not a valid cron expression "
            "(ranges: minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)"
        )
    return expression


def next_fire_times(expression: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, as aware datetimes in ``timezone``."""
    return list(_iter_fire_times(expression, timezone, after, count))


def _iter_fire_times(expression: str, timezone: str, after: datetime, count: int) -> Iterator[datetime]:
    from croniter import croniter

    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = ZoneInfo(timezone)
    schedule = croniter(normalize_cron(expression), after.astimezone(zone))
    for _ in range(count):
        yield schedule.get_next(datetime).astimezone(zone)
