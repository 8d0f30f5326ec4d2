"""Which free compartment a deposit takes, honouring a recipient's need for an accessible one."""

from __future__ import annotations

from sqlalchemy import Connection

from locker_node.domain.allocation import Candidate, choose_compartment
from locker_node.flows.doors import free_compartments
from locker_node.flows.errors import Conflict
from locker_node.flows.ports import Ports
from locker_node.store import repository as repo


def place(conn: Connection, ports: Ports, reservation: repo.Reservation) -> Candidate:
    """A free, working compartment for the reservation's parcel: of its class, or larger where
    the bank allows. When the recipient needs an accessible compartment only those count, and
    the courier hears that none is free (409 `no_accessible_compartment`) rather than being
    given one the recipient cannot reach."""
    candidate = choose_compartment(
        free_compartments(conn, ports),
        reservation.size,
        allow_upsize=ports.policy.allow_upsize,
        accessible=reservation.accessible,
    )
    if candidate is not None:
        return candidate
    if reservation.accessible:
        raise Conflict(
            f"no free accessible compartment of size {reservation.size}; "
            "the recipient needs one within reach from a wheelchair",
            code="no_accessible_compartment",
        )
    raise Conflict(f"no free compartment of size {reservation.size}", code="no_capacity")


def needs_accessible(conn: Connection, deposit_id: str) -> bool:
    """Whether the deposit's parcel must go into an accessible compartment (when it moves to
    another door: a jammed one, or a larger one for a parcel that did not fit)."""
    deposit = repo.get_deposit(conn, deposit_id)
    reservation = None if deposit is None else repo.get_reservation(conn, deposit.reservation_id)
    return reservation is not None and reservation.accessible
