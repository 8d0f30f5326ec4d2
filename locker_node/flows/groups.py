"""Parcel groups at the kiosk: a courier puts a parcel in with a group-mate's.

Parcels for one recipient from one carrier (one `group_id` on their reservations) open with one
pickup code: a parcel confirmed while a group-mate waits in the locker joins that code
(`store.groups.store_code`, called by the deposit flow). The courier may also put it in the very
compartment that holds the group-mate, when that compartment is of the parcel's class or larger:
the deposit answer lists those compartments (`shared_doors`), and a deposit asked for with one of
them (`start_shared_deposit`) opens that door again instead of a free one. The compartment stays
occupied throughout, and is free again only once no parcel is left in it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain import inputs
from locker_node.domain.allocation import size_rank
from locker_node.domain.doors import DoorOpened
from locker_node.domain.lifecycle import (
    DepositStatus,
    Occupancy,
    OperationResult,
    Purpose,
)
from locker_node.flows import bank_settings
from locker_node.flows.courier import Courier
from locker_node.flows.deposit import DepositView, require_waiting
from locker_node.flows.deposit_doors import new_deposit
from locker_node.flows.doors import fire, plan_open, take_out_of_service
from locker_node.flows.errors import BadInput, Conflict, DoorFault, NotFound
from locker_node.flows.ports import Ports
from locker_node.store import groups as group_codes
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit

_BOUND_OR_SHARED = (Occupancy.BOUND, Occupancy.OCCUPIED)


def shared_doors(ports: Ports, deposit_id: str) -> list[str]:
    """The compartments a deposit's parcel may go into with a group-mate instead: holding a
    parcel of its group with a live code, of its class or larger (accessible, for a parcel that
    asked for that), in service, on a board that answers, other than the one the deposit is
    bound to. Empty for a parcel without a group."""
    with ports.unit_of_work() as conn:
        deposit = repo.get_deposit(conn, deposit_id)
        if deposit is None:
            return []
        reservation = repo.get_reservation(conn, deposit.reservation_id)
        if reservation is None:
            return []
        labels = _qualifying(conn, ports, reservation, ignoring_deposit=deposit.id)
    return [label for label in labels if label != deposit.compartment]


def _qualifying(
    conn: Connection,
    ports: Ports,
    reservation: repo.Reservation,
    *,
    ignoring_deposit: str | None = None,
) -> list[str]:
    if reservation.group_id is None:
        return []
    silent = ports.doors.silent_labels()
    in_maintenance = bank_settings.labels_in_maintenance(conn)
    rank = size_rank(reservation.size)
    return [
        door.label
        for door in group_codes.group_doors(
            conn, reservation.group_id, ignoring_deposit=ignoring_deposit
        )
        if door.in_service
        and door.label not in silent
        and door.label not in in_maintenance
        and size_rank(door.size) >= rank
        # A recipient who asked for an accessible compartment gets one with the group-mate too.
        and (door.accessible or not reservation.accessible)
    ]


def start_shared_deposit(
    ports: Ports, courier: Courier, tracking_number: str, compartment: str, *, size: str | None
) -> DepositView:
    """Open `compartment`, which holds a group-mate of the parcel, for the parcel to go in with
    it; a deposit already started for the parcel moves there (its first compartment is free
    again). Confirmed as any deposit; a door that does not open cancels the deposit (the parcel
    is scanned again for a compartment of its own)."""
    tracking = inputs.normalise_tracking_number(tracking_number)
    if tracking is None:
        raise BadInput("not a tracking number (4-40 letters and digits)")
    if size is not None:
        raise BadInput("a parcel put with a group-mate has a reservation: give no size")
    label = compartment.strip().upper()
    with ports.flow_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            bank_settings.refuse_if_in_maintenance(conn)
            reservation = _shareable_reservation(conn, courier, tracking, now)
            deposit_id, moved_from = _bind_shared(conn, ports, courier, reservation, label, now)
            command_id = plan_open(
                conn,
                Purpose.DEPOSIT,
                label,
                actor=courier.actor,
                reason=f"deposit {tracking} with its group",
                now=now,
                deposit_id=deposit_id,
            )
        outcome = fire(ports, label, command_id, f"deposit {tracking} deposit {deposit_id}")
        opened = isinstance(outcome, DoorOpened)
        if not opened and outcome is not None:
            take_out_of_service(ports, label, outcome)
        now = ports.now()
        with ports.unit_of_work() as conn:
            result = OperationResult.OPENED if opened else OperationResult.NOT_OPENED
            repo.finish_operation(conn, command_id, result, now)
            if not opened:
                _give_up(conn, courier, deposit_id, label, now)
            else:
                repo.update_deposit(conn, deposit_id, now, status=DepositStatus.OPEN)
        if not opened:
            raise DoorFault(
                f"door {label} did not open; scan the parcel again for a door of its own",
                compartment=label,
            )
        return DepositView(
            deposit_id=deposit_id,
            compartment=label,
            size=_size_of(ports, label),
            door="open",
            status=DepositStatus.OPEN,
            moved_from=moved_from,
        )


def _shareable_reservation(
    conn: Connection, courier: Courier, tracking: str, now: datetime
) -> repo.Reservation:
    """The parcel's reservation, waiting for its deposit, as a deposit would find it."""
    reservation = repo.find_reservation(conn, courier.carrier_id, tracking, kind="delivery")
    if reservation is None:
        raise NotFound("no reservation for this parcel at this bank", code="no_reservation")
    return require_waiting(conn, reservation, now)


def _bind_shared(
    conn: Connection,
    ports: Ports,
    courier: Courier,
    reservation: repo.Reservation,
    label: str,
    now: datetime,
) -> tuple[str, list[str]]:
    """The deposit, bound to `label`: the parcel's deposit in progress moved there, or a new
    one; and the compartment it left, if any."""
    deposit = repo.active_deposit(conn, reservation.id)
    if deposit is not None and deposit.status == DepositStatus.REMOVING:
        raise Conflict(
            "take the parcel out and cancel that deposit first",
            code="deposit_removing",
            compartment=deposit.compartment,
        )
    if label not in _qualifying(
        conn, ports, reservation, ignoring_deposit=deposit.id if deposit else None
    ):
        if repo.get_compartment(conn, label) is None:
            raise NotFound(f"no compartment {label}", code="unknown_compartment")
        raise Conflict(
            f"compartment {label} holds no parcel this one may join",
            code="not_shareable",
            compartment=label,
        )
    if deposit is None:
        # The compartment stays occupied by the group-mate: nothing to bind.
        deposit_id = new_deposit(
            conn,
            reservation.id,
            label,
            now,
            carrier_id=courier.carrier_id,
            session_id=courier.session_id,
        )
        return deposit_id, []
    moved_from = [] if deposit.compartment == label else [deposit.compartment]
    if moved_from:
        group_codes.vacate(
            conn, deposit.compartment, now, expect=_BOUND_OR_SHARED, ignoring_deposit=deposit.id
        )
        append_audit(
            conn,
            at=now,
            actor=courier.actor,
            action="deposit_moved",
            compartment=label,
            reason="put with its group-mate",
            detail={"from": deposit.compartment},
        )
    repo.update_deposit(
        conn,
        deposit.id,
        now,
        compartment=label,
        status=DepositStatus.OPENING,
        session_id=courier.session_id,
    )
    return deposit.id, moved_from


def _give_up(
    conn: Connection, courier: Courier, deposit_id: str, label: str, now: datetime
) -> None:
    """The shared door did not open: the deposit ends; the compartment keeps its parcel."""
    group_codes.vacate(conn, label, now, expect=_BOUND_OR_SHARED, ignoring_deposit=deposit_id)
    repo.update_deposit(conn, deposit_id, now, status=DepositStatus.CANCELLED)
    append_audit(
        conn,
        at=now,
        actor=courier.actor,
        action="deposit_cancelled",
        compartment=label,
        reason=f"door {label} did not open for a parcel put with its group-mate",
    )


def _size_of(ports: Ports, label: str) -> str:
    with ports.unit_of_work() as conn:
        compartment = repo.get_compartment(conn, label)
    if compartment is None:
        raise RuntimeError(f"compartment {label} is not in the store")
    return compartment.size
