"""Returns: parcels past their pickup deadline go back to their carrier's courier."""

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
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            parcel = _own_return(conn, courier, parcel_id)
            command_id = plan_open(
                conn,
                Purpose.RETURN,
                parcel.compartment,
                actor=courier.actor,
                reason=f"return {parcel.tracking_number}",
                now=now,
                parcel_id=parcel.id,
            )
        ports.crash.reach("return.claimed", parcel.tracking_number)
        outcome = fire(
            ports,
            parcel.compartment,
            command_id,
            f"return {parcel.id}",
            allow_out_of_service=True,
        )
        now = ports.now()
        opened = isinstance(outcome, DoorOpened)
        result = OperationResult.OPENED if opened else OperationResult.NOT_OPENED
        with ports.unit_of_work() as conn:
            repo.finish_operation(conn, command_id, result, now)
        if not opened:
            raise DoorFault(
                f"door {parcel.compartment} did not open", compartment=parcel.compartment
            )
        return DoorResult(compartment=parcel.compartment)


def confirm_return(ports: Ports, courier: Courier, parcel_id: str) -> DoorResult:
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            if not inputs.is_node_id(parcel_id):
                raise BadInput("not a parcel id")
            parcel = repo.get_parcel(conn, parcel_id)
            if parcel is None or parcel.carrier_id != courier.carrier_id:
                raise NotFound("no such parcel to return", code="unknown_parcel")
            if parcel.status == ParcelStatus.RETURNED:
                return DoorResult(compartment=parcel.compartment, door="closed")
            parcel = _own_return(conn, courier, parcel_id)
            opened = OperationResult.OPENED
            if (
                repo.last_operation(conn, Purpose.RETURN, parcel_id=parcel.id, result=opened)
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
                conn, parcel.id, ParcelStatus.RETURNED, expect=ParcelStatus.EXPIRED, now=now
            )
            # Free unless a group-mate is still in it (`store.groups`).
            group_codes.vacate(conn, parcel.compartment, now, expect=(Occupancy.OCCUPIED,))
            repo.update_reservation(
                conn, parcel.reservation_id, now, status=ReservationStatus.RETURNED
            )
            event = ParcelReturned(
                reservation_id=parcel.reservation_id,
                parcel_id=parcel.id,
                carrier_id=parcel.carrier_id,
                tracking_number=parcel.tracking_number,
                compartment=parcel.compartment,
                returned_at=now,
            )
            record(conn, event, at=now, bank_id=ports.policy.bank_id, actor=courier.actor)
        return DoorResult(compartment=parcel.compartment, door="closed")


def _own_return(conn: Connection, courier: Courier, parcel_id: str) -> repo.Parcel:
    if not inputs.is_node_id(parcel_id):
        raise BadInput("not a parcel id")
    parcel = repo.get_parcel(conn, parcel_id)
    if parcel is None or parcel.carrier_id != courier.carrier_id:
        raise NotFound("no such parcel to return", code="unknown_parcel")
    if parcel.status != ParcelStatus.EXPIRED:
        raise Conflict("this parcel is not waiting for a return", code="not_returnable")
    return parcel
