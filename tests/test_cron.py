"""Cron fire times: aliases, month ends, 29 February, DST in both directions, invalid input."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storagectl.cron import (
    fires_between,
    is_wildcard_schedule,
    latest_fire_at_or_before,
    next_fire_times,
    normalize_cron,
    validate_cron,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
# Daylight saving changes used below.
BERLIN_SPRING = "2025-03-30"  # 02:00 CET -> 03:00 CEST
BERLIN_FALL = "2025-10-26"  # 03:00 CEST -> 02:00 CET
NEW_YORK_SPRING = "2025-03-09"  # 02:00 EST -> 03:00 EDT
NEW_YORK_FALL = "2025-11-02"  # 02:00 EDT -> 01:00 EST


def iso(fires: list[datetime]) -> list[str]:
    """ISO strings with offsets: 02:30 CEST and 02:30 CET compare equal as same-zone datetimes."""
    return [fire.isoformat() for fire in fires]


def local(text: str, zone: ZoneInfo, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["*/15 * * * *", "0 3 * * 1-5", "0 0 L * *", "0 0 29 2 *", "30 2 1,15 * *", "0 0 * JAN,MAR *",
     "@hourly", "@DAILY", "  @weekly ", "@monthly", "@yearly", "@annually", "@midnight"],
)
def test_valid_expressions_are_returned_unchanged(expression):
    assert validate_cron(expression) == expression


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "'61 * * * *' is not a valid cron expression (ranges: minute 0-59"),
        ("0 24 * * *", "is not a valid cron expression"),
        ("0 0 0 * *", "is not a valid cron expression"),
        ("* * * *", "'* * * *' is not a 5-field cron expression (minute hour day month weekday)"),
        ("* * * * * *", "is not a 5-field cron expression"),
        ("garbage", "'garbage' is not a 5-field cron expression"),
        ("", "is not a 5-field cron expression"),
        ("@fortnightly", "or one of @annually, @daily, @hourly, @midnight, @monthly"),
        ("a b c d e", "'a b c d e' is not a valid cron expression"),
        ("0 0 30 2 *", "'0 0 30 2 *' never fires: no date matches its day and month fields"),
        ("0 0 31 4,6 *", "never fires"),
        ("R 3 * * *", "uses R (random), which is not supported"),
    ],
)
def test_invalid_expressions_raise_a_clear_value_error(expression, message):
    with pytest.raises(ValueError) as caught:
        validate_cron(expression)
    assert message in str(caught.value)
    with pytest.raises(ValueError):
        next_fire_times(expression, "UTC", utc("2025-01-01"), 1)


def test_month_names_are_not_mistaken_for_random():
    assert validate_cron("0 0 1 MAR *") == "0 0 1 MAR *"


def test_unknown_timezone_and_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        next_fire_times("@daily", "Mars/Olympus", utc("2025-01-01"), 1)
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        next_fire_times("@daily", "UTC", datetime(2025, 1, 1), 1)
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        latest_fire_at_or_before("@daily", "UTC", datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="end must be timezone-aware"):
        fires_between("@daily", "UTC", utc("2025-01-01"), datetime(2025, 1, 2))


def test_normalize_cron():
    assert normalize_cron("  @Hourly ") == "0 * * * *"
    assert normalize_cron("0   3 * *  *") == "0 3 * * *"


@pytest.mark.parametrize(
    ("expression", "wildcard"),
    [("* * * * *", True), ("*/15 * * * *", True), ("0 * * * *", True), ("@hourly", True),
     ("0 */2 * * *", True), ("30 2 * * *", False), ("0,30 2 * * *", False), ("@daily", False),
     ("0 1-5 * * *", False), ("15 3 * * 1", False)],
)
def test_wildcard_schedules_are_those_with_star_in_minute_or_hour(expression, wildcard):
    assert is_wildcard_schedule(expression) is wildcard


# -- plain schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", ["2025-01-01T11:00:00+00:00", "2025-01-01T12:00:00+00:00"]),
        ("@daily", ["2025-01-02T00:00:00+00:00", "2025-01-03T00:00:00+00:00"]),
        ("@midnight", ["2025-01-02T00:00:00+00:00", "2025-01-03T00:00:00+00:00"]),
        ("@weekly", ["2025-01-05T00:00:00+00:00", "2025-01-12T00:00:00+00:00"]),  # Sundays
        ("@monthly", ["2025-02-01T00:00:00+00:00", "2025-03-01T00:00:00+00:00"]),
        ("@yearly", ["2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
        ("@annually", ["2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
    ],
)
def test_aliases(alias, expected):
    assert iso(next_fire_times(alias, "UTC", utc("2025-01-01 10:15"), 2)) == expected


def test_next_fire_times_are_strictly_after_and_in_the_job_timezone():
    fires = next_fire_times("*/15 * * * *", "Europe/Berlin", utc("2025-01-01 10:15"), 3)
    assert iso(fires) == [
        "2025-01-01T11:30:00+01:00", "2025-01-01T11:45:00+01:00", "2025-01-01T12:00:00+01:00"
    ]
    assert all(fire.tzinfo == BERLIN for fire in fires)


def test_day_31_skips_short_months():
    fires = next_fire_times("0 0 31 * *", "UTC", utc("2025-01-01"), 5)
    assert [fire.date().isoformat() for fire in fires] == [
        "2025-01-31", "2025-03-31", "2025-05-31", "2025-07-31", "2025-08-31"
    ]


def test_l_is_the_last_day_of_every_month():
    fires = next_fire_times("0 0 L * *", "UTC", utc("2024-01-15"), 4)
    assert [fire.date().isoformat() for fire in fires] == [
        "2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"
    ]
    assert next_fire_times("0 0 L 2 *", "UTC", utc("2025-01-01"), 1)[0].day == 28


def test_29_february_waits_for_the_next_leap_year():
    fires = next_fire_times("0 0 29 2 *", "UTC", utc("2025-01-01"), 2)
    assert iso(fires) == ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
    # 2100 is not a leap year: eight years between fires.
    assert [f.year for f in next_fire_times("0 0 29 2 *", "UTC", utc("2096-03-01"), 1)] == [2104]
    assert latest_fire_at_or_before("0 0 29 2 *", "UTC", utc("2103-06-01")) == utc("2096-02-29")


def test_day_of_month_or_day_of_week_like_cron():
    # Both restricted: either matches (the 13th, and every Friday).
    fires = next_fire_times("0 0 13 * 5", "UTC", utc("2025-06-01"), 4)
    assert [fire.date().isoformat() for fire in fires] == [
        "2025-06-06", "2025-06-13", "2025-06-20", "2025-06-27"
    ]


# -- daylight saving time: fixed-time schedules fire once a day ------------------------------------


def test_berlin_spring_forward_fixed_time_fires_at_end_of_gap():
    fires = next_fire_times("30 2 * * *", "Europe/Berlin", local("2025-03-29 00:00", BERLIN), 3)
    assert iso(fires) == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",  # 02:30 does not exist: the first instant after the gap
        "2025-03-31T02:30:00+02:00",
    ]


def test_berlin_fall_back_fixed_time_fires_once_on_the_first_pass():
    fires = next_fire_times("30 2 * * *", "Europe/Berlin", local("2025-10-25 00:00", BERLIN), 3)
    assert iso(fires) == [
        "2025-10-25T02:30:00+02:00",
        "2025-10-26T02:30:00+02:00",  # not again at 02:30+01:00
        "2025-10-27T02:30:00+01:00",
    ]


def test_new_york_spring_forward_fixed_time_fires_at_end_of_gap():
    fires = next_fire_times("30 2 * * *", "America/New_York", local("2025-03-08", NEW_YORK), 3)
    assert iso(fires) == [
        "2025-03-08T02:30:00-05:00", "2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"
    ]


def test_new_york_fall_back_fixed_time_fires_once_on_the_first_pass():
    # In New York the repeated hour is 01:00-01:59.
    fires = next_fire_times("30 1 * * *", "America/New_York", local("2025-11-01", NEW_YORK), 3)
    assert iso(fires) == [
        "2025-11-01T01:30:00-04:00", "2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"
    ]
    # 02:30 is not repeated in New York: once, as on any day.
    fires = next_fire_times("30 2 * * *", "America/New_York", local("2025-11-01", NEW_YORK), 3)
    assert iso(fires)[1] == "2025-11-02T02:30:00-05:00"


def test_skipped_times_collapse_into_one_fire():
    start = local("2025-03-30 00:00", BERLIN)
    assert iso(next_fire_times("0,30 2 * * *", "Europe/Berlin", start, 2)) == [
        "2025-03-30T03:00:00+02:00", "2025-03-31T02:00:00+02:00"
    ]
    assert iso(next_fire_times("0 2,3 * * *", "Europe/Berlin", start, 2)) == [
        "2025-03-30T03:00:00+02:00", "2025-03-31T02:00:00+02:00"
    ]


def test_fixed_time_from_inside_the_repeated_hour():
    first_pass = local("2025-10-26 02:10", BERLIN, fold=0)
    second_pass = local("2025-10-26 02:40", BERLIN, fold=1)
    assert iso(next_fire_times("30 2 * * *", "Europe/Berlin", first_pass, 1)) == [
        "2025-10-26T02:30:00+02:00"
    ]
    assert iso(next_fire_times("30 2 * * *", "Europe/Berlin", second_pass, 1)) == [
        "2025-10-27T02:30:00+01:00"
    ]


@pytest.mark.parametrize("timezone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("expression", ["30 2 * * *", "30 1 * * *", "0 3 * * *", "@daily"])
def test_fixed_daily_schedule_fires_exactly_once_every_day_of_the_year(timezone, expression):
    zone = ZoneInfo(timezone)
    fires = next_fire_times(expression, timezone, local("2025-01-01", zone), 365)
    days = Counter(fire.astimezone(zone).date() for fire in fires)
    assert len(days) == 365 and set(days.values()) == {1}
    instants = [fire.astimezone(UTC) for fire in fires]
    assert instants == sorted(set(instants))


def test_midnight_job_where_the_clock_changes_at_midnight():
    # Chile springs forward from 00:00 to 01:00: @daily fires at 01:00 that day.
    zone = ZoneInfo("America/Santiago")
    fires = next_fire_times("@daily", "America/Santiago", local("2025-09-05 12:00", zone), 3)
    assert iso(fires) == [
        "2025-09-06T00:00:00-04:00", "2025-09-07T01:00:00-03:00", "2025-09-08T00:00:00-03:00"
    ]


def test_half_hour_dst_gap():
    # Lord Howe Island moves its clock by 30 minutes: 02:00 -> 02:30.
    zone = ZoneInfo("Australia/Lord_Howe")
    fixed = next_fire_times("15 2 * * *", "Australia/Lord_Howe", local("2025-10-04 12:00", zone), 2)
    wildcard = next_fire_times(
        "*/15 * * * *", "Australia/Lord_Howe", local("2025-10-05 01:50", zone), 2
    )
    assert iso(fixed) == ["2025-10-05T02:30:00+11:00", "2025-10-06T02:15:00+11:00"]
    assert iso(wildcard) == ["2025-10-05T02:30:00+11:00", "2025-10-05T02:45:00+11:00"]


# -- daylight saving time: wildcard schedules follow the clock --------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "count"),
    [(BERLIN, BERLIN_SPRING, 23), (BERLIN, BERLIN_FALL, 25),
     (NEW_YORK, NEW_YORK_SPRING, 23), (NEW_YORK, NEW_YORK_FALL, 25)],
)
def test_hourly_fires_every_real_hour_across_dst(zone, day, count):
    start = local(day, zone)
    end = local(day, zone) + timedelta(days=1)  # wall-clock midnight of the next day
    fires = fires_between("@hourly", str(zone), start - timedelta(microseconds=1), end)
    fires = [fire for fire in fires if fire.astimezone(UTC) < end.astimezone(UTC)]
    assert len(fires) == count
    instants = [fire.astimezone(UTC) for fire in fires]
    assert {b - a for a, b in zip(instants, instants[1:], strict=False)} == {timedelta(hours=1)}


def test_every_half_hour_fires_on_both_passes_of_the_repeated_hour_in_order():
    fires = next_fire_times("*/30 * * * *", "Europe/Berlin", local("2025-10-26 01:40", BERLIN), 7)
    assert iso(fires) == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T02:30:00+01:00",
        "2025-10-26T03:00:00+01:00",
        "2025-10-26T03:30:00+01:00",
        "2025-10-26T04:00:00+01:00",
    ]


def test_wildcard_from_the_end_of_the_first_pass_continues_with_the_second():
    after = local("2025-10-26 02:50", BERLIN, fold=0)
    assert iso(next_fire_times("*/30 * * * *", "Europe/Berlin", after, 2)) == [
        "2025-10-26T02:00:00+01:00", "2025-10-26T02:30:00+01:00"
    ]


def test_every_half_hour_skips_the_missing_hour():
    fires = next_fire_times("*/30 * * * *", "Europe/Berlin", local("2025-03-30 01:10", BERLIN), 3)
    assert iso(fires) == [
        "2025-03-30T01:30:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-30T03:30:00+02:00"
    ]


def test_wildcard_minute_in_a_fixed_hour_follows_the_clock():
    # Vixie cron: '*' in the minute field makes the job a wildcard job; 02:xx does not exist.
    fires = next_fire_times("*/20 2 * * *", "Europe/Berlin", local("2025-03-29 12:00", BERLIN), 3)
    assert iso(fires) == [
        "2025-03-31T02:00:00+02:00", "2025-03-31T02:20:00+02:00", "2025-03-31T02:40:00+02:00"
    ]


# -- fires_between and latest_fire_at_or_before (missed fires, catch-up) ---------------------------


def test_fires_between_is_open_at_start_and_closed_at_end():
    fires = fires_between("0 * * * *", "UTC", utc("2025-01-01 10:00"), utc("2025-01-01 13:00"))
    assert iso(fires) == [
        "2025-01-01T11:00:00+00:00", "2025-01-01T12:00:00+00:00", "2025-01-01T13:00:00+00:00"
    ]


def test_fires_between_and_latest_compare_instants_in_the_repeated_hour():
    # 02:10 CET (second pass) is after 02:30 CEST (first pass), though its wall clock is earlier.
    end = local("2025-10-26 02:10", BERLIN, fold=1)
    start = local("2025-10-26 00:00", BERLIN)
    assert iso(fires_between("30 2 * * *", "Europe/Berlin", start, end)) == [
        "2025-10-26T02:30:00+02:00"
    ]
    assert iso(fires_between("*/30 * * * *", "Europe/Berlin", local("2025-10-26 01:50", BERLIN),
                             end)) == [
        "2025-10-26T02:00:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-26T02:00:00+01:00"
    ]
    latest = latest_fire_at_or_before("30 * * * *", "Europe/Berlin", end)
    assert latest is not None and latest.isoformat() == "2025-10-26T02:30:00+02:00"


def test_fires_between_with_end_before_start_is_empty():
    assert fires_between("* * * * *", "UTC", utc("2025-01-02"), utc("2025-01-01")) == []


def test_fires_between_across_a_dst_week_finds_one_fire_a_day():
    fires = fires_between(
        "30 2 * * *", "Europe/Berlin", local("2025-03-28 12:00", BERLIN),
        local("2025-04-02 12:00", BERLIN),
    )
    assert iso(fires) == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
        "2025-04-02T02:30:00+02:00",
    ]


def test_latest_fire_at_or_before():
    assert latest_fire_at_or_before("0 3 * * *", "UTC", utc("2025-01-05 03:00")) == utc(
        "2025-01-05 03:00"
    )
    assert latest_fire_at_or_before("0 3 * * *", "UTC", utc("2025-01-05 02:59")) == utc(
        "2025-01-04 03:00"
    )
    assert latest_fire_at_or_before("@monthly", "UTC", utc("2025-03-15")) == utc("2025-03-01")
    assert latest_fire_at_or_before("@yearly", "UTC", utc("2025-03-15")) == utc("2025-01-01")


def test_latest_fire_across_dst():
    second_pass = local("2025-10-26 02:45", BERLIN, fold=1)
    fixed = latest_fire_at_or_before("30 2 * * *", "Europe/Berlin", second_pass)
    wildcard = latest_fire_at_or_before("30 * * * *", "Europe/Berlin", second_pass)
    after_gap = latest_fire_at_or_before(
        "30 2 * * *", "Europe/Berlin", local("2025-03-30 03:10", BERLIN)
    )
    assert fixed is not None and wildcard is not None and after_gap is not None
    assert fixed.isoformat() == "2025-10-26T02:30:00+02:00"
    assert wildcard.isoformat() == "2025-10-26T02:30:00+01:00"
    assert after_gap.isoformat() == "2025-03-30T03:00:00+02:00"


EXPRESSIONS = ["30 2 * * *", "30 1 * * *", "*/20 * * * *", "0 * * * *", "0 2,3 * * 0",
               "15 2 26 10 *", "0 0 L * *", "45 2 * 3,10,11 *"]


@pytest.mark.parametrize("timezone", ["Europe/Berlin", "America/New_York", "UTC"])
@pytest.mark.parametrize("seed", range(3))
def test_next_fires_between_and_latest_agree(timezone, seed):
    rng = random.Random(seed)
    for _ in range(60):
        expression = rng.choice(EXPRESSIONS)
        # Random instants in 2025, half of them within a day of a DST change.
        if rng.random() < 0.5:
            anchor = rng.choice([BERLIN_SPRING, BERLIN_FALL, NEW_YORK_SPRING, NEW_YORK_FALL])
            at = utc(anchor) + timedelta(minutes=rng.randrange(-24 * 60, 24 * 60))
        else:
            at = utc("2025-01-01") + timedelta(minutes=rng.randrange(0, 365 * 24 * 60))
        latest = latest_fire_at_or_before(expression, timezone, at)
        upcoming = next_fire_times(expression, timezone, at, 3)

        assert latest is not None and latest <= at < upcoming[0]
        assert fires_between(expression, timezone, latest, at) == []
        just_before = latest.astimezone(UTC) - timedelta(seconds=1)
        assert iso(next_fire_times(expression, timezone, just_before, 1)) == iso([latest])
        assert iso(fires_between(expression, timezone, at, upcoming[-1])) == iso(upcoming)
        again = latest_fire_at_or_before(expression, timezone, upcoming[0])
        assert again is not None and again.isoformat() == upcoming[0].isoformat()
