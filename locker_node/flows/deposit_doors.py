"""A `deposits` row's door: bound to a free compartment, moved to another one, and opened
again for the parcel to be taken back out when the deposit is cancelled.

A courier's deposit (`flows.deposit`) and a sender's drop-off (`flows.dropoff`) are both such a
row, one with a courier session and one without: these steps are the same for both; each flow
says who acts and what its audit log calls them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain.doors import DoorOpened
from locker_node.domain.lifecycle import DepositStatus, Occupancy, OperationResult, Purpose
from locker_node.flows.doors import fire, plan_open
from locker_node.flows.errors import DoorFault
from locker_node.flows.ports import Ports
from locker_node.hardware.board import DoorState
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit
from locker_node.store.rows import new_id


def new_deposit(
    conn: Connection,
    reservation_id: str,
    label: str,
    now: datetime,
    *,
    carrier_id: str,
    session_id: str | None,
) -> str:
    """A deposit of the reservation into `label`, its door about to open; its id. No courier
    session: a sender's drop-off."""
    deposit_id = new_id()
    repo.insert_deposit(
        conn,
        repo.Deposit(
            id=deposit_id,
            reservation_id=reservation_id,
            carrier_id=carrier_id,
            session_id=session_id,
            compartment=label,
            status=DepositStatus.OPENING,
            created_at=now,
            updated_at=now,
        ),
    )
    return deposit_id


def bind_free(
    conn: Connection,
    reservation_id: str,
    label: str,
    now: datetime,
    *,
    carrier_id: str,
    session_id: str | None,
) -> str:
    """Bind the free compartment `label` to a new deposit of the reservation; its id."""
    repo.set_occupancy(conn, label, Occupancy.BOUND, now, expect=Occupancy.FREE)
    return new_deposit(
        conn, reservation_id, label, now, carrier_id=carrier_id, session_id=session_id
    )


def rebind(
    conn: Connection,
    deposit_id: str,
    old_label: str,
    new_label: str,
    now: datetime,
    *,
    purpose: Purpose,
    actor: str,
    action: str,
    reason: str,
    open_reason: str,
    via: str | None = None,
) -> str:
    """Move the deposit from `old_label` (freed by the caller) to the free compartment
    `new_label`, write the move down as `action` and plan the new door's opening; its command
    id."""
    repo.set_occupancy(conn, new_label, Occupancy.BOUND, now, expect=Occupancy.FREE)
    repo.update_deposit(conn, deposit_id, now, compartment=new_label, status=DepositStatus.OPENING)
    append_audit(
        conn,
        at=now,
        actor=actor,
        action=action,
        compartment=new_label,
        reason=reason,
        detail={"from": old_label},
    )
    return plan_open(
        conn,
        purpose,
        new_label,
        actor=actor,
        reason=open_reason,
        now=now,
        deposit_id=deposit_id,
        via=via,
    )


def open_for_removal(
    ports: Ports, deposit: repo.Deposit, *, purpose: Purpose, actor: str, what: str, action: str
) -> None:
    """Cancelled with its door opened before: the parcel may be inside, and no sensor can tell.
    Open the door again (unless it still is) for it to be taken out, and mark the deposit
    `removing`, written down as `action`. DoorFault when the door does not open: the parcel
    stays in it, and the deposit too (it can still be confirmed). `what` names the deposit in
    the door log: "deposit", "drop-off"."""
    label = deposit.compartment
    ports.doors.poll()
    if ports.doors.status(label).door is not DoorState.OPEN:
        now = ports.now()
        with ports.unit_of_work() as conn:
            command_id = plan_open(
                conn,
                purpose,
                label,
                actor=actor,
                reason=f"{what} {deposit.id} cancelled: take the parcel out",
                now=now,
                deposit_id=deposit.id,
            )
        outcome = fire(ports, label, command_id, f"take out {what} {deposit.id}")
        opened = isinstance(outcome, DoorOpened)
        result = OperationResult.OPENED if opened else OperationResult.NOT_OPENED
        with ports.unit_of_work() as conn:
            repo.finish_operation(conn, command_id, result, ports.now())
        if not opened:
            raise DoorFault(f"door {label} did not open; the parcel stays in it", compartment=label)
    now = ports.now()
    with ports.unit_of_work() as conn:
        repo.update_deposit(conn, deposit.id, now, status=DepositStatus.REMOVING)
        append_audit(
            conn,
            at=now,
            actor=actor,
            action=action,
            compartment=label,
            reason="cancelled with the door opened: parcel to be taken out",
        )
