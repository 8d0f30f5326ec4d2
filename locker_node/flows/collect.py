"""Collection: the carrier's courier takes away the drop-offs senders left for that carrier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain import inputs
from locker_node.domain.lifecycle import (
    Occupancy,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.flows.courier import Courier
from locker_node.flows.errors import BadInput, Conflict, NotFound
from locker_node.flows.pickup import DoorResult
from locker_node.flows.ports import Ports
from locker_node.flows.takeaway import Takeaway, confirm_taken, open_door
from locker_node.store import dropoffs as store
from locker_node.store import repository as repo
from locker_node.store.outbox import record
from locker_wire.events import DropoffCollected


@dataclass(frozen=True)
class CollectItem:
    parcel_id: str
    tracking_number: str
    compartment: str
    deposited_at: datetime


def list_dropoffs(ports: Ports, courier: Courier) -> list[CollectItem]:
    """The drop-offs waiting in this bank for the courier's carrier, by door."""
    with ports.unit_of_work() as conn:
        rows = store.awaiting_collection(conn, courier.carrier_id)
    return [
        CollectItem(
            parcel_id=p.id,
            tracking_number=p.tracking_number,
            compartment=p.compartment,
            deposited_at=p.deposited_at,
        )
        for p in rows
    ]


def open_collection(ports: Ports, courier: Courier, parcel_id: str) -> DoorResult:
    return open_door(ports, courier, parcel_id, _COLLECTION)


def confirm_collection(ports: Ports, courier: Courier, parcel_id: str) -> DoorResult:
    """The courier has the parcel and the door reads closed: collected, the door free again."""

    def collected(conn: Connection, parcel: repo.Parcel, now: datetime) -> None:
        repo.set_parcel_status(
            conn,
            parcel.id,
            ParcelStatus.COLLECTED,
            expect=ParcelStatus.AWAITING_COLLECTION,
            now=now,
        )
        repo.set_occupancy(conn, parcel.compartment, Occupancy.FREE, now, expect=Occupancy.OCCUPIED)
        repo.update_reservation(
            conn, parcel.reservation_id, now, status=ReservationStatus.COLLECTED
        )
        event = DropoffCollected(
            reservation_id=parcel.reservation_id,
            parcel_id=parcel.id,
            carrier_id=parcel.carrier_id,
            tracking_number=parcel.tracking_number,
            compartment=parcel.compartment,
            collected_at=now,
        )
        record(conn, event, at=now, bank_id=ports.policy.bank_id, actor=courier.actor)

    return confirm_taken(ports, courier, parcel_id, _COLLECTION, collected)


def _find(conn: Connection, courier: Courier, parcel_id: str) -> repo.Parcel:
    if not inputs.is_node_id(parcel_id):
        raise BadInput("not a parcel id")
    parcel = repo.get_parcel(conn, parcel_id)
    dropoff = parcel is not None and parcel.status in (
        ParcelStatus.AWAITING_COLLECTION,
        ParcelStatus.COLLECTED,
    )
    # Another carrier's parcel, or a parcel for a recipient, is none of this courier's business.
    if parcel is None or not dropoff or parcel.carrier_id != courier.carrier_id:
        raise NotFound("no such drop-off to collect", code="unknown_parcel")
    return parcel


def _require_awaiting(parcel: repo.Parcel) -> None:
    if parcel.status != ParcelStatus.AWAITING_COLLECTION:
        raise Conflict("this drop-off has been collected", code="already_collected")


_COLLECTION = Takeaway(
    purpose=Purpose.COLLECT,
    step="collect",
    taken=ParcelStatus.COLLECTED,
    find=_find,
    require_waiting=_require_awaiting,
    reason=lambda parcel: f"collect drop-off {parcel.tracking_number}",
)
