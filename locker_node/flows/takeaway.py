"""A courier takes a parcel out of the locker: its door opens for the courier, and the parcel
counts as taken once the courier confirms with the door closed.

The steps the courier's two takeaways share: returns (`flows.returns`, a parcel past its pickup
deadline) and collection (`flows.collect`, a sender's drop-off). Each says which parcel is the
courier's to take and what taking it changes; the door steps are these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain.doors import DoorOpened
from locker_node.domain.lifecycle import OperationResult, ParcelStatus, Purpose
from locker_node.flows.courier import Courier
from locker_node.flows.doors import fire, plan_open, require_closed
from locker_node.flows.errors import Conflict, DoorFault
from locker_node.flows.pickup import DoorResult
from locker_node.flows.ports import Ports
from locker_node.store import repository as repo


@dataclass(frozen=True)
class Takeaway:
    """One kind of takeaway: what its door openings are written down as, and its parcels."""

    purpose: Purpose
    step: str  # the crash point's and the door log's word: "collect", "return"
    taken: ParcelStatus  # the parcel's status once the courier has it
    # The courier's parcel of that id, waiting or taken (NotFound otherwise).
    find: Callable[[Connection, Courier, str], repo.Parcel]
    # Conflict unless the parcel is waiting for the courier.
    require_waiting: Callable[[repo.Parcel], None]
    # Why its door opens, for the audit log.
    reason: Callable[[repo.Parcel], str]


def open_door(ports: Ports, courier: Courier, parcel_id: str, how: Takeaway) -> DoorResult:
    """Open the door of a parcel waiting for the courier; DoorFault when it does not open."""
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            parcel = how.find(conn, courier, parcel_id)
            how.require_waiting(parcel)
            command_id = plan_open(
                conn,
                how.purpose,
                parcel.compartment,
                actor=courier.actor,
                reason=how.reason(parcel),
                now=now,
                parcel_id=parcel.id,
            )
        ports.crash.reach(f"{how.step}.claimed", parcel.tracking_number)
        # A compartment taken out of service still holds the parcel: its door may be tried.
        outcome = fire(
            ports,
            parcel.compartment,
            command_id,
            f"{how.step} {parcel.id}",
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


def confirm_taken(
    ports: Ports,
    courier: Courier,
    parcel_id: str,
    how: Takeaway,
    settle: Callable[[Connection, repo.Parcel, datetime], None],
) -> DoorResult:
    """The courier has the parcel and its door reads closed: `settle` writes down what taking it
    changes, in one transaction. A parcel taken already answers the same again."""
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            parcel = how.find(conn, courier, parcel_id)
            if parcel.status == how.taken:
                return DoorResult(compartment=parcel.compartment, door="closed")
            how.require_waiting(parcel)
            opened = OperationResult.OPENED
            if repo.last_operation(conn, how.purpose, parcel_id=parcel.id, result=opened) is None:
                raise Conflict(
                    "open the compartment first",
                    code="door_not_opened",
                    compartment=parcel.compartment,
                )
        require_closed(ports, parcel.compartment)
        now = ports.now()
        with ports.unit_of_work() as conn:
            settle(conn, parcel, now)
        return DoorResult(compartment=parcel.compartment, door="closed")
