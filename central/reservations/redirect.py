"""Moving a reserved parcel to another bank (overflow): a unit of a fitting class taken there,
the old one freed, and the carrier, the recipient and the old bank's node told."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from central.allocation.choice import BankOption, Candidate, Need, NoFit, choose_candidates
from central.allocation.sizing import Dimensions
from central.banks import geo
from central.banks import repository as banks_repository
from central.banks import service as banks
from central.banks import settings as bank_settings
from central.context import Ctx
from central.errors import Conflict, NotFound, Unprocessable
from central.models import (
    Actor,
    Bank,
    BankCapacity,
    Reservation,
    ReservationEvent,
    ReservationStatus,
    SizeClass,
)
from central.models.base import ReservationKind
from central.notices import outbox as notices
from central.notices.outbox import Fact
from central.reservations import repository as repo
from central.reservations.schemas import Alternative, Near, ReservationOut
from central.reservations.views import describe
from central.webhooks.service import enqueue_event

EVENT_REDIRECTED = "reservation.redirected"
HISTORY_TYPE = "redirected"
# Where a redirect that names no place looks: around the bank the reservation is at.
NEAR_CURRENT_KM = 5.0
# Where the banks with room offered instead of a full one are looked for, and how many.
ROOM_RADIUS_KM = 10.0
MAX_ROOMS = 5
_READ_AT_ONCE = 2 * MAX_ROOMS


class RedirectRequest(BaseModel):
    """Where to: a bank, or the nearest bank with room near a place; neither means the nearest
    with room within 5 km of the bank the reservation is at now."""

    model_config = ConfigDict(extra="forbid")
    bank_id: str | None = Field(default=None, min_length=1, max_length=64)
    near: Near | None = None

    @model_validator(mode="after")
    def _one_place(self) -> Self:
        if self.bank_id is not None and self.near is not None:
            raise ValueError("give bank_id or near, not both")
        return self


@dataclass(frozen=True, slots=True)
class Mover:
    """Who moves a reservation: its carrier (API), or a courier at a bank's node."""

    actor: Actor
    actor_id: str  # the carrier's id, or the node's
    # The bank whose node asked: that node forgets the reservation itself, so it is sent no
    # command to.
    at_bank: str | None = None


OldBankTeller = Callable[[Ctx, str, Reservation], None]
"""Tells a bank's node to forget a reservation that is leaving it (bank id, the reservation as
it still is there)."""

_TELLERS: list[OldBankTeller] = []


def tell_old_bank_with(teller: OldBankTeller) -> OldBankTeller:
    """Register who tells the old bank's node: the nodes area (`central.nodes.overflow`) signs
    it a command. That area imports this one, so this one cannot import it back (ARCHITECTURE:
    no import cycle between areas); a move with nobody to tell is refused as a bug."""
    if teller not in _TELLERS:
        _TELLERS.append(teller)
    return teller


@dataclass(frozen=True, slots=True)
class Room:
    """A bank with a free unit that fits, as offered instead of a full one."""

    bank_id: str
    name: str
    address: str
    distance_km: float
    free: int


def redirect(
    ctx: Ctx,
    reservation: Reservation,
    to: RedirectRequest,
    by: Mover,
    *,
    size: SizeClass | None = None,
) -> ReservationOut:
    """Move a `reserved` delivery to another bank; the moved reservation.

    `size`, from a courier whose parcel did not fit its class, asks for at least that class
    there (never a smaller one than reserved). A move to the bank it is at changes nothing. 409
    `not_redirectable` once deposited (or for a drop-off), `no_capacity` with `alternatives`
    when no bank asked for has a free unit; a refusal leaves the transaction as it found it.
    """
    session = ctx.session
    locked = repo.get(session, reservation.id, for_update=True)
    if locked is None:
        raise NotFound(f"reservation {reservation.id}")
    _require_redirectable(locked)
    old_bank = banks_repository.get_referenced_bank(session, locked.bank_id)
    if to.bank_id == old_bank.id:
        return describe(session, locked, bank=old_bank)
    if not _TELLERS:
        raise RuntimeError("no teller for old banks' nodes: import central.nodes.overflow")
    need = need_of(locked, size)
    options, by_id, origin = _options(session, to, old_bank)
    try:
        candidates = choose_candidates(need, options)
    except NoFit as exc:
        raise Unprocessable(exc.code, exc.detail) from exc
    taken = _take(session, locked, need, candidates)
    if taken is None:
        tried = {option.bank_id for option in options} | {old_bank.id}
        rooms = banks_with_room(session, need, origin, radius_km=ROOM_RADIUS_KM, exclude=tried)
        raise Conflict(
            "no_capacity",
            f"no free {need.size or 'fitting'} locker"
            + (" at that bank" if to.bank_id else " nearby"),
            alternatives=[
                Alternative(
                    bank_id=room.bank_id,
                    name=room.name,
                    distance_km=room.distance_km,
                    free=room.free,
                ).model_dump()
                for room in rooms
            ],
        )
    candidate, accessible_unit = taken
    target = Target(by_id[candidate.bank_id], candidate.size, accessible_unit)
    return _move(ctx, locked, old_bank, target, by)


def need_of(reservation: Reservation, size: SizeClass | None = None) -> Need:
    """What the parcel needs at the new bank: its class (or the larger one asked for) and, when
    the carrier gave them, its dimensions and weight, as the allocation reads them."""
    reserved = SizeClass(reservation.size)
    if size is not None and size.rank < reserved.rank:
        raise Unprocessable(
            "size_too_small", f"the parcel is reserved as {reserved}; ask for {reserved} or larger"
        )
    dimensions = (
        Dimensions(reservation.length_mm, reservation.width_mm, reservation.height_mm)
        if reservation.length_mm and reservation.width_mm and reservation.height_mm
        else None
    )
    return Need(
        size=size or reserved,
        parcel=dimensions,
        weight_g=reservation.weight_g,
        accessible=reservation.accessible,
    )


def _require_redirectable(reservation: Reservation) -> None:
    if reservation.kind != ReservationKind.DELIVERY:
        raise Conflict(
            "not_redirectable", "a drop-off stays at its bank", status=reservation.status
        )
    if reservation.status != ReservationStatus.RESERVED:
        raise Conflict(
            "not_redirectable",
            f"a {reservation.status} reservation cannot move to another bank",
            status=reservation.status,
        )


def _options(
    session: Session, to: RedirectRequest, old_bank: Bank
) -> tuple[list[BankOption], dict[str, Bank], tuple[float, float]]:
    """The banks to try, as the allocation sees them, and where the search is centred."""
    if to.bank_id is not None:
        bank = banks.require_bank(session, to.bank_id)
        if bank_settings.in_maintenance(bank):
            raise Conflict("bank_in_maintenance", f"bank {bank.id} is in maintenance")
        capacity = banks_repository.capacity_of(session, [bank.id])[bank.id]
        distance = geo.haversine_km(old_bank.lat, old_bank.lon, bank.lat, bank.lon)
        return [banks.option_for(bank, capacity, distance)], {bank.id: bank}, (bank.lat, bank.lon)
    if to.near is not None:
        lat, lon, radius = to.near.lat, to.near.lon, to.near.radius_km
    else:
        lat, lon, radius = old_bank.lat, old_bank.lon, NEAR_CURRENT_KM
    near = [
        (bank, distance, capacity)
        for bank, distance, capacity in banks.banks_near(session, lat, lon, radius)
        if bank.id != old_bank.id and not bank_settings.in_maintenance(bank)
    ]
    options = [banks.option_for(bank, capacity, distance) for bank, distance, capacity in near]
    return options, {bank.id: bank for bank, _, _ in near}, (lat, lon)


def _take(
    session: Session, reservation: Reservation, need: Need, candidates: Sequence[Candidate]
) -> tuple[Candidate, bool] | None:
    """Take a unit of the first candidate that has one (and whether it is an accessible one)
    and give back the unit held; None, with nothing changed, when no candidate has one.

    The two capacity rows are changed in (bank, class) order, the order a batch of reservations
    locks them in, so that two moves in opposite directions cannot deadlock.
    """
    held = (reservation.bank_id, reservation.size)
    attempt = session.begin_nested()  # a refusal gives back an early release with the rest
    released = False
    for candidate in candidates:
        wanted = (candidate.bank_id, candidate.size.value)
        if not released and held < wanted:
            _release(session, reservation)
            released = True
        taken = banks_repository.take_unit(session, *wanted, accessible=need.accessible)
        if taken is not None:
            if not released:
                _release(session, reservation)
            attempt.commit()
            return candidate, taken == "accessible"
    attempt.rollback()
    return None


def _release(session: Session, reservation: Reservation) -> None:
    banks_repository.release_unit(
        session,
        reservation.bank_id,
        reservation.size,
        accessible_unit=reservation.accessible_unit,
    )


@dataclass(frozen=True, slots=True)
class Target:
    """Where a reservation goes: the bank, the class of the unit taken there, and whether that
    unit is one of its accessible ones."""

    bank: Bank
    size: SizeClass
    accessible_unit: bool


def _move(
    ctx: Ctx, reservation: Reservation, old_bank: Bank, target: Target, by: Mover
) -> ReservationOut:
    """The reservation rewritten to its new bank, with its history entry, webhook and notice;
    its unit there is taken already."""
    session, now = ctx.session, ctx.now
    bank, size = target.bank, target.size
    if by.at_bank != old_bank.id:
        # Before the reservation leaves: the command names one of that bank's reservations.
        for tell in _TELLERS:
            tell(ctx, old_bank.id, reservation)
    old_size = reservation.size
    values = {
        "bank_id": bank.id,
        "size": size.value,
        # The new bank's hold from now, unless the one it had runs longer.
        "reserved_until": max(
            reservation.reserved_until, bank_settings.deadline(bank, now, bank.hold_hours)
        ),
        "updated_at": now,
        "accessible_unit": target.accessible_unit,
        # A group is of one bank: the parcel shares no code with the parcels of its old one.
        "group_id": None,
    }
    if not repo.set_status(session, reservation.id, ReservationStatus.RESERVED.value, values):
        raise Conflict("concurrent_update", "the reservation changed meanwhile; fetch it again")
    for key, value in values.items():
        setattr(reservation, key, value)
    data = {"from_bank": old_bank.id, "to_bank": bank.id, "by": by.actor.value}
    if size.value != old_size:
        data |= {"from_size": old_size, "to_size": size.value}
    entry = ReservationEvent.note(
        reservation,
        HISTORY_TYPE,
        actor=by.actor.value,
        actor_id=by.actor_id,
        reason=f"moved from bank {old_bank.id} to bank {bank.id}",
        data=data,
        at=now,
    )
    repo.add(session, entry)
    session.flush()
    out = describe(
        session, reservation, bank=bank, history=repo.history_of(session, reservation.id)
    )
    enqueue_event(
        session,
        ctx.keys,
        reservation.carrier_id,
        EVENT_REDIRECTED,
        lambda: out.model_dump(mode="json"),
        now,
    )
    notices.enqueue(ctx, reservation, Fact("redirected", f"h{entry.id}", now))
    return out


def banks_with_room(
    session: Session,
    need: Need,
    origin: tuple[float, float],
    *,
    radius_km: float,
    exclude: Collection[str] = (),
    limit: int = MAX_ROOMS,
) -> list[Room]:
    """Active banks near `origin`, nearest first, with a free unit that fits `need` (an
    accessible one for an accessible need), at most `limit`.

    Capacity is read a few banks at a time, nearest first: the answer is nearly always among
    the first, and a city can have hundreds of banks within the radius.
    """
    nearby = [
        (spot, distance)
        for spot, distance in banks.spots_near(session, origin[0], origin[1], radius_km)
        if spot.id not in exclude
    ]
    found: list[tuple[banks_repository.BankSpot, float, int]] = []
    for start in range(0, len(nearby), _READ_AT_ONCE):
        chunk = nearby[start : start + _READ_AT_ONCE]
        capacity = banks_repository.capacity_of(session, [spot.id for spot, _ in chunk])
        for spot, distance in chunk:
            free = _free_for(need, spot, capacity[spot.id], distance)
            if free > 0:
                found.append((spot, distance, free))
            if len(found) >= limit:
                break
        if len(found) >= limit:
            break
    rooms: list[Room] = []
    for spot, distance, free in found:
        bank = banks_repository.get_referenced_bank(session, spot.id)
        rooms.append(Room(spot.id, spot.name, bank.address, round(distance, 3), free))
    return rooms


def _free_for(
    need: Need, spot: banks_repository.BankSpot, rows: Sequence[BankCapacity], distance: float
) -> int:
    """Free units at this bank of the classes the parcel may take there."""
    option = banks.option_for(spot, rows, distance)
    try:
        candidates = choose_candidates(need, [option])
    except NoFit:
        return 0
    return sum(max(0, option.classes[c.size].free_for(need)) for c in candidates)
