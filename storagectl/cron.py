"""Cron expressions: validation and fire times. Pure functions; the clock is passed in.

Expressions have the five classic fields (minute hour day month weekday) or are one of the
``@`` aliases, and are evaluated on the wall clock of the job's timezone. croniter parses them
and walks the wall clock; this module turns wall-clock times into real instants itself, because
croniter's own handling of daylight saving time fires a fixed-time job twice when the clock
falls back (``30 2 * * *`` at 02:30 CEST and again at 02:30 CET in Europe/Berlin).

Daylight saving time follows Vixie cron and cronie (cron(8): "If the time has moved forwards,
those jobs which would have run in the time that was skipped will be run soon after the
change. Conversely, if the time has moved backwards by less than 3 hours, those jobs that fall
into the repeated time will not be re-run. Only jobs that run at a particular time (not
specified as @hourly, nor with '*' in the hour or minute specifier) are affected."):

* A **fixed-time** schedule — neither the minute nor the hour field starts with ``*`` (so
  ``30 2 * * *``, ``0 3 1 * *``, ``@daily``) — fires once per matching wall-clock time:

  - a time the clock skips (spring forward) fires at the first instant after the gap:
    ``30 2 * * *`` in Europe/Berlin on 2025-03-30 fires at 03:00 CEST; several skipped times,
    or a skipped time and a time right after the gap, give one fire, not several;
  - a time the clock repeats (fall back) fires on its first pass only: 02:30 CEST on
    2025-10-26, not again at 02:30 CET.

* A **wildcard** schedule — the minute or the hour field starts with ``*`` (``*/15 * * * *``,
  ``0 * * * *``, ``@hourly``) — follows the clock as it runs: skipped times do not fire and
  repeated times fire on both passes, so an hourly job fires every real hour, 23 times on the
  spring-forward day and 25 on the fall-back day.

Fire times are returned as aware datetimes in the job's timezone. Compare them, and add or
subtract durations, only after ``astimezone(UTC)``: Python does both on the wall clock when two
datetimes share a zone, so 02:30 CEST and 02:30 CET compare equal, and 03:00 CEST minus one
second is 02:59:59, a time that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# A past fire is looked for this far back at most; 29 February can be 8 years apart (2096→2104).
_LOOKBACK_LIMIT = timedelta(days=366 * 12)
_FIRST_LOOKBACK = timedelta(hours=2)


def normalize_cron(expression: str) -> str:
    """The 5-field form of a cron expression or alias."""
    expression = " ".join(expression.split())
    return ALIASES.get(expression.lower(), expression)


def validate_cron(expression: str) -> str:
    """Return the expression if it is a valid 5-field cron or alias, else raise ValueError."""
    from croniter import CroniterBadDateError, croniter

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
    if any(_is_random(field) for field in fields):
        # croniter's "R" picks a new random time on every parse: a schedule must be reproducible.
        raise ValueError(f"{expression!r} uses R (random), which is not supported in schedules")
    try:
        croniter(normalized, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(
            f"{expression!r} never fires: no date matches its day and month fields "
            "(such as 30 February)"
        ) from None
    return expression


def next_fire_times(expression: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, as aware datetimes in ``timezone``.

    See the module docstring for daylight saving time.
    """
    return list(islice(_iter_fire_times(expression, timezone, after), count))


def fires_between(
    expression: str, timezone: str, start: datetime, end: datetime
) -> list[datetime]:
    """Every fire time in ``(start, end]``, oldest first, as aware datetimes in ``timezone``.

    The interval is open at ``start`` and closed at ``end`` so that a scheduler that last looked
    at ``start`` and looks again at ``end`` sees each fire exactly once. Empty when ``end`` is not
    after ``start`` (a clock that went backwards has missed nothing). Every fire is listed: bound
    the window of a catch-up over a long outage on a dense schedule.
    """
    _require_aware(end, "end")
    end_utc = end.astimezone(UTC)
    fires = []
    for fire in _iter_fire_times(expression, timezone, start):
        # In UTC: datetimes sharing a zone compare by wall clock, blind to the repeated hour.
        if fire.astimezone(UTC) > end_utc:
            break
        fires.append(fire)
    return fires


def latest_fire_at_or_before(expression: str, timezone: str, at: datetime) -> datetime | None:
    """The last fire time at or before ``at``, in ``timezone``; None if there is none in 12 years.

    A scheduler compares it with the last run it recorded to detect a missed fire.
    """
    _require_aware(at, "at")
    validate_cron(expression)
    at_utc = at.astimezone(UTC)
    lookback = _FIRST_LOOKBACK
    while True:
        latest = None
        # Widen the window until it holds a fire, so dense schedules stay cheap to search.
        for fire in _iter_fire_times(expression, timezone, at_utc - lookback):
            if fire.astimezone(UTC) > at_utc:
                break
            latest = fire
        if latest is not None or lookback >= _LOOKBACK_LIMIT:
            return latest
        lookback = min(lookback * 4, _LOOKBACK_LIMIT)


def is_wildcard_schedule(expression: str) -> bool:
    """Whether the schedule follows the running clock across DST changes (see module docstring)."""
    minute, hour = normalize_cron(expression).split(" ")[:2]
    return minute.startswith("*") or hour.startswith("*")


def _iter_fire_times(expression: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after``, oldest first, in ``timezone``; endless."""
    _require_aware(after, "after")
    validate_cron(expression)
    zone = _zone(timezone)
    after_utc = after.astimezone(UTC)
    for instant in _instants(expression, zone, _first_wall_time(after_utc, zone)):
        if instant > after_utc:
            yield instant.astimezone(zone)


def _first_wall_time(after_utc: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time early enough that no fire after ``after_utc`` has an earlier one.

    Normally the wall time of ``after`` itself; when the clock falls back within the next day,
    earlier by the size of the change, because the second pass of the repeated hour has wall
    times before the wall time of ``after`` but instants after it.
    """
    offset_now = after_utc.astimezone(zone).utcoffset()
    offset_later = (after_utc + timedelta(days=1)).astimezone(zone).utcoffset()
    fall_back = max(offset_now - offset_later, timedelta(0))
    return (after_utc + offset_now).replace(tzinfo=None) - fall_back


def _instants(expression: str, zone: ZoneInfo, first_wall: datetime) -> Iterator[datetime]:
    """UTC instants of the schedule's wall-clock times after ``first_wall``, in order, deduplicated.

    Wall times map to instants in order, except the second pass of a repeated hour: those
    instants wait in ``second_pass`` until an instant later than them is emitted.
    """
    from croniter import CroniterBadDateError, croniter

    follow_clock = is_wildcard_schedule(expression)
    walls = croniter(normalize_cron(expression), first_wall)
    second_pass: list[datetime] = []
    last: datetime | None = None
    while True:
        try:
            wall = walls.get_next(datetime)
        except CroniterBadDateError:
            return
        first, second = _wall_to_instants(wall, zone, follow_clock)
        if first is None:  # a wall time the clock skipped, on a schedule that follows the clock
            continue
        for instant in [*_pop_earlier(second_pass, first), first]:
            if last is None or instant > last:
                last = instant
                yield instant
        if second is not None:
            second_pass.append(second)


def _pop_earlier(pending: list[datetime], limit: datetime) -> list[datetime]:
    """Remove and return the pending instants before ``limit``, oldest first."""
    ready = sorted(instant for instant in pending if instant < limit)
    pending[:] = [instant for instant in pending if instant >= limit]
    return ready


def _wall_to_instants(
    wall: datetime, zone: ZoneInfo, follow_clock: bool
) -> tuple[datetime | None, datetime | None]:
    """The instant(s) at which wall-clock time ``wall`` fires: (first pass, second pass)."""
    # zoneinfo reads fold=0 with the offset before a transition and fold=1 with the one after.
    before = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if before == after:
        return before, None
    if before < after:  # the clock fell back: this wall time happens twice
        return before, (after if follow_clock else None)
    # The clock sprang forward over this wall time: with the offset after the change it reads
    # as an instant before the change, with the one before as an instant after it.
    return (None if follow_clock else _transition_between(after, before, zone)), None


def _transition_between(earlier: datetime, later: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in ``(earlier, later]`` with ``later``'s UTC offset (to the second)."""
    target = later.astimezone(zone).utcoffset()
    low, high = earlier, later
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {timezone!r}; use an IANA name such as Europe/Berlin"
        ) from None


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got {moment.isoformat()})")


def _is_random(field: str) -> bool:
    return any(token.upper() == "R" for token in re.split(r"[,/\-()]", field))
