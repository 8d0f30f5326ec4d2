"""Events up: each node event applied once, by the handler its type registers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC
from typing import Any

from pydantic import BaseModel, ValidationError

from central.analytics.node_events import NODE_EVENT_MODELS
from central.banks import repository as banks_repository
from central.banks import settings as bank_settings
from central.context import Ctx
from central.errors import ApiError
from central.models import Actor, CompartmentState, Node, Reservation, ReservationStatus
from central.nodes import dropoff_events
from central.nodes import repository as repo
from central.nodes.batch import BatchState, Handler, require_data
from central.nodes.commands import issue_command
from central.nodes.errors import EventRejected
from central.nodes.reissue import CodeReissuedData, on_code_reissued
from central.nodes.seals import open_pickup_seals
from central.nodes.walkup import adopt_walk_up_or_own
from central.reservations.groups import OWN_CODE_REASON, joined_secret, own_secret
from locker_wire.schemas import (
    CompartmentEventData,
    DepositedData,
    EventBatch,
    EventBatchResult,
    EventResult,
    NodeEvent,
    ReservationEventData,
)


def apply_events(ctx: Ctx, node: Node, batch: EventBatch) -> EventBatchResult:
    """Apply each event once, in the order given; one event's rejection does not stop the rest.

    A batch costs a handful of statements whatever its size: one INSERT claims every event
    (recording its validated data and the decision), one statement locks and reads the
    reservations its events name, one reads the compartments they name; the reservations' moves,
    with their history entries, units given back and webhook deliveries, go in at the end with
    one statement each (`batch_writes`), and so do alerts, notices and the decisions that
    changed while applying. Only the rare handler that writes itself (a walk-up adopted, a
    drop-off revived, a code reissued) pays for its own statements, and for the batch's writes
    going in before it.
    """
    state = BatchState(compartments={}, session=ctx.session)
    ctx = replace(ctx, notices=state.notices)  # the batch's notices go in with one statement
    # Each event with its validated data, or with why it is refused before any handler runs.
    checked: list[tuple[NodeEvent, BaseModel | EventRejected]] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for event in batch.events:
        verdict = _validate(event)
        checked.append((event, verdict))
        event_id = str(event.id)
        if event_id in seen:
            continue  # the same event twice in one batch: the first is the one that counts
        seen.add(event_id)
        rows.append(_event_row(ctx, node, event, verdict))
    claimed = repo.claim_events(ctx.session, rows)
    state.reservations = repo.lock_reservations(
        ctx.session,
        node.bank_id,
        (
            reservation_id
            for event, verdict in checked
            if str(event.id) in claimed and not isinstance(verdict, EventRejected)
            for reservation_id in _named_reservations(verdict)
        ),
    )
    state.in_session = list(state.reservations.values())
    state.set_aside()
    state.writes.hold(state.reservations)
    # The compartments the events and their reservations name: a label read nowhere here is
    # named by no event, so no handler looks it up.
    named = [getattr(verdict, "compartment", None) for _, verdict in checked]
    named += [r.compartment_label for r in state.reservations.values()]
    labels = {label for label in named if isinstance(label, str)}
    state.compartments = repo.compartment_rows(ctx.session, node.bank_id, labels)
    results: list[EventResult] = []
    refused: list[tuple[str, str, str | None]] = []
    for event, verdict in checked:
        event_id = str(event.id)
        if event_id not in claimed:
            results.append(EventResult(id=event.id, status="duplicate"))
            continue
        claimed.discard(event_id)  # a second copy later in the batch is a duplicate
        if isinstance(verdict, EventRejected):
            rejection: EventRejected | None = verdict
        else:
            rejection = _run_handler(ctx, node, event, verdict, state)
            if rejection is not None:
                refused.append((event_id, "rejected", rejection.code))
        if rejection is not None:
            results.append(
                EventResult(
                    id=event.id, status="rejected", error=rejection.code, detail=rejection.detail
                )
            )
        else:
            results.append(EventResult(id=event.id, status="applied"))
    state.finish(ctx, node.bank_id)
    repo.set_event_outcomes(ctx.session, refused)
    return EventBatchResult(results=results)


def _named_reservations(data: BaseModel) -> Iterator[str]:
    """The reservations an event's data names: the one it is about, and for a deposit that
    joined a group-mate's pickup code, that code's holder."""
    for name in ("reservation_id", "shares_code_with"):
        value = getattr(data, name, None)
        if isinstance(value, str):
            yield value


def _event_row(
    ctx: Ctx, node: Node, event: NodeEvent, verdict: BaseModel | EventRejected
) -> dict[str, Any]:
    """The `node_events` row that claims the event, with the decision taken before handling."""
    if isinstance(verdict, EventRejected):
        decision: dict[str, Any] = {"status": "rejected", "error": verdict.code, "data": {}}
    else:
        # Only validated data is kept: a node that sent a secret in clear by mistake does not
        # get it stored. Deposits keep their seals, never what is inside.
        decision = {"status": "applied", "error": None, "data": verdict.model_dump(mode="json")}
    return {
        "id": str(event.id),
        "node_id": node.id,
        "bank_id": node.bank_id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "received_at": ctx.now,
        **decision,
    }


def _validate(event: NodeEvent) -> BaseModel | EventRejected:
    model = _DATA_MODELS.get(event.type)
    if model is None or event.type not in _HANDLERS:
        return EventRejected("unknown_event_type", f"no event type {event.type!r}")
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        return EventRejected("invalid_event", _first_error(exc))


def _run_handler(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> EventRejected | None:
    handler = _HANDLERS[event.type]
    if not handler.batched:
        state.writes.flush(ctx.session)  # it reads and writes the database itself
    rejection: EventRejected | None = None
    try:
        dropoff_events.refuse_dropoff(event.type, data, state)  # a drop-off has no parcel.* events
        if handler.savepoint:
            with ctx.session.begin_nested():
                handler.apply(ctx, node, event, data, state)
        else:
            handler.apply(ctx, node, event, data, state)
    except EventRejected as exc:
        rejection = exc
    except ApiError as exc:
        rejection = EventRejected(exc.code, exc.detail)
    finally:
        state.set_aside()
    state.settle(applied=rejection is None)
    if not handler.batched:
        state.writes.forget(ctx.session)
    return rejection


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))


def _on_deposited(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    deposited = require_data(data, DepositedData)
    reservation = adopt_walk_up_or_own(ctx, node, event, deposited, state)
    compartment = state.compartment(deposited.compartment)
    if deposited.shares_code_with is not None:  # it joined a group-mate's code on the node
        secret = joined_secret(
            ctx, node.bank_id, reservation, deposited.shares_code_with, state.reservations
        )
    else:
        opened = open_pickup_seals(ctx.keys, str(event.id), deposited)
        if opened is None:
            raise EventRejected("invalid_seal", "a sealed value does not open for this event")
        secret = own_secret(ctx.keys, *opened)
    if state.bank is None:
        state.bank = banks_repository.get_referenced_bank(ctx.session, node.bank_id)
    # A node clock running ahead must not push the pickup deadline out; never later than now.
    deposited_at = min(event.occurred_at.astimezone(UTC), ctx.now)
    state.transition(
        ctx,
        reservation,
        ReservationStatus.DEPOSITED,
        actor=Actor.COURIER,
        actor_id=node.id,
        changes={
            "compartment_label": compartment.label,
            "deposited_at": deposited_at,
            # Never while the bank is closed: then to the end of its next open period.
            "pickup_deadline": bank_settings.deadline(
                state.bank, deposited_at, state.bank.pickup_hours
            ),
            # For the recipient's page and notices; sealed, and wiped when the parcel leaves.
            "pickup_secret_sealed": secret.sealed,
        },
        event_data={
            "node_event_id": str(event.id),
            "compartment": compartment.label,
            **secret.history,
        },
        # Only the webhook body carries the secrets, and the outbox keeps that body encrypted.
        webhook_extra=secret.webhook,
    )
    if secret.own_code_needed:
        _request_own_code(ctx, node.bank_id, reservation.id)
    state.set_state(compartment, CompartmentState.OCCUPIED)


def _free_compartment(ctx: Ctx, state: BatchState, reservation: Reservation) -> None:
    label = reservation.compartment_label
    compartment = state.compartments.get(label) if label is not None else None
    if compartment is None or compartment.state != CompartmentState.OCCUPIED:
        return
    # Group-mates may share a compartment: it is free when the last of them has left it.
    if reservation.group_id is not None and state.holds_parcel(
        ctx, reservation.bank_id, compartment.label
    ):
        return
    state.set_state(compartment, CompartmentState.FREE)


def _on_picked_up(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    parcel = require_data(data, ReservationEventData)
    reservation = state.own_reservation(parcel.reservation_id)
    state.transition(
        ctx,
        reservation,
        ReservationStatus.PICKED_UP,
        actor=Actor.RECIPIENT,
        actor_id=node.id,
        event_data={"node_event_id": str(event.id), "occurred_at": event.occurred_at.isoformat()},
    )
    _free_compartment(ctx, state, reservation)


def _on_returned(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    parcel = require_data(data, ReservationEventData)
    reservation = state.own_reservation(parcel.reservation_id)
    node_event = {"node_event_id": str(event.id), "occurred_at": event.occurred_at.isoformat()}
    deadline = reservation.pickup_deadline
    # Two moves when the parcel must be expired first: the second could refuse.
    with state.all_or_none(ctx, reservation):
        if (
            reservation.status == ReservationStatus.DEPOSITED
            and deadline is not None
            and min(event.occurred_at, ctx.now) >= deadline
        ):
            # The node enforces the pickup deadline itself, maybe before central's job noticed.
            state.transition(
                ctx,
                reservation,
                ReservationStatus.EXPIRED,
                actor=Actor.SYSTEM,
                reason="not picked up before pickup_deadline",
                event_data=node_event,
            )
        state.transition(
            ctx,
            reservation,
            ReservationStatus.RETURNED,
            actor=Actor.COURIER,
            actor_id=node.id,
            event_data=node_event,
        )
    _free_compartment(ctx, state, reservation)


def _on_compartment_alert(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    reported = require_data(data, CompartmentEventData)
    compartment = state.compartment(reported.compartment)
    state.add_alert(
        event.type.replace(".", "_"),
        compartment.label,
        {
            "compartment": compartment.label,
            "node_id": node.id,
            "node_event_id": str(event.id),
            "occurred_at": event.occurred_at.isoformat(),
            "detail": reported.detail,
        },
        ctx.now,
    )
    if event.type == "compartment.out_of_service":
        state.set_state(compartment, CompartmentState.OUT_OF_SERVICE)


def _on_in_service(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    """Back in service (an operator enabled it, or the node cleared a fault): usable again."""
    reported = require_data(data, CompartmentEventData)
    compartment = state.compartment(reported.compartment)
    if compartment.state != CompartmentState.OUT_OF_SERVICE:
        return
    state.resolve_alert("compartment_out_of_service", compartment.label)
    if banks_repository.compartment_in_maintenance(ctx.session, node.bank_id, compartment.label):
        return  # an admin keeps it out of service until the maintenance ends
    occupied = state.holds_parcel(ctx, node.bank_id, compartment.label)
    state.set_state(compartment, CompartmentState.OCCUPIED if occupied else CompartmentState.FREE)


def _record_only(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    """Nothing beyond the event row, which the batch's claim already wrote."""


_DATA_MODELS: dict[str, type[BaseModel]] = {
    "parcel.deposited": DepositedData,
    "parcel.picked_up": ReservationEventData,
    "parcel.returned": ReservationEventData,
    "door.fault": CompartmentEventData,
    "door.left_open": CompartmentEventData,
    "door.forced_open": CompartmentEventData,
    "compartment.out_of_service": CompartmentEventData,
    "compartment.in_service": CompartmentEventData,
    "parcel.code_reissued": CodeReissuedData,
    **dropoff_events.DATA_MODELS,
    **NODE_EVENT_MODELS,
}

# An event type central only keeps (analytics: the event row is the record) registers its data
# model in `_DATA_MODELS` and `RECORD_ONLY` in `_HANDLERS`.
RECORD_ONLY = Handler(_record_only, batched=True)

_HANDLERS: dict[str, Handler] = {
    # One move each through `BatchState.transition` (two for a return past the deadline), which
    # refuses (invalid_transition) before anything is kept. A walk-up's adoption writes at once,
    # in a savepoint of its own (`nodes.walkup`).
    "parcel.deposited": Handler(_on_deposited, batched=True),
    "parcel.picked_up": Handler(_on_picked_up, batched=True),
    "parcel.returned": Handler(_on_returned, batched=True),
    "door.fault": Handler(_on_compartment_alert, batched=True),
    "door.left_open": Handler(_on_compartment_alert, batched=True),
    "door.forced_open": Handler(_on_compartment_alert, batched=True),
    "compartment.out_of_service": Handler(_on_compartment_alert, batched=True),
    "compartment.in_service": Handler(_on_in_service, batched=True),
    # All checks before the first write (a history event, then the webhook); it reads the
    # reservation's history and writes its own rows, so it runs at once (not `batched`).
    "parcel.code_reissued": Handler(on_code_reissued),
    # A sender's drop-off put in, and collected by the carrier's courier (`central.dropoffs`).
    **dropoff_events.HANDLERS,
    # Kiosk usage (code failures, lockouts, courier sessions): kept for analytics and reports.
    **dict.fromkeys(NODE_EVENT_MODELS, RECORD_ONLY),
}


def _request_own_code(ctx: Ctx, bank_id: str, reservation_id: str) -> None:
    """Ask the bank's node to give a parcel a pickup code of its own (a reissue, which takes it
    out of the code it joined); the new code comes back in `parcel.code_reissued`."""
    issue_command(
        ctx.session,
        ctx.keys,
        bank_id,
        "invalidate_code",
        {"reservation_id": reservation_id, "reissue": True, "reason": OWN_CODE_REASON},
        ctx.now,
    )
