"""Which backups to keep: a pure function over backup metadata, with the clock passed in.

The ``keep_*`` rules have exactly the semantics of restic's ``forget`` (``ApplyPolicy`` in
restic's ``internal/restic/snapshot_policy.go`` and its manual, "Removing snapshots according to
a policy"):

* backups are considered newest first, and a backup is kept if any rule keeps it (the rules are
  ORed); its decision lists every rule that kept it, in restic's order: ``within``, then
  ``last``, ``hourly``, ``daily``, ``weekly``, ``monthly``, ``yearly``;
* ``keep_last`` N keeps the N newest;
* ``keep_hourly``/``daily``/``weekly``/``monthly``/``yearly`` N keep the newest backup of each of
  the last N hours/days/ISO weeks (Monday to Sunday)/months/years *that have backups* — not
  the last N calendar periods before now. Periods are wall-clock periods in ``tz`` (restic uses
  the local time of the machine; we use the job's timezone). When the clock falls back, the
  repeated hour is one hourly period, as in restic;
* if a rule still has count left when it reaches the oldest backup, restic keeps that backup
  too ("oldest daily", …) so that a young history is not cut short;
* ``keep_within`` D keeps every backup started strictly after (newest backup − D). The newest
  backup is the newest one started before ``now``: one in the future (a skewed clock) does not
  move the window, and is itself kept. Unlike restic's calendar durations (``1y2m``), D is a
  fixed number of seconds.

storagectl adds safety rules around them:

* backups without a manifest (``complete=False``) or still being written (``in_progress=True``)
  never count toward any ``keep_*`` rule, so they cannot push a good backup out of its slot;
* the newest complete backup is always kept (reason ``newest``);
* an in-progress backup is always kept (reason ``in progress``);
* an incomplete backup is removed (reason ``partial``) only once it is older than
  ``policy.partial_after`` relative to ``now``; until then it is kept, as it may be an upload
  that has not written its manifest yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from storagectl.units import format_duration

if TYPE_CHECKING:  # plain settings from a config-cache hit too: no pydantic at run time
    from storagectl.config.models import RetentionPolicy

UTC = ZoneInfo("UTC")

NEWEST = "newest"
IN_PROGRESS = "in progress"
PARTIAL = "partial"


@dataclass(frozen=True)
class BackupRef:
    """What retention needs to know about one backup.

    ``started_at`` must be timezone-aware; UTC is usual, and any zone is compared as an instant.
    ``complete`` means the backup has its manifest.
    """

    id: str
    started_at: datetime
    complete: bool
    in_progress: bool = False


@dataclass(frozen=True)
class RetentionDecision:
    """Keep or remove one backup, and why.

    ``reasons`` lists every rule that kept a kept backup (``("newest", "last", "daily")``); for a
    removed backup it is ``("partial",)`` when it was a stale partial backup, else empty: no rule
    kept it.
    """

    backup: BackupRef
    keep: bool
    reasons: tuple[str, ...]

    @property
    def action(self) -> str:
        return "keep" if self.keep else "remove"


BucketOf = Callable[[datetime, int], Hashable]

# (reason, policy field, the period a backup falls in given its local time and its position).
# "last" puts every backup in a period of its own, as restic does.
_CALENDAR_RULES: tuple[tuple[str, str, BucketOf], ...] = (
    ("last", "keep_last", lambda local, position: position),
    ("hourly", "keep_hourly", lambda local, _: (local.year, local.month, local.day, local.hour)),
    ("daily", "keep_daily", lambda local, _: (local.year, local.month, local.day)),
    ("weekly", "keep_weekly", lambda local, _: tuple(local.isocalendar())[:2]),
    ("monthly", "keep_monthly", lambda local, _: (local.year, local.month)),
    ("yearly", "keep_yearly", lambda local, _: local.year),
)


def plan_retention(
    backups: Sequence[BackupRef],
    policy: RetentionPolicy,
    now: datetime,
    tz: ZoneInfo = UTC,
) -> list[RetentionDecision]:
    """One decision per backup, newest first (ties broken by id, for a stable plan).

    See the module docstring for the rules. Raises ValueError for naive datetimes or
    duplicate ids.
    """
    _check_inputs(backups, now)
    now = now.astimezone(UTC)
    ordered = sorted(backups, key=lambda backup: (_instant(backup), backup.id), reverse=True)
    counted = [backup for backup in ordered if backup.complete and not backup.in_progress]
    reasons = _restic_reasons(counted, policy, now, tz)
    if counted:
        reasons[counted[0].id].insert(0, NEWEST)
    return [_decide(backup, reasons, policy, now) for backup in ordered]


def describe_policy(policy: RetentionPolicy) -> str:
    """The policy in one line, for plans and logs (like restic's "Applying Policy: …")."""
    counts = [
        f"{getattr(policy, field)} {reason}"
        for reason, field, _ in _CALENDAR_RULES
        if getattr(policy, field) is not None
    ]
    parts = [f"{_join(counts)} backups"] if counts else []
    if policy.keep_within is not None:
        parts.append(f"all backups within {format_duration(policy.keep_within)} of the newest")
    return (
        f"keep {' and '.join(parts)}, and always the newest complete one; "
        f"remove partial backups older than {format_duration(policy.partial_after)}"
    )


def _restic_reasons(
    counted: list[BackupRef], policy: RetentionPolicy, now: datetime, tz: ZoneInfo
) -> dict[str, list[str]]:
    """The keep reasons restic's forget gives each backup (newest first in ``counted``)."""
    reasons: dict[str, list[str]] = {backup.id: [] for backup in counted}
    if policy.keep_within is not None:
        _apply_within(counted, policy.keep_within, now, reasons)
    for reason, field, bucket_of in _CALENDAR_RULES:
        count = getattr(policy, field)
        if count is not None:
            _apply_calendar_rule(counted, reason, count, bucket_of, tz, reasons)
    return reasons


def _apply_within(
    counted: list[BackupRef], within: float, now: datetime, reasons: dict[str, list[str]]
) -> None:
    # restic measures from the newest snapshot that is not in the future, not from now: a job
    # that stopped running keeps its last backups instead of losing them all after D.
    anchor = next((_instant(b) for b in counted if _instant(b) < now), None)
    cutoff = None if anchor is None else anchor - timedelta(seconds=within)
    label = f"within {format_duration(within)}"
    for backup in counted:
        # With every backup in the future restic's anchor is the zero time: all are within.
        if cutoff is None or _instant(backup) > cutoff:
            reasons[backup.id].append(label)


def _apply_calendar_rule(
    counted: list[BackupRef],
    reason: str,
    count: int,
    bucket_of: BucketOf,
    tz: ZoneInfo,
    reasons: dict[str, list[str]],
) -> None:
    """Keep the newest backup of each of the ``count`` newest periods that have backups."""
    previous: Hashable = None
    left = count
    for position, backup in enumerate(counted):
        if left == 0:
            return
        bucket = bucket_of(backup.started_at.astimezone(tz), position)
        if bucket != previous:
            reasons[backup.id].append(reason)
        elif position == len(counted) - 1:
            # restic keeps the oldest backup while the rule has count left, so that a short
            # history is not thinned below what the policy asks for.
            reasons[backup.id].append(f"oldest {reason}")
        else:
            continue
        previous = bucket
        left -= 1


def _decide(
    backup: BackupRef, reasons: dict[str, list[str]], policy: RetentionPolicy, now: datetime
) -> RetentionDecision:
    if backup.in_progress:
        return RetentionDecision(backup, True, (IN_PROGRESS,))
    if not backup.complete:
        if now - _instant(backup) > timedelta(seconds=policy.partial_after):
            return RetentionDecision(backup, False, (PARTIAL,))
        young = f"{PARTIAL}, younger than {format_duration(policy.partial_after)}"
        return RetentionDecision(backup, True, (young,))
    kept_by = tuple(reasons[backup.id])
    return RetentionDecision(backup, bool(kept_by), kept_by)


def _instant(backup: BackupRef) -> datetime:
    # In UTC: Python compares and subtracts datetimes that share a zone by wall clock, which
    # goes wrong in the hour repeated when the clock falls back.
    return backup.started_at.astimezone(UTC)


def _check_inputs(backups: Sequence[BackupRef], now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware (got {now.isoformat()})")
    for backup in backups:
        if backup.started_at.tzinfo is None or backup.started_at.utcoffset() is None:
            raise ValueError(
                f"backup {backup.id}: started_at must be timezone-aware "
                f"(got {backup.started_at.isoformat()})"
            )
    duplicates = sorted(id_ for id_, seen in Counter(b.id for b in backups).items() if seen > 1)
    if duplicates:
        raise ValueError(f"duplicate backup ids: {', '.join(duplicates)}")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
