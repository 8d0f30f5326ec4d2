"""Applying what a carrier reports to reservations: the events, the status, and cancellations."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from carrier_adapters.base import Location, TrackingDetails, TrackingEvent, TrackingStatus
from carrier_adapters.tracking_numbers import normalize_tracking_number
from central.context import Ctx
from central.models import Actor, Reservation, ReservationStatus
from central.reservations.transitions import transition
from central.tracking import repository as repo

# A parcel on its way back to the sender, or a shipment the carrier called off, will never be
# deposited: its hold only keeps a compartment from other parcels.
CANCELLING = frozenset({TrackingStatus.RETURN_TO_SENDER, TrackingStatus.CANCELLED})


class Source(enum.StrEnum):
    POLL = "poll"
    PUSH = "push"


@dataclass(frozen=True, slots=True)
class Applied:
    new_events: int
    cancelled: bool


@dataclass(frozen=True, slots=True)
class PushOutcome:
    received: int
    """Tracking updates in the push."""
    matched: int
    """Updates that belonged to an active reservation of the carrier."""
    new_events: int
    cancelled: int


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def location_text(location: Location | None) -> str | None:
    """One line for display: "Oderweg 2, AMSTERDAM, 1043 AG, NL"."""
    if location is None:
        return None
    region = " ".join(p for p in (location.state, location.postal_code) if p)
    parts = (location.description, location.city, region, location.country_code)
    return _clip(", ".join(p for p in parts if p), 300) or None


def _event_values(
    reservation_id: str, code: str, event: TrackingEvent, source: Source, now: datetime
) -> dict[str, object]:
    return {
        "reservation_id": reservation_id,
        "carrier_code": code,
        "status": event.status.value,
        "description": _clip(event.description, 500) or "",
        "location": location_text(event.location),
        "occurred_at": event.occurred_at,
        "source": source.value,
        "received_at": now,
    }


def _record_events(
    ctx: Ctx, reservation_id: str, events: Sequence[TrackingEvent], source: Source
) -> int:
    known = repo.event_keys(ctx.session, reservation_id)
    added = 0
    for event in events:
        code = _clip(event.code, 64) or ""
        key = (event.occurred_at, code, event.status.value)
        if key in known:
            continue  # reported before: a poll repeats every event the carrier still lists
        known.add(key)
        if repo.add_event(ctx.session, _event_values(reservation_id, code, event, source, ctx.now)):
            added += 1
    return added


def apply_tracking(
    ctx: Ctx, reservation: Reservation, details: TrackingDetails, *, source: Source
) -> Applied:
    """Record a carrier's report on one reservation, in the caller's transaction.

    New events are stored; the tracking status follows the report unless the report is older
    than what is already known (pushes can arrive out of order). A parcel the carrier sends back
    or cancels before it was deposited gives its compartment back; once deposited, the parcel's
    lifecycle belongs to the locker and the courier, so tracking only records.
    """
    known_until = repo.latest_event_at(ctx.session, reservation.id)
    new_events = _record_events(ctx, reservation.id, details.events, source)
    newest = details.latest_event
    current = newest is None or known_until is None or newest.occurred_at >= known_until

    values: dict[str, object] = {"tracking_checked_at": ctx.now}
    if current and details.status is not TrackingStatus.UNKNOWN:
        values["tracking_status"] = details.status.value
    repo.set_tracking(ctx.session, reservation.id, values)
    for key, value in values.items():
        setattr(reservation, key, value)

    cancel = (
        current
        and details.status in CANCELLING
        and reservation.status == ReservationStatus.RESERVED.value
    )
    if cancel:
        transition(
            ctx,
            reservation,
            ReservationStatus.CANCELLED,
            actor=Actor.SYSTEM,
            reason=f"carrier reported {details.status.value}",
            event_data={"source": source.value, "carrier_code": details.carrier_status_code},
        )
    return Applied(new_events=new_events, cancelled=cancel)


def record_poll(ctx: Ctx, reservation_id: str, details: TrackingDetails) -> Applied | None:
    """Apply a polled report, unless the reservation ended while the carrier was being asked."""
    reservation = repo.get_for_update(ctx.session, reservation_id)
    if reservation is None or reservation.status not in (
        ReservationStatus.RESERVED.value,
        ReservationStatus.DEPOSITED.value,
    ):
        return None
    return apply_tracking(ctx, reservation, details, source=Source.POLL)


def record_push(ctx: Ctx, carrier_id: str, updates: Sequence[TrackingDetails]) -> PushOutcome:
    """Apply a verified push to the carrier's active reservations with those numbers."""
    matched = new_events = cancelled = 0
    for details in updates:
        number = normalize_tracking_number(details.tracking_number)
        reservations = repo.active_by_number(ctx.session, carrier_id, number)
        if reservations:
            matched += 1
        for reservation in reservations:
            applied = apply_tracking(ctx, reservation, details, source=Source.PUSH)
            new_events += applied.new_events
            cancelled += int(applied.cancelled)
    return PushOutcome(
        received=len(updates), matched=matched, new_events=new_events, cancelled=cancelled
    )
