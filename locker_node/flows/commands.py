"""Commands from central, typed and dispatched by type: remote opens, compartments taken out of
and back into service, cancelled reservations, extended deadlines, killed or reissued codes.

Each command runs at most once: its acknowledgement is kept in the audit log, and a command
seen again is answered from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from locker_node.domain.codes import issue_pickup_code
from locker_node.domain.doors import CompartmentUnavailable, DoorOpened, UnknownCompartment
from locker_node.domain.lifecycle import CodeStatus
from locker_node.flows.errors import CommandRefused, Refused
from locker_node.flows.feed import cancel_reservation, follow_pickup_deadline
from locker_node.flows.mass_open import open_many
from locker_node.flows.ports import Ports
from locker_node.store import groups as group_codes
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit, audit_for_command, count_audit_since, record
from locker_wire.commands import (
    CancelReservation,
    CommandPayload,
    DisableCompartment,
    EnableCompartment,
    ExtendDeadline,
    InvalidateCode,
    OpenCompartment,
    OpenCompartments,
    parse_command,
)
from locker_wire.events import ParcelCodeReissued
from locker_wire.schemas import Command, CommandAck

logger = logging.getLogger(__name__)

ACTOR = "central"
Verify = Callable[[Command, datetime], None]
"""Checks a command's signature, expiry and addressee; raises `CommandRefused`."""


def handle(ports: Ports, command: Command, *, verify: Verify) -> CommandAck:
    """Verify, execute once, record; a command seen again answers what it answered then."""
    with ports.unit_of_work() as conn:
        seen = audit_for_command(conn, "remote_command", command.id)
    if seen is not None and seen.detail is not None:
        return CommandAck.model_validate_json(seen.detail)
    ack = _execute(ports, command, verify)
    label = command.payload.get("compartment")
    with ports.unit_of_work() as conn:
        append_audit(
            conn,
            at=ports.now(),
            actor=ACTOR,
            action="remote_command",
            reason=command.type,
            compartment=str(label)[:16] if isinstance(label, str) else None,
            command_id=command.id,
            detail=ack.model_dump(),
        )
    return ack


def _execute(ports: Ports, command: Command, verify: Verify) -> CommandAck:
    now = ports.now()
    try:
        verify(command, now)
        if command.bank_id != ports.policy.bank_id:
            raise CommandRefused(f"command {command.id} is for bank {command.bank_id}")
    except CommandRefused as exc:
        logger.error("refused command %s: %s", command.id, exc)
        return CommandAck(outcome="failed", detail=f"refused: {exc.code}: {exc}")
    try:
        payload = parse_command(command)
        return _HANDLERS[type(payload)](ports, command.id, payload, now)
    except (KeyError, ValueError, TypeError, CompartmentUnavailable, UnknownCompartment) as exc:
        return CommandAck(outcome="failed", detail=f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # Acked failed rather than left pending: a command that breaks the node once would
        # break it again on every pass.
        logger.exception("command %s failed", command.id)
        return CommandAck(outcome="failed", detail=f"{type(exc).__name__}: {exc}")


def _open(ports: Ports, command_id: str, payload: OpenCompartment, now: datetime) -> CommandAck:
    label = payload.compartment
    policy = ports.policy
    with ports.unit_of_work() as conn:
        recent = count_audit_since(conn, "remote_open", now - policy.remote_open_window)
        if recent >= policy.remote_open_limit:
            logger.error("remote open of %s refused: rate limit", label)
            window_s = int(policy.remote_open_window.total_seconds())
            return CommandAck(
                outcome="failed",
                detail=f"rate limited: {recent} remote opens in the last {window_s} s",
            )
        # Counted before the door fires, so a crash mid-open still uses up one.
        append_audit(
            conn,
            at=now,
            actor=ACTOR,
            action="remote_open",
            compartment=label,
            command_id=command_id,
        )
    outcome = ports.doors.open_door(
        label, reason=f"remote open {command_id}", allow_out_of_service=True
    )
    if isinstance(outcome, DoorOpened):
        return CommandAck(outcome="ok")
    return CommandAck(outcome="failed", detail=f"door: {type(outcome).__name__}")


def _open_many(
    ports: Ports, command_id: str, payload: OpenCompartments, now: datetime
) -> CommandAck:
    """A mass open central issued after a second admin approved it: each door, once."""
    return open_many(ports, command_id, payload, now)


def _disable(
    ports: Ports, command_id: str, payload: DisableCompartment, now: datetime
) -> CommandAck:
    ports.doors.mark_out_of_service(payload.compartment, "disabled by central")
    return CommandAck(outcome="ok")


def _enable(ports: Ports, command_id: str, payload: EnableCompartment, now: datetime) -> CommandAck:
    ports.doors.return_to_service(payload.compartment)
    return CommandAck(outcome="ok")


def _cancel(ports: Ports, command_id: str, payload: CancelReservation, now: datetime) -> CommandAck:
    with ports.unit_of_work() as conn:
        if cancel_reservation(conn, payload.reservation_id, now):
            return CommandAck(outcome="ok")
    return CommandAck(outcome="failed", detail="unknown here, or already deposited or finished")


def _extend(ports: Ports, command_id: str, payload: ExtendDeadline, now: datetime) -> CommandAck:
    with ports.unit_of_work() as conn:
        if payload.until is not None:
            done = follow_pickup_deadline(conn, payload.reservation_id, payload.until, now)
        else:
            done = extend_pickup(conn, payload.reservation_id, payload.hours, now)
        return _parcel_command_done(conn, command_id, payload, done, now)


def _invalidate(
    ports: Ports, command_id: str, payload: InvalidateCode, now: datetime
) -> CommandAck:
    with ports.unit_of_work() as conn:
        if payload.reissue:
            reissued = reissue_pickup_code(
                conn, ports, payload.reservation_id, now, command_id=command_id
            )
            done = reissued is not None
        else:
            done = invalidate_pickup_code(conn, payload.reservation_id, now)
        return _parcel_command_done(conn, command_id, payload, done, now)


def _parcel_command_done(
    conn: Connection, command_id: str, payload: CommandPayload, done: bool, now: datetime
) -> CommandAck:
    if not done:
        return CommandAck(
            outcome="failed", detail="no parcel of that reservation is in a compartment"
        )
    append_audit(
        conn,
        at=now,
        actor=ACTOR,
        action=payload.command_type,
        command_id=command_id,
        detail=payload.model_dump(exclude_unset=True),
    )
    return CommandAck(outcome="ok")


_HANDLERS: dict[type[CommandPayload], Callable[[Ports, str, Any, datetime], CommandAck]] = {
    OpenCompartment: _open,
    DisableCompartment: _disable,
    EnableCompartment: _enable,
    CancelReservation: _cancel,
    ExtendDeadline: _extend,
    InvalidateCode: _invalidate,
    OpenCompartments: _open_many,
}


def extend_pickup(conn: Connection, reservation_id: str, hours: int, now: datetime) -> bool:
    """Give a parcel still in its compartment more time; False if there is no such parcel."""
    if not 1 <= hours <= 24 * 7:
        raise Refused("an extension is 1 to 168 hours")
    parcel = repo.parcel_in_locker(conn, reservation_id)
    if parcel is None:
        return False
    repo.move_pickup_deadline(conn, parcel, parcel.pickup_deadline + timedelta(hours=hours), now)
    return True


def invalidate_pickup_code(conn: Connection, reservation_id: str, now: datetime) -> bool:
    """Kill the live pickup code (and QR) of a parcel in its compartment; False if none."""
    parcel = repo.parcel_in_locker(conn, reservation_id)
    if parcel is None:
        return False
    code = repo.get_pickup_code(conn, parcel.id)
    if code is None or code.status != CodeStatus.ACTIVE:
        return False
    # The parcels that share the code (a parcel group) keep it.
    group_codes.end_code(conn, parcel.id, CodeStatus.REVOKED, now)
    return True


def reissue_pickup_code(
    conn: Connection,
    ports: Ports,
    reservation_id: str,
    now: datetime,
    *,
    command_id: str | None = None,
) -> str | None:
    """Replace the pickup code and QR of a parcel in its compartment with new ones.

    The old pair stops working in this transaction, and the new pair goes out in a
    `parcel.code_reissued` event, sealed like a deposit's, for central to pass to the carrier.
    Returns the event's id, or None when no parcel of that reservation is in a compartment.
    """
    parcel = repo.parcel_in_locker(conn, reservation_id)
    if parcel is None:
        return None
    if parcel.pickup_deadline <= now:
        raise Refused("the parcel is past its pickup deadline: extend it first")
    old = repo.get_pickup_code(conn, parcel.id)
    old_hash = old.code_hash if old is not None and old.status == CodeStatus.ACTIVE else None
    keys = ports.keys
    issued = issue_pickup_code(
        keys.pickup_codes,
        keys.qr_tokens,
        digits=ports.policy.code_digits,
        # The old code's row is about to be overwritten; its code must not come back by chance.
        in_use=lambda digest: digest == old_hash or repo.code_hash_in_use(conn, digest),
    )
    # A code of its own: the group-mates that share its old code keep that one.
    group_codes.leave_code(conn, parcel.id)
    # One code row per parcel: the new pair takes the old one's place, its hashes gone with it.
    repo.replace_pickup_code(
        conn, repo.active_pickup_code(parcel.id, issued, parcel.pickup_deadline, now)
    )
    event = ParcelCodeReissued(
        reservation_id=parcel.reservation_id,
        parcel_id=parcel.id,
        carrier_id=parcel.carrier_id,
        tracking_number=parcel.tracking_number,
        compartment=parcel.compartment,
        pickup_deadline=parcel.pickup_deadline,
        reissued_at=now,
        command_id=command_id,
        # Sealed under a node key at rest, as a deposit's; sync re-seals them for central.
        sealed_pickup_code=keys.seal(issued.code),
        sealed_qr_payload=keys.seal(issued.qr_token),
    )
    return record(conn, event, at=now, bank_id=ports.policy.bank_id)
