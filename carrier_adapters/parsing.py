"""Pure helpers shared by the carriers' response parsers: timestamps, offsets, text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from pydantic import ValidationError

from carrier_adapters.base import TrackingEvent, TrackingStatus

__all__ = [
    "clean_text",
    "delivery_event",
    "describe_error",
    "parse_compact_datetime",
    "parse_iso_datetime",
    "parse_utc_offset",
]

# "-7:00" (USPS), "-05:00" (UPS Track), "-04.00" (UPS Track Alert), "+0200", "Z".
_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hours>\d{1,2})(?:[:.]?(?P<minutes>\d{2}))?$")


def clean_text(value: str | None) -> str | None:
    """Collapse whitespace; None for empty text."""
    if value is None:
        return None
    text = " ".join(value.split())
    return text or None


def parse_utc_offset(value: str | None) -> timezone | None:
    """A fixed offset from the spellings carriers use; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text in ("Z", "z"):
        return UTC
    found = _OFFSET.match(text)
    if found is None:
        return None
    hours = int(found["hours"])
    minutes = int(found["minutes"] or 0)
    if hours > 23 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if found["sign"] == "-" else delta)


def parse_iso_datetime(value: str, *, offset: timezone | None = None) -> datetime:
    """An ISO 8601 timestamp as an aware datetime.

    A timestamp without an offset gets `offset` when the carrier gives it separately, else UTC:
    carriers that omit the offset (DHL events, FedEx dateAndTimes) send the same instants with a
    "Z" elsewhere in the same reply. Raises ValueError for text that is not ISO 8601.
    """
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=offset or UTC)
    return parsed


def parse_compact_datetime(
    date: str, time: str | None, *, offset: timezone | None = None
) -> datetime:
    """UPS-style YYYYMMDD and HHMMSS (leading zeros sometimes dropped) as an aware datetime."""
    digits = (time or "").strip() or "000000"
    if not digits.isdigit() or len(digits) > 6:
        raise ValueError(f"not a HHMMSS time: {time!r}")
    parsed = datetime.strptime(date.strip() + digits.zfill(6), "%Y%m%d%H%M%S")
    return parsed.replace(tzinfo=offset or UTC)


def describe_error(exc: Exception) -> str:
    """A short reason for a parse failure, naming the field but never echoing its value."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
    return type(exc).__name__ if not str(exc) else str(exc)


_DELIVERED = frozenset({TrackingStatus.DELIVERED, TrackingStatus.DELIVERED_TO_LOCKER})


def delivery_event(status: TrackingStatus, events: Sequence[TrackingEvent]) -> TrackingEvent | None:
    """The newest event that delivered the parcel, when `status` says it was delivered."""
    if status not in _DELIVERED:
        return None
    exact = next((e for e in events if e.status is status), None)
    return exact or next((e for e in events if e.status in _DELIVERED), None)
