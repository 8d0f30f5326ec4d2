"""The kiosk's usage events as central receives them from nodes.

They change no state: the node-event API records each one (once, by its id) and the analytics
filler turns the recorded rows into outbox events. `central.nodes.events` registers them beside
its other event types: each model of `NODE_EVENT_MODELS` in `_DATA_MODELS`, and
`record_kiosk_event` (or its own record-only handler) in `_HANDLERS`.
"""

from __future__ import annotations

from pydantic import BaseModel

from central.context import Ctx
from central.models import Node
from locker_wire.schemas import CodeFailedData, CourierSessionData, LockedOutData, NodeEvent

NODE_EVENT_MODELS: dict[str, type[BaseModel]] = {
    "kiosk.code_failed": CodeFailedData,
    "kiosk.locked_out": LockedOutData,
    "kiosk.session": CourierSessionData,
}


def record_kiosk_event(
    ctx: Ctx, node: Node, event: NodeEvent, data: BaseModel, state: object = None
) -> None:
    """Nothing beyond the event row itself, which the caller has written already.

    `state` is the node service's per-batch state, which these events do not touch.
    """
    model = NODE_EVENT_MODELS[event.type]
    if not isinstance(data, model):
        raise TypeError(f"{model.__name__} expected, got {type(data).__name__}")
