"""Making, finding and cancelling drop-offs for a carrier's customers.

A drop-off is a reservation of kind `dropoff`: it takes a unit of its class at the bank when it
is made (released when it is cancelled, expires unused or is collected), travels to the node in
its feed with its code's hashes, and keeps a history like a delivery. The code and QR payload are
drawn before the transaction (`codes.draw_secret`, which hashes slowly on purpose) and kept
sealed on the row, for the sender's notice and for a repeated request, until the drop-off ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from central.allocation.choice import Need, NoFit, choose_candidates
from central.allocation.sizing import Dimensions
from central.banks import repository as banks_repository
from central.banks import service as banks
from central.banks import settings as bank_settings
from central.context import Ctx
from central.dropoffs import repository as repo
from central.dropoffs.codes import DropoffSecret
from central.dropoffs.schemas import DropoffCreate, DropoffList, DropoffOut
from central.dropoffs.views import describe, describe_current, dropoff_webhook_data, require_own
from central.errors import Conflict, Unprocessable
from central.models import Actor, Bank, Reservation, ReservationStatus
from central.models.base import ReservationKind
from central.notices import outbox as notices
from central.notices.outbox import Fact
from central.notices.pickup import seal_pickup
from central.reservations import repository as reservations_repository
from central.reservations.paging import SearchQuery, search_page
from central.reservations.service import alternatives_near, checked_tracking_number
from central.reservations.transitions import transition
from central.reservations.views import describe as describe_reservation
from central.webhooks.service import enqueue_event

EVENT_CREATED = "dropoff.created"
ID_PREFIX = "drop_"
# Drawing again because a waiting drop-off of the bank has the same code: with 10^10 codes,
# a bank would need millions of waiting drop-offs for this to happen twice in a row.
MAX_DRAWS = 5

Made = tuple[DropoffOut, bool]


def create(
    ctx: Ctx,
    carrier_id: str,
    body: DropoffCreate,
    secret: DropoffSecret,
    redraw: Callable[[], DropoffSecret],
) -> Made:
    """Make a drop-off; returns it and whether it was made now (201) or before (200).

    A carrier repeating an active drop-off's tracking number gets that drop-off, with the same
    code; one whose number belongs to an active delivery is refused (`tracking_number_in_use`).
    `secret` is the new code, drawn and hashed beforehand for `body.bank_id`; `redraw` draws
    another should a waiting drop-off of the bank have the same code.
    """
    number = checked_tracking_number(carrier_id, body.tracking_number)
    existing = reservations_repository.find_active(ctx.session, carrier_id, number)
    if existing is not None:
        return _repeated(ctx, existing), False
    bank = banks.require_bank(ctx.session, body.bank_id)
    capacity = banks_repository.capacity_of(ctx.session, [bank.id])[bank.id]
    option = banks.option_for(bank, capacity, 0.0)
    need = _need(body)
    if bank_settings.in_maintenance(bank):
        raise Conflict(
            "bank_in_maintenance",
            f"bank {bank.id} is in maintenance",
            alternatives=[
                a.model_dump()
                for a in alternatives_near(ctx.session, need, (bank.lat, bank.lon), [option])
            ],
        )
    try:
        candidates = choose_candidates(need, [option])
    except NoFit as exc:
        raise Unprocessable(exc.code, exc.detail) from exc
    hold = _hold_hours(body, bank)
    for _ in range(MAX_DRAWS):
        if not repo.code_in_use(ctx.session, bank.id, secret.code_hash):
            break
        secret = redraw()
    else:
        raise RuntimeError(f"{MAX_DRAWS} drop-off codes in a row were taken at bank {bank.id}")
    for candidate in candidates:
        size = candidate.size.value
        # A bank's accessible units go to drop-offs only when no other unit of the class is free.
        taken = banks_repository.take_unit(ctx.session, bank.id, size)
        if taken is None:
            continue  # taken since the capacity was read: the next larger class, if allowed
        row = _row(ctx, carrier_id, number, body, bank, size, hold, secret)
        row["accessible_unit"] = taken == "accessible"
        if not reservations_repository.insert_if_no_active_twin(ctx.session, row):
            # An identical request (or a delivery with this number) committed first.
            banks_repository.release_unit(
                ctx.session, bank.id, size, accessible_unit=row["accessible_unit"]
            )
            twin = reservations_repository.find_active(ctx.session, carrier_id, number)
            if twin is None:
                raise Conflict("concurrent_update", "the drop-off changed meanwhile; retry")
            return _repeated(ctx, twin), False
        return _created(ctx, row), True
    raise Conflict(
        "no_capacity",
        f"no free {need.size or 'fitting'} locker at that bank",
        alternatives=[
            a.model_dump()
            for a in alternatives_near(ctx.session, need, (bank.lat, bank.lon), [option])
        ],
    )


def _need(body: DropoffCreate) -> Need:
    parcel = body.parcel
    return Need(
        size=body.size,
        parcel=Dimensions(parcel.length_mm, parcel.width_mm, parcel.height_mm) if parcel else None,
        weight_g=parcel.weight_g if parcel else None,
    )


def _hold_hours(body: DropoffCreate, bank: Bank) -> int:
    """How long the code works: the bank's hold, or what was asked within the bank's policy."""
    longest = bank.hold_hours + bank.max_extension_hours
    hold = body.hold_hours or bank.hold_hours
    if hold > longest:
        raise Unprocessable("hold_too_long", f"this bank holds drop-offs at most {longest} h")
    return hold


def _repeated(ctx: Ctx, existing: Reservation) -> DropoffOut:
    """The answer for a tracking number that is active already."""
    if existing.kind != ReservationKind.DROPOFF:
        raise Conflict(
            "tracking_number_in_use",
            f"tracking number {existing.tracking_number} belongs to the active reservation "
            f"{existing.id}",
            reservation_id=existing.id,
        )
    return describe(ctx.session, ctx.keys, existing)


def _row(
    ctx: Ctx,
    carrier_id: str,
    number: str,
    body: DropoffCreate,
    bank: Bank,
    size: str,
    hold: int,
    secret: DropoffSecret,
) -> dict[str, Any]:
    """Every column of the new drop-off's `reservations` row."""
    parcel = body.parcel
    return {
        "id": f"{ID_PREFIX}{secrets.token_hex(10)}",
        "carrier_id": carrier_id,
        "tracking_number": number,
        "bank_id": bank.id,
        "size": size,
        "status": ReservationStatus.RESERVED.value,
        "compartment_label": None,
        "length_mm": parcel.length_mm if parcel else None,
        "width_mm": parcel.width_mm if parcel else None,
        "height_mm": parcel.height_mm if parcel else None,
        "weight_g": parcel.weight_g if parcel else None,
        # The sender: who the network speaks to about this parcel, wiped when it ends.
        "recipient": (body.sender.model_dump(exclude_none=True) or None) if body.sender else None,
        "pickup_secret_sealed": seal_pickup(ctx.keys, secret.code, secret.qr_payload),
        "reserved_until": bank_settings.deadline(bank, ctx.now, hold),  # not while closed
        "pickup_deadline": None,
        "deposited_at": None,
        "closed_at": None,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "tracking_status": None,
        "tracking_checked_at": None,
        "kind": ReservationKind.DROPOFF.value,
        "accessible": False,
        "accessible_unit": False,
        "group_id": None,
        "dropoff_code_hash": secret.code_hash,
        "dropoff_qr_hash": secret.qr_hash,
    }


def _created(ctx: Ctx, row: dict[str, Any]) -> DropoffOut:
    """The new drop-off's history, its `dropoff.created` webhook and the sender's notice."""
    reservations_repository.insert_event(
        ctx.session,
        {
            "reservation_id": row["id"],
            "type": "created",
            "from_status": None,
            "to_status": ReservationStatus.RESERVED.value,
            "actor": Actor.CARRIER.value,
            "actor_id": row["carrier_id"],
            "reason": None,
            "data": {"bank_id": row["bank_id"], "size": row["size"]},
            "at": ctx.now,
        },
    )
    reservation = reservations_repository.get(ctx.session, row["id"])
    if reservation is None:  # inserted just above, in this transaction
        raise RuntimeError(f"drop-off {row['id']} vanished after its insert")
    out = describe_reservation(ctx.session, reservation)
    enqueue_event(
        ctx.session,
        ctx.keys,
        reservation.carrier_id,
        EVENT_CREATED,
        lambda: dropoff_webhook_data(out),
        ctx.now,
    )
    notices.enqueue(ctx, reservation, Fact("dropoff_code", "created", ctx.now))
    return describe(ctx.session, ctx.keys, reservation)


def get(ctx: Ctx, carrier_id: str, dropoff_id: str) -> DropoffOut:
    return describe(ctx.session, ctx.keys, require_own(ctx.session, carrier_id, dropoff_id))


def cancel(ctx: Ctx, carrier_id: str, dropoff_id: str) -> DropoffOut:
    """Cancel before the parcel is in (its unit freed, its code dead); after, 409."""
    reservation = require_own(ctx.session, carrier_id, dropoff_id)
    if reservation.status == ReservationStatus.CANCELLED:
        return describe(ctx.session, ctx.keys, reservation)  # cancelling twice is cancelling once
    if reservation.status != ReservationStatus.RESERVED:
        raise Conflict(
            "not_cancellable",
            f"a {reservation.status} drop-off cannot be cancelled",
            status=reservation.status,
        )
    transition(
        ctx,
        reservation,
        ReservationStatus.CANCELLED,
        actor=Actor.CARRIER,
        actor_id=carrier_id,
        reason="cancelled by carrier",
    )
    return describe_current(ctx.session, ctx.keys, reservation)


def search(ctx: Ctx, carrier_id: str, query: SearchQuery) -> DropoffList:
    """The carrier's drop-offs, newest first, a page at a time."""
    rows, next_cursor = search_page(
        ctx.session, carrier_id, query, kind=ReservationKind.DROPOFF.value
    )
    return DropoffList(
        items=[describe(ctx.session, ctx.keys, r) for r in rows], next_cursor=next_cursor
    )
