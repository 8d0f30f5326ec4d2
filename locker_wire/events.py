"""The node's events, typed once: what a state change records, and what of it reaches central.

A node builds one of these models where a state change happens; its store keeps the model's dump
in the outbox, and the sync client sends `wire_data()` (central's shape from `schemas`) under the
event's id. The node keeps more than central needs (parcel ids, timestamps, how a parcel was
collected) for its own audit and metrics; `wire_data` is the one place that says what travels.
An event whose `wire` is None stays on the node: central expires parcels on its own clock, and
board health travels in the heartbeat.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

_SIZE = "^(S|M|L|XL)$"


CodeKind = Literal["pickup", "courier_login"]


class NodeEventModel(BaseModel):
    """One event as the node records it. `event_type` names it on the wire and in the outbox;
    `action` names the audit row written with it, when one is; `wire` names its shape in
    `locker_wire.schemas`, loaded only when an event is sent (a node without central never
    loads them)."""

    # Built on first use: a node records a handful of these types in a day.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    event_type: ClassVar[str]
    action: ClassVar[str] = ""
    wire: ClassVar[str | None] = None

    def wire_data(self) -> BaseModel | None:
        """The event's data as central's API takes it; None for an event that stays here."""
        if self.wire is None:
            return None
        model = _schemas_model(self.wire)
        return model.model_validate(self.model_dump(include=set(model.model_fields)))


def _schemas_model(name: str) -> type[BaseModel]:
    model: type[BaseModel] = getattr(import_module("locker_wire.schemas"), name)
    return model


# Parcels --------------------------------------------------------------------------------------


class _ParcelEvent(NodeEventModel):
    reservation_id: str = Field(max_length=64)
    parcel_id: str
    carrier_id: str
    tracking_number: str
    compartment: str = Field(max_length=16)


class ParcelDeposited(_ParcelEvent):
    """A parcel is in its compartment. The pickup code and QR payload are sealed under a node
    key at rest; the sync client seals them anew to central's key for each send."""

    event_type: ClassVar[str] = "parcel.deposited"
    action: ClassVar[str] = "deposited"
    wire: ClassVar[str | None] = "DepositedData"

    walk_up: bool
    reserved_size: str = Field(pattern=_SIZE)
    compartment_size: str = Field(pattern=_SIZE)
    deposited_at: AwareDatetime
    pickup_deadline: AwareDatetime
    sealed_pickup_code: str
    sealed_qr_payload: str
    # It joined the live pickup code of a group-mate already in the locker: that parcel's
    # reservation. Its sealed code fields are empty then (the code is the group-mate's).
    shares_code_with: str | None = Field(default=None, max_length=32)


class ParcelCodeReissued(_ParcelEvent):
    """A new pickup code and QR payload for a parcel in its compartment, sealed as a deposit's."""

    event_type: ClassVar[str] = "parcel.code_reissued"
    wire: ClassVar[str | None] = "CodeReissuedData"

    pickup_deadline: AwareDatetime
    reissued_at: AwareDatetime
    command_id: str | None = None
    sealed_pickup_code: str
    sealed_qr_payload: str


class ParcelPickedUp(_ParcelEvent):
    event_type: ClassVar[str] = "parcel.picked_up"
    action: ClassVar[str] = "picked_up"
    wire: ClassVar[str | None] = "ReservationEventData"

    picked_up_at: AwareDatetime
    via: str | None = Field(max_length=8, description="how it was collected: code or qr")


class ParcelExpired(_ParcelEvent):
    event_type: ClassVar[str] = "parcel.expired"
    action: ClassVar[str] = "parcel_expired"

    expired_at: AwareDatetime


class ParcelReturned(_ParcelEvent):
    event_type: ClassVar[str] = "parcel.returned"
    action: ClassVar[str] = "returned"
    wire: ClassVar[str | None] = "ReservationEventData"

    returned_at: AwareDatetime


# Drop-offs ------------------------------------------------------------------------------------


class DropoffDeposited(_ParcelEvent):
    """A sender's parcel is in its compartment (the door read closed after it opened), waiting
    for the carrier's courier."""

    event_type: ClassVar[str] = "dropoff.deposited"
    action: ClassVar[str] = "dropped_off"
    wire: ClassVar[str | None] = "DropoffEventData"

    via: str = Field(max_length=8, description="how the sender opened the door: code or qr")
    deposited_at: AwareDatetime


class DropoffCollected(_ParcelEvent):
    """The carrier's courier took a drop-off away."""

    event_type: ClassVar[str] = "dropoff.collected"
    action: ClassVar[str] = "dropoff_collected"
    wire: ClassVar[str | None] = "DropoffEventData"

    collected_at: AwareDatetime


# Compartments and doors -----------------------------------------------------------------------


class _CompartmentEvent(NodeEventModel):
    wire: ClassVar[str | None] = "CompartmentEventData"

    compartment: str = Field(max_length=16)

    def wire_data(self) -> BaseModel:
        detail = self.model_dump(mode="json", exclude={"compartment"})
        model = _schemas_model("CompartmentEventData")
        return model.model_validate({"compartment": self.compartment, "detail": detail or None})


class CompartmentOutOfService(_CompartmentEvent):
    event_type: ClassVar[str] = "compartment.out_of_service"
    action: ClassVar[str] = "out_of_service"

    reason: str


class CompartmentInService(_CompartmentEvent):
    event_type: ClassVar[str] = "compartment.in_service"
    action: ClassVar[str] = "in_service"


class DoorForcedOpen(_CompartmentEvent):
    """A door opened with no command behind it."""

    event_type: ClassVar[str] = "door.forced_open"
    action: ClassVar[str] = "uncommanded_open"


class DoorLeftOpen(_CompartmentEvent):
    event_type: ClassVar[str] = "door.left_open"
    action: ClassVar[str] = "door_left_open"

    open_for_s: float


class BoardUnreachable(NodeEventModel):
    event_type: ClassVar[str] = "board.unreachable"
    action: ClassVar[str] = "board_unreachable"

    board: str
    detail: str


# Kiosk usage: counts, durations and kinds only, never a code, a token or a person -------------


class _KioskEvent(NodeEventModel):
    """Travels as it is recorded: central validates it with this very model."""

    def wire_data(self) -> BaseModel:
        return self


class KioskCodeFailed(_KioskEvent):
    """A wrong pickup code or courier code; which code was typed is never part of it."""

    event_type: ClassVar[str] = "kiosk.code_failed"

    kind: CodeKind
    attempts_left: int = Field(ge=0, le=1000)


class KioskLockedOut(_KioskEvent):
    event_type: ClassVar[str] = "kiosk.locked_out"

    kind: CodeKind
    retry_after_s: int = Field(ge=0)


class KioskSession(_KioskEvent):
    """One courier session, reported when it ends (by logout or by idling out)."""

    event_type: ClassVar[str] = "kiosk.session"

    carrier_id: str = Field(max_length=64)
    started_at: AwareDatetime
    duration_s: int = Field(ge=0)
    deposits: int = Field(ge=0)
    ended_by: Literal["logout", "idle"]


EVENT_MODELS: dict[str, type[NodeEventModel]] = {
    model.event_type: model
    for model in (
        ParcelDeposited,
        ParcelCodeReissued,
        ParcelPickedUp,
        ParcelExpired,
        ParcelReturned,
        DropoffDeposited,
        DropoffCollected,
        CompartmentOutOfService,
        CompartmentInService,
        DoorForcedOpen,
        DoorLeftOpen,
        BoardUnreachable,
        KioskCodeFailed,
        KioskLockedOut,
        KioskSession,
    )
}


def parse_event(event_type: str, data: dict[str, Any]) -> NodeEventModel:
    """A stored event back as its model; `KeyError` for a type this version does not know,
    pydantic's `ValidationError` (a `ValueError`) for damaged data."""
    return EVENT_MODELS[event_type].model_validate(data)


__all__ = [
    "EVENT_MODELS",
    "BoardUnreachable",
    "CodeKind",
    "CompartmentInService",
    "CompartmentOutOfService",
    "DoorForcedOpen",
    "DoorLeftOpen",
    "DropoffCollected",
    "DropoffDeposited",
    "KioskCodeFailed",
    "KioskLockedOut",
    "KioskSession",
    "NodeEventModel",
    "ParcelCodeReissued",
    "ParcelDeposited",
    "ParcelExpired",
    "ParcelPickedUp",
    "ParcelReturned",
    "parse_event",
]
