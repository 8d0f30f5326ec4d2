"""Opening hours: what is valid, when a bank is open, and deadlines that never fall while closed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from locker_wire.opening_hours import (
    MAX_PERIODS_PER_DAY,
    is_open,
    next_deadline,
    open_periods,
    validate_opening_hours,
)

MADRID = "Europe/Madrid"
NEW_YORK = "America/New_York"
WEEKDAYS = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
EVERY_DAY = {day: [["08:00", "20:00"]] for day in WEEKDAYS | {"sat": [], "sun": []}}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold)  # type: ignore[misc]


# Validation -------------------------------------------------------------------------------------


def test_valid_hours_come_back_in_canonical_form() -> None:
    raw = {
        "sun": [],
        "fri": [["14:00", "18:00"], ["08:00", "12:00"]],
        "mon": [("08:00", "12:00"), ["12:00", "24:00"]],
    }
    assert validate_opening_hours(raw) == {
        "mon": [["08:00", "12:00"], ["12:00", "24:00"]],
        "fri": [["08:00", "12:00"], ["14:00", "18:00"]],
    }
    assert list(validate_opening_hours(raw)) == ["mon", "fri"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "must be an object of days"),
        ([["08:00", "20:00"]], "must be an object of days"),
        ({"monday": [["08:00", "20:00"]]}, "unknown day 'monday'"),
        ({"mon": "08:00-20:00"}, "mon: a list of"),
        ({"mon": [["08:00"]]}, "each period is a pair"),
        ({"mon": [["08:00", "12:00", "20:00"]]}, "each period is a pair"),
        ({"mon": ["08:00"]}, "each period is a pair"),
        ({"mon": [["8:00", "20:00"]]}, "'8:00' is not a time"),
        ({"mon": [["08:00", "20:60"]]}, "'20:60' is not a time"),
        ({"mon": [["08:00", "24:01"]]}, "'24:01' is not a time"),
        ({"mon": [["24:00", "24:00"]]}, "'24:00' is not a time (HH:MM from 00:00 to 23:59)"),
        ({"mon": [[800, "20:00"]]}, "800 is not a time"),
        ({"mon": [[" 08:00", "20:00"]]}, "is not a time"),
        ({"mon": [["20:00", "08:00"]]}, "does not end after it starts; split a period past"),
        ({"mon": [["08:00", "08:00"]]}, "does not end after it starts"),
        ({"mon": [["08:00", "13:00"], ["12:00", "20:00"]]}, "08:00-13:00 and 12:00-20:00 overlap"),
        ({"mon": []}, "closed all week; use null for always open"),
        ({}, "closed all week"),
        ({"mon": [["00:00", "00:30"]] * (MAX_PERIODS_PER_DAY + 1)}, "at most 8 periods a day"),
    ],
)
def test_invalid_hours_say_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_opening_hours(raw)


def test_midnight_is_a_valid_end_and_the_start_of_a_day() -> None:
    hours = validate_opening_hours({"sat": [["00:00", "24:00"]]})
    assert hours == {"sat": [["00:00", "24:00"]]}


# When the bank is open --------------------------------------------------------------------------


def test_no_opening_hours_means_always_open() -> None:
    assert is_open(utc(2026, 3, 1, 3), None, MADRID)


def test_open_from_the_start_up_to_but_not_including_the_end_in_the_banks_time() -> None:
    monday = WEEKDAYS
    assert not is_open(local(MADRID, 2026, 3, 2, 7, 59), monday, MADRID)
    assert is_open(local(MADRID, 2026, 3, 2, 8, 0), monday, MADRID)
    assert is_open(utc(2026, 3, 2, 7, 0), monday, MADRID)  # 08:00 in Madrid (CET)
    assert is_open(local(MADRID, 2026, 3, 2, 19, 59), monday, MADRID)
    assert not is_open(local(MADRID, 2026, 3, 2, 20, 0), monday, MADRID)
    assert not is_open(local(MADRID, 2026, 3, 7, 12, 0), monday, MADRID)  # a Saturday


def test_the_same_instant_is_open_in_one_zone_and_closed_in_another() -> None:
    at = utc(2026, 3, 2, 12, 30)  # 13:30 in Madrid, 07:30 in New York
    assert is_open(at, WEEKDAYS, MADRID)
    assert not is_open(at, WEEKDAYS, NEW_YORK)


def test_a_period_to_midnight_runs_into_the_next_days_first_period() -> None:
    hours = {"fri": [["18:00", "24:00"]], "sat": [["00:00", "02:00"]]}
    assert is_open(local(MADRID, 2026, 3, 6, 23, 59), hours, MADRID)
    assert is_open(local(MADRID, 2026, 3, 7, 1, 0), hours, MADRID)
    assert not is_open(local(MADRID, 2026, 3, 7, 2, 0), hours, MADRID)


def test_during_the_repeated_autumn_hour_both_instants_are_open() -> None:
    # 25 October 2026 in Madrid: 03:00 CEST becomes 02:00 CET, 02:30 happens twice.
    hours = {"sun": [["00:00", "06:00"]]}
    first = local(MADRID, 2026, 10, 25, 2, 30, fold=0)
    second = local(MADRID, 2026, 10, 25, 2, 30, fold=1)
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    assert is_open(first, hours, MADRID)
    assert is_open(second, hours, MADRID)
    assert not is_open(local(MADRID, 2026, 10, 25, 6, 0), hours, MADRID)


def test_is_open_needs_an_aware_time_and_a_real_zone() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        is_open(datetime(2026, 3, 2, 12), WEEKDAYS, MADRID)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        is_open(utc(2026, 3, 2, 12), WEEKDAYS, "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        is_open(utc(2026, 3, 2, 12), WEEKDAYS, "../etc/passwd")


# Deadlines --------------------------------------------------------------------------------------


def test_without_opening_hours_the_deadline_is_the_start_plus_the_hold() -> None:
    start = utc(2026, 3, 2, 10)
    assert next_deadline(start, timedelta(hours=72), None, MADRID) == utc(2026, 3, 5, 10)


def test_a_deadline_inside_an_open_period_stands() -> None:
    start = local(MADRID, 2026, 3, 2, 9)
    deadline = next_deadline(start, timedelta(hours=24), WEEKDAYS, MADRID)
    assert deadline == local(MADRID, 2026, 3, 3, 9)


def test_a_deadline_at_closing_time_stands() -> None:
    start = local(MADRID, 2026, 3, 2, 8)
    deadline = next_deadline(start, timedelta(hours=12), WEEKDAYS, MADRID)
    assert deadline == local(MADRID, 2026, 3, 2, 20)


def test_a_deadline_at_opening_time_moves_to_that_periods_end() -> None:
    start = local(MADRID, 2026, 3, 2, 20)
    deadline = next_deadline(start, timedelta(hours=12), WEEKDAYS, MADRID)
    assert deadline == local(MADRID, 2026, 3, 3, 20)


def test_a_deadline_in_the_night_moves_to_the_end_of_the_next_day() -> None:
    start = local(MADRID, 2026, 3, 2, 22)
    deadline = next_deadline(start, timedelta(hours=1), WEEKDAYS, MADRID)
    assert deadline == local(MADRID, 2026, 3, 3, 20)


def test_a_deadline_in_the_weekend_moves_to_the_end_of_monday() -> None:
    start = local(MADRID, 2026, 3, 5, 12)  # Thursday
    deadline = next_deadline(start, timedelta(hours=48), WEEKDAYS, MADRID)
    assert deadline == local(MADRID, 2026, 3, 9, 20)


def test_a_deadline_before_a_lunch_break_stands_and_one_in_it_moves_to_the_afternoons_end() -> None:
    hours = {"mon": [["09:00", "13:00"], ["15:00", "19:00"]]}
    start = local(MADRID, 2026, 3, 2, 9)
    assert next_deadline(start, timedelta(hours=4), hours, MADRID) == local(MADRID, 2026, 3, 2, 13)
    assert next_deadline(start, timedelta(hours=5), hours, MADRID) == local(MADRID, 2026, 3, 2, 19)


def test_periods_that_touch_count_as_one() -> None:
    # Open from Friday 08:00 to Sunday 18:00 without a break, written as three days.
    hours = {
        "fri": [["08:00", "12:00"], ["12:00", "24:00"]],
        "sat": [["00:00", "24:00"]],
        "sun": [["00:00", "18:00"]],
    }
    start = local(MADRID, 2026, 3, 6, 6)  # Friday
    deadline = next_deadline(start, timedelta(hours=1), hours, MADRID)
    assert deadline == local(MADRID, 2026, 3, 8, 18)


def test_a_bank_closed_one_hour_a_week_moves_a_deadline_in_it_a_week_on() -> None:
    hours = {day: [["00:00", "24:00"]] for day in ("tue", "wed", "thu", "fri", "sat", "sun")}
    hours["mon"] = [["00:00", "03:00"], ["04:00", "24:00"]]
    start = local(MADRID, 2026, 3, 2, 3, 30)  # Monday, in the closed hour
    deadline = next_deadline(start, timedelta(0), hours, MADRID)
    assert deadline == local(MADRID, 2026, 3, 9, 3)


def test_the_hold_is_real_time_across_the_spring_change() -> None:
    # 29 March 2026 in Madrid: 02:00 CET becomes 03:00 CEST; the day has 23 hours.
    start = local(MADRID, 2026, 3, 28, 12)
    deadline = next_deadline(start, timedelta(hours=24), None, MADRID)
    assert deadline == local(MADRID, 2026, 3, 29, 13)
    assert deadline.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=24)


def test_the_end_of_an_open_period_is_wall_clock_after_the_spring_change() -> None:
    start = local(MADRID, 2026, 3, 28, 21)  # Saturday night, closed
    deadline = next_deadline(start, timedelta(hours=1), EVERY_DAY, MADRID)
    assert deadline == local(MADRID, 2026, 3, 29, 20)
    assert deadline.astimezone(UTC) == utc(2026, 3, 29, 18)


def test_a_period_the_spring_change_swallows_is_not_an_open_period() -> None:
    hours = {"sun": [["02:00", "03:00"]], "mon": [["10:00", "11:00"]]}
    night_before = local(MADRID, 2026, 3, 29, 1, 0)
    assert next_deadline(night_before, timedelta(0), hours, MADRID) == local(
        MADRID, 2026, 3, 30, 11
    )
    # A week earlier the same hour exists and is the next open period.
    week_before = local(MADRID, 2026, 3, 22, 1, 0)
    assert next_deadline(week_before, timedelta(0), hours, MADRID) == local(MADRID, 2026, 3, 22, 3)


def test_the_end_of_an_open_period_is_wall_clock_after_the_autumn_change() -> None:
    # New York, 1 November 2026: 02:00 EDT becomes 01:00 EST.
    start = local(NEW_YORK, 2026, 10, 31, 22)
    deadline = next_deadline(start, timedelta(hours=1), EVERY_DAY, NEW_YORK)
    assert deadline == local(NEW_YORK, 2026, 11, 1, 20)
    assert deadline.astimezone(UTC) == utc(2026, 11, 2, 1)


def test_the_deadline_comes_back_in_the_zone_of_the_start() -> None:
    start = utc(2026, 3, 2, 21)  # 22:00 in Madrid, closed
    deadline = next_deadline(start, timedelta(hours=1), WEEKDAYS, MADRID)
    assert deadline.tzinfo is UTC
    assert deadline == utc(2026, 3, 3, 19)


def test_a_deadline_never_moves_earlier() -> None:
    start = utc(2026, 3, 2, 0)
    for hours in range(0, 24 * 9, 1):
        hold = timedelta(hours=hours, minutes=17)
        deadline = next_deadline(start, hold, WEEKDAYS, MADRID)
        assert deadline >= start + hold
        assert is_open(deadline - timedelta(minutes=1), WEEKDAYS, MADRID)


def test_bad_inputs_are_value_errors() -> None:
    start = utc(2026, 3, 2, 10)
    with pytest.raises(ValueError, match="aware datetime"):
        next_deadline(datetime(2026, 3, 2, 10), timedelta(hours=1), WEEKDAYS, MADRID)
    with pytest.raises(ValueError, match="cannot be negative"):
        next_deadline(start, timedelta(hours=-1), WEEKDAYS, MADRID)
    with pytest.raises(ValueError, match="unknown time zone"):
        next_deadline(start, timedelta(hours=1), WEEKDAYS, "Nowhere/Special")
    with pytest.raises(ValueError, match="overlap"):
        next_deadline(start, timedelta(hours=1), {"mon": [["08:00", "12:00"]] * 2}, MADRID)


def test_open_periods_are_merged_and_in_utc() -> None:
    hours = {"mon": [["08:00", "12:00"], ["12:00", "14:00"]], "tue": [["09:00", "10:00"]]}
    periods = open_periods(local(MADRID, 2026, 3, 2, 0), hours, MADRID, days_ahead=1)
    assert periods == [
        (utc(2026, 3, 2, 7), utc(2026, 3, 2, 13)),
        (utc(2026, 3, 3, 8), utc(2026, 3, 3, 9)),
    ]
