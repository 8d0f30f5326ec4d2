"""Overflow at a node: the nearest other banks with room for a parcel that has no usable door
here, and moving one of this bank's reservations to one of them, asked by the node while the
courier waits. Also the other side of a move: the old bank's node told to forget it."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from central.allocation.choice import Need
from central.banks import repository as banks_repository
from central.context import Ctx
from central.errors import NotFound, Unprocessable
from central.models import Actor, Node, Reservation, ReservationStatus, SizeClass
from central.nodes import repository as repo
from central.nodes.commands import COMMAND_TTL_LIMITS, issue_command
from central.reservations import redirect
from central.reservations import repository as reservations_repository

# How far the banks offered at a kiosk may be: a courier drives there with the parcel.
NEARBY_RADIUS_KM = 10.0
# The command to the old bank's node lives until the hold would have ended there (the node
# forgets the reservation then anyway), and at least this long.
MIN_FORGET_TTL = timedelta(hours=1)


class NearbyBank(BaseModel):
    id: str
    name: str
    address: str
    distance_km: float = Field(description="from this node's bank, as the crow flies")
    free: int = Field(description="free units the parcel could take there now")


class NearbyBanks(BaseModel):
    banks: list[NearbyBank] = Field(description="nearest first")


class NodeRedirect(BaseModel):
    """A node's request to move one of its bank's reservations."""

    model_config = ConfigDict(extra="forbid")
    bank_id: str = Field(min_length=1, max_length=64)
    size: SizeClass | None = Field(
        default=None,
        description="at least this class there: the parcel did not fit the class reserved",
    )


class NodeRedirected(BaseModel):
    reservation_id: str
    bank_id: str
    name: str
    address: str
    size: SizeClass
    reserved_until: datetime = Field(description="the hold at the new bank")


def nearby(ctx: Ctx, node: Node, size: SizeClass, accessible: bool, limit: int) -> NearbyBanks:
    """Other active banks near the node's, nearest first, with a free unit of `size` (an
    accessible one with `accessible`)."""
    bank = banks_repository.get_referenced_bank(ctx.session, node.bank_id)
    rooms = redirect.banks_with_room(
        ctx.session,
        Need(size=size, accessible=accessible),
        (bank.lat, bank.lon),
        radius_km=NEARBY_RADIUS_KM,
        exclude={bank.id},
        limit=limit,
    )
    return NearbyBanks(
        banks=[
            NearbyBank(
                id=room.bank_id,
                name=room.name,
                address=room.address,
                distance_km=room.distance_km,
                free=room.free,
            )
            for room in rooms
        ]
    )


def redirect_from_node(
    ctx: Ctx, node: Node, reservation_id: str, body: NodeRedirect
) -> NodeRedirected:
    """Move a reservation of the node's bank to `body.bank_id`, by a courier at the node.

    The node forgets the reservation itself once answered, so no command goes to it. Asking
    again after a move (an answer lost on the way) answers the same; any other reservation that
    is not at this bank is unknown here (404).
    """
    if body.bank_id == node.bank_id:
        raise Unprocessable("same_bank", "the parcel is to go to another bank than this one")
    reservation = reservations_repository.get(ctx.session, reservation_id)
    if reservation is not None and _moved_from_here(reservation, node, body.bank_id):
        return _answer(ctx, reservation)
    if reservation is None or reservation.bank_id != node.bank_id:
        raise NotFound(f"reservation {reservation_id}")
    redirect.redirect(
        ctx,
        reservation,
        redirect.RedirectRequest(bank_id=body.bank_id),
        redirect.Mover(Actor.COURIER, node.id, at_bank=node.bank_id),
        size=body.size,
    )
    return _answer(ctx, reservation)


def _moved_from_here(reservation: Reservation, node: Node, bank_id: str) -> bool:
    """The reservation's last move took it from this node's bank to `bank_id`, at this node's
    request, and it waits there still."""
    if reservation.bank_id != bank_id or reservation.status != ReservationStatus.RESERVED:
        return False
    moves = [entry for entry in reservation.history if entry.type == redirect.HISTORY_TYPE]
    if not moves:
        return False
    last = moves[-1]
    return last.actor_id == node.id and (last.data or {}).get("from_bank") == node.bank_id


def _answer(ctx: Ctx, reservation: Reservation) -> NodeRedirected:
    bank = banks_repository.get_referenced_bank(ctx.session, reservation.bank_id)
    return NodeRedirected(
        reservation_id=reservation.id,
        bank_id=bank.id,
        name=bank.name,
        address=bank.address,
        size=SizeClass(reservation.size),
        reserved_until=reservation.reserved_until,
    )


@redirect.tell_old_bank_with
def forget_at_old_bank(ctx: Ctx, bank_id: str, reservation: Reservation) -> None:
    """Send the old bank's node a signed `cancel_reservation` (reason `redirected`): the bank's
    feed no longer carries the reservation, so this is how its node hears that it left. A bank
    without an enrolled node has nothing to forget."""
    if repo.active_node_of_bank(ctx.session, bank_id) is None:
        return
    low, high = COMMAND_TTL_LIMITS
    until_hold_ends = timedelta(seconds=int((reservation.reserved_until - ctx.now).total_seconds()))
    ttl = min(high, max(MIN_FORGET_TTL, low, until_hold_ends))
    issue_command(
        ctx.session,
        ctx.keys,
        bank_id,
        "cancel_reservation",
        {"reservation_id": reservation.id, "reason": "redirected"},
        ctx.now,
        ttl=ttl,
    )
