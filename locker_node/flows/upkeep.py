"""Upkeep: settling door operations a crash left open, expiring parcels, and housekeeping."""

from __future__ import annotations

from datetime import timedelta

from locker_node.domain.doors import CommandOutcome, UnknownCompartment
from locker_node.domain.lifecycle import (
    CodeStatus,
    DepositStatus,
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.flows.courier import end_idle_sessions
from locker_node.flows.pickup import complete_pickup
from locker_node.flows.ports import SYSTEM, Ports
from locker_node.hardware.board import DoorState
from locker_node.store import couriers, dropoffs
from locker_node.store import groups as group_codes
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit, record
from locker_wire.events import ParcelExpired

# A deposit's compartment: bound to it, or a group-mate's it shares (`flows.groups`).
_BOUND_OR_SHARED = (Occupancy.BOUND, Occupancy.OCCUPIED)


def recover(ports: Ports) -> int:
    """Settle door operations a crash left open, from the journal and the doors as read at
    start; call after `DoorController.start()`. Returns how many were settled."""
    with ports.unit_of_work() as conn:
        pending = repo.unfinished_operations(conn)
    for operation in pending:
        outcome = ports.journal.outcome(operation.command_id)
        try:
            door = ports.doors.status(operation.compartment).door
        except UnknownCompartment:
            door = None
        opened = outcome is CommandOutcome.OPENED or (
            outcome is CommandOutcome.UNKNOWN and door is DoorState.OPEN
        )
        _settle(ports, operation, outcome, opened)
    return len(pending)


def _settle(
    ports: Ports, operation: repo.DoorOperation, outcome: CommandOutcome | None, opened: bool
) -> None:
    label = operation.compartment
    reason = f"settled after a restart (unlock {outcome or 'never sent'})"
    if not opened and outcome is not None:
        # Jammed, or fired with nobody left to see it: nobody is sent to that door (a deposit)
        # or trusts what is behind it (a pickup or a return) until someone has looked. A
        # recipient's code still opens it: pickups open doors out of service.
        try:
            if ports.doors.status(label).in_service:
                purpose = str(operation.purpose)
                ports.doors.mark_out_of_service(label, f"{purpose} interrupted: {reason}; inspect")
        except UnknownCompartment:
            pass
    now = ports.now()
    result = _settled_result(outcome, opened)
    with ports.unit_of_work() as conn:
        if operation.purpose == Purpose.PICKUP and operation.parcel_id is not None and opened:
            complete_pickup(
                conn,
                ports,
                operation.parcel_id,
                operation.command_id,
                operation.via,
                now,
                reason=reason,
            )
        else:
            repo.finish_operation(conn, operation.command_id, result, now)
        # A sender's drop-off binds its door as a courier's deposit does.
        deposit_like = operation.purpose in (Purpose.DEPOSIT, Purpose.DROPOFF)
        if deposit_like and operation.deposit_id is not None:
            deposit = repo.get_deposit(conn, operation.deposit_id)
            if (
                deposit is not None
                and deposit.status == DepositStatus.OPENING
                and deposit.compartment == label
            ):
                if opened:
                    repo.update_deposit(conn, deposit.id, now, status=DepositStatus.OPEN)
                else:
                    # Free unless a group-mate's parcel is in it (`store.groups`).
                    group_codes.vacate(
                        conn, label, now, expect=_BOUND_OR_SHARED, ignoring_deposit=deposit.id
                    )
                    repo.update_deposit(conn, deposit.id, now, status=DepositStatus.CANCELLED)
        append_audit(
            conn,
            at=now,
            actor=SYSTEM,
            action="operation_settled",
            compartment=label,
            command_id=operation.command_id,
            parcel_id=operation.parcel_id,
            reason=reason,
            detail={"purpose": operation.purpose, "opened": opened},
        )
    ports.crash.reach("recover.settled", operation.command_id)


def _settled_result(outcome: CommandOutcome | None, opened: bool) -> OperationResult:
    if opened:
        return OperationResult.OPENED
    if outcome is CommandOutcome.UNKNOWN:
        return OperationResult.UNKNOWN
    return OperationResult.NOT_OPENED  # jammed, or never sent


def expire_due(ports: Ports) -> int:
    """Parcels past their pickup deadline: codes die, the carrier is to take them back."""
    now = ports.now()
    with ports.unit_of_work() as conn:
        due = repo.parcels_past_deadline(conn, now)
        for parcel in due:
            # Group-mates still waiting keep the code (`store.groups`).
            group_codes.end_code(conn, parcel.id, CodeStatus.EXPIRED, now)
            repo.set_parcel_status(
                conn, parcel.id, ParcelStatus.EXPIRED, expect=ParcelStatus.IN_LOCKER, now=now
            )
            repo.update_reservation(
                conn, parcel.reservation_id, now, status=ReservationStatus.EXPIRED
            )
            event = ParcelExpired(
                reservation_id=parcel.reservation_id,
                parcel_id=parcel.id,
                carrier_id=parcel.carrier_id,
                tracking_number=parcel.tracking_number,
                compartment=parcel.compartment,
                expired_at=now,
            )
            record(conn, event, at=now, bank_id=ports.policy.bank_id, actor=SYSTEM)
    return len(due)


def housekeeping(ports: Ports) -> None:
    """Periodic upkeep: expiries, idle sessions, deposits nobody confirmed, old rows."""
    policy = ports.policy
    with ports.flow_lock:
        expire_due(ports)
        now = ports.now()
        with ports.unit_of_work() as conn:
            end_idle_sessions(conn, ports, now)
            stale = repo.stale_deposits(conn, now - policy.deposit_timeout)
            window = max(policy.keypad.window_s, policy.login.window_s)
            couriers.prune_keypad_failures(conn, now - timedelta(seconds=2 * window))
            couriers.prune_courier_credentials(conn, now - timedelta(days=7))
            repo.forget_used_codes(conn, now - timedelta(days=1))
            dropoffs.forget_used_codes(conn, now - timedelta(days=1))
        for deposit in stale:
            _abandon(ports, deposit)


def _abandon(ports: Ports, deposit: repo.Deposit) -> None:
    label = deposit.compartment
    if DepositStatus(deposit.status).door_was_opened:
        # The door was opened for a parcel that nobody confirmed: it may be inside.
        ports.doors.mark_out_of_service(label, "deposit never confirmed; inspect")
    now = ports.now()
    with ports.unit_of_work() as conn:
        current = repo.get_deposit(conn, deposit.id)
        if current is None or not DepositStatus(current.status).active:
            return
        group_codes.vacate(conn, label, now, expect=_BOUND_OR_SHARED, ignoring_deposit=current.id)
        status = (
            DepositStatus.ABANDONED
            if DepositStatus(current.status).door_was_opened
            else DepositStatus.CANCELLED
        )
        repo.update_deposit(conn, current.id, now, status=status)
        append_audit(
            conn,
            at=now,
            actor=SYSTEM,
            action=f"deposit_{status}",
            compartment=label,
            reason="not confirmed in time",
        )
