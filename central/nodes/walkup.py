"""Walk-ups: a parcel a node took with no reservation, adopted when its deposit reaches central.

A node that allows walk-ups (`[deposit] allow_walk_up`) makes a reservation of its own, with an
id `walkup-<24 hex>`, and reports the deposit with `walk_up` and the carrier, tracking number
and size (`DepositedData`). Central has never heard of that id: it makes the reservation at the
node's bank, with the node's id, and the deposit then goes on as any other (`events._on_deposited`:
the transition to deposited, the pickup deadline, the carrier's `parcel.deposited` webhook with
the pickup code). The carrier hears of the parcel first by that webhook, which carries the whole
reservation; no `reservation.created` is sent for a reservation made after the fact.

The parcel is in the locker already, so adoption refuses only what it cannot attach to anyone
(an unknown carrier) or what would make two parcels of one tracking number (one deposited
elsewhere: `tracking_number_in_use`); a tracking number that is not valid for the carrier is kept
as given, and said so in the history.

Savepoint: `parcel.deposited` is registered without one, so that the common deposit, which
writes nothing until the batch's end (`nodes.batch_writes`), pays no extra round trips. Adoption
writes several rows (the replaced reservation cancelled, the new one, its history, its capacity
hold), so it checks, before its first write, everything `_on_deposited` could still refuse after
it (the compartment, the seals: a fresh reservation's transition to deposited cannot be
refused), and it runs its own writes in a savepoint: after the first, a reservation made
concurrently for the same tracking number can still refuse it, and then none of them stays.
Adoption reads and writes the database itself, so the batch's writes so far go in before it
(`BatchState.at_once`), and the walk-up's own moves are written at once, as it is not one of
the reservations the batch locked up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from carrier_adapters.tracking_numbers import normalize_tracking_number
from central.banks import repository as banks_repository
from central.carriers import repository as carriers_repository
from central.context import Ctx
from central.errors import Unprocessable
from central.models import Actor, Node, Reservation, ReservationStatus
from central.models.base import ReservationKind
from central.nodes.batch import BatchState
from central.nodes.errors import EventRejected
from central.nodes.seals import open_pickup_seals
from central.reservations import repository as reservations_repository
from central.reservations.service import checked_tracking_number
from central.reservations.transitions import transition
from locker_wire.schemas import DepositedData, NodeEvent

WALK_UP_PREFIX = "walkup-"
REASON = "walk-up deposit at the kiosk"
HISTORY_TYPE = "reserved"


def adopt_walk_up_or_own(
    ctx: Ctx, node: Node, event: NodeEvent, deposited: DepositedData, state: BatchState
) -> Reservation:
    """The reservation a `parcel.deposited` is about: the bank's own, as for any deposit, or,
    for a walk-up central does not have yet, one made now at the node's bank.

    A deposit that does not say `walk_up` (every deposit from a node of an earlier version) and
    names a reservation central lacks is `unknown_reservation`, as ever. A second, different
    event for a walk-up already adopted finds its reservation like any other.
    """
    if not deposited.walk_up or deposited.reservation_id in state.reservations:
        return state.own_reservation(deposited.reservation_id)
    # `_plan` reads what the batch's moves so far change (a parcel deposited earlier in it).
    state.writes.flush(ctx.session)
    plan = _plan(ctx, node, event, deposited, state)
    # A savepoint for walk-ups alone, not for every deposit: see the module's docstring.
    with state.at_once(ctx):
        if plan.replaced is not None:
            _cancel_replaced(ctx, node, event, plan.replaced, plan.reservation_id)
        reservation = _insert(ctx, node, event, plan)
    if plan.replaced is not None:
        state.track(plan.replaced, own=plan.replaced.bank_id == node.bank_id)
    state.track(reservation, own=True)
    return reservation


@dataclass(frozen=True, slots=True)
class _Plan:
    """A walk-up checked, before anything is written: what to make, and what it replaces."""

    reservation_id: str
    carrier_id: str
    tracking_number: str
    size: str
    deposited_at: datetime
    reason: str
    replaced: Reservation | None  # the carrier's reservation for the parcel, made elsewhere


def _plan(
    ctx: Ctx, node: Node, event: NodeEvent, deposited: DepositedData, state: BatchState
) -> _Plan:
    """Every check of adoption, and those `_on_deposited` makes after it; writes nothing."""
    rid = deposited.reservation_id
    carrier_id, raw_number, size = (
        deposited.carrier_id,
        deposited.tracking_number,
        deposited.reserved_size,
    )
    if carrier_id is None or raw_number is None or size is None:  # `DepositedData` checks it
        raise EventRejected("invalid_event", "a walk-up names its carrier, tracking number, size")
    if not rid.startswith(WALK_UP_PREFIX):
        # Central's own ids (rsv_...) and the nodes' stay apart: a node cannot name one of ours.
        raise EventRejected("invalid_event", f"a walk-up's reservation id starts {WALK_UP_PREFIX}")
    if reservations_repository.get(ctx.session, rid) is not None:
        # Not this bank's (those were locked up front): another bank's reads like a missing one.
        raise EventRejected("unknown_reservation", f"no reservation {rid} at this bank")
    if carriers_repository.get_carrier(ctx.session, carrier_id) is None:
        raise EventRejected("unknown_carrier", f"no carrier {carrier_id!r}")
    # What `_on_deposited` checks after adoption, checked before it writes anything.
    state.compartment(deposited.compartment)
    if open_pickup_seals(ctx.keys, str(event.id), deposited) is None:
        raise EventRejected("invalid_seal", "a sealed value does not open for this event")
    number, not_valid = _tracking_number(carrier_id, raw_number)
    replaced = reservations_repository.find_active(ctx.session, carrier_id, number)
    # A drop-off waiting under the same number is a parcel coming the other way: a courier's
    # walk-up never replaces it.
    if replaced is not None and (
        replaced.status != ReservationStatus.RESERVED or replaced.kind == ReservationKind.DROPOFF
    ):
        raise EventRejected(
            "tracking_number_in_use",
            f"{carrier_id} parcel {number} is {replaced.status} already "
            f"(reservation {replaced.id} at bank {replaced.bank_id})",
        )
    return _Plan(
        reservation_id=rid,
        carrier_id=carrier_id,
        tracking_number=number,
        size=size,
        # As `_on_deposited` takes it: a node clock running ahead moves nothing past now.
        deposited_at=min(event.occurred_at.astimezone(UTC), ctx.now),
        reason=REASON if not_valid is None else f"{REASON}; kept as given: {not_valid}",
        replaced=replaced,
    )


def _tracking_number(carrier_id: str, raw: str) -> tuple[str, str | None]:
    """The number as the carrier API would store it, and why it is not valid, if it is not.

    Refused at the API, an invalid number is kept here: the parcel is in the locker, and the
    carrier can still find it (by the number as its courier scanned it) and collect it.
    """
    try:
        return checked_tracking_number(carrier_id, raw), None
    except Unprocessable as exc:
        number = normalize_tracking_number(raw)
        if not number:
            raise EventRejected("invalid_event", "a walk-up's tracking number is blank") from exc
        return number, exc.detail


def _cancel_replaced(
    ctx: Ctx, node: Node, event: NodeEvent, replaced: Reservation, walk_up_id: str
) -> None:
    """The carrier's reservation for this parcel at some bank: the parcel went into this one
    instead. Cancelled as the carrier would (its unit freed, the carrier told by webhook)."""
    transition(
        ctx,
        replaced,
        ReservationStatus.CANCELLED,
        actor=Actor.SYSTEM,
        reason=f"deposited as a walk-up at bank {node.bank_id}",
        event_data={"walk_up_reservation_id": walk_up_id, "node_event_id": str(event.id)},
    )


def _insert(ctx: Ctx, node: Node, event: NodeEvent, plan: _Plan) -> Reservation:
    """The walk-up's reservation, its first history entry and its hold on the bank's capacity."""
    session = ctx.session
    at = plan.deposited_at
    made = reservations_repository.insert_if_no_active_twin(
        session,
        {
            "id": plan.reservation_id,
            "carrier_id": plan.carrier_id,
            "tracking_number": plan.tracking_number,
            "bank_id": node.bank_id,
            "size": plan.size,
            "status": ReservationStatus.RESERVED.value,
            "compartment_label": None,
            "length_mm": None,
            "width_mm": None,
            "height_mm": None,
            "weight_g": None,
            "recipient": None,
            # Made and fulfilled at the kiosk in one go: the hold ended with the deposit.
            "reserved_until": at,
            "pickup_deadline": None,
            "deposited_at": None,
            "closed_at": None,
            "created_at": at,
            "updated_at": ctx.now,
            "tracking_status": None,
            "tracking_checked_at": None,
        },
    )
    if not made:
        # Made by the carrier since `_plan` looked (the savepoint undoes any cancel before).
        raise EventRejected(
            "tracking_number_in_use",
            f"{plan.carrier_id} has an active reservation for {plan.tracking_number}",
        )
    banks_repository.hold_unit_regardless(session, node.bank_id, plan.size)
    reservations_repository.insert_event(
        session,
        {
            "reservation_id": plan.reservation_id,
            "type": HISTORY_TYPE,
            "from_status": None,
            "to_status": ReservationStatus.RESERVED.value,
            "actor": Actor.COURIER.value,
            "actor_id": node.id,
            "reason": plan.reason,
            "data": {"bank_id": node.bank_id, "size": plan.size, "node_event_id": str(event.id)},
            "at": at,
        },
    )
    reservation = reservations_repository.get(session, plan.reservation_id)
    if reservation is None:  # inserted just above, in this transaction
        raise RuntimeError(f"walk-up {plan.reservation_id} vanished after its insert")
    return reservation
