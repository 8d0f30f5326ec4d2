"""Turning central's history into analytics events, with no personal data in any of them.

The carrier API's reservation path pays nothing for analytics: a scheduled filler reads the
append-only sources central keeps anyway (`reservation_events`, `node_events`) by a durable cursor
and writes the outbox; a flush sends the outbox to Mixpanel (see `tasks.py`).

Out-of-order commits: ids and receive times are taken inside transactions that may commit in
another order. The filler only reads rows older than `SETTLE` by their own timestamp, which every
transaction that wrote them has long committed by (request transactions take milliseconds), and
stops at the first row that is still too recent, so the cursor never steps over a row that has
yet to appear.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from central.analytics import repository as repo
from central.analytics.repository import HistoryRow
from central.keys import ServiceKeys
from central.models import AnalyticsCursor, NodeEventRecord

SETTLE = timedelta(minutes=2)
FILL_BATCH = 1000
MAX_FILL_BATCHES = 20
SUBJECT_SOURCE = "subjects"
RESERVATION_SOURCE = "reservation_events"
NODE_SOURCE = "node_events"
KEY_PURPOSE = "analytics-recipient"
# Longer than any reservation lives (hold, pickup and their extensions): 12 days by default.
SUBJECT_TTL = timedelta(days=180)

# History entry type (and the status it left) -> event name. Reminders and extensions are not
# usage events; an expiry is a different thing before and after the deposit.
_HISTORY_EVENTS: dict[tuple[str, str | None], str] = {
    ("created", None): "Reservation Created",
    ("cancelled", "reserved"): "Reservation Cancelled",
    ("expired", "reserved"): "Reservation Expired",
    ("deposited", "reserved"): "Parcel Deposited",
    ("picked_up", "deposited"): "Parcel Picked Up",
    ("expired", "deposited"): "Parcel Expired",
    ("returned", "expired"): "Parcel Returned",
    ("returned", "deposited"): "Parcel Returned",
}
# The same for drop-offs (a sender's parcel for the carrier's courier): events of their own, so
# that they are not counted as deliveries.
_DROPOFF_HISTORY_EVENTS: dict[tuple[str, str | None], str] = {
    ("created", None): "Drop-off Created",
    ("cancelled", "reserved"): "Drop-off Cancelled",
    ("expired", "reserved"): "Drop-off Expired",
    ("deposited", "reserved"): "Drop-off Deposited",
    # Put in before the node heard it had closed at central (`central.nodes.dropoff_events`).
    ("deposited", "expired"): "Drop-off Deposited",
    ("deposited", "cancelled"): "Drop-off Deposited",
    ("collected", "deposited"): "Drop-off Collected",
}
DOOR_EVENTS = ("door.fault", "door.left_open", "door.forced_open", "compartment.out_of_service")
KIOSK_EVENTS = {
    "kiosk.code_failed": "Code Failed",
    "kiosk.locked_out": "Keypad Locked Out",
    "kiosk.session": "Courier Session",
}
# What may be copied from a node event's stored data into properties: counts, durations, kinds.
_NODE_FIELDS = {
    "kiosk.code_failed": ("kind", "attempts_left"),
    "kiosk.locked_out": ("kind", "retry_after_s"),
    "kiosk.session": ("carrier_id", "duration_s", "deposits", "ended_by"),
}


def recipient_key(keys: ServiceKeys, recipient: Mapping[str, Any] | None) -> str | None:
    """HMAC-SHA256 of the recipient's normalised contact: the same person, the same id.

    The email (lower case) when there is one, else the phone number's digits; never the name,
    which is neither unique nor stable. None when there is no contact to key.
    """
    if not recipient:
        return None
    email = str(recipient.get("email") or "").strip().lower()
    phone = re.sub(r"[^0-9]", "", str(recipient.get("phone") or ""))
    contact = f"email:{email}" if email else f"phone:{phone}" if phone else None
    if contact is None:
        return None
    return hmac.new(keys.derive(KEY_PURPOSE), contact.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class FillResult:
    reservation_events: int
    node_events: int


def fill(session: Session, keys: ServiceKeys, now: datetime, *, send: bool) -> FillResult:
    """Move both cursors as far as settled rows allow; `send=False` keeps new rows locally."""
    status = "pending" if send else "kept"
    _capture_subjects(session, keys, now)
    return FillResult(
        reservation_events=_fill_history(session, keys, now, status),
        node_events=_fill_node_events(session, now, status),
    )


def _cursor(session: Session, source: str, now: datetime) -> AnalyticsCursor:
    return repo.cursor(session, source) or AnalyticsCursor(source=source, updated_at=now)


def _capture_subjects(session: Session, keys: ServiceKeys, now: datetime) -> None:
    """Key every new reservation's recipient now, without waiting for history to settle.

    A creation committed out of order behind this cursor is keyed by the filler instead, from
    the recipient if the reservation is still active, else by its own id.
    """
    cursor = _cursor(session, SUBJECT_SOURCE, now)
    last_id = cursor.last_id or 0
    for _ in range(MAX_FILL_BATCHES):
        rows = repo.created_after(session, last_id, FILL_BATCH)
        subjects = []
        for _, reservation_id, recipient in rows:
            distinct_id = recipient_key(keys, recipient)
            if distinct_id is not None:
                subjects.append(
                    {
                        "reservation_id": reservation_id,
                        "distinct_id": distinct_id,
                        "created_at": now,
                    }
                )
        repo.insert_subjects(session, subjects)
        if rows:
            last_id = rows[-1][0]
        if len(rows) < FILL_BATCH:
            break
    if last_id != (cursor.last_id or 0):
        cursor.last_id = last_id
        cursor.updated_at = now
        repo.save_cursor(session, cursor)


def _fill_history(session: Session, keys: ServiceKeys, now: datetime, status: str) -> int:
    cursor = _cursor(session, RESERVATION_SOURCE, now)
    last_id = cursor.last_id or 0
    settled = now - SETTLE
    added = 0
    for _ in range(MAX_FILL_BATCHES):
        rows = repo.history_after(session, last_id, FILL_BATCH)
        ready: list[HistoryRow] = []
        for row in rows:
            if row.at > settled:
                break
            ready.append(row)
        if ready:
            events = _history_events(session, keys, ready, now, status)
            repo.insert_events(session, events)
            added += len(events)
            last_id = ready[-1].id
        if len(ready) < FILL_BATCH:
            break
    if last_id != (cursor.last_id or 0):
        cursor.last_id = last_id
        cursor.updated_at = now
        repo.save_cursor(session, cursor)
    return added


def _history_events(
    session: Session, keys: ServiceKeys, rows: Sequence[HistoryRow], now: datetime, status: str
) -> list[dict[str, Any]]:
    wanted = [row for row in rows if (row.type, row.from_status) in _history_events_of(row)]
    # A reservation keeps the distinct id it got when it was created: its recipient is wiped
    # when it ends, and its later events must still join up with the first.
    subjects = repo.subjects_of(session, {row.reservation_id for row in wanted})
    missed: list[dict[str, Any]] = []  # creations the eager capture did not see
    out: list[dict[str, Any]] = []
    for row in wanted:
        distinct_id = subjects.get(row.reservation_id)
        if distinct_id is None:
            distinct_id = recipient_key(keys, row.recipient) or row.reservation_id
            subjects[row.reservation_id] = distinct_id
            if distinct_id != row.reservation_id:
                missed.append(
                    {
                        "reservation_id": row.reservation_id,
                        "distinct_id": distinct_id,
                        "created_at": now,
                    }
                )
        occurred = _aware(row.at)
        properties: dict[str, Any] = {
            "bank_id": row.bank_id,
            "size": row.size,
            "carrier_id": row.carrier_id,
        }
        if row.type == "picked_up" and row.deposited_at is not None:
            picked_up = _node_time(row.data, occurred)
            properties["dwell_hours"] = _hours(picked_up - _aware(row.deposited_at))
            occurred = picked_up
        elif row.type == "deposited":
            properties["wait_hours"] = _hours(occurred - _aware(row.created_at))
        out.append(
            _outbox_row(
                insert_id=f"re-{row.id}",
                event=_history_events_of(row)[(row.type, row.from_status)],
                distinct_id=distinct_id,
                reservation_id=row.reservation_id,
                properties=properties,
                occurred_at=occurred,
                now=now,
                status=status,
            )
        )
    repo.insert_subjects(session, missed)
    return out


def _history_events_of(row: HistoryRow) -> dict[tuple[str, str | None], str]:
    return _DROPOFF_HISTORY_EVENTS if row.kind == "dropoff" else _HISTORY_EVENTS


def _fill_node_events(session: Session, now: datetime, status: str) -> int:
    cursor = _cursor(session, NODE_SOURCE, now)
    position = (
        (_aware(cursor.last_at), cursor.last_key)
        if cursor.last_at is not None and cursor.last_key is not None
        else None
    )
    start = position
    added = 0
    for _ in range(MAX_FILL_BATCHES):
        rows = repo.node_events_window(session, position, now - SETTLE, FILL_BATCH)
        events = [_node_event(row, now, status) for row in rows]
        kept = [event for event in events if event is not None]
        repo.insert_events(session, kept)
        added += len(kept)
        if rows:
            position = (_aware(rows[-1].received_at), rows[-1].id)
        if len(rows) < FILL_BATCH:
            break
    if position is not None and position != start:
        cursor.last_at, cursor.last_key = position
        cursor.updated_at = now
        repo.save_cursor(session, cursor)
    return added


def _node_event(row: NodeEventRecord, now: datetime, status: str) -> dict[str, Any] | None:
    if row.status != "applied":
        return None
    properties: dict[str, Any] = {"bank_id": row.bank_id}
    if row.type in DOOR_EVENTS:
        event = "Door Fault"
        properties["kind"] = row.type
        if isinstance(row.data.get("compartment"), str):
            properties["compartment"] = row.data["compartment"]
    elif row.type in KIOSK_EVENTS:
        event = KIOSK_EVENTS[row.type]
        properties.update({k: row.data[k] for k in _NODE_FIELDS[row.type] if k in row.data})
    else:
        return None
    return _outbox_row(
        insert_id=f"ne-{row.id.replace('-', '')}"[:36],
        event=event,
        # Bank-level events have the bank as their actor: there is no person behind them.
        distinct_id=f"bank:{row.bank_id}"[:64],
        reservation_id=None,
        properties=properties,
        occurred_at=min(_aware(row.occurred_at), _aware(row.received_at)),
        now=now,
        status=status,
    )


def _outbox_row(
    *,
    insert_id: str,
    event: str,
    distinct_id: str,
    reservation_id: str | None,
    properties: dict[str, Any],
    occurred_at: datetime,
    now: datetime,
    status: str,
) -> dict[str, Any]:
    return {
        "insert_id": insert_id,
        "event": event,
        "distinct_id": distinct_id,
        "reservation_id": reservation_id,
        "properties": properties,
        "occurred_at": occurred_at,
        "created_at": now,
        "status": status,
        "attempts": 0,
        "next_attempt_at": now,
        "sent_at": None,
        "last_error": None,
    }


def _node_time(data: Mapping[str, Any] | None, fallback: datetime) -> datetime:
    """When the node saw it happen (its clock), never later than when central recorded it."""
    raw = (data or {}).get("occurred_at")
    if isinstance(raw, str):
        try:
            seen = datetime.fromisoformat(raw)
        except ValueError:
            return fallback
        if seen.tzinfo is not None:
            return min(seen.astimezone(UTC), fallback)
    return fallback


def _hours(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0) / 3600, 2)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def purge(session: Session, now: datetime, retention: timedelta) -> int:
    repo.purge_subjects(session, now - SUBJECT_TTL)
    return repo.purge(session, now - retention)
