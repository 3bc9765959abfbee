"""Retention planning: restic's forget semantics plus storagectl's safety rules, clock injected."""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storagectl.config.models import RetentionPolicy
from storagectl.retention import (
    BackupRef,
    RetentionDecision,
    describe_policy,
    format_duration,
    plan_retention,
)

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
DAY = 86400.0
CALENDAR_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def complete(id_: str, started_at: datetime | str) -> BackupRef:
    when = utc(started_at) if isinstance(started_at, str) else started_at
    return BackupRef(id=id_, started_at=when, complete=True)


def partial(id_: str, started_at: str, in_progress: bool = False) -> BackupRef:
    return BackupRef(id=id_, started_at=utc(started_at), complete=False, in_progress=in_progress)


def kept_ids(decisions: Sequence[RetentionDecision]) -> list[str]:
    return [decision.backup.id for decision in decisions if decision.keep]


def reasons_by_id(decisions: Sequence[RetentionDecision]) -> dict[str, tuple[str, ...]]:
    return {decision.backup.id: decision.reasons for decision in decisions}


def apply_plan(
    backups: Sequence[BackupRef], decisions: Sequence[RetentionDecision]
) -> list[BackupRef]:
    removed = {decision.backup.id for decision in decisions if not decision.keep}
    return [backup for backup in backups if backup.id not in removed]


# -- restic's own documented examples ------------------------------------------------------------

# restic manual, "Removing snapshots according to a policy": one backup every Sunday for 12 weeks.
RESTIC_SUNDAYS = [
    ("0a1f9759", "2019-09-01 11:00:00"),
    ("46cfe4d5", "2019-09-08 11:00:00"),
    ("f6b1f037", "2019-09-15 11:00:00"),
    ("eb430a5d", "2019-09-22 11:00:00"),
    ("8cf1cb9a", "2019-09-29 11:00:00"),
    ("5d33b116", "2019-10-06 11:00:00"),
    ("b9553125", "2019-10-13 11:00:00"),
    ("e1a7b58b", "2019-10-20 11:00:00"),
    ("8f8018c0", "2019-10-27 11:00:00"),
    ("59403279", "2019-11-03 11:00:00"),
    ("dfee9fb4", "2019-11-10 11:00:00"),
    ("e1ae2f40", "2019-11-17 11:00:00"),
]


def test_restic_manual_keep_daily_4_keeps_the_last_four_sundays():
    backups = [complete(id_, when) for id_, when in RESTIC_SUNDAYS]
    decisions = plan_retention(backups, RetentionPolicy(keep_daily=4), now=utc("2019-11-20"))

    assert reasons_by_id(decisions) == {
        "e1ae2f40": ("newest", "daily"),
        "dfee9fb4": ("daily",),
        "59403279": ("daily",),
        "8f8018c0": ("daily",),
        **{id_: () for id_, _ in RESTIC_SUNDAYS[:8]},
    }
    assert [decision.action for decision in decisions] == ["keep"] * 4 + ["remove"] * 8


def test_restic_manual_hundred_years_of_daily_backups():
    # The manual: with a daily backup for 100 years, --keep-daily 7 --keep-weekly 5
    # --keep-monthly 12 --keep-yearly 75 keeps 7 daily, 4 more weekly ("the 7 dailies already
    # include 1 weekly"), 12 or 11 monthly and 75 or 74 yearly backups. Ending on Sunday
    # 31 December makes every overlap happen: 7 + 4 + 11 + 74.
    last = utc("2023-12-31 03:00")
    backups = [complete(f"b{day:05}", last - timedelta(days=day)) for day in range(36525)]
    policy = RetentionPolicy(keep_daily=7, keep_weekly=5, keep_monthly=12, keep_yearly=75)

    decisions = plan_retention(backups, policy, now=last + timedelta(hours=1))

    kept = [decision for decision in decisions if decision.keep]
    assert len(kept) == 7 + 4 + 11 + 74
    for rule, total in (("daily", 7), ("weekly", 5), ("monthly", 12), ("yearly", 75)):
        assert sum(rule in decision.reasons for decision in kept) == total
    assert kept[0].reasons == ("newest", "daily", "weekly", "monthly", "yearly")
    assert kept[-1].backup.started_at == utc("1949-12-31 03:00")
    assert kept[-1].reasons == ("yearly",)


# -- hand-checked calendar rules -------------------------------------------------------------------


def test_every_rule_that_keeps_a_backup_is_listed():
    backups = [
        complete("a", "2025-01-08 10:00"),  # Wednesday, ISO week 2025-W02
        complete("b", "2025-01-08 09:00"),
        complete("c", "2025-01-07 22:00"),
        complete("d", "2025-01-07 08:00"),
        complete("e", "2025-01-05 20:00"),  # Sunday, 2025-W01
        complete("f", "2025-01-05 10:00"),
        complete("g", "2024-12-29 12:00"),  # Sunday, 2024-W52
    ]
    policy = RetentionPolicy(keep_last=2, keep_daily=3, keep_weekly=3, keep_monthly=2)

    decisions = plan_retention(backups, policy, now=utc("2025-01-08 12:00"))

    assert reasons_by_id(decisions) == {
        "a": ("newest", "last", "daily", "weekly", "monthly"),
        "b": ("last",),
        "c": ("daily",),
        "d": (),
        "e": ("daily", "weekly"),
        "f": (),
        "g": ("weekly", "monthly"),
    }


def test_buckets_count_only_periods_that_have_backups_not_periods_before_now():
    # Three backups months apart: keep_daily=2 keeps two of them, however old they are.
    backups = [
        complete("new", "2024-06-01 12:00"),
        complete("mid", "2024-03-01 12:00"),
        complete("old", "2023-01-01 12:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_daily=2), now=utc("2025-06-01"))
    assert kept_ids(decisions) == ["new", "mid"]


def test_rule_with_count_left_also_keeps_the_oldest_backup():
    # restic >= 0.17: "If there are not enough snapshots to keep one for each duration related
    # --keep-{within-,}* option, the oldest snapshot is kept additionally and marked as oldest".
    backups = [
        complete("d3-late", "2025-01-03 20:00"),
        complete("d3-early", "2025-01-03 08:00"),
        complete("d2-late", "2025-01-02 20:00"),
        complete("d2-early", "2025-01-02 08:00"),
        complete("d1-late", "2025-01-01 20:00"),
        complete("d1-early", "2025-01-01 08:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_daily=5), now=utc("2025-01-04"))

    assert reasons_by_id(decisions) == {
        "d3-late": ("newest", "daily"),
        "d3-early": (),
        "d2-late": ("daily",),
        "d2-early": (),
        "d1-late": ("daily",),
        "d1-early": ("oldest daily",),
    }


def test_oldest_is_not_kept_once_the_count_is_used_up():
    backups = [
        complete("d2", "2025-01-02 20:00"),
        complete("d1-late", "2025-01-01 20:00"),
        complete("d1-early", "2025-01-01 08:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_daily=2), now=utc("2025-01-04"))
    assert kept_ids(decisions) == ["d2", "d1-late"]


def test_weeks_are_iso_weeks_across_the_year_boundary():
    backups = [
        complete("mon-w02", "2025-01-06 12:00"),
        complete("sun-w01", "2025-01-05 12:00"),
        complete("mon-w01", "2024-12-30 12:00"),  # ISO week 1 of 2025 starts in December
        complete("sun-w52", "2024-12-29 12:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_weekly=3), now=utc("2025-01-07"))
    assert kept_ids(decisions) == ["mon-w02", "sun-w01", "sun-w52"]


def test_monthly_and_yearly_buckets():
    backups = [
        complete("2025-02", "2025-02-10 12:00"),
        complete("2025-01-late", "2025-01-31 12:00"),
        complete("2025-01-early", "2025-01-01 12:00"),
        complete("2024-12", "2024-12-31 23:00"),
        complete("2023-06", "2023-06-01 12:00"),
    ]
    now = utc("2025-03-01")
    monthly = plan_retention(backups, RetentionPolicy(keep_monthly=3), now=now)
    yearly = plan_retention(backups, RetentionPolicy(keep_yearly=2), now=now)
    assert kept_ids(monthly) == ["2025-02", "2025-01-late", "2024-12"]
    assert kept_ids(yearly) == ["2025-02", "2024-12"]


def test_keep_hourly():
    backups = [complete(f"m{minute:02}", f"2025-01-01 10:{minute:02}") for minute in (50, 20)]
    backups += [complete(f"h{hour:02}", f"2025-01-01 {hour:02}:30") for hour in (9, 8, 7)]
    decisions = plan_retention(backups, RetentionPolicy(keep_hourly=3), now=utc("2025-01-02"))
    assert kept_ids(decisions) == ["m50", "h09", "h08"]


def test_periods_are_taken_in_the_given_timezone():
    backups = [
        complete("jan2-0030z", "2025-01-02 00:30"),
        complete("jan1-2330z", "2025-01-01 23:30"),
        complete("jan1-2230z", "2025-01-01 22:30"),
    ]
    policy = RetentionPolicy(keep_daily=2)
    now = utc("2025-01-02 06:00")

    in_utc = plan_retention(backups, policy, now)
    # In New York (UTC-5) all three are on 1 January: one day, so the oldest is kept as well.
    in_new_york = plan_retention(backups, policy, now, tz=NEW_YORK)

    assert reasons_by_id(in_utc) == {
        "jan2-0030z": ("newest", "daily"),
        "jan1-2330z": ("daily",),
        "jan1-2230z": (),
    }
    assert reasons_by_id(in_new_york) == {
        "jan2-0030z": ("newest", "daily"),
        "jan1-2330z": (),
        "jan1-2230z": ("oldest daily",),
    }


def test_repeated_hour_at_fall_back_is_one_hourly_period():
    # 02:00-02:59 happens twice in Berlin on 2025-10-26; like restic (local wall-clock hour)
    # both passes are the same hourly period.
    first_pass = utc("2025-10-26 00:00")  # 02:00 CEST
    backups = [complete(f"b{n}", first_pass + timedelta(minutes=30 * n)) for n in range(4)]
    decisions = plan_retention(
        backups, RetentionPolicy(keep_hourly=1), now=utc("2025-10-26 03:00"), tz=BERLIN
    )
    assert kept_ids(decisions) == ["b3"]


# -- keep_within -------------------------------------------------------------------------------


def test_keep_within_is_measured_from_the_newest_backup_not_from_now():
    backups = [complete(f"jan{day:02}", f"2025-01-{day:02} 12:00") for day in range(1, 11)]
    # Seven weeks after the last backup: measured from now nothing would be within 3 days.
    decisions = plan_retention(backups, RetentionPolicy(keep_within=3 * DAY), now=utc("2025-03-01"))

    # Cut-off is 2025-01-07 12:00 and restic keeps only backups strictly after it.
    assert reasons_by_id(decisions) == {
        "jan10": ("newest", "within 3d"),
        "jan09": ("within 3d",),
        "jan08": ("within 3d",),
        **{f"jan{day:02}": () for day in range(1, 8)},
    }


def test_keep_within_ignores_backups_in_the_future_as_anchor_and_keeps_them():
    backups = [
        complete("skewed", "2025-01-20 12:00"),
        complete("jan10", "2025-01-10 12:00"),
        complete("jan09", "2025-01-09 12:00"),
        complete("jan08", "2025-01-08 12:00"),
    ]
    decisions = plan_retention(
        backups, RetentionPolicy(keep_within=2 * DAY), now=utc("2025-01-10 13:00")
    )
    assert reasons_by_id(decisions) == {
        "skewed": ("newest", "within 2d"),
        "jan10": ("within 2d",),
        "jan09": ("within 2d",),
        "jan08": (),
    }


def test_keep_within_with_every_backup_in_the_future_keeps_all():
    backups = [complete("a", "2030-01-02"), complete("b", "2030-01-01")]
    decisions = plan_retention(backups, RetentionPolicy(keep_within=60), now=utc("2025-01-01"))
    assert kept_ids(decisions) == ["a", "b"]


def test_keep_within_combines_with_calendar_rules():
    backups = [complete(f"jan{day:02}", f"2025-01-{day:02} 12:00") for day in range(1, 11)]
    policy = RetentionPolicy(keep_within=1.5 * DAY, keep_weekly=2)
    decisions = plan_retention(backups, policy, now=utc("2025-01-11"))
    assert reasons_by_id(decisions)["jan10"] == ("newest", "within 1d12h", "weekly")
    assert reasons_by_id(decisions)["jan09"] == ("within 1d12h",)
    assert reasons_by_id(decisions)["jan05"] == ("weekly",)  # Sunday, end of ISO week 1
    assert kept_ids(decisions) == ["jan10", "jan09", "jan05"]


# -- storagectl's safety rules ------------------------------------------------------------------


def test_incomplete_backups_never_count_toward_keep_rules():
    backups = [
        partial("young-partial", "2025-01-10 11:00"),
        complete("a", "2025-01-10 10:00"),
        partial("old-partial", "2025-01-09 11:00"),
        complete("b", "2025-01-09 10:00"),
        complete("c", "2025-01-08 10:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_last=2), now=utc("2025-01-10 12:00"))

    assert reasons_by_id(decisions) == {
        "young-partial": ("partial, younger than 1d",),
        "a": ("newest", "last"),
        "old-partial": ("partial",),
        "b": ("last",),
        "c": (),
    }
    assert [d.action for d in decisions] == ["keep", "keep", "remove", "keep", "remove"]


def test_in_progress_backup_is_kept_and_not_counted():
    backups = [
        partial("running", "2025-01-10 11:50", in_progress=True),
        complete("a", "2025-01-10 10:00"),
        complete("b", "2025-01-09 10:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_daily=1), now=utc("2025-01-10 12:00"))
    assert reasons_by_id(decisions) == {
        "running": ("in progress",),
        "a": ("newest", "daily"),
        "b": (),
    }


def test_in_progress_backup_is_kept_however_old():
    backups = [partial("stuck", "2020-01-01", in_progress=True), complete("a", "2025-01-01")]
    decisions = plan_retention(backups, RetentionPolicy(keep_last=1), now=utc("2025-01-02"))
    assert reasons_by_id(decisions) == {"a": ("newest", "last"), "stuck": ("in progress",)}


def test_backup_with_manifest_still_in_progress_counts_as_in_progress():
    backups = [
        BackupRef("finishing", utc("2025-01-10 11:00"), complete=True, in_progress=True),
        complete("a", "2025-01-10 10:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_last=1), now=utc("2025-01-10 12:00"))
    assert reasons_by_id(decisions) == {"finishing": ("in progress",), "a": ("newest", "last")}


@pytest.mark.parametrize(
    ("age", "keep"),
    [(timedelta(hours=23), True), (timedelta(days=1), True), (timedelta(days=1, seconds=1), False)],
)
def test_partial_backup_is_removed_only_once_older_than_partial_after(age, keep):
    now = utc("2025-01-10 12:00")
    backups = [
        complete("good", "2025-01-10 11:00"),
        BackupRef("partial", now - age, complete=False),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_last=1), now=now)
    assert decisions[1].keep is keep
    assert decisions[1].reasons == (("partial, younger than 1d",) if keep else ("partial",))


def test_partial_after_comes_from_the_policy():
    now = utc("2025-01-10 12:00")
    backups = [BackupRef("p", now - timedelta(hours=3), complete=False)]
    short = plan_retention(backups, RetentionPolicy(keep_last=1, partial_after="2h"), now=now)
    long = plan_retention(backups, RetentionPolicy(keep_last=1, partial_after="6h"), now=now)
    assert short[0].reasons == ("partial",)
    assert long[0].reasons == ("partial, younger than 6h",)


def test_newest_complete_backup_is_always_kept_even_behind_newer_partials():
    backups = [
        partial("p1", "2025-01-10 11:00"),
        partial("p2", "2025-01-10 10:00", in_progress=True),
        complete("only-good", "2024-01-01 00:00"),
    ]
    policy = RetentionPolicy(keep_within=3600)
    decisions = plan_retention(backups, policy, now=utc("2025-01-10 12:00"))
    assert reasons_by_id(decisions)["only-good"] == ("newest", "within 1h")


def test_only_incomplete_backups():
    backups = [partial("p", "2025-01-01"), partial("q", "2025-01-10 11:00", in_progress=True)]
    decisions = plan_retention(backups, RetentionPolicy(keep_last=3), now=utc("2025-01-10 12:00"))
    assert reasons_by_id(decisions) == {"q": ("in progress",), "p": ("partial",)}


def test_no_backups_no_decisions():
    assert plan_retention([], RetentionPolicy(keep_last=1), now=utc("2025-01-01")) == []


# -- ordering and input checks ------------------------------------------------------------------


def test_decisions_are_newest_first_with_ties_broken_by_id_whatever_the_input_order():
    backups = [
        complete("x", "2025-01-01 12:00"),
        complete("b", "2025-01-02 12:00"),
        complete("a", "2025-01-02 12:00"),
        complete("y", "2025-01-03 12:00"),
    ]
    policy = RetentionPolicy(keep_last=2)
    first = plan_retention(backups, policy, now=utc("2025-01-04"))
    second = plan_retention(list(reversed(backups)), policy, now=utc("2025-01-04"))
    assert [d.backup.id for d in first] == ["y", "b", "a", "x"]
    assert first == second


def test_started_at_in_other_offsets_is_compared_as_instants():
    plus_two = ZoneInfo("Africa/Cairo")  # UTC+2 all year in 2019
    backups = [
        BackupRef("cairo-1300", datetime(2019, 1, 1, 13, 0, tzinfo=plus_two), complete=True),
        complete("utc-1200", "2019-01-01 12:00"),
    ]
    decisions = plan_retention(backups, RetentionPolicy(keep_last=1), now=utc("2019-01-02"))
    assert kept_ids(decisions) == ["utc-1200"]


def test_times_in_the_repeated_hour_are_compared_as_instants():
    # Same-zone datetimes compare by wall clock in Python: 02:10 CEST would look newer than
    # 02:05 CET, which is 55 minutes later.
    first_pass = datetime(2025, 10, 26, 2, 10, tzinfo=BERLIN, fold=0)
    second_pass = datetime(2025, 10, 26, 2, 5, tzinfo=BERLIN, fold=1)
    backups = [
        BackupRef("cest", first_pass, complete=True),
        BackupRef("cet", second_pass, complete=True),
        BackupRef("partial", datetime(2025, 10, 26, 2, 20, tzinfo=BERLIN, fold=0), complete=False),
    ]
    now = datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN, fold=1)  # 70 minutes after "partial"

    decisions = plan_retention(
        backups, RetentionPolicy(keep_last=1, partial_after="1h"), now, tz=BERLIN
    )

    assert reasons_by_id(decisions) == {
        "cet": ("newest", "last"),
        "partial": ("partial",),
        "cest": (),
    }
    assert [d.backup.id for d in decisions] == ["cet", "partial", "cest"]


def test_naive_datetimes_are_rejected():
    backups = [BackupRef("naive", datetime(2025, 1, 1), complete=True)]
    with pytest.raises(ValueError, match="backup naive: started_at must be timezone-aware"):
        plan_retention(backups, RetentionPolicy(keep_last=1), now=utc("2025-01-02"))
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        plan_retention([], RetentionPolicy(keep_last=1), now=datetime(2025, 1, 2))


def test_duplicate_ids_are_rejected():
    backups = [complete("same", "2025-01-01"), complete("same", "2025-01-02")]
    with pytest.raises(ValueError, match="duplicate backup ids: same"):
        plan_retention(backups, RetentionPolicy(keep_last=1), now=utc("2025-01-03"))


# -- describe_policy ---------------------------------------------------------------------------


def test_describe_policy():
    policy = RetentionPolicy(
        keep_last=3, keep_daily=7, keep_weekly=4, keep_within="2d", partial_after="12h"
    )
    assert describe_policy(policy) == (
        "keep 3 last, 7 daily and 4 weekly backups and all backups within 2d of the newest, "
        "and always the newest complete one; remove partial backups older than 12h"
    )
    assert describe_policy(RetentionPolicy(keep_monthly=12)) == (
        "keep 12 monthly backups, and always the newest complete one; "
        "remove partial backups older than 1d"
    )
    assert describe_policy(RetentionPolicy(keep_within=90)).startswith(
        "keep all backups within 1m30s of the newest,"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (90, "1m30s"), (3600, "1h"), (86400, "1d"), (90061, "1d1h1m1s"),
     (604800, "7d"), (0.5, "0.5s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# -- generated histories -------------------------------------------------------------------------


@pytest.mark.parametrize("tz", [UTC, BERLIN, NEW_YORK], ids=str)
def test_keep_daily_7_over_30_days_of_hourly_backups(tz):
    # 30 days around the March DST change in both zones, one backup an hour.
    start = utc("2025-03-01 00:17")
    backups = [complete(f"h{n:04}", start + timedelta(hours=n)) for n in range(30 * 24)]
    decisions = plan_retention(backups, RetentionPolicy(keep_daily=7), now=utc("2025-04-01"), tz=tz)

    kept = [d.backup for d in decisions if d.keep]
    kept_days = [backup.started_at.astimezone(tz).date() for backup in kept]
    newest_of_day = {}
    for backup in backups:
        day = backup.started_at.astimezone(tz).date()
        newest_of_day[day] = max(newest_of_day.get(day, backup), backup, key=lambda b: b.started_at)
    assert len(kept) == 7
    assert len(set(kept_days)) == 7
    assert kept_days == sorted(newest_of_day, reverse=True)[:7]
    assert all(newest_of_day[day] == backup for day, backup in zip(kept_days, kept, strict=True))


def random_history(rng: random.Random, size: int) -> tuple[list[BackupRef], datetime]:
    moment = utc("2020-01-01") + timedelta(days=rng.uniform(0, 1500))
    backups = []
    for n in range(size):
        moment -= timedelta(seconds=rng.choice([300, 3600, 3 * 3600, DAY, 3 * DAY, 9 * DAY]))
        moment -= timedelta(seconds=rng.randrange(0, 3600))
        kind = rng.random()
        backups.append(
            BackupRef(f"b{n:04}", moment, complete=kind > 0.1, in_progress=kind < 0.03)
        )
    rng.shuffle(backups)
    newest = max(backup.started_at for backup in backups)
    return backups, newest + timedelta(seconds=rng.uniform(-DAY, 5 * DAY))


def random_policy(rng: random.Random) -> RetentionPolicy:
    fields = {}
    for rule in CALENDAR_RULES:
        if rng.random() < 0.5:
            fields[f"keep_{rule}"] = rng.randint(1, 40)
    if rng.random() < 0.4 or not fields:
        fields["keep_within"] = rng.uniform(600, 60 * DAY)
    fields["partial_after"] = rng.choice([3600, DAY, 7 * DAY])
    return RetentionPolicy(**fields)


def bucket_key(rule: str, local: datetime, position: int) -> Hashable:
    return {
        "last": position,
        "hourly": (local.year, local.month, local.day, local.hour),
        "daily": local.date(),
        "weekly": local.isocalendar()[:2],
        "monthly": (local.year, local.month),
        "yearly": local.year,
    }[rule]


def expected_by_rule(
    rule: str, count: int, counted: list[BackupRef], tz: ZoneInfo
) -> set[str]:
    """An independent statement of restic's rule: the newest backup of each of the ``count``
    newest periods, plus the oldest backup when there are fewer periods than ``count``."""
    newest_of_period: dict[Hashable, str] = {}
    for position, backup in enumerate(counted):
        key = bucket_key(rule, backup.started_at.astimezone(tz), position)
        newest_of_period.setdefault(key, backup.id)
    expected = set(list(newest_of_period.values())[:count])
    if counted and len(newest_of_period) < count:
        expected.add(counted[-1].id)
    return expected


def expected_within(within: float, counted: list[BackupRef], now: datetime) -> set[str]:
    past = [backup.started_at for backup in counted if backup.started_at < now]
    if not past:
        return {backup.id for backup in counted}
    cutoff = max(past) - timedelta(seconds=within)
    return {backup.id for backup in counted if backup.started_at > cutoff}


@pytest.mark.parametrize("seed", range(40))
def test_generated_histories_follow_restic_and_the_safety_rules(seed):
    rng = random.Random(seed)
    backups, now = random_history(rng, rng.randint(150, 400))
    policy = random_policy(rng)
    tz = rng.choice([UTC, BERLIN, NEW_YORK])

    decisions = plan_retention(backups, policy, now, tz)

    assert len(decisions) == len(backups)
    assert {d.backup.id for d in decisions} == {b.id for b in backups}
    times = [d.backup.started_at for d in decisions]
    assert times == sorted(times, reverse=True)

    counted = [d.backup for d in decisions if d.backup.complete and not d.backup.in_progress]
    by_id = {d.backup.id: d for d in decisions}
    if counted:
        assert by_id[counted[0].id].keep and by_id[counted[0].id].reasons[0] == "newest"

    for decision in decisions:
        if decision.backup.in_progress:
            assert decision.reasons == ("in progress",)
        elif not decision.backup.complete:
            assert decision.reasons[0].startswith("partial")
        assert decision.keep == (
            bool(decision.reasons) and decision.reasons != ("partial",)
        )

    for rule in CALENDAR_RULES:
        count = getattr(policy, f"keep_{rule}")
        got = {
            id_ for id_, d in by_id.items() if rule in d.reasons or f"oldest {rule}" in d.reasons
        }
        assert got == (expected_by_rule(rule, count, counted, tz) if count else set()), rule
    if policy.keep_within is not None:
        got = {id_ for id_, d in by_id.items() if any(r.startswith("within") for r in d.reasons)}
        assert got == expected_within(policy.keep_within, counted, now)


@pytest.mark.parametrize("seed", range(40))
def test_applying_a_plan_then_planning_again_removes_nothing(seed):
    rng = random.Random(1000 + seed)
    backups, now = random_history(rng, rng.randint(150, 400))
    policy = random_policy(rng)
    tz = rng.choice([UTC, BERLIN, NEW_YORK])

    survivors = apply_plan(backups, plan_retention(backups, policy, now, tz))
    again = plan_retention(survivors, policy, now, tz)

    assert all(decision.keep for decision in again)
    assert len(again) == len(survivors)


@pytest.mark.parametrize("seed", range(10))
def test_plan_does_not_depend_on_input_order(seed):
    rng = random.Random(2000 + seed)
    backups, now = random_history(rng, 200)
    policy = random_policy(rng)
    shuffled = list(backups)
    rng.shuffle(shuffled)
    assert plan_retention(backups, policy, now, BERLIN) == plan_retention(
        shuffled, policy, now, BERLIN
    )
