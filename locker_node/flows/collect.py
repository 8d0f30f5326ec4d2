"""Collection: the carrier's courier takes away the drop-offs senders left for that carrier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain import inputs
from locker_node.domain.doors import DoorOpened
from locker_node.domain.lifecycle import (
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.flows.courier import Courier
from locker_node.flows.doors import fire, plan_open, require_closed
from locker_node.flows.errors import BadInput, Conflict, DoorFault, NotFound
from locker_node.flows.pickup import DoorResult
from locker_node.flows.ports import Ports
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
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            parcel = _own_dropoff(conn, courier, parcel_id)
            command_id = plan_open(
                conn,
                Purpose.COLLECT,
                parcel.compartment,
                actor=courier.actor,
                reason=f"collect drop-off {parcel.tracking_number}",
                now=now,
                parcel_id=parcel.id,
            )
        ports.crash.reach("collect.claimed", parcel.tracking_number)
        # A compartment taken out of service still holds the parcel: its door may be tried.
        outcome = fire(
            ports,
            parcel.compartment,
            command_id,
            f"collect {parcel.id}",
            allow_out_of_service=True,
        )
        opened = isinstance(outcome, DoorOpened)
        result = OperationResult.OPENED if opened else OperationResult.NOT_OPENED
        with ports.unit_of_work() as conn:
            repo.finish_operation(conn, command_id, result, ports.now())
        if not opened:
            raise DoorFault(
                f"door {parcel.compartment} did not open", compartment=parcel.compartment
            )
        return DoorResult(compartment=parcel.compartment)


def confirm_collection(ports: Ports, courier: Courier, parcel_id: str) -> DoorResult:
    """The courier has the parcel and the door reads closed: collected, the door free again."""
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            parcel = _find(conn, courier, parcel_id)
            if parcel.status == ParcelStatus.COLLECTED:
                return DoorResult(compartment=parcel.compartment, door="closed")
            parcel = _own_dropoff(conn, courier, parcel_id)
            opened = OperationResult.OPENED
            if (
                repo.last_operation(conn, Purpose.COLLECT, parcel_id=parcel.id, result=opened)
                is None
            ):
                raise Conflict(
                    "open the compartment first",
                    code="door_not_opened",
                    compartment=parcel.compartment,
                )
        require_closed(ports, parcel.compartment)
        now = ports.now()
        with ports.unit_of_work() as conn:
            repo.set_parcel_status(
                conn,
                parcel.id,
                ParcelStatus.COLLECTED,
                expect=ParcelStatus.AWAITING_COLLECTION,
                now=now,
            )
            repo.set_occupancy(
                conn, parcel.compartment, Occupancy.FREE, now, expect=Occupancy.OCCUPIED
            )
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
        return DoorResult(compartment=parcel.compartment, door="closed")


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


def _own_dropoff(conn: Connection, courier: Courier, parcel_id: str) -> repo.Parcel:
    parcel = _find(conn, courier, parcel_id)
    if parcel.status != ParcelStatus.AWAITING_COLLECTION:
        raise Conflict("this drop-off has been collected", code="already_collected")
    return parcel
