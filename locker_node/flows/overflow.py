"""Overflow: a reserved parcel with no usable door here (its class full or out of service, or too
big for every free door) goes to a nearby bank. Central, asked while the courier waits, names
the banks with room and moves the reservation; this node then forgets it. Without central the
parcel stays with the courier: nothing here changes.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain import inputs
from locker_node.domain.allocation import size_rank
from locker_node.domain.lifecycle import DepositStatus, Occupancy, ReservationStatus
from locker_node.flows.courier import Courier
from locker_node.flows.doors import require_closed
from locker_node.flows.errors import BadInput, CentralUnreachable, Conflict, NotFound
from locker_node.flows.ports import CentralLink, NearbyBank, Ports, Redirected
from locker_node.store import repository as repo
from locker_node.store.outbox import append_audit

logger = logging.getLogger(__name__)

_BANK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def nearby_banks(
    ports: Ports, courier: Courier, tracking_number: str, size: str | None = None
) -> list[NearbyBank]:
    """The nearest other banks with a free unit for the courier's carrier's parcel reserved here.

    `size`: the class the parcel turned out to need (it did not fit its reserved class), at
    least the reserved one; by default the reserved class.
    """
    tracking = _tracking(tracking_number)
    link = _link(ports)
    with ports.unit_of_work() as conn:
        reservation = _redirectable(conn, courier, tracking, ports.now())
    return link.nearby(_needed(reservation, size), reservation.accessible)


def redirect(
    ports: Ports, courier: Courier, tracking_number: str, bank_id: str, size: str | None = None
) -> Redirected:
    """Move the parcel's reservation to `bank_id` (asked of central), then forget it here.

    A deposit in progress for it is cancelled and its compartment freed; one whose door has
    been open must have it shut first (the parcel is in the courier's hands: it did not fit).
    Central not answering: `CentralUnreachable`, and nothing changed; central refusing (that
    bank full, say): its refusal, and nothing changed either.
    """
    tracking = _tracking(tracking_number)
    if not _BANK_ID.fullmatch(bank_id):
        raise BadInput("not a bank id")
    if bank_id == ports.policy.bank_id:
        raise BadInput("the parcel is to go to another bank than this one", code="same_bank")
    link = _link(ports)
    with ports.flow_lock:
        with ports.unit_of_work() as conn:
            reservation = _redirectable(conn, courier, tracking, ports.now())
            deposit = repo.active_deposit(conn, reservation.id)
        needed = _needed(reservation, size)
        if deposit is not None and DepositStatus(deposit.status).door_was_opened:
            require_closed(ports, deposit.compartment)
        # Outside any transaction: the store is not held while central is asked.
        moved = link.redirect(reservation.id, bank_id, needed)
        with ports.unit_of_work() as conn:
            _forget(conn, courier, reservation.id, moved, ports.now())
    logger.info("reservation %s redirected to bank %s", reservation.id, moved.bank_id)
    return moved


def _link(ports: Ports) -> CentralLink:
    if ports.central is None:
        raise CentralUnreachable("this locker works without central: it cannot move a parcel")
    return ports.central


def _tracking(tracking_number: str) -> str:
    tracking = inputs.normalise_tracking_number(tracking_number)
    if tracking is None:
        raise BadInput("not a tracking number (4-40 letters and digits)")
    return tracking


def _redirectable(
    conn: Connection, courier: Courier, tracking: str, now: datetime
) -> repo.Reservation:
    """The carrier's delivery reserved here for this parcel, still to be deposited."""
    reservation = repo.find_reservation(conn, courier.carrier_id, tracking, kind="delivery")
    if reservation is None or reservation.walk_up:
        # A walk-up is made here, at the door: central has no reservation to move.
        raise NotFound("no reservation for this parcel at this bank", code="no_reservation")
    if reservation.status != ReservationStatus.RESERVED:
        raise Conflict(
            f"a {reservation.status} reservation cannot move to another bank",
            code="not_redirectable",
            status=reservation.status,
        )
    if reservation.reserved_until <= now and repo.active_deposit(conn, reservation.id) is None:
        raise Conflict("the reservation has expired", code="reservation_expired")
    return reservation


def _needed(reservation: repo.Reservation, size: str | None) -> str:
    if size is None:
        return reservation.size
    if not inputs.is_size_class(size):
        raise BadInput("size must be S, M, L or XL")
    if size_rank(size) < size_rank(reservation.size):
        raise BadInput(
            f"the parcel is reserved as {reservation.size}; ask for that size or larger",
            code="size_too_small",
        )
    return size


def _forget(
    conn: Connection, courier: Courier, reservation_id: str, moved: Redirected, now: datetime
) -> None:
    """Central has moved the reservation: it ends here, and whatever was bound to it is free."""
    deposit = repo.active_deposit(conn, reservation_id)
    if deposit is not None:
        repo.set_occupancy(conn, deposit.compartment, Occupancy.FREE, now, expect=Occupancy.BOUND)
        repo.update_deposit(conn, deposit.id, now, status=DepositStatus.CANCELLED)
        append_audit(
            conn,
            at=now,
            actor=courier.actor,
            action="deposit_cancelled",
            compartment=deposit.compartment,
            reason=f"parcel redirected to bank {moved.bank_id}",
        )
    repo.update_reservation(conn, reservation_id, now, status=ReservationStatus.CANCELLED)
    append_audit(
        conn,
        at=now,
        actor=courier.actor,
        action="redirected",
        reason=f"to bank {moved.bank_id}",
        detail={"reservation_id": reservation_id, "bank_id": moved.bank_id, "size": moved.size},
    )
