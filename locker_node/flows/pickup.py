"""Recipient pickup: a code on the keypad or a QR code opens the parcel's compartment, once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain.codes import is_well_formed_code, is_well_formed_token
from locker_node.domain.doors import DoorOpened
from locker_node.domain.lifecycle import (
    CodeStatus,
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.flows import keypad
from locker_node.flows.doors import fire, plan_open
from locker_node.flows.errors import (
    AlreadyCollected,
    BadInput,
    DoorFault,
    InvalidCode,
    InvalidQr,
)
from locker_node.flows.ports import RECIPIENT, Ports
from locker_node.store import groups as group_codes
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit, record
from locker_wire.events import ParcelPickedUp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoorResult:
    compartment: str
    door: str = "open"
    # A pickup opens every door holding a parcel of its code (a parcel group's share one):
    # those that opened, `compartment` first, and those that did not (their parcels stay, and
    # the code stays valid for them).
    compartments: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeypadStatus:
    locked: bool
    retry_after_s: int


def keypad_status(ports: Ports) -> KeypadStatus:
    now = ports.now()
    with ports.unit_of_work() as conn:
        retry = keypad.retry_after(conn, ports.policy.pickup_scope, now)
    return KeypadStatus(locked=retry > 0, retry_after_s=retry)


def pickup_with_code(ports: Ports, code: str) -> DoorResult:
    code = code.strip()
    digits = ports.policy.code_digits
    if not is_well_formed_code(code, digits):
        raise BadInput(f"a pickup code is {digits} digits")
    digest = ports.keys.pickup_codes.digest(code)
    with ports.flow_lock:
        now = ports.now()
        refusal: InvalidCode | None = None
        with ports.unit_of_work() as conn:
            keypad.refuse_if_locked(conn, ports, now)
            live = repo.find_live_code(conn, now, code_hash=digest)
            if live is None and repo.find_used_code(conn, code_hash=digest) is not None:
                # A recipient typing their code again is no guess: no strike.
                raise AlreadyCollected("this parcel has already been collected")
            if live is None:
                # Counted in this transaction; raised after it commits, or the rollback
                # would forget the attempt.
                refusal = keypad.wrong_pickup_code(
                    conn, ports, actor=RECIPIENT, action="pickup_code_refused", now=now
                )
            else:
                doors = _claim(conn, live, "code", now)
        if refusal is not None:
            raise refusal
        ports.crash.reach("pickup.claimed", doors[0].parcel.tracking_number)
        return _open(ports, doors, "code")


def pickup_with_qr(ports: Ports, token: str) -> DoorResult:
    token = token.strip()
    if not is_well_formed_token(token):
        raise BadInput("not a pickup QR code")
    digest = ports.keys.qr_tokens.digest(token)
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            live = repo.find_live_code(conn, now, qr_hash=digest)
            if live is None and repo.find_used_code(conn, qr_hash=digest) is not None:
                raise AlreadyCollected("this parcel has already been collected")
            if live is None:
                raise InvalidQr("this QR code does not open any compartment")
            doors = _claim(conn, live, "qr", now)
        ports.crash.reach("pickup.claimed", doors[0].parcel.tracking_number)
        return _open(ports, doors, "qr")


@dataclass(frozen=True)
class _Door:
    """A door a pickup opens: the first parcel behind it (the others of the code behind the
    same door are collected with it, `complete_pickup`) and the opening written down for it."""

    parcel: repo.Parcel
    command_id: str


def _claim(conn: Connection, code: repo.PickupCode, via: str, now: datetime) -> list[_Door]:
    """Write down the opening of every door holding a parcel the code opens, each door once:
    the parcels of a group share one code (`store.groups`)."""
    openable = [
        parcel
        for parcel in group_codes.members(conn, group_codes.holder_of(code))
        if parcel.pickup_deadline > now
    ]
    if not openable:
        # A live code belongs to a parcel in its compartment: the store says otherwise.
        raise RuntimeError(f"live pickup code of parcel {code.parcel_id} opens no waiting parcel")
    doors: list[_Door] = []
    for parcel in openable:
        if any(door.parcel.compartment == parcel.compartment for door in doors):
            continue
        command_id = plan_open(
            conn,
            Purpose.PICKUP,
            parcel.compartment,
            actor=RECIPIENT,
            reason=f"pickup by {via}",
            now=now,
            parcel_id=parcel.id,
            via=via,
        )
        doors.append(_Door(parcel, command_id))
    return doors


def _open(ports: Ports, doors: list[_Door], via: str) -> DoorResult:
    """Open the doors one after the other; a door that fails keeps its parcels and their code."""
    opened = [door.parcel.compartment for door in doors if _open_door(ports, door, via)]
    failed = tuple(
        door.parcel.compartment for door in doors if door.parcel.compartment not in opened
    )
    if not opened:
        label = failed[0]
        raise DoorFault(f"door {label} did not open; the code stays valid", compartment=label)
    return DoorResult(compartment=opened[0], compartments=tuple(opened), failed=failed)


def _open_door(ports: Ports, door: _Door, via: str) -> bool:
    parcel, command_id = door.parcel, door.command_id
    label = parcel.compartment
    # A compartment marked faulty still holds the parcel: trying its door again is
    # harmless, and the only way the recipient gets the parcel without an operator.
    subject = parcel.tracking_number
    outcome = fire(
        ports, label, command_id, f"pickup {subject} parcel {parcel.id}", allow_out_of_service=True
    )
    if isinstance(outcome, DoorOpened):
        ports.crash.reach("pickup.door_opened", subject)
        now = ports.now()
        with ports.unit_of_work() as conn:
            complete_pickup(conn, ports, parcel.id, command_id, via, now, reason="door opened")
            ports.crash.reach("pickup.before_commit", subject)
        ports.crash.reach("pickup.done", subject)
        logger.info("pickup: compartment %s opened (parcel %s)", label, parcel.id)
        return True
    # None: the controller refused to fire (unknown label, or its board is silent).
    what = (
        "not fired (refused by the door controller)" if outcome is None else type(outcome).__name__
    )
    now = ports.now()
    with ports.unit_of_work() as conn:
        repo.finish_operation(conn, command_id, OperationResult.NOT_OPENED, now)
        append_audit(
            conn,
            at=now,
            actor=RECIPIENT,
            action="pickup_door_fault",
            compartment=label,
            command_id=command_id,
            parcel_id=parcel.id,
            reason=what,
        )
    logger.warning("pickup: compartment %s did not open (%s)", label, what)
    return False


def complete_pickup(
    conn: Connection,
    ports: Ports,
    parcel_id: str,
    command_id: str,
    via: str | None,
    now: datetime,
    *,
    reason: str,
) -> None:
    """The door of a pickup opened: the parcel is collected, its code used, its place free
    once nothing is left in it; and so is every parcel of the same code behind that door (a
    parcel group's may share a compartment)."""
    repo.finish_operation(conn, command_id, OperationResult.OPENED, now)
    parcel = repo.get_parcel(conn, parcel_id)
    if parcel is None or parcel.status != ParcelStatus.IN_LOCKER:
        return
    for collected in [parcel, *group_codes.door_mates(conn, parcel)]:
        _collect(conn, ports, collected, command_id, via, now, reason=reason)


def _collect(
    conn: Connection,
    ports: Ports,
    parcel: repo.Parcel,
    command_id: str,
    via: str | None,
    now: datetime,
    *,
    reason: str,
) -> None:
    group_codes.end_code(conn, parcel.id, CodeStatus.USED, now)
    repo.set_parcel_status(
        conn, parcel.id, ParcelStatus.PICKED_UP, expect=ParcelStatus.IN_LOCKER, now=now
    )
    group_codes.vacate(conn, parcel.compartment, now, expect=(Occupancy.OCCUPIED,))
    repo.update_reservation(conn, parcel.reservation_id, now, status=ReservationStatus.PICKED_UP)
    event = ParcelPickedUp(
        reservation_id=parcel.reservation_id,
        parcel_id=parcel.id,
        carrier_id=parcel.carrier_id,
        tracking_number=parcel.tracking_number,
        compartment=parcel.compartment,
        picked_up_at=now,
        via=via,
    )
    record(
        conn,
        event,
        at=now,
        bank_id=ports.policy.bank_id,
        actor=RECIPIENT,
        command_id=command_id,
        reason=reason,
    )
