"""The node's `parcel.code_reissued` event: a new pickup code for the carrier and the recipient.

Registered in `central.nodes.events` beside the other node events:
`_DATA_MODELS["parcel.code_reissued"] = CodeReissuedData` and
`_HANDLERS["parcel.code_reissued"] = Handler(on_code_reissued)` (no savepoint: every check
comes before the first write).
"""

from __future__ import annotations

from pydantic import BaseModel

from central.context import Ctx
from central.errors import Conflict
from central.models import Actor, Node, ReservationEvent, ReservationStatus
from central.nodes import repository as nodes_repository
from central.nodes.batch import BatchState, require_data
from central.nodes.seals import open_pickup_seals
from central.notices import outbox as notices
from central.notices.outbox import Fact
from central.notices.pickup import seal_pickup
from central.reservations import repository as reservations_repository
from central.reservations.views import describe
from central.webhooks.service import enqueue_event
from locker_wire.schemas import CodeReissuedData, NodeEvent

__all__ = ["EVENT_TYPE", "HISTORY_TYPE", "CodeReissuedData", "on_code_reissued"]

EVENT_TYPE = "parcel.code_reissued"
HISTORY_TYPE = "code_reissued"
# Fixed texts: the carrier reads the history, and an operator's own reason stays in the audit.
_BY_OPERATOR = "pickup code reissued at an operator's request"
_BY_NODE = "pickup code reissued by the node"


def on_code_reissued(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: BatchState
) -> None:
    """Record the reissue in the reservation's history and send the new code to the carrier.

    The code and QR payload travel in the webhook body and the recipient's notice, both kept
    encrypted, and replace the sealed pair the recipient's page shows; the history entry and the
    stored node event hold no more than the seals.
    """
    reissued = require_data(data, CodeReissuedData)
    reservation = state.own_reservation(reissued.reservation_id)
    if reservation.status != ReservationStatus.DEPOSITED:
        raise Conflict(
            "not_deposited",
            f"a {reservation.status} reservation has no pickup code to reissue",
            status=reservation.status,
        )
    compartment = state.compartment(reissued.compartment)
    opened = open_pickup_seals(ctx.keys, str(event.id), reissued)
    if opened is None:
        raise Conflict("invalid_seal", "a sealed value does not open for this event")
    pickup_code, qr_payload = opened
    command_id = _operator_command(ctx, node, reissued)
    history: dict[str, str] = {"node_event_id": str(event.id), "compartment": compartment.label}
    if command_id is not None:
        history["command_id"] = command_id
    entry = ReservationEvent.note(
        reservation,
        HISTORY_TYPE,
        actor=(Actor.OPERATOR if command_id is not None else Actor.SYSTEM).value,
        reason=_BY_OPERATOR if command_id is not None else _BY_NODE,
        data=history,
        at=ctx.now,
    )
    reservations_repository.add(ctx.session, entry)
    sealed = seal_pickup(ctx.keys, pickup_code, qr_payload)
    reservations_repository.update_fields(
        ctx.session, reservation.id, {"pickup_secret_sealed": sealed}
    )
    reservation.pickup_secret_sealed = sealed
    ctx.session.flush()
    notices.enqueue(ctx, reservation, Fact("reissued", f"h{entry.id}", ctx.now))
    out = describe(
        ctx.session,
        reservation,
        history=reservations_repository.history_of(ctx.session, reservation.id),
    )
    enqueue_event(
        ctx.session,
        ctx.keys,
        reservation.carrier_id,
        EVENT_TYPE,
        lambda: (
            out.model_dump(mode="json") | {"pickup_code": pickup_code, "qr_payload": qr_payload}
        ),
        ctx.now,
    )


def _operator_command(ctx: Ctx, node: Node, data: CodeReissuedData) -> str | None:
    """The id of central's reissue command behind the event, when it names one of this node's."""
    if data.command_id is None:
        return None
    command = nodes_repository.get_command(ctx.session, data.command_id)
    if (
        command is None
        or command.node_id != node.id
        or command.type != "invalidate_code"
        or command.payload.get("reservation_id") != data.reservation_id
    ):
        return None
    return command.id
