"""A bank's opening hours and the pickup deadlines that never fall while it is closed."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# {"mon": [["08:00", "20:00"], ...], ...} in the bank's wall-clock time. A missing day (or an
# empty list) is closed; None instead of the whole mapping means always open. A period past
# midnight is written as two: ["22:00", "24:00"] on one day and ["00:00", "02:00"] on the next.
OpeningHours = dict[str, list[list[str]]]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_PERIODS_PER_DAY = 8
_TIME = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
_MIDNIGHT_END = "24:00"
# Far enough to reach past any run of open days chained across midnight (a week) and past a
# week whose only open period a daylight-saving jump swallowed.
_DAYS_AHEAD = 16

Period = tuple[datetime, datetime]


def validate_opening_hours(raw: object) -> OpeningHours:
    """The opening hours in their canonical form (days in week order, closed days left out,
    periods sorted), or ValueError saying what is wrong. None (always open) is not a mapping
    to validate: callers keep it as it is."""
    if not isinstance(raw, dict):
        raise ValueError(
            "opening hours must be an object of days, e.g. {'mon': [['08:00', '20:00']]}"
        )
    unknown = sorted(str(key) for key in raw if key not in DAYS)
    if unknown:
        raise ValueError(f"unknown day {unknown[0]!r}: days are {', '.join(DAYS)}")
    hours: OpeningHours = {}
    for day in DAYS:
        periods = _validate_day(day, raw.get(day, []))
        if periods:
            hours[day] = periods
    if not hours:
        raise ValueError("opening hours leave the bank closed all week; use null for always open")
    return hours


def _validate_day(day: str, raw: object) -> list[list[str]]:
    if not isinstance(raw, list):
        raise ValueError(f"{day}: a list of [start, end] periods, e.g. [['08:00', '20:00']]")
    if len(raw) > MAX_PERIODS_PER_DAY:
        raise ValueError(f"{day}: at most {MAX_PERIODS_PER_DAY} periods a day")
    periods: list[list[str]] = []
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValueError(f"{day}: each period is a pair [start, end], got {item!r}")
        start, end = item
        _check_time(day, start, end_of_period=False)
        _check_time(day, end, end_of_period=True)
        if _minutes(start) >= _minutes(end):
            raise ValueError(
                f"{day}: the period {start}-{end} does not end after it starts; "
                "split a period past midnight at 24:00 and 00:00"
            )
        periods.append([start, end])
    periods.sort(key=lambda period: _minutes(period[0]))
    for before, after in pairwise(periods):
        if _minutes(after[0]) < _minutes(before[1]):
            raise ValueError(
                f"{day}: the periods {before[0]}-{before[1]} and {after[0]}-{after[1]} overlap"
            )
    return periods


def _check_time(day: str, value: object, *, end_of_period: bool) -> None:
    if isinstance(value, str) and (
        _TIME.match(value) or (end_of_period and value == _MIDNIGHT_END)
    ):
        return
    allowed = "HH:MM from 00:00 to 24:00" if end_of_period else "HH:MM from 00:00 to 23:59"
    raise ValueError(f"{day}: {value!r} is not a time ({allowed})")


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def zone_of(tz: str) -> ZoneInfo:
    """The IANA time zone, or ValueError for a name that is not one."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def is_open(at: datetime, hours: OpeningHours | None, tz: str) -> bool:
    """Whether the bank is open at `at` (an aware datetime): from a period's start, up to but
    not including its end."""
    _require_aware(at)
    if hours is None:
        return True
    return any(start <= at < end for start, end in open_periods(at, hours, tz, days_ahead=1))


def next_deadline(
    start: datetime, hold: timedelta, opening_hours: OpeningHours | None, tz: str
) -> datetime:
    """`start + hold`, moved later when it would fall while the bank is closed: to the end of
    the next open period, so the hold covers a whole one.

    A deadline at a period's closing time stands (the recipient had the whole period); one at
    its opening time moves to that period's end (nobody could come before it). Periods that
    touch, within a day or across midnight, count as one. The result is in `start`'s zone.
    """
    _require_aware(start)
    if hold < timedelta(0):
        raise ValueError("a hold cannot be negative")
    deadline = start.astimezone(UTC) + hold
    if opening_hours is not None:
        deadline = _inside_open_period(deadline, opening_hours, tz)
    return deadline.astimezone(start.tzinfo)


def _inside_open_period(deadline: datetime, hours: OpeningHours, tz: str) -> datetime:
    for opens, closes in open_periods(deadline, hours, tz, days_ahead=_DAYS_AHEAD):
        if opens < deadline <= closes:
            return deadline
        if opens >= deadline:
            return closes
    raise ValueError("the opening hours have no open period in the coming weeks")


def open_periods(
    around: datetime, hours: OpeningHours, tz: str, *, days_ahead: int = 7
) -> list[Period]:
    """The open periods (UTC, merged where they touch) of the local days from the day before
    `around` to `days_ahead` days after it.

    Wall-clock times that a daylight-saving jump skips or repeats resolve the way zoneinfo
    does (fold=0: the offset before the jump); a period the jump swallows is left out.
    """
    _require_aware(around)
    zone = zone_of(tz)
    checked = validate_opening_hours(hours)
    first = around.astimezone(zone).date() - timedelta(days=1)
    periods: list[Period] = []
    for offset in range(days_ahead + 2):
        periods.extend(_periods_on(first + timedelta(days=offset), checked, zone))
    return _merged(periods)


def _periods_on(day: date, hours: OpeningHours, zone: ZoneInfo) -> list[Period]:
    periods: list[Period] = []
    for start, end in hours.get(DAYS[day.weekday()], []):
        opens = _wall_clock(day, start, zone)
        closes = _wall_clock(day, end, zone)
        if opens < closes:
            periods.append((opens, closes))
    return periods


def _wall_clock(day: date, value: str, zone: ZoneInfo) -> datetime:
    if value == _MIDNIGHT_END:
        day, value = day + timedelta(days=1), "00:00"
    hours, minutes = value.split(":")
    local = datetime.combine(day, time(int(hours), int(minutes)), tzinfo=zone)
    return local.astimezone(UTC)


def _merged(periods: list[Period]) -> list[Period]:
    merged: list[Period] = []
    for opens, closes in sorted(periods):
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def _require_aware(value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("an aware datetime is needed (with its time zone)")
