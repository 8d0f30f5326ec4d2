"""Drop-offs: a sender's code (or QR) opens a free door of the drop-off's size, the sender puts
the parcel in and closes the door, and the parcel waits for its carrier's courier (collect.py).

The codes come from central as hashes in the feed (`store_code`); they work with central out of
reach. A typed code counts against the same keypad pace as pickup codes, so the guessing bound
in the README holds for both together. The sender's door is a `deposits` row without a courier
session: binding, opening and moving to another door when one fails work as for a courier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain import dropoffs as codes
from locker_node.domain import inputs
from locker_node.domain.allocation import choose_compartment
from locker_node.domain.doors import DoorOpened
from locker_node.domain.lifecycle import (
    CodeStatus,
    DepositStatus,
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.flows import bank_settings, keypad
from locker_node.flows.deposit_doors import bind_free, open_for_removal, rebind
from locker_node.flows.doors import (
    fire,
    free_compartments,
    plan_open,
    require_closed,
    take_out_of_service,
)
from locker_node.flows.errors import (
    BadInput,
    Conflict,
    DoorFault,
    InvalidCode,
    InvalidQr,
    NotFound,
    Refused,
)
from locker_node.flows.ports import Ports
from locker_node.store import dropoffs as store
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit, record
from locker_node.store.rows import new_id
from locker_wire.events import DropoffDeposited

logger = logging.getLogger(__name__)

SENDER = "sender"
DROPOFF = "dropoff"  # the reservation kind


@dataclass(frozen=True)
class DropoffView:
    dropoff_id: str
    compartment: str
    door: str
    status: str
    moved_from: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DroppedOff:
    dropoff_id: str
    parcel_id: str
    compartment: str


@dataclass(frozen=True)
class CancelledDropoff:
    dropoff_id: str
    status: str  # "removing": take the parcel out and close the door; "cancelled": done
    compartment: str
    door: str


# Codes from central's feed


@dataclass(frozen=True)
class DropoffCodeIn:
    """A drop-off's code as the feed carries it (the wire's `DropoffCodeHash`)."""

    code_hash: str
    salt: str
    n: int
    r: int
    p: int
    qr_hash: str


def store_code(conn: Connection, reservation_id: str, code: DropoffCodeIn, now: datetime) -> None:
    """Keep a reserved drop-off's code as its hashes; a drop-off finished here keeps its end."""
    try:
        stored = codes.stored_code_hash(code.code_hash, code.salt, code.n, code.r, code.p)
    except ValueError as exc:
        raise Refused(f"drop-off code hashes are $scrypt$ hashes: {exc}") from exc
    qr_hash = code.qr_hash.lower()
    if not codes.is_qr_digest(qr_hash):
        raise Refused("a drop-off QR hash is a hex SHA-256")
    reservation = repo.get_reservation(conn, reservation_id)
    if reservation is None or reservation.kind != DROPOFF:
        raise Refused(f"reservation {reservation_id} is not a drop-off here")
    if reservation.status != ReservationStatus.RESERVED:
        return
    if store.qr_hash_taken(conn, qr_hash, by_other_than=reservation_id):
        raise Refused("that QR hash belongs to another drop-off")
    store.put_code(conn, reservation_id, code_hash=stored, qr_hash=qr_hash, now=now)


def end_code(conn: Connection, reservation_id: str, status: CodeStatus, now: datetime) -> bool:
    """A drop-off cancelled or expired: its code dies (and forgets its hashes)."""
    return store.kill_code(conn, reservation_id, status, now)


def expire_reservation(conn: Connection, reservation_id: str, now: datetime) -> bool:
    """Central expired a drop-off nobody brought: unless a sender is at its door right now."""
    reservation = repo.get_reservation(conn, reservation_id)
    if reservation is None or reservation.kind != DROPOFF:
        return False
    if reservation.status != ReservationStatus.RESERVED:
        return False
    if repo.active_deposit(conn, reservation_id) is not None:
        return False
    repo.update_reservation(conn, reservation_id, now, status=ReservationStatus.EXPIRED)
    end_code(conn, reservation_id, CodeStatus.EXPIRED, now)
    return True


# The sender at the kiosk


@dataclass(frozen=True)
class _Claim:
    deposit_id: str
    label: str
    command_id: str
    tracking: str
    size: str
    via: str  # how the sender opened it: code or qr
    # A door that was open for this drop-off before may hold the parcel: if it fails now, the
    # drop-off stays where it is instead of moving to another door.
    may_move: bool


def start_dropoff(ports: Ports, code: str) -> DropoffView:
    code = code.strip()
    if not codes.is_well_formed_code(code):
        raise BadInput(f"a drop-off code is {codes.DROPOFF_CODE_DIGITS} digits")
    with ports.unit_of_work() as conn:
        bank_settings.refuse_if_in_maintenance(conn)
        # Refused before any hashing: a locked keypad tells nothing and costs no scrypt.
        keypad.refuse_if_locked(conn, ports, ports.now())
        prefixes = store.hash_prefixes(conn)
    # One scrypt per salt and cost (tens of milliseconds each), outside the flow lock. A salt
    # that arrives meanwhile is missed by this attempt only.
    digests = [codes.hash_code(code, codes.ScryptParams(prefix)) for prefix in prefixes]
    with ports.flow_lock:
        now = ports.now()
        refusal: InvalidCode | None = None
        with ports.unit_of_work() as conn:
            # Again under the lock: a parallel wrong code may have locked the keypad.
            keypad.refuse_if_locked(conn, ports, now)
            live = store.find_code(conn, CodeStatus.ACTIVE, code_hashes=digests)
            if live is None and store.find_code(conn, CodeStatus.USED, code_hashes=digests):
                # The sender typing their code again is no guess: no strike.
                raise _already_dropped_off()
            if live is None:
                # Counted in this transaction, raised after it commits.
                # The pickup keypad's count and pace: one budget of guesses for both kinds.
                refusal = keypad.wrong_pickup_code(
                    conn, ports, actor=SENDER, action="dropoff_code_refused", now=now
                )
            else:
                claim = _claim(conn, ports, live.reservation_id, "code", now)
        if refusal is not None:
            raise refusal
        ports.crash.reach("dropoff.claimed", claim.tracking)
        return _open(ports, claim)


def start_dropoff_qr(ports: Ports, token: str) -> DropoffView:
    """A QR payload carries far too many bits to guess: no keypad pace, as for pickups."""
    token = token.strip()
    if not codes.is_well_formed_qr_payload(token):
        raise BadInput("not a drop-off QR code")
    digest = codes.qr_digest(token)
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            bank_settings.refuse_if_in_maintenance(conn)
            live = store.find_code(conn, CodeStatus.ACTIVE, qr_hash=digest)
            if live is None and store.find_code(conn, CodeStatus.USED, qr_hash=digest):
                raise _already_dropped_off()
            if live is None:
                raise InvalidQr("this QR code does not open any compartment")
            claim = _claim(conn, ports, live.reservation_id, "qr", now)
        ports.crash.reach("dropoff.claimed", claim.tracking)
        return _open(ports, claim)


def _already_dropped_off() -> Conflict:
    return Conflict("this parcel has already been dropped off", code="already_dropped_off")


def _claim(conn: Connection, ports: Ports, reservation_id: str, via: str, now: datetime) -> _Claim:
    """Bind the drop-off to a door (the one it is bound to already, or a free one that fits)
    and plan its opening."""
    reservation = repo.get_reservation(conn, reservation_id)
    if reservation is None or reservation.kind != DROPOFF:
        raise RuntimeError(f"live drop-off code of {reservation_id}, which is not a drop-off")
    if reservation.status == ReservationStatus.CANCELLED:
        raise Conflict("this drop-off was cancelled", code="dropoff_cancelled")
    if reservation.status != ReservationStatus.RESERVED:
        raise _already_dropped_off()
    deposit = repo.active_deposit(conn, reservation.id)
    if deposit is None and reservation.reserved_until <= now:
        raise Conflict("this drop-off code has expired", code="dropoff_expired")
    may_move = True
    if deposit is not None:
        # The code typed again (the first answer was lost, or the sender came back): the door
        # it is bound to opens again.
        deposit_id, label = deposit.id, deposit.compartment
        may_move = not DepositStatus(deposit.status).door_was_opened
        if may_move:
            repo.update_deposit(conn, deposit_id, now, status=DepositStatus.OPENING)
    else:
        deposit_id, label = _bind(conn, ports, reservation, now)
    command_id = plan_open(
        conn,
        Purpose.DROPOFF,
        label,
        actor=SENDER,
        reason=f"drop-off {reservation.tracking_number}",
        now=now,
        deposit_id=deposit_id,
        via=via,
    )
    return _Claim(
        deposit_id,
        label,
        command_id,
        reservation.tracking_number,
        reservation.size,
        via,
        may_move,
    )


def _bind(
    conn: Connection, ports: Ports, reservation: repo.Reservation, now: datetime
) -> tuple[str, str]:
    candidate = choose_compartment(
        free_compartments(conn, ports), reservation.size, allow_upsize=ports.policy.allow_upsize
    )
    if candidate is None:
        raise Conflict(f"no free compartment of size {reservation.size}", code="no_capacity")
    deposit_id = bind_free(
        conn,
        reservation.id,
        candidate.label,
        now,
        carrier_id=reservation.carrier_id,
        session_id=None,  # no courier: a sender's drop-off
    )
    return deposit_id, candidate.label


def _open(ports: Ports, claim: _Claim) -> DropoffView:
    """Open the bound door; when it fails, move to another free door and try that one."""
    label, command_id = claim.label, claim.command_id
    moved_from: list[str] = []
    while True:
        outcome = fire(ports, label, command_id, f"drop-off {claim.tracking} {claim.deposit_id}")
        opened = isinstance(outcome, DoorOpened)
        now = ports.now()
        if opened:
            with ports.unit_of_work() as conn:
                repo.finish_operation(conn, command_id, OperationResult.OPENED, now)
                repo.update_deposit(conn, claim.deposit_id, now, status=DepositStatus.OPEN)
            logger.info("drop-off: door %s open (%s)", label, claim.deposit_id)
            return DropoffView(claim.deposit_id, label, "open", DepositStatus.OPEN, moved_from)
        if outcome is not None and claim.may_move:
            take_out_of_service(ports, label, outcome)
        moved_from.append(label)
        with ports.unit_of_work() as conn:
            repo.finish_operation(conn, command_id, OperationResult.NOT_OPENED, now)
            moved = None
            if claim.may_move:
                give_up = len(moved_from) > ports.policy.max_moves
                moved = _move(conn, ports, claim, label, now, give_up=give_up)
        logger.warning("drop-off: door %s did not open (%s)", label, claim.deposit_id)
        if moved is None:
            raise DoorFault(
                f"door {label} did not open; the code stays valid",
                compartment=label,
                moved_from=moved_from,
            )
        label, command_id = moved


def _move(
    conn: Connection, ports: Ports, claim: _Claim, old_label: str, now: datetime, *, give_up: bool
) -> tuple[str, str] | None:
    """Rebind the drop-off to another free door and plan its opening; None (the drop-off
    cancelled, its code still good) when there is none."""
    free = [c for c in free_compartments(conn, ports) if c.label != old_label]
    candidate = (
        None
        if give_up
        else choose_compartment(free, claim.size, allow_upsize=ports.policy.allow_upsize)
    )
    repo.set_occupancy(conn, old_label, Occupancy.FREE, now, expect=Occupancy.BOUND)
    if candidate is None:
        repo.update_deposit(conn, claim.deposit_id, now, status=DepositStatus.CANCELLED)
        append_audit(
            conn,
            at=now,
            actor=SENDER,
            action="dropoff_cancelled",
            compartment=old_label,
            reason=f"door {old_label} did not open; no other compartment",
        )
        return None
    command_id = rebind(
        conn,
        claim.deposit_id,
        old_label,
        candidate.label,
        now,
        purpose=Purpose.DROPOFF,
        actor=SENDER,
        action="dropoff_moved",
        reason=f"door {old_label} did not open",
        open_reason=f"drop-off {claim.tracking}: door {old_label} did not open",
        via=claim.via,
    )
    return candidate.label, command_id


def confirm_dropoff(ports: Ports, dropoff_id: str) -> DroppedOff:
    """The door reads closed after the sender's opening: the parcel is in, the code used."""
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            deposit = _own_dropoff(conn, dropoff_id)
            if deposit.status == DepositStatus.CONFIRMED:
                return _dropped_off(conn, deposit)
            _require_active(deposit)
            if deposit.status == DepositStatus.OPENING:
                raise Conflict(
                    "the door was never seen open; enter the code again",
                    code="door_not_opened",
                    compartment=deposit.compartment,
                )
        require_closed(ports, deposit.compartment)
        now = ports.now()
        with ports.unit_of_work() as conn:
            current = repo.get_deposit(conn, deposit.id)
            if current is None or not DepositStatus(current.status).door_was_opened:
                # Only this flow moves an open drop-off on, and it holds the flow lock.
                raise RuntimeError(f"drop-off {deposit.id} changed while it was being confirmed")
            parcel = _store_parcel(conn, ports, current, now)
        logger.info("drop-off: parcel %s in compartment %s", parcel.id, parcel.compartment)
        return DroppedOff(deposit.id, parcel.id, parcel.compartment)


def _dropped_off(conn: Connection, deposit: repo.Deposit) -> DroppedOff:
    parcel = repo.parcel_for_deposit(conn, deposit.id)
    if parcel is None:
        raise RuntimeError(f"confirmed drop-off {deposit.id} has no parcel")
    return DroppedOff(deposit.id, parcel.id, parcel.compartment)


def _store_parcel(
    conn: Connection, ports: Ports, deposit: repo.Deposit, now: datetime
) -> repo.Parcel:
    reservation = repo.get_reservation(conn, deposit.reservation_id)
    if reservation is None:
        raise RuntimeError(f"drop-off {deposit.id} names a reservation the store does not have")
    parcel = repo.Parcel(
        id=new_id(),
        reservation_id=reservation.id,
        deposit_id=deposit.id,
        carrier_id=reservation.carrier_id,
        tracking_number=reservation.tracking_number,
        compartment=deposit.compartment,
        status=ParcelStatus.AWAITING_COLLECTION,
        deposited_at=now,
        # The column wants a time; nothing on the node expires a parcel awaiting collection.
        pickup_deadline=reservation.reserved_until,
        finished_at=None,
    )
    repo.insert_parcel(conn, parcel)
    end_code(conn, reservation.id, CodeStatus.USED, now)
    repo.set_occupancy(conn, deposit.compartment, Occupancy.OCCUPIED, now, expect=Occupancy.BOUND)
    repo.update_deposit(conn, deposit.id, now, status=DepositStatus.CONFIRMED)
    repo.update_reservation(conn, reservation.id, now, status=ReservationStatus.DEPOSITED)
    event = DropoffDeposited(
        reservation_id=reservation.id,
        parcel_id=parcel.id,
        carrier_id=reservation.carrier_id,
        tracking_number=reservation.tracking_number,
        compartment=parcel.compartment,
        via=store.opened_via(conn, deposit.id) or "code",
        deposited_at=now,
    )
    record(conn, event, at=now, bank_id=ports.policy.bank_id, actor=SENDER)
    return parcel


def cancel_dropoff(ports: Ports, dropoff_id: str) -> CancelledDropoff:
    """The sender changed their mind. Once the door has been open the parcel may be inside:
    the door opens (again) for them to take it out, and the drop-off ends, its door free and
    its code still good, when they cancel again with the door closed."""
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            deposit = _own_dropoff(conn, dropoff_id)
            _require_active(deposit)
        status = DepositStatus(deposit.status)
        label = deposit.compartment
        if status is DepositStatus.OPEN:
            return _open_for_removal(ports, deposit)
        if status is DepositStatus.REMOVING:
            require_closed(ports, label)
        now = ports.now()
        with ports.unit_of_work() as conn:
            current = _own_dropoff(conn, dropoff_id)
            _require_active(current)
            repo.set_occupancy(conn, label, Occupancy.FREE, now, expect=Occupancy.BOUND)
            repo.update_deposit(conn, current.id, now, status=DepositStatus.CANCELLED)
            append_audit(
                conn,
                at=now,
                actor=SENDER,
                action="dropoff_cancelled",
                compartment=label,
                reason="by the sender" if status is DepositStatus.OPENING else "parcel taken out",
            )
        return CancelledDropoff(deposit.id, DepositStatus.CANCELLED, label, door="closed")


def _open_for_removal(ports: Ports, deposit: repo.Deposit) -> CancelledDropoff:
    open_for_removal(
        ports,
        deposit,
        purpose=Purpose.DROPOFF,
        actor=SENDER,
        what="drop-off",
        action="dropoff_removing",
    )
    return CancelledDropoff(deposit.id, DepositStatus.REMOVING, deposit.compartment, door="open")


def _own_dropoff(conn: Connection, dropoff_id: str) -> repo.Deposit:
    if not inputs.is_node_id(dropoff_id):
        raise BadInput("not a drop-off id")
    deposit = repo.get_deposit(conn, dropoff_id)
    # A courier's deposit has a session; a sender's drop-off has none.
    if deposit is None or deposit.session_id is not None:
        raise NotFound("no such drop-off", code="unknown_dropoff")
    return deposit


def _require_active(deposit: repo.Deposit) -> None:
    if not DepositStatus(deposit.status).active:
        raise Conflict(f"the drop-off is {deposit.status}", code="dropoff_closed")
