"""Door steps every flow shares: write down an opening, fire it, and read a door before trusting it.

A door is never opened inside a transaction, and the business side of every opening
(`door_operations`) is committed before the lock fires, so that after a crash the command
journal's outcome tells how to settle it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain.allocation import Candidate
from locker_node.domain.doors import (
    BoardDidNotAnswer,
    CompartmentUnavailable,
    UnknownCompartment,
    UnlockOutcome,
)
from locker_node.domain.lifecycle import Purpose
from locker_node.flows.bank_settings import labels_in_maintenance
from locker_node.flows.errors import Conflict, DoorFault
from locker_node.flows.ports import Ports
from locker_node.hardware.board import DoorState
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit
from locker_node.store.rows import new_id

logger = logging.getLogger(__name__)


def plan_open(
    conn: Connection,
    purpose: Purpose,
    label: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    deposit_id: str | None = None,
    parcel_id: str | None = None,
    via: str | None = None,
) -> str:
    """Write down who opens which door and why, in the caller's transaction; the command id."""
    command_id = new_id()
    repo.insert_operation(
        conn,
        repo.DoorOperation(
            command_id=command_id,
            purpose=purpose,
            compartment=label,
            actor=actor,
            deposit_id=deposit_id,
            parcel_id=parcel_id,
            via=via,
            started_at=now,
            result=None,
            finished_at=None,
        ),
    )
    append_audit(
        conn,
        at=now,
        actor=actor,
        action="door_open",
        compartment=label,
        reason=reason,
        command_id=command_id,
        parcel_id=parcel_id,
        detail={"purpose": str(purpose), **({"deposit_id": deposit_id} if deposit_id else {})},
    )
    return command_id


def free_compartments(conn: Connection, ports: Ports) -> list[Candidate]:
    """Free compartments in service whose board answers, and not in central's maintenance: a
    silent board's doors wait for it."""
    unavailable = ports.doors.silent_labels() | labels_in_maintenance(conn)
    return [c for c in repo.free_candidates(conn) if c.label not in unavailable]


def fire(
    ports: Ports, label: str, command_id: str, reason: str, *, allow_out_of_service: bool = False
) -> UnlockOutcome | None:
    """Open a door; None if the controller refused to (unknown or out-of-service label, or a
    board that does not answer)."""
    try:
        return ports.doors.open_door(
            label,
            reason=reason,
            command_id=command_id,
            allow_out_of_service=allow_out_of_service,
        )
    except (CompartmentUnavailable, UnknownCompartment) as exc:
        logger.warning("door %s not opened: %s", label, exc)
        return None


def take_out_of_service(ports: Ports, label: str, outcome: UnlockOutcome) -> None:
    # A jam already took the compartment out of service inside the controller; an unknown
    # outcome did not, but nobody should be sent to that door before someone looks at it.
    # Unless the board did not answer: then the board is at fault, and the controller keeps
    # its doors from everyone until it answers again.
    if isinstance(outcome, BoardDidNotAnswer):
        return
    if ports.doors.status(label).in_service:
        ports.doors.mark_out_of_service(
            label, f"door did not open ({type(outcome).__name__}); inspect"
        )


def require_closed(ports: Ports, label: str) -> None:
    """Read the doors now: a confirmation stands on what the sensor says at this moment."""
    ports.doors.poll()
    status = ports.doors.status(label)
    if not status.board_answering:
        # The last reading from a silent board says nothing of the door now.
        raise DoorFault(
            f"door {label} cannot be read: its board does not answer", compartment=label
        )
    if status.door is DoorState.OPEN:
        raise Conflict(f"close door {label} first", code="door_open", compartment=label)
    if status.door is None:
        raise DoorFault(f"door {label} cannot be read", compartment=label)
