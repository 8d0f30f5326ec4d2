"""Reserving a unit: the request checked, a bank and class chosen, the rows written at once,
idempotently; nearby alternatives when there is no room."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy.orm import Session

from carrier_adapters.tracking_numbers import (
    KNOWN_CARRIERS,
    is_valid_for_carrier,
    normalize_tracking_number,
)
from central.allocation.choice import BankOption, Candidate, Need, NoFit, choose_candidates
from central.allocation.sizing import Dimensions
from central.banks import repository as banks_repository
from central.banks import service as banks
from central.banks import settings as bank_settings
from central.carriers.service import key_revoked
from central.context import Ctx
from central.errors import ApiError, Conflict, Unprocessable
from central.models import Actor, Bank, Reservation, ReservationStatus
from central.models.base import ReservationKind
from central.reservations import repository as repo
from central.reservations.groups import group_id_for
from central.reservations.schemas import Alternative, ReservationCreate, ReservationOut
from central.reservations.views import describe
from central.webhooks.repository import subscribed_endpoint_ids
from central.webhooks.service import seal_event

_GENERIC_TRACKING = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,63}$")
ALTERNATIVES_RADIUS_KM = 10.0
MAX_ALTERNATIVES = 5
ALTERNATIVES_READ_AT_ONCE = 2 * MAX_ALTERNATIVES
T = TypeVar("T")


def checked_tracking_number(carrier_id: str, raw: str) -> str:
    """The tracking number normalised, or 422 `invalid_tracking_number` when it cannot be the
    carrier's (the one place that says so: reservations and walk-ups both ask here)."""
    number = normalize_tracking_number(raw)
    if carrier_id in KNOWN_CARRIERS:
        if not is_valid_for_carrier(carrier_id, number):
            raise Unprocessable(
                "invalid_tracking_number",
                f"{raw!r} is not a valid {carrier_id.upper()} tracking number",
            )
    elif not _GENERIC_TRACKING.match(number):
        raise Unprocessable(
            "invalid_tracking_number", "tracking numbers are 4-64 letters, digits or '-'"
        )
    return number


def _need(body: ReservationCreate) -> Need:
    parcel = body.parcel
    return Need(
        size=body.size,
        parcel=Dimensions(parcel.length_mm, parcel.width_mm, parcel.height_mm) if parcel else None,
        weight_g=parcel.weight_g if parcel else None,
        accessible=body.recipient is not None and body.recipient.accessible,
    )


Created = tuple[ReservationOut, bool]


@dataclass(slots=True)
class _Plan:
    """A create request checked and placed: the (bank, class) candidates to try, in order."""

    carrier_id: str
    number: str
    body: ReservationCreate
    need: Need
    options: list[BankOption]
    banks: dict[str, Bank]
    origin: tuple[float, float]
    candidates: list[Candidate]
    # Whether the answer reads the reservation's group-mates (one indexed query, for a
    # reservation with contact details); not on PostgreSQL's batch path (see `create_many`).
    group_lookup: bool = True


@dataclass(slots=True)
class _Attempt:
    """The rows one candidate would write: a reservation and its first history event."""

    bank: Bank
    candidate: Candidate
    reservation: _NewReservation
    event: _NewEvent
    notice: repo.Notice | None = None  # its webhook event, when the carrier has endpoints for it
    out: ReservationOut | None = None  # what the answer and the notice say, once described
    group_mates: tuple[str, ...] | None = None  # known without a query (None: look them up)


def create(ctx: Ctx, carrier_id: str, body: ReservationCreate) -> Created:
    """Reserve a unit; returns the reservation and whether it was made now (201) or before (200).

    The active reservation for a repeated tracking number is looked up only when it can matter:
    when the insert meets it (see `_finish`) or before refusing. A new reservation, the common
    case, costs no lookup. Nothing is written unless a reservation is made, so a refusal
    (ApiError) leaves the transaction as it found it.
    """
    planned = _plan(ctx, carrier_id, body)
    if not isinstance(planned, _Plan):
        return planned
    return _finish(ctx, planned, None)


class CreateRequest(NamedTuple):
    """One create for `create_many`; `unchecked_key`: the key it came with, whose revocation is
    still to be checked (a key recalled from `carriers.service.VerifiedKeys`)."""

    carrier_id: str
    body: ReservationCreate
    unchecked_key: int | None = None


def create_many(ctx: Ctx, requests: Sequence[CreateRequest]) -> list[Created | ApiError]:
    """Several creates in the caller's transaction, each answered or refused on its own.

    The first attempt of every request is written in one round trip where the database allows
    it (`repository.reserve_units`), in (bank, class) order so that concurrent transactions take
    capacity rows in the same order; any further attempt (a full first choice) follows alone.
    Unchecked keys are checked in that round trip: a request whose key turns out revoked is
    refused with 401 whatever else it would have got, and has written nothing.
    """
    outcomes: list[Created | ApiError | None] = [None] * len(requests)
    firsts: list[tuple[int, _Plan, _Attempt]] = []
    # On PostgreSQL the batch is one round trip; reading each new reservation's group-mates
    # would add one: its answer lists it alone in its group (GET lists the others).
    group_lookup = ctx.session.connection().dialect.name != "postgresql"
    for index, (carrier_id, body, _) in enumerate(requests):
        try:
            planned = _plan(ctx, carrier_id, body)
            if not isinstance(planned, _Plan):
                outcomes[index] = planned
            elif not planned.candidates:  # nothing to try: the twin or a refusal
                outcomes[index] = _finish(ctx, planned, None)
            else:
                planned.group_lookup = group_lookup
                firsts.append((index, planned, _attempt(ctx, planned, planned.candidates[0])))
        except ApiError as refused:
            outcomes[index] = refused
    firsts.sort(key=lambda f: (f[2].bank.id, f[2].candidate.size.value))
    reserved = repo.reserve_units(
        ctx.session,
        [
            repo.UnitRequest(
                a.bank.id,
                a.candidate.size.value,
                a.reservation.values,
                a.event.values,
                requests[index].unchecked_key,
                a.notice,
            )
            for index, _, a in firsts
        ],
        check_keys={r.unchecked_key for r in requests if r.unchecked_key is not None},
    )
    if reserved.subscriptions is not None and ctx.subscriptions is not None:
        ctx.subscriptions.know(reserved.subscriptions)
    for (index, plan, attempt), outcome in zip(firsts, reserved.outcomes, strict=True):
        if outcome == "revoked":
            continue
        try:
            outcomes[index] = _finish(ctx, plan, (attempt, outcome))
        except ApiError as refused:
            outcomes[index] = refused
    for index, request in enumerate(requests):
        if request.unchecked_key in reserved.revoked_keys:
            outcomes[index] = key_revoked()
    return all_answered(outcomes)


def all_answered(outcomes: Sequence[T | None]) -> list[T]:
    """A batch's outcomes, each request's given: one left without an answer is a bug."""
    answered = [outcome for outcome in outcomes if outcome is not None]
    if len(answered) != len(outcomes):
        raise RuntimeError("a request of the batch was left without an answer")
    return answered


def _plan(ctx: Ctx, carrier_id: str, body: ReservationCreate) -> _Plan | Created:
    """The request checked and its candidates chosen, or the active twin that answers it."""
    number = checked_tracking_number(carrier_id, body.tracking_number)
    need = _need(body)
    try:
        options, banks_by_id, origin = _options(ctx, body)
        candidates = choose_candidates(need, options)
    except (ApiError, NoFit) as exc:
        existing = repo.find_active(ctx.session, carrier_id, number)
        if existing is not None:
            return _active_twin(ctx, existing)
        if isinstance(exc, NoFit):
            raise Unprocessable(exc.code, exc.detail) from exc
        raise
    plan = _Plan(carrier_id, number, body, need, options, banks_by_id, origin, candidates)
    if candidates:
        _check_hold(plan, banks_by_id[candidates[0].bank_id])
    return plan


def _finish(ctx: Ctx, plan: _Plan, first: tuple[_Attempt, repo.ReserveOutcome] | None) -> Created:
    """Try the plan's candidates in order (the first may have been tried already) and answer."""
    for position, candidate in enumerate(plan.candidates):
        if position == 0 and first is not None:
            attempt, outcome = first
        else:
            attempt = _attempt(ctx, plan, candidate)
            outcome = _reserve(ctx, attempt)
        if outcome == "unsealed":  # the carrier has (new) endpoints to notify
            attempt = _attempt(ctx, plan, candidate, notify=True)
            outcome = _reserve(ctx, attempt)
        if outcome == "full":
            continue
        if outcome == "twin":
            # An identical request committed first: its result is the answer.
            twin = repo.find_active(ctx.session, plan.carrier_id, plan.number)
            if twin is None:
                raise Conflict("concurrent_update", "the reservation changed meanwhile; retry")
            return _active_twin(ctx, twin)
        return _created(ctx, attempt), True

    existing = repo.find_active(ctx.session, plan.carrier_id, plan.number)
    if existing is not None:
        return _active_twin(ctx, existing)
    need = plan.need
    raise Conflict(
        "no_accessible_capacity" if need.accessible else "no_capacity",
        f"no free {'accessible ' if need.accessible else ''}{need.size or 'fitting'} locker"
        + (" at that bank" if plan.body.bank_id else " nearby"),
        alternatives=[
            a.model_dump() for a in _alternatives(ctx.session, need, plan.origin, plan.options)
        ],
    )


def _active_twin(ctx: Ctx, existing: Reservation) -> Created:
    """The answer for a repeated tracking number: its active reservation; never a drop-off
    (the carrier's label for a sender's parcel), which keeps the number while it is active."""
    if existing.kind == ReservationKind.DROPOFF:
        raise Conflict(
            "tracking_number_in_use",
            f"tracking number {existing.tracking_number} belongs to the active drop-off "
            f"{existing.id}",
            dropoff_id=existing.id,
        )
    return describe(ctx.session, existing), False


def _options(
    ctx: Ctx, body: ReservationCreate
) -> tuple[list[BankOption], dict[str, Bank], tuple[float, float]]:
    session = ctx.session
    if body.bank_id is not None:
        if ctx.banks is not None:
            bank, option = ctx.banks.option(session, body.bank_id)
        else:
            bank = banks.require_bank(session, body.bank_id)
            capacity = banks_repository.capacity_of(session, [bank.id])[bank.id]
            option = banks.option_for(bank, capacity, 0.0)
        if bank_settings.in_maintenance(bank):
            raise _in_maintenance(session, bank, body, option)
        return [option], {bank.id: bank}, (bank.lat, bank.lon)
    if body.near is None:  # `ReservationCreate` validates exactly one of bank_id or near
        raise ValueError("a reservation request names a bank or a place near one")
    near = [
        (bank, distance, cap)
        for bank, distance, cap in banks.banks_near(
            session, body.near.lat, body.near.lon, body.near.radius_km
        )
        if not bank_settings.in_maintenance(bank)  # allocation skips a bank in maintenance
    ]
    options = [banks.option_for(bank, cap, distance) for bank, distance, cap in near]
    return options, {bank.id: bank for bank, _, _ in near}, (body.near.lat, body.near.lon)


def _in_maintenance(
    session: Session, bank: Bank, body: ReservationCreate, option: BankOption
) -> Conflict:
    """409 `bank_in_maintenance` for a request naming a bank in maintenance, with the nearby
    banks that have room, as `no_capacity` lists them."""
    until = bank.maintenance_until
    return Conflict(
        "bank_in_maintenance",
        f"bank {bank.id} is in maintenance"
        + (f" until about {until.isoformat()}" if until is not None else ""),
        maintenance_until=until.isoformat() if until is not None else None,
        alternatives=[
            a.model_dump()
            for a in _alternatives(session, _need(body), (bank.lat, bank.lon), [option])
        ],
    )


def _check_hold(plan: _Plan, bank: Bank) -> int:
    hold = plan.body.hold_hours or bank.hold_hours
    if hold > bank.hold_hours + bank.max_extension_hours:
        raise Unprocessable(
            "hold_too_long",
            f"this bank holds reservations at most {bank.hold_hours + bank.max_extension_hours} h",
        )
    return hold


def _reserve(ctx: Ctx, attempt: _Attempt) -> repo.ReserveOutcome:
    return repo.reserve_unit(
        ctx.session,
        attempt.bank.id,
        attempt.candidate.size.value,
        attempt.reservation.values,
        attempt.event.values,
        attempt.notice,
    )


def _notifies(ctx: Ctx, carrier_id: str) -> bool:
    """Whether the carrier has endpoints for `reservation.created`, as far as `ctx` knows (the
    reservation's statement checks it again: see `repository.reserve_unit`)."""
    if ctx.subscriptions is not None:
        return bool(ctx.subscriptions.endpoint_ids(ctx.session, carrier_id, repo.EVENT_CREATED))
    return bool(subscribed_endpoint_ids(ctx.session, carrier_id, repo.EVENT_CREATED))


def _attempt(
    ctx: Ctx, plan: _Plan, candidate: Candidate, *, notify: bool | None = None
) -> _Attempt:
    """The rows for one (bank, class), built as plain values: no ORM object on the hot path;
    with the `reservation.created` notice sealed when the carrier has endpoints for it."""
    bank = plan.banks[candidate.bank_id]
    hold = _check_hold(plan, bank)
    now = ctx.now
    body = plan.body
    parcel = body.parcel
    recipient = (
        body.recipient.model_dump(exclude_none=True, exclude={"accessible"})
        if body.recipient
        else None
    )
    reservation = _NewReservation(
        id=f"rsv_{secrets.token_hex(10)}",
        carrier_id=plan.carrier_id,
        tracking_number=plan.number,
        bank_id=bank.id,
        size=candidate.size.value,
        length_mm=parcel.length_mm if parcel else None,
        width_mm=parcel.width_mm if parcel else None,
        height_mm=parcel.height_mm if parcel else None,
        weight_g=parcel.weight_g if parcel else None,
        recipient=recipient,
        # Never while the bank is closed: then the hold runs to the end of its next open period.
        reserved_until=bank_settings.deadline(bank, now, hold),
        created_at=now,
        accessible=plan.need.accessible,
        group_id=group_id_for(ctx.keys, bank.id, plan.carrier_id, recipient),
    )
    event = _NewEvent(
        reservation_id=reservation.id,
        actor_id=plan.carrier_id,
        data={"bank_id": bank.id, "size": candidate.size.value},
        at=now,
    )
    attempt = _Attempt(
        bank, candidate, reservation, event, group_mates=None if plan.group_lookup else ()
    )
    if notify is None:
        notify = _notifies(ctx, plan.carrier_id)
    if notify:
        attempt.out = _described(ctx, attempt)
        data = attempt.out.model_dump(mode="json")
        attempt.notice = repo.Notice(*seal_event(ctx.keys, repo.EVENT_CREATED, data, now))
    return attempt


def _described(ctx: Ctx, attempt: _Attempt) -> ReservationOut:
    return describe(
        ctx.session,
        attempt.reservation,
        bank=attempt.bank,
        history=[attempt.event],
        group_mates=attempt.group_mates,
    )


def _created(ctx: Ctx, attempt: _Attempt) -> ReservationOut:
    """The answer for a reservation just made (its notice went to the outbox with it)."""
    return attempt.out or _described(ctx, attempt)


@dataclass(frozen=True, slots=True)
class _NewReservation:
    """A reservation about to be inserted, readable by `describe` like a stored one."""

    id: str
    carrier_id: str
    tracking_number: str
    bank_id: str
    size: str
    length_mm: int | None
    width_mm: int | None
    height_mm: int | None
    weight_g: int | None
    recipient: dict[str, Any] | None
    reserved_until: datetime
    created_at: datetime
    status: str = ReservationStatus.RESERVED.value
    compartment_label: str | None = None
    pickup_deadline: datetime | None = None
    tracking_status: str | None = None
    kind: str = "delivery"
    accessible: bool = False
    accessible_unit: bool = False
    group_id: str | None = None

    @property
    def updated_at(self) -> datetime:
        return self.created_at

    @property
    def values(self) -> dict[str, Any]:
        """Every column of the `reservations` row."""
        return {
            "id": self.id,
            "carrier_id": self.carrier_id,
            "tracking_number": self.tracking_number,
            "bank_id": self.bank_id,
            "size": self.size,
            "status": self.status,
            "compartment_label": None,
            "length_mm": self.length_mm,
            "width_mm": self.width_mm,
            "height_mm": self.height_mm,
            "weight_g": self.weight_g,
            "recipient": self.recipient,
            "reserved_until": self.reserved_until,
            "pickup_deadline": None,
            "deposited_at": None,
            "closed_at": None,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "tracking_status": None,
            "tracking_checked_at": None,
            "kind": self.kind,
            "accessible": self.accessible,
            "accessible_unit": self.accessible_unit,
            "group_id": self.group_id,
            "dropoff_code_hash": None,
            "dropoff_qr_hash": None,
        }


@dataclass(frozen=True, slots=True)
class _NewEvent:
    """A reservation's `created` history event about to be inserted."""

    reservation_id: str
    actor_id: str
    data: dict[str, Any]
    at: datetime
    type: str = "created"
    from_status: str | None = None
    to_status: str | None = ReservationStatus.RESERVED.value
    actor: str = Actor.CARRIER.value
    reason: str | None = None

    @property
    def values(self) -> dict[str, Any]:
        """Every column of the `reservation_events` row but its generated id."""
        return {
            "reservation_id": self.reservation_id,
            "type": self.type,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "actor": self.actor,
            "actor_id": self.actor_id,
            "reason": self.reason,
            "data": self.data,
            "at": self.at,
        }


def alternatives_near(
    session: Session, need: Need, origin: tuple[float, float], tried: Sequence[BankOption]
) -> list[Alternative]:
    """What a 409 `no_capacity` lists: nearby banks other than those tried that have room for
    the parcel (for drop-offs too, `central.dropoffs.service`)."""
    return _alternatives(session, need, origin, tried)


def _alternatives(
    session: Session, need: Need, origin: tuple[float, float], tried: Sequence[BankOption]
) -> list[Alternative]:
    """Banks near the request, other than those already tried, that have room for this parcel."""
    tried_ids = {option.bank_id for option in tried}
    nearby = [
        (bank, distance)
        for bank, distance in banks.spots_near(
            session, origin[0], origin[1], ALTERNATIVES_RADIUS_KM
        )
        if bank.id not in tried_ids
    ]
    out: list[Alternative] = []
    # Capacity is read for the nearest banks first, a few at a time: the answer is nearly always
    # among them, and a city can have hundreds of banks within the radius (every 409 would read
    # all their capacity rows otherwise, some twenty times the work of a reservation at 100).
    for start in range(0, len(nearby), ALTERNATIVES_READ_AT_ONCE):
        chunk = nearby[start : start + ALTERNATIVES_READ_AT_ONCE]
        capacity = banks_repository.capacity_of(session, [bank.id for bank, _ in chunk])
        for bank, distance in chunk:
            option = banks.option_for(bank, capacity[bank.id], distance)
            try:
                candidates = choose_candidates(need, [option])
            except NoFit:
                continue
            if candidates:
                free = sum(option.classes[c.size].free_for(need) for c in candidates)
                out.append(
                    Alternative(
                        bank_id=bank.id, name=bank.name, distance_km=round(distance, 3), free=free
                    )
                )
            if len(out) >= MAX_ALTERNATIVES:
                return out
    return out
