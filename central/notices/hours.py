"""Opening hours, deadlines and map links as a recipient reads them, in English and Spanish."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Language = Literal["en", "es"]

_DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Keys as some hand-written bank records spell them; anything else is not a day and is ignored.
_DAY_ALIASES = {
    "monday": "mon",
    "tuesday": "tue",
    "tues": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "thur": "thu",
    "thurs": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}
_DASH = "\u2013"  # the en dash, the typographic sign of ranges of days and of hours
_TIME = re.compile(r"(\d{1,2}):(\d{2})")

Span = tuple[str, str]
_ALL_DAY_SPANS = {(("00:00", "24:00"),), (("00:00", "23:59"),)}


@dataclass(frozen=True, slots=True)
class _Words:
    days: tuple[str, str, str, str, str, str, str]
    months: tuple[str, ...]
    always_open: str
    every_day: str
    closed: str
    closed_every_day: str
    open_all_day: str


_WORDS: dict[Language, _Words] = {
    "en": _Words(
        days=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        always_open="Open 24 hours",
        every_day="Every day",
        closed="closed",
        closed_every_day="Closed every day",
        open_all_day="open 24 hours",
    ),
    "es": _Words(
        days=("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
        months=("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"),
        always_open="Abierto las 24 horas",
        every_day="Todos los días",
        closed="cerrado",
        closed_every_day="Cerrado todos los días",
        open_all_day="abierto las 24 horas",
    ),
}


def describe_hours(
    opening_hours: dict[str, list[list[str]]] | None, language: Language
) -> list[str]:
    """One line per run of consecutive days with the same hours, Monday first.

    A missing day, an empty list or a list of unreadable spans is closed; a key that names no
    day is ignored; a span is two "HH:MM" times (the end may be "24:00", or before the start
    for a night that runs past midnight).
    """
    words = _WORDS[language]
    if opening_hours is None:
        return [words.always_open]
    week = _read_week(opening_hours)
    if all(spans in _ALL_DAY_SPANS for spans in week):
        return [words.always_open]
    runs = _runs(week)
    if len(runs) == 1:
        spans = runs[0][2]
        if not spans:
            return [words.closed_every_day]
        return [f"{words.every_day} {_describe_spans(spans, words)}"]
    return [
        f"{_describe_days(first, last, words)} {_describe_spans(spans, words)}"
        for first, last, spans in runs
    ]


def format_deadline(deadline: datetime, timezone: str, language: Language) -> str:
    """A moment in the bank's time zone, e.g. "Fri 11 Dec, 18:00 EST" / "vie 11 dic, 18:00 EST".

    For deadlines and for anything else that happened at the bank (a pickup, a return).
    """
    if deadline.tzinfo is None or deadline.utcoffset() is None:
        raise ValueError("the deadline must be timezone-aware")
    local = deadline.astimezone(_zone(timezone))
    words = _WORDS[language]
    day = words.days[local.weekday()]
    month = words.months[local.month - 1]
    return f"{day} {local.day} {month}, {local:%H:%M} {_zone_abbreviation(local)}"


def map_url(lat: float, lon: float) -> str:
    """An OpenStreetMap link with a marker on the bank, zoomed to street level."""
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise ValueError(f"latitude out of range: {lat!r}")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise ValueError(f"longitude out of range: {lon!r}")
    mlat, mlon = _coordinate(lat), _coordinate(lon)
    return f"https://www.openstreetmap.org/?mlat={mlat}&mlon={mlon}#map=18/{mlat}/{mlon}"


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {timezone!r}") from exc


def _zone_abbreviation(local: datetime) -> str:
    """The zone's abbreviation ("EST", "CEST"); "UTC-5" for zones whose only name is an offset."""
    name = local.tzname() or ""
    if name and name[0] not in "+-" and not name[0].isdigit():
        return name
    offset = local.utcoffset() or timedelta(0)
    minutes = round(offset.total_seconds() / 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def _coordinate(value: float) -> str:
    # Six decimals is about 10 cm: more is noise in a link, fewer could miss the entrance.
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _read_week(opening_hours: object) -> list[tuple[Span, ...]]:
    days: dict[str, set[Span]] = {key: set() for key in _DAY_KEYS}
    if isinstance(opening_hours, dict):
        for key, value in opening_hours.items():
            day = _day_key(key)
            if day is not None:
                days[day].update(_read_spans(value))
    return [tuple(sorted(days[key])) for key in _DAY_KEYS]


def _day_key(key: object) -> str | None:
    if not isinstance(key, str):
        return None
    name = key.strip().lower()
    if name in _DAY_KEYS:
        return name
    return _DAY_ALIASES.get(name)


def _read_spans(value: object) -> list[Span]:
    if not isinstance(value, list | tuple):
        return []
    spans: list[Span] = []
    for span in value:
        if not isinstance(span, list | tuple) or len(span) != 2:
            continue
        start, end = _read_time(span[0]), _read_time(span[1])
        if start is not None and end is not None and start != end:
            spans.append((start, end))
    return spans


def _read_time(value: object) -> str | None:
    """ "8:00" -> "08:00"; None for anything that is not a time of day (or the day's end)."""
    if not isinstance(value, str):
        return None
    match = _TIME.fullmatch(value.strip())
    if match is None:
        return None
    hour, minute = int(match[1]), int(match[2])
    if minute > 59 or hour > 24 or (hour == 24 and minute != 0):
        return None
    return f"{hour:02d}:{minute:02d}"


def _runs(week: list[tuple[Span, ...]]) -> list[tuple[int, int, tuple[Span, ...]]]:
    """(first day, last day, spans) for each run of consecutive days with the same spans."""
    runs: list[tuple[int, int, tuple[Span, ...]]] = []
    for index, spans in enumerate(week):
        if runs and runs[-1][2] == spans:
            runs[-1] = (runs[-1][0], index, spans)
        else:
            runs.append((index, index, spans))
    return runs


def _describe_days(first: int, last: int, words: _Words) -> str:
    if first == last:
        return words.days[first]
    return f"{words.days[first]}{_DASH}{words.days[last]}"


def _describe_spans(spans: tuple[Span, ...], words: _Words) -> str:
    if not spans:
        return words.closed
    if spans in _ALL_DAY_SPANS:
        return words.open_all_day
    return ", ".join(f"{start}{_DASH}{end}" for start, end in spans)
