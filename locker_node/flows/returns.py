"""Returns: parcels past their pickup deadline go back to their carrier's courier."""

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
from locker_node.flows.upkeep import expire_due
from locker_node.store import groups as group_codes
from locker_node.store import repository as repo
from locker_node.store.outbox import record
from locker_wire.events import ParcelReturned


@dataclass(frozen=True)
class ReturnItem:
    parcel_id: str
    tracking_number: str
    compartment: str
    pickup_deadline: datetime


def list_returns(ports: Ports, courier: Courier) -> list[ReturnItem]:
    """What this courier's carrier must take back, parcels that expired a moment ago included."""
    with ports.flow_lock:
        expire_due(ports)
        with ports.unit_of_work() as conn:
            rows = repo.parcels_to_return(conn, courier.carrier_id)
    return [
        ReturnItem(
            parcel_id=p.id,
            tracking_number=p.tracking_number,
            compartment=p.compartment,
            pickup_deadline=p.pickup_deadline,
        )
        for p in rows
    ]


def open_return(ports: Ports, courier: Courier, parcel_id: str) -> DoorResult:
    return open_door(ports, courier, parcel_id, _RETURN)


def confirm_return(ports: Ports, courier: Courier, parcel_id: str) -> DoorResult:
    def returned(conn: Connection, parcel: repo.Parcel, now: datetime) -> None:
        repo.set_parcel_status(
            conn, parcel.id, ParcelStatus.RETURNED, expect=ParcelStatus.EXPIRED, now=now
        )
        # Free unless a group-mate is still in it (`store.groups`).
        group_codes.vacate(conn, parcel.compartment, now, expect=(Occupancy.OCCUPIED,))
        repo.update_reservation(conn, parcel.reservation_id, now, status=ReservationStatus.RETURNED)
        event = ParcelReturned(
            reservation_id=parcel.reservation_id,
            parcel_id=parcel.id,
            carrier_id=parcel.carrier_id,
            tracking_number=parcel.tracking_number,
            compartment=parcel.compartment,
            returned_at=now,
        )
        record(conn, event, at=now, bank_id=ports.policy.bank_id, actor=courier.actor)

    return confirm_taken(ports, courier, parcel_id, _RETURN, returned)


def _find(conn: Connection, courier: Courier, parcel_id: str) -> repo.Parcel:
    if not inputs.is_node_id(parcel_id):
        raise BadInput("not a parcel id")
    parcel = repo.get_parcel(conn, parcel_id)
    if parcel is None or parcel.carrier_id != courier.carrier_id:
        raise NotFound("no such parcel to return", code="unknown_parcel")
    return parcel


def _require_expired(parcel: repo.Parcel) -> None:
    if parcel.status != ParcelStatus.EXPIRED:
        raise Conflict("this parcel is not waiting for a return", code="not_returnable")


_RETURN = Takeaway(
    purpose=Purpose.RETURN,
    step="return",
    taken=ParcelStatus.RETURNED,
    find=_find,
    require_waiting=_require_expired,
    reason=lambda parcel: f"return {parcel.tracking_number}",
)
