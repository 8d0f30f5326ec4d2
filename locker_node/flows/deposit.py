"""Courier deposit: a scanned parcel gets a fitting compartment, its door opens, the courier
confirms with the door closed, and the recipient's pickup code is issued."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain import inputs
from locker_node.domain.allocation import Candidate, choose_compartment, choose_larger
from locker_node.domain.codes import IssuedPickupCode, issue_pickup_code
from locker_node.domain.doors import DoorOpened
from locker_node.domain.lifecycle import (
    DepositStatus,
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.flows import bank_settings
from locker_node.flows.courier import Courier
from locker_node.flows.deposit_doors import bind_free, open_for_removal, rebind
from locker_node.flows.doors import (
    fire,
    free_compartments,
    plan_open,
    require_closed,
    take_out_of_service,
)
from locker_node.flows.errors import BadInput, Conflict, DoorFault, NotFound
from locker_node.flows.placement import needs_accessible, place
from locker_node.flows.ports import Ports
from locker_node.store import groups as group_codes
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit, record
from locker_node.store.rows import new_id
from locker_wire.events import ParcelDeposited

logger = logging.getLogger(__name__)
# A deposit's compartment: bound to it, or a group-mate's it shares (`flows.groups`).
_BOUND_OR_SHARED = (Occupancy.BOUND, Occupancy.OCCUPIED)


@dataclass(frozen=True)
class DepositView:
    deposit_id: str
    compartment: str
    size: str
    door: str
    status: str
    moved_from: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConfirmedDeposit:
    deposit_id: str
    parcel_id: str
    compartment: str
    pickup_deadline: datetime


def start_deposit(
    ports: Ports, courier: Courier, tracking_number: str, size: str | None = None
) -> DepositView:
    tracking = inputs.normalise_tracking_number(tracking_number)
    if tracking is None:
        raise BadInput("not a tracking number (4-40 letters and digits)")
    if size is not None and not inputs.is_size_class(size):
        raise BadInput("size must be S, M, L or XL")
    _catch_up_if_unknown(ports, courier, tracking)
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            bank_settings.refuse_if_in_maintenance(conn)
            reservation = _deposit_reservation(conn, ports, courier, tracking, size, now)
            deposit_id, label = _bind(conn, ports, courier, reservation, now)
            command_id = plan_open(
                conn,
                Purpose.DEPOSIT,
                label,
                actor=courier.actor,
                reason=f"deposit {tracking}",
                now=now,
                deposit_id=deposit_id,
            )
        ports.crash.reach("deposit.bound", tracking)
        return _open_for_deposit(ports, courier, deposit_id, label, command_id, tracking)


def _catch_up_if_unknown(ports: Ports, courier: Courier, tracking: str) -> None:
    """A parcel the node has no reservation for may be one central made a moment ago (the
    feed comes every half minute or so): pull the feed once before deciding, so the courier
    is not sent away, or a walk-up made, for a reservation that is on its way."""
    if ports.feed is None:
        return
    with ports.unit_of_work() as conn:
        known = repo.find_reservation(conn, courier.carrier_id, tracking, kind="delivery")
    if known is None and not ports.feed.catch_up():
        logger.info("no fresh feed for an unknown parcel: deciding on what the node has")


def _bind(
    conn: Connection, ports: Ports, courier: Courier, reservation: repo.Reservation, now: datetime
) -> tuple[str, str]:
    """The deposit and compartment for this reservation: the one it is already bound to, or a
    free one that fits."""
    deposit = repo.active_deposit(conn, reservation.id)
    if deposit is not None:
        # The same parcel scanned again (the first answer was lost, or the node restarted):
        # open the compartment it is already bound to.
        repo.update_deposit(
            conn, deposit.id, now, status=DepositStatus.OPENING, session_id=courier.session_id
        )
        return deposit.id, deposit.compartment
    candidate = place(conn, ports, reservation)  # or 409 no_capacity / no_accessible_compartment
    deposit_id = bind_free(
        conn,
        reservation.id,
        candidate.label,
        now,
        carrier_id=courier.carrier_id,
        session_id=courier.session_id,
    )
    return deposit_id, candidate.label


def _deposit_reservation(
    conn: Connection,
    ports: Ports,
    courier: Courier,
    tracking: str,
    size: str | None,
    now: datetime,
) -> repo.Reservation:
    # A drop-off's reservation is the sender's to fill (flows/dropoff.py): unknown here.
    reservation = repo.find_reservation(conn, courier.carrier_id, tracking, kind="delivery")
    if reservation is None:
        return _walk_up(conn, ports, courier, tracking, size, now)
    return require_waiting(conn, reservation, now)


def require_waiting(
    conn: Connection, reservation: repo.Reservation, now: datetime
) -> repo.Reservation:
    """The reservation, if it still waits for its parcel's deposit (or one is under way)."""
    if reservation.status == ReservationStatus.CANCELLED:
        raise Conflict("the reservation was cancelled", code="reservation_cancelled")
    if reservation.status != ReservationStatus.RESERVED:
        raise Conflict("this parcel is already in the locker", code="already_deposited")
    if reservation.reserved_until <= now and repo.active_deposit(conn, reservation.id) is None:
        raise Conflict("the reservation has expired", code="reservation_expired")
    return reservation


def _walk_up(
    conn: Connection,
    ports: Ports,
    courier: Courier,
    tracking: str,
    size: str | None,
    now: datetime,
) -> repo.Reservation:
    """A parcel without a reservation, where the bank takes those: a reservation made here."""
    if not ports.policy.allow_walk_up:
        raise NotFound("no reservation for this parcel at this bank", code="no_reservation")
    if size is None:
        raise BadInput("a parcel without a reservation needs a size", code="size_required")
    if not _walk_up_capacity(conn, ports, size, now):
        raise Conflict(f"no free compartment of size {size}", code="no_capacity")
    reservation = repo.Reservation(
        # 31 characters: the wire allows reservation ids of up to 32.
        id=f"walkup-{new_id()[:24]}",
        carrier_id=courier.carrier_id,
        tracking_number=tracking,
        size=size,
        reserved_until=now + ports.policy.deposit_timeout,
        status=ReservationStatus.RESERVED,
        walk_up=True,
        pickup_deadline=None,
        created_at=now,
        updated_at=now,
    )
    repo.insert_reservation(conn, reservation)
    append_audit(
        conn,
        at=now,
        actor=courier.actor,
        action="walk_up_accepted",
        detail={"reservation_id": reservation.id, "size": size},
    )
    return reservation


def _walk_up_capacity(conn: Connection, ports: Ports, size: str, now: datetime) -> bool:
    """Free compartments of the class beyond those that live reservations still need."""
    free = sum(1 for c in free_compartments(conn, ports) if c.size == size)
    return free > repo.count_waiting_reservations(conn, size, now)


def _open_for_deposit(
    ports: Ports, courier: Courier, deposit_id: str, label: str, command_id: str, tracking: str
) -> DepositView:
    """Open the bound compartment; when its door fails, move to another one and try that."""
    moved_from: list[str] = []
    while True:
        outcome = fire(ports, label, command_id, f"deposit {tracking} deposit {deposit_id}")
        if isinstance(outcome, DoorOpened):
            ports.crash.reach("deposit.door_opened", tracking)
            now = ports.now()
            with ports.unit_of_work() as conn:
                repo.finish_operation(conn, command_id, OperationResult.OPENED, now)
                repo.update_deposit(conn, deposit_id, now, status=DepositStatus.OPEN)
                size = _size_of(conn, label)
            ports.crash.reach("deposit.opened_recorded", tracking)
            return DepositView(
                deposit_id=deposit_id,
                compartment=label,
                size=size,
                door="open",
                status=DepositStatus.OPEN,
                moved_from=moved_from,
            )
        if outcome is not None:
            take_out_of_service(ports, label, outcome)
        moved_from.append(label)
        now = ports.now()
        with ports.unit_of_work() as conn:
            repo.finish_operation(conn, command_id, OperationResult.NOT_OPENED, now)
            moved = _move_deposit(
                conn,
                ports,
                courier,
                deposit_id,
                label,
                now,
                reason=f"door {label} did not open",
                give_up=len(moved_from) > ports.policy.max_moves,
            )
        if moved is None:
            raise DoorFault(
                f"door {label} did not open and no other compartment is free",
                compartment=label,
                moved_from=moved_from,
            )
        label, command_id = moved


def _move_deposit(
    conn: Connection,
    ports: Ports,
    courier: Courier,
    deposit_id: str,
    old_label: str,
    now: datetime,
    *,
    reason: str,
    give_up: bool = False,
    larger: bool = False,
) -> tuple[str, str] | None:
    """Rebind a deposit from `old_label` to another compartment, planning its opening;
    None (and the deposit cancelled) when there is none."""
    old_size = _size_of(conn, old_label)
    free = [c for c in free_compartments(conn, ports) if c.label != old_label]
    candidate: Candidate | None
    if give_up:
        candidate = None
    elif larger:
        candidate = choose_larger(free, old_size, accessible=needs_accessible(conn, deposit_id))
    else:
        candidate = choose_compartment(
            free,
            old_size,
            allow_upsize=ports.policy.allow_upsize,
            accessible=needs_accessible(conn, deposit_id),
        )
    if candidate is None and larger:
        return None
    # Free unless a group-mate's parcel is in it (a deposit into a shared compartment).
    group_codes.vacate(conn, old_label, now, expect=_BOUND_OR_SHARED, ignoring_deposit=deposit_id)
    if candidate is None:
        repo.update_deposit(conn, deposit_id, now, status=DepositStatus.CANCELLED)
        append_audit(
            conn,
            at=now,
            actor=courier.actor,
            action="deposit_cancelled",
            compartment=old_label,
            reason=reason + "; no other compartment",
        )
        return None
    command_id = rebind(
        conn,
        deposit_id,
        old_label,
        candidate.label,
        now,
        purpose=Purpose.DEPOSIT,
        actor=courier.actor,
        action="deposit_moved",
        reason=reason,
        open_reason=reason,
    )
    return candidate.label, command_id


def too_small(ports: Ports, courier: Courier, deposit_id: str) -> DepositView:
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            deposit = _own_active_deposit(conn, courier, deposit_id)
            moved = _move_deposit(
                conn,
                ports,
                courier,
                deposit.id,
                deposit.compartment,
                now,
                reason=f"parcel too small for {deposit.compartment}",
                larger=True,
            )
            if moved is None:
                raise Conflict(
                    "no larger compartment is free",
                    code="no_larger_compartment",
                    compartment=deposit.compartment,
                )
        tracking = _tracking_of(ports, deposit)
        ports.crash.reach("deposit.too_small_bound", tracking)
        label, command_id = moved
        view = _open_for_deposit(ports, courier, deposit.id, label, command_id, tracking)
        return _moved_from(deposit.compartment, view)


def report_door_problem(ports: Ports, courier: Courier, deposit_id: str) -> DepositView:
    """The courier says the door did not open although the sensor read it open."""
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            deposit = _own_active_deposit(conn, courier, deposit_id)
        label = deposit.compartment
        ports.doors.mark_out_of_service(label, "courier reported the door did not open")
        now = ports.now()
        with ports.unit_of_work() as conn:
            moved = _move_deposit(
                conn,
                ports,
                courier,
                deposit.id,
                label,
                now,
                reason=f"courier reported door {label} did not open",
            )
        if moved is None:
            raise DoorFault(
                f"door {label} did not open and no other compartment is free",
                compartment=label,
                moved_from=[label],
            )
        tracking = _tracking_of(ports, deposit)
        view = _open_for_deposit(ports, courier, deposit.id, *moved, tracking)
        return _moved_from(label, view)


def _moved_from(label: str, view: DepositView) -> DepositView:
    return DepositView(
        deposit_id=view.deposit_id,
        compartment=view.compartment,
        size=view.size,
        door=view.door,
        status=view.status,
        moved_from=[label, *view.moved_from],
    )


def confirm_deposit(ports: Ports, courier: Courier, deposit_id: str) -> ConfirmedDeposit:
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            deposit = _own_deposit(conn, courier, deposit_id)
            if deposit.status == DepositStatus.CONFIRMED:
                parcel = repo.parcel_for_deposit(conn, deposit.id)
                if parcel is None:
                    raise RuntimeError(f"confirmed deposit {deposit.id} has no parcel")
                return _confirmed(deposit.id, parcel)
            _require_active(deposit)
            if deposit.status == DepositStatus.OPENING:
                raise Conflict(
                    "the door was never seen open; scan the parcel again",
                    code="door_not_opened",
                    compartment=deposit.compartment,
                )
        require_closed(ports, deposit.compartment)
        now = ports.now()
        with ports.unit_of_work() as conn:
            current = repo.get_deposit(conn, deposit.id)
            if current is None or not DepositStatus(current.status).door_was_opened:
                # Only this flow moves an open deposit on, and it holds the flow lock.
                raise RuntimeError(f"deposit {deposit.id} changed while it was being confirmed")
            issued = issue_pickup_code(
                ports.keys.pickup_codes,
                ports.keys.qr_tokens,
                digits=ports.policy.code_digits,
                in_use=lambda digest: repo.code_hash_in_use(conn, digest),
            )
            parcel = _store_parcel(conn, ports, courier, current, issued, now)
            ports.crash.reach("deposit.confirm_before_commit", parcel.tracking_number)
        ports.crash.reach("deposit.confirmed", parcel.tracking_number)
        logger.info("deposit: parcel %s in compartment %s", parcel.id, parcel.compartment)
        return _confirmed(deposit.id, parcel)


def _confirmed(deposit_id: str, parcel: repo.Parcel) -> ConfirmedDeposit:
    return ConfirmedDeposit(
        deposit_id=deposit_id,
        parcel_id=parcel.id,
        compartment=parcel.compartment,
        pickup_deadline=parcel.pickup_deadline,
    )


def _store_parcel(
    conn: Connection,
    ports: Ports,
    courier: Courier,
    deposit: repo.Deposit,
    issued: IssuedPickupCode,
    now: datetime,
) -> repo.Parcel:
    reservation = _reservation_of(conn, deposit)
    deadline = ports.policy.pickup_deadline(now)
    parcel = repo.Parcel(
        id=new_id(),
        reservation_id=reservation.id,
        deposit_id=deposit.id,
        carrier_id=reservation.carrier_id,
        tracking_number=reservation.tracking_number,
        compartment=deposit.compartment,
        status=ParcelStatus.IN_LOCKER,
        deposited_at=now,
        pickup_deadline=deadline,
        finished_at=None,
    )
    repo.insert_parcel(conn, parcel)
    # A group-mate's live code opens it too, when there is one: no code of its own then.
    shares_code_with = group_codes.store_code(conn, reservation, parcel, issued, now)
    group_codes.occupy(conn, deposit.compartment, now)
    repo.update_deposit(conn, deposit.id, now, status=DepositStatus.CONFIRMED)
    repo.update_reservation(
        conn, reservation.id, now, status=ReservationStatus.DEPOSITED, pickup_deadline=deadline
    )
    event = ParcelDeposited(
        reservation_id=reservation.id,
        parcel_id=parcel.id,
        carrier_id=reservation.carrier_id,
        tracking_number=reservation.tracking_number,
        walk_up=reservation.walk_up,
        reserved_size=reservation.size,
        compartment=parcel.compartment,
        compartment_size=_size_of(conn, parcel.compartment),
        deposited_at=now,
        pickup_deadline=deadline,
        # Sealed under a node key at rest; sync re-seals them to central's key on delivery.
        sealed_pickup_code="" if shares_code_with else ports.keys.seal(issued.code),
        sealed_qr_payload="" if shares_code_with else ports.keys.seal(issued.qr_token),
        shares_code_with=shares_code_with,
    )
    record(conn, event, at=now, bank_id=ports.policy.bank_id, actor=courier.actor)
    return parcel


@dataclass(frozen=True)
class CancelledDeposit:
    deposit_id: str
    status: str  # "removing": take the parcel out first; "cancelled": the compartment is free
    compartment: str
    door: str


def cancel_deposit(ports: Ports, courier: Courier, deposit_id: str) -> CancelledDeposit:
    """Cancel a deposit. Once its door has been open the parcel may be inside, and no sensor
    can tell: the door opens (again) for the courier to take it out, and the deposit is
    cancelled, its compartment free, only when the courier cancels again with the door closed."""
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            deposit = _own_active_deposit(conn, courier, deposit_id)
        status = DepositStatus(deposit.status)
        label = deposit.compartment
        if status is DepositStatus.OPEN:
            return _open_for_removal(ports, courier, deposit)
        if status is DepositStatus.REMOVING:
            require_closed(ports, label)
        now = ports.now()
        with ports.unit_of_work() as conn:
            current = _own_active_deposit(conn, courier, deposit_id)
            group_codes.vacate(
                conn, label, now, expect=_BOUND_OR_SHARED, ignoring_deposit=current.id
            )
            repo.update_deposit(conn, current.id, now, status=DepositStatus.CANCELLED)
            reason = "by the courier" if status is DepositStatus.OPENING else "parcel taken out"
            append_audit(
                conn,
                at=now,
                actor=courier.actor,
                action="deposit_cancelled",
                compartment=label,
                reason=reason,
            )
        return CancelledDeposit(deposit.id, DepositStatus.CANCELLED, label, door="closed")


def _open_for_removal(ports: Ports, courier: Courier, deposit: repo.Deposit) -> CancelledDeposit:
    """The courier takes the parcel back out: open the door unless it still is."""
    open_for_removal(
        ports,
        deposit,
        purpose=Purpose.DEPOSIT,
        actor=courier.actor,
        what="deposit",
        action="deposit_removing",
    )
    return CancelledDeposit(deposit.id, DepositStatus.REMOVING, deposit.compartment, door="open")


def _tracking_of(ports: Ports, deposit: repo.Deposit) -> str:
    with ports.unit_of_work() as conn:
        return _reservation_of(conn, deposit).tracking_number


def _reservation_of(conn: Connection, deposit: repo.Deposit) -> repo.Reservation:
    reservation = repo.get_reservation(conn, deposit.reservation_id)
    if reservation is None:
        raise RuntimeError(f"deposit {deposit.id} names a reservation the store does not have")
    return reservation


def _own_deposit(conn: Connection, courier: Courier, deposit_id: str) -> repo.Deposit:
    if not inputs.is_node_id(deposit_id):
        raise BadInput("not a deposit id")
    deposit = repo.get_deposit(conn, deposit_id)
    # A deposit without a courier session is a sender's drop-off, not this courier's.
    if deposit is None or deposit.carrier_id != courier.carrier_id or deposit.session_id is None:
        raise NotFound("no such deposit", code="unknown_deposit")
    return deposit


def _own_active_deposit(conn: Connection, courier: Courier, deposit_id: str) -> repo.Deposit:
    deposit = _own_deposit(conn, courier, deposit_id)
    _require_active(deposit)
    return deposit


def _require_active(deposit: repo.Deposit) -> None:
    if not DepositStatus(deposit.status).active:
        raise Conflict(f"the deposit is {deposit.status}", code="deposit_closed")


def _size_of(conn: Connection, label: str) -> str:
    compartment = repo.get_compartment(conn, label)
    if compartment is None:
        raise RuntimeError(f"compartment {label} is not in the store")
    return compartment.size
