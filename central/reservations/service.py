"""Reservations: allocation, idempotency, lifecycle transitions and their side effects."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, Protocol, cast

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
from central.banks.schemas import Location
from central.banks.service import BankDirectory
from central.carriers.service import key_revoked
from central.errors import ApiError, Conflict, NotFound, Unprocessable
from central.keys import ServiceKeys
from central.models import (
    Actor,
    Bank,
    Reservation,
    ReservationEvent,
    ReservationStatus,
    SizeClass,
)
from central.reservations import lifecycle
from central.reservations import repository as repo
from central.reservations.schemas import (
    Alternative,
    BankRef,
    HistoryEntry,
    Parcel,
    ReservationCreate,
    ReservationList,
    ReservationOut,
)
from central.webhooks.repository import subscribed_endpoint_ids
from central.webhooks.service import Subscriptions, enqueue_event, seal_event

_GENERIC_TRACKING = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,63}$")
ALTERNATIVES_RADIUS_KM = 10.0
MAX_ALTERNATIVES = 5
ALTERNATIVES_READ_AT_ONCE = 2 * MAX_ALTERNATIVES


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every reservation operation needs from the request: the session, keys and the time."""

    session: Session
    keys: ServiceKeys
    now: datetime
    banks: BankDirectory | None = None  # cached static bank facts, where the caller keeps some
    # Webhook subscriptions read once for a transaction that enqueues many events (a batch).
    subscriptions: Subscriptions | None = None


def _checked_tracking_number(carrier_id: str, raw: str) -> str:
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


@dataclass(slots=True)
class _Attempt:
    """The rows one candidate would write: a reservation and its first history event."""

    bank: Bank
    candidate: Candidate
    reservation: _NewReservation
    event: _NewEvent
    notice: repo.Notice | None = None  # its webhook event, when the carrier has endpoints for it
    out: ReservationOut | None = None  # what the answer and the notice say, once described


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
    for index, (carrier_id, body, _) in enumerate(requests):
        try:
            planned = _plan(ctx, carrier_id, body)
            if not isinstance(planned, _Plan):
                outcomes[index] = planned
            elif not planned.candidates:  # nothing to try: the twin or a refusal
                outcomes[index] = _finish(ctx, planned, None)
            else:
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
    assert all(outcome is not None for outcome in outcomes)
    return cast(list[Created | ApiError], outcomes)


def _plan(ctx: Ctx, carrier_id: str, body: ReservationCreate) -> _Plan | Created:
    """The request checked and its candidates chosen, or the active twin that answers it."""
    number = _checked_tracking_number(carrier_id, body.tracking_number)
    need = _need(body)
    try:
        options, banks_by_id, origin = _options(ctx, body)
        candidates = choose_candidates(need, options)
    except (ApiError, NoFit) as exc:
        existing = repo.find_active(ctx.session, carrier_id, number)
        if existing is not None:
            return describe(ctx.session, existing), False
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
            return describe(ctx.session, twin), False
        return _created(ctx, attempt), True

    existing = repo.find_active(ctx.session, plan.carrier_id, plan.number)
    if existing is not None:
        return describe(ctx.session, existing), False
    need = plan.need
    raise Conflict(
        "no_capacity",
        f"no free {need.size or 'fitting'} locker"
        + (" at that bank" if plan.body.bank_id else " nearby"),
        alternatives=[
            a.model_dump() for a in _alternatives(ctx.session, need, plan.origin, plan.options)
        ],
    )


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
        return [option], {bank.id: bank}, (bank.lat, bank.lon)
    assert body.near is not None
    near = banks.banks_near(session, body.near.lat, body.near.lon, body.near.radius_km)
    options = [banks.option_for(bank, cap, distance) for bank, distance, cap in near]
    return options, {bank.id: bank for bank, _, _ in near}, (body.near.lat, body.near.lon)


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
        recipient=body.recipient.model_dump(exclude_none=True) if body.recipient else None,
        reserved_until=now + timedelta(hours=hold),
        created_at=now,
    )
    event = _NewEvent(
        reservation_id=reservation.id,
        actor_id=plan.carrier_id,
        data={"bank_id": bank.id, "size": candidate.size.value},
        at=now,
    )
    attempt = _Attempt(bank, candidate, reservation, event)
    if notify is None:
        notify = _notifies(ctx, plan.carrier_id)
    if notify:
        attempt.out = _described(ctx, attempt)
        data = attempt.out.model_dump(mode="json")
        attempt.notice = repo.Notice(*seal_event(ctx.keys, repo.EVENT_CREATED, data, now))
    return attempt


def _described(ctx: Ctx, attempt: _Attempt) -> ReservationOut:
    return describe(ctx.session, attempt.reservation, bank=attempt.bank, history=[attempt.event])


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
                free = sum(option.classes[c.size].available for c in candidates)
                out.append(
                    Alternative(
                        bank_id=bank.id, name=bank.name, distance_km=round(distance, 3), free=free
                    )
                )
            if len(out) >= MAX_ALTERNATIVES:
                return out
    return out


class _ReservationView(Protocol):
    """What `describe` reads of a reservation: a stored row or one about to be inserted."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def carrier_id(self) -> str: ...
    @property
    def tracking_number(self) -> str: ...
    @property
    def bank_id(self) -> str: ...
    @property
    def size(self) -> str: ...
    @property
    def compartment_label(self) -> str | None: ...
    @property
    def length_mm(self) -> int | None: ...
    @property
    def width_mm(self) -> int | None: ...
    @property
    def height_mm(self) -> int | None: ...
    @property
    def weight_g(self) -> int | None: ...
    @property
    def tracking_status(self) -> str | None: ...
    @property
    def reserved_until(self) -> datetime: ...
    @property
    def pickup_deadline(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


class _EventView(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def from_status(self) -> str | None: ...
    @property
    def to_status(self) -> str | None: ...
    @property
    def actor(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def at(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any] | None: ...


def describe(
    session: Session,
    reservation: Reservation | _ReservationView,
    *,
    bank: Bank | None = None,
    history: Sequence[ReservationEvent | _EventView] | None = None,
) -> ReservationOut:
    bank = bank or banks_repository.get_bank(session, reservation.bank_id)
    assert bank is not None
    if history is not None:
        events = history
    else:
        assert isinstance(reservation, Reservation)
        events = reservation.history
    has_parcel = reservation.length_mm is not None
    # Built from stored rows, whose types the columns fix: `model_construct` skips re-validating
    # them, a fair share of a reservation's CPU on the busiest routes (the API tests would
    # catch a mistyped field: pydantic warns when it serialises one, and warnings fail them).
    return ReservationOut.model_construct(
        id=reservation.id,
        status=reservation.status,
        carrier=reservation.carrier_id,
        tracking_number=reservation.tracking_number,
        bank=BankRef.model_construct(
            id=bank.id,
            name=bank.name,
            address=bank.address,
            location=Location.model_construct(lat=bank.lat, lon=bank.lon),
        ),
        size=SizeClass(reservation.size),
        compartment=reservation.compartment_label,
        parcel=Parcel.model_construct(
            length_mm=reservation.length_mm or 0,
            width_mm=reservation.width_mm or 0,
            height_mm=reservation.height_mm or 0,
            weight_g=reservation.weight_g,
        )
        if has_parcel
        else None,
        tracking_status=reservation.tracking_status,
        reserved_until=reservation.reserved_until,
        pickup_deadline=reservation.pickup_deadline,
        created_at=reservation.created_at,
        updated_at=reservation.updated_at,
        history=[
            HistoryEntry.model_construct(
                type=e.type,
                from_status=e.from_status,
                to_status=e.to_status,
                actor=e.actor,
                reason=e.reason,
                at=e.at,
                data=e.data,
            )
            for e in events
        ],
    )


def require_own(session: Session, carrier_id: str, reservation_id: str) -> Reservation:
    """The caller's reservation; another carrier's is indistinguishable from a missing one."""
    reservation = repo.get(session, reservation_id)
    if reservation is None or reservation.carrier_id != carrier_id:
        raise NotFound(f"reservation {reservation_id}")
    return reservation


def get(ctx: Ctx, carrier_id: str, reservation_id: str) -> ReservationOut:
    return describe(ctx.session, require_own(ctx.session, carrier_id, reservation_id))


def search(
    ctx: Ctx,
    carrier_id: str,
    *,
    tracking_number: str | None,
    status: ReservationStatus | None,
    cursor: str | None,
    limit: int,
) -> ReservationList:
    before = _decode_cursor(cursor) if cursor else None
    rows = repo.search(
        ctx.session,
        carrier_id,
        tracking_number=normalize_tracking_number(tracking_number) if tracking_number else None,
        status=status.value if status else None,
        before=before,
        limit=limit,
    )
    next_cursor = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return ReservationList(items=[describe(ctx.session, r) for r in rows], next_cursor=next_cursor)


def _encode_cursor(row: Reservation) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), rid
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from exc


def transition(
    ctx: Ctx,
    reservation: Reservation,
    target: ReservationStatus,
    *,
    actor: Actor,
    actor_id: str | None = None,
    reason: str | None = None,
    changes: dict[str, Any] | None = None,
    event_data: dict[str, Any] | None = None,
    webhook_extra: dict[str, Any] | None = None,
) -> ReservationOut:
    """Apply one lifecycle transition with its history entry, capacity change and webhook."""
    try:
        rule = lifecycle.transition_for(
            reservation.status, target.value, was_deposited=reservation.deposited_at is not None
        )
    except lifecycle.InvalidTransition as exc:
        raise Conflict(
            "invalid_transition", str(exc), status=reservation.status, requested=target.value
        ) from exc
    now = ctx.now
    values: dict[str, Any] = {"status": target.value, "updated_at": now, **(changes or {})}
    if lifecycle.is_closed(target.value, was_deposited=reservation.deposited_at is not None):
        values.update(recipient=None, closed_at=now)
    if not repo.set_status(ctx.session, reservation.id, reservation.status, values):
        raise Conflict("concurrent_update", "the reservation changed meanwhile; fetch it again")
    for key, value in values.items():
        setattr(reservation, key, value)
    if rule.frees_capacity:
        banks_repository.release_unit(ctx.session, reservation.bank_id, reservation.size)
    repo.add(
        ctx.session,
        ReservationEvent(
            reservation_id=reservation.id,
            type=target.value,
            from_status=rule.source.value,
            to_status=target.value,
            actor=actor.value,
            actor_id=actor_id,
            reason=reason,
            data=event_data,
            at=now,
        ),
    )
    ctx.session.flush()
    out = describe(ctx.session, reservation, history=repo.history_of(ctx.session, reservation.id))
    enqueue_event(
        ctx.session,
        ctx.keys,
        reservation.carrier_id,
        rule.webhook,
        lambda: out.model_dump(mode="json") | (webhook_extra or {}),
        now,
    )
    return out


def cancel(ctx: Ctx, carrier_id: str, reservation_id: str, reason: str | None) -> ReservationOut:
    reservation = require_own(ctx.session, carrier_id, reservation_id)
    if reservation.status == ReservationStatus.CANCELLED:
        return describe(ctx.session, reservation)  # cancelling twice is the same as once
    if reservation.status != ReservationStatus.RESERVED:
        raise Conflict(
            "not_cancellable",
            f"a {reservation.status} reservation cannot be cancelled",
            status=reservation.status,
        )
    return transition(
        ctx,
        reservation,
        ReservationStatus.CANCELLED,
        actor=Actor.CARRIER,
        actor_id=carrier_id,
        reason=reason or "cancelled by carrier",
    )


def extend(
    ctx: Ctx,
    reservation: Reservation,
    hours: int,
    *,
    actor: Actor,
    actor_id: str | None,
    reason: str | None,
) -> ReservationOut:
    """Move the deadline that applies now: the hold before deposit, the pickup deadline after.

    Bounded by the bank's policy: at most `max_extension_hours` beyond the original deadline.
    """
    bank = banks_repository.get_bank(ctx.session, reservation.bank_id)
    assert bank is not None
    limit = timedelta(hours=bank.max_extension_hours)
    if reservation.status == ReservationStatus.RESERVED:
        field, current = "reserved_until", reservation.reserved_until
        original = reservation.created_at + timedelta(hours=bank.hold_hours)
    elif reservation.status == ReservationStatus.DEPOSITED and reservation.pickup_deadline:
        assert reservation.deposited_at is not None
        field, current = "pickup_deadline", reservation.pickup_deadline
        original = reservation.deposited_at + timedelta(hours=bank.pickup_hours)
    else:
        raise Conflict(
            "not_extendable",
            f"a {reservation.status} reservation has no deadline to extend",
            status=reservation.status,
        )
    ceiling = original + limit
    new_deadline = current + timedelta(hours=hours)
    if new_deadline > ceiling:
        raise Conflict(
            "extension_limit",
            f"the deadline can move to {ceiling.isoformat()} at the latest",
            max_deadline=ceiling.isoformat(),
        )
    repo.update_fields(ctx.session, reservation.id, {field: new_deadline, "updated_at": ctx.now})
    setattr(reservation, field, new_deadline)
    reservation.updated_at = ctx.now
    repo.add(
        ctx.session,
        ReservationEvent(
            reservation_id=reservation.id,
            type="extended",
            from_status=reservation.status,
            to_status=reservation.status,
            actor=actor.value,
            actor_id=actor_id,
            reason=reason,
            data={"field": field, "from": current.isoformat(), "to": new_deadline.isoformat()},
            at=ctx.now,
        ),
    )
    ctx.session.flush()
    return describe(ctx.session, reservation, history=repo.history_of(ctx.session, reservation.id))


def expire_holds(ctx: Ctx, *, limit: int = 500) -> int:
    """Expire reservations whose courier never came; frees their capacity. Returns the count."""
    due = repo.expired_holds(ctx.session, ctx.now, limit)
    return _expire_each(ctx, due, ReservationStatus.RESERVED, "not deposited before reserved_until")


def expire_pickups(ctx: Ctx, *, limit: int = 500) -> int:
    """Expire deposited parcels past their pickup deadline: the courier takes them back."""
    due = repo.expired_pickups(ctx.session, ctx.now, limit)
    return _expire_each(
        ctx, due, ReservationStatus.DEPOSITED, "not picked up before pickup_deadline"
    )


def _expire_each(
    ctx: Ctx, reservation_ids: Sequence[str], source: ReservationStatus, reason: str
) -> int:
    count = 0
    for reservation_id in reservation_ids:
        reservation = repo.get(ctx.session, reservation_id)
        if reservation is None or reservation.status != source:
            continue  # changed since it was found due (a deposit, a pickup): nothing to expire
        transition(ctx, reservation, ReservationStatus.EXPIRED, actor=Actor.SYSTEM, reason=reason)
        count += 1
    return count


def send_reminders(ctx: Ctx, *, limit: int = 500) -> int:
    """One `parcel.reminder` per parcel, `reminder_hours` before its pickup deadline."""
    count = 0
    for reservation in repo.due_reminders(ctx.session, ctx.now, limit):
        bank = banks_repository.get_bank(ctx.session, reservation.bank_id)
        assert bank is not None and reservation.pickup_deadline is not None
        if reservation.pickup_deadline - timedelta(hours=bank.reminder_hours) > ctx.now:
            continue
        repo.add(
            ctx.session,
            ReservationEvent(
                reservation_id=reservation.id,
                type="reminder",
                from_status=reservation.status,
                to_status=reservation.status,
                actor=Actor.SYSTEM.value,
                actor_id=None,
                reason=f"{bank.reminder_hours} h before the pickup deadline",
                data=None,
                at=ctx.now,
            ),
        )
        ctx.session.flush()
        out = describe(
            ctx.session,
            reservation,
            bank=bank,
            history=repo.history_of(ctx.session, reservation.id),
        )
        enqueue_event(
            ctx.session,
            ctx.keys,
            reservation.carrier_id,
            "parcel.reminder",
            partial(out.model_dump, mode="json"),
            ctx.now,
        )
        count += 1
    return count
