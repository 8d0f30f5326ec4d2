"""A node's drop-off events applied at central: the sender's parcel is in (`dropoff.deposited`),
the carrier's courier took it (`dropoff.collected`).

Registered in `central.nodes.events` beside the other node events, each without a savepoint:
every check comes before the one transition, which the batch writes at its end
(`BatchState.transition`), except when a deposit revives a drop-off that central closed
meanwhile, which is written at once, in a savepoint of its own. The delivery events
(`parcel.*`) refuse drop-offs through `refuse_dropoff`, called before any handler runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from central.banks import repository as banks_repository
from central.context import Ctx
from central.models import Actor, CompartmentState, Node, Reservation, ReservationStatus
from central.models.base import ReservationKind
from central.nodes.batch import BatchState, Handler, require_data
from central.nodes.errors import EventRejected
from central.reservations import repository as reservations_repository
from central.reservations.transitions import transition
from locker_wire.schemas import DropoffEventData, NodeEvent

DEPOSITED = "dropoff.deposited"
COLLECTED = "dropoff.collected"
# What a deposit can revive: a drop-off that closed at central before the node, offline or not
# yet told, let the sender put the parcel in. The parcel is in the locker whatever central
# thought, so the drop-off is deposited after all and the carrier hears so.
_CLOSED_BEFORE_DEPOSIT = (ReservationStatus.EXPIRED, ReservationStatus.CANCELLED)
# The node events about a delivery's parcel: none of them applies to a drop-off.
DELIVERY_EVENTS = frozenset(
    {"parcel.deposited", "parcel.picked_up", "parcel.returned", "parcel.code_reissued"}
)


def _dropoff(state: BatchState, reservation_id: str) -> Reservation:
    reservation = state.own_reservation(reservation_id)
    if reservation.kind != ReservationKind.DROPOFF:
        raise EventRejected("not_a_dropoff", f"reservation {reservation_id} is not a drop-off")
    return reservation


def refuse_dropoff(event_type: str, data: BaseModel, state: BatchState) -> None:
    """A delivery's event (a courier's deposit, a pickup, a return, a new pickup code) that
    names a drop-off is refused: `not_a_delivery`."""
    if event_type not in DELIVERY_EVENTS:
        return
    reservation_id = getattr(data, "reservation_id", None)
    found = state.reservations.get(reservation_id) if isinstance(reservation_id, str) else None
    if found is not None and found.kind == ReservationKind.DROPOFF:
        raise EventRejected(
            "not_a_delivery", f"reservation {reservation_id} is a drop-off, not a delivery"
        )


def on_dropoff_deposited(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    """The sender put the parcel in: deposited, bound to the compartment, which is occupied."""
    reported = require_data(data, DropoffEventData)
    reservation = _dropoff(state, reported.reservation_id)
    compartment = state.compartment(reported.compartment)
    # A node clock running ahead must not put the deposit in the future.
    deposited_at = min(event.occurred_at.astimezone(UTC), ctx.now)
    node_event = {"node_event_id": str(event.id), "compartment": compartment.label}
    if reservation.status in _CLOSED_BEFORE_DEPOSIT and reservation.deposited_at is None:
        _revive(ctx, node, state, reservation, deposited_at, node_event)
    else:
        state.transition(
            ctx,
            reservation,
            ReservationStatus.DEPOSITED,
            actor=Actor.RECIPIENT,  # the person the network deals with: for a drop-off, its sender
            actor_id=node.id,
            reason="dropped off by the sender at the kiosk",
            changes={"compartment_label": compartment.label, "deposited_at": deposited_at},
            event_data=node_event,
        )
    state.set_state(compartment, CompartmentState.OCCUPIED)


def _revive(
    ctx: Ctx,
    node: Node,
    state: BatchState,
    reservation: Reservation,
    deposited_at: datetime,
    node_event: dict[str, str],
) -> None:
    """Deposit a drop-off central had closed (expired, cancelled): it holds a unit again.

    Refused when the carrier has since made another active reservation or drop-off with the
    same tracking number (`tracking_number_in_use`): two active ones cannot share it. Written
    at once, in a savepoint, so that a concurrent one made between the check and the write
    refuses this event alone; the batch's writes so far go in first (the check reads them).
    """
    state.writes.flush(ctx.session)
    number = reservation.tracking_number
    other = reservations_repository.find_active(ctx.session, reservation.carrier_id, number)
    if other is not None:
        raise EventRejected(
            "tracking_number_in_use",
            f"{reservation.carrier_id} has an active {other.kind} {other.id} for {number}",
        )
    was = reservation.status
    try:
        with state.at_once(ctx, reservation):
            transition(
                ctx,
                reservation,
                ReservationStatus.DEPOSITED,
                actor=Actor.RECIPIENT,
                actor_id=node.id,
                reason=f"dropped off at the kiosk before the node heard the drop-off {was}",
                changes={
                    "compartment_label": node_event["compartment"],
                    "deposited_at": deposited_at,
                    "closed_at": None,
                    # The unit it takes again is counted as a plain one (below).
                    "accessible_unit": False,
                },
                event_data=node_event,
            )
            # Its unit went back to the bank when it closed; the parcel takes one again, even
            # past what allocation counted free (as a walk-up does: `hold_unit_regardless`).
            banks_repository.hold_unit_regardless(
                ctx.session, reservation.bank_id, reservation.size
            )
    except IntegrityError as exc:
        raise EventRejected(
            "tracking_number_in_use", f"{reservation.carrier_id} made another {number} meanwhile"
        ) from exc


def on_dropoff_collected(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    """The carrier's courier took the parcel: collected, its unit and compartment free."""
    reported = require_data(data, DropoffEventData)
    reservation = _dropoff(state, reported.reservation_id)
    state.compartment(reported.compartment)  # an unknown label is refused before any write
    state.transition(
        ctx,
        reservation,
        ReservationStatus.COLLECTED,
        actor=Actor.COURIER,
        actor_id=node.id,
        reason="collected by the carrier's courier",
        event_data={
            "node_event_id": str(event.id),
            "compartment": reported.compartment,
            "occurred_at": event.occurred_at.isoformat(),
        },
    )
    label = reservation.compartment_label
    compartment = state.compartments.get(label) if label is not None else None
    if compartment is not None and compartment.state == CompartmentState.OCCUPIED:
        state.set_state(compartment, CompartmentState.FREE)


DATA_MODELS: dict[str, type[BaseModel]] = {
    DEPOSITED: DropoffEventData,
    COLLECTED: DropoffEventData,
}
HANDLERS: dict[str, Handler] = {
    DEPOSITED: Handler(on_dropoff_deposited, batched=True),
    COLLECTED: Handler(on_dropoff_collected, batched=True),
}
