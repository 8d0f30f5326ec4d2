"""How a drop-off reads to its carrier (`describe`) and in its webhooks (`dropoff_webhook_data`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from central.dropoffs.schemas import DropoffData, DropoffOut
from central.errors import NotFound
from central.keys import ServiceKeys
from central.models import Reservation, ReservationEvent
from central.models.base import ReservationKind
from central.notices.pickup import open_pickup
from central.reservations import repository as reservations_repository
from central.reservations import views as reservation_views
from central.reservations.schemas import ReservationOut


def _data(out: ReservationOut) -> dict[str, Any]:
    """The fields a drop-off shares with the reservation it is stored as."""
    return {
        "id": out.id,
        "status": out.status,
        "carrier": out.carrier,
        "tracking_number": out.tracking_number,
        "bank": out.bank,
        "size": out.size,
        "compartment": out.compartment,
        "reserved_until": out.reserved_until,
        "created_at": out.created_at,
        "history": out.history,
    }


def dropoff_webhook_data(out: ReservationOut) -> dict[str, Any]:
    """A `dropoff.*` webhook's `data`: the drop-off without its code, which the carrier got in
    the answer that made it."""
    return DropoffData.model_construct(kind="dropoff", **_data(out)).model_dump(mode="json")


def describe(
    session: Session,
    keys: ServiceKeys,
    reservation: Reservation,
    *,
    history: Sequence[ReservationEvent] | None = None,
) -> DropoffOut:
    """The drop-off with its code and QR payload while they are kept (until it ends)."""
    out = reservation_views.describe(session, reservation, history=history)
    secret = open_pickup(keys, reservation.pickup_secret_sealed)
    return DropoffOut.model_construct(
        kind="dropoff",
        **_data(out),
        dropoff_code=secret.code if secret else None,
        qr_payload=secret.qr_payload if secret else None,
    )


def describe_current(session: Session, keys: ServiceKeys, reservation: Reservation) -> DropoffOut:
    """`describe` with the history as stored now (after a change in this transaction)."""
    history = reservations_repository.history_of(session, reservation.id)
    return describe(session, keys, reservation, history=history)


def require_own(session: Session, carrier_id: str, dropoff_id: str) -> Reservation:
    """The caller's drop-off; another carrier's, or a delivery, reads like a missing one."""
    reservation = reservations_repository.get(session, dropoff_id)
    if (
        reservation is None
        or reservation.carrier_id != carrier_id
        or reservation.kind != ReservationKind.DROPOFF
    ):
        raise NotFound(f"drop-off {dropoff_id}")
    return reservation
