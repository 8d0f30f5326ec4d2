"""Shapes of the node <-> central API, shared by both sides."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from locker_wire.events import KioskCodeFailed, KioskLockedOut, KioskSession

Size = Literal["S", "M", "L", "XL"]
MAX_EVENTS_PER_BATCH = 500
EventType = Literal[
    "parcel.deposited",
    "dropoff.deposited",
    "dropoff.collected",
    "parcel.code_reissued",
    "parcel.picked_up",
    "parcel.returned",
    "door.fault",
    "door.left_open",
    "door.forced_open",
    "compartment.out_of_service",
    "compartment.in_service",
    "kiosk.code_failed",
    "kiosk.locked_out",
    "kiosk.session",
]
# Kiosk usage events: counts, durations and kinds only, never a code, a token or a person.
KioskEventType = Literal["kiosk.code_failed", "kiosk.locked_out", "kiosk.session"]
CommandType = Literal[
    "open_compartment",
    "disable_compartment",
    "enable_compartment",
    "cancel_reservation",
    "extend_deadline",
    "invalidate_code",
    # Several doors at once, only after a second admin approved it (`payload.labels`,
    # `payload.approval_id`); a node of an earlier version refuses it as unknown.
    "open_compartments",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Enrollment -------------------------------------------------------------------------------------


class ReportedCompartment(_Strict):
    label: str = Field(min_length=1, max_length=16)
    size: Size
    accessible: bool = Field(default=False, description="within reach from a wheelchair")

    @model_serializer(mode="wrap")
    def _accessible_only_when_true(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A central not yet upgraded forbids unknown fields: a door that is not accessible
        # travels in exactly the earlier shape, so an upgraded node still enrolls there.
        data: dict[str, Any] = handler(self)
        if not self.accessible:
            data.pop("accessible", None)
        return data


class EnrollmentRequest(_Strict):
    token: str = Field(min_length=16, max_length=200)
    public_key: str = Field(min_length=43, max_length=44, description="Ed25519, base64url raw")
    bank_id: str | None = Field(default=None, description="when given, must be the token's bank")
    node_version: str | None = Field(default=None, max_length=64)
    compartments: list[ReportedCompartment] = Field(default_factory=list, max_length=2000)


class CompartmentInfo(BaseModel):
    label: str
    size: Size
    length_mm: int
    width_mm: int
    height_mm: int
    state: str
    accessible: bool = False


class NodePolicy(BaseModel):
    hold_hours: int
    pickup_hours: int
    reminder_hours: int
    max_extension_hours: int
    allow_upsize: bool


class EnrollmentResponse(BaseModel):
    node_id: str
    bank_id: str
    timezone: str
    compartments: list[CompartmentInfo]
    policy: NodePolicy
    layout_matches: bool
    central_signing_public_key: str = Field(description="Ed25519, base64url raw 32 bytes")
    central_sealing_public_key: str = Field(description="X25519, base64url raw 32 bytes")


# Events up --------------------------------------------------------------------------------------


class NodeEvent(_Strict):
    id: UUID
    type: str = Field(max_length=64)
    occurred_at: AwareDatetime
    data: dict[str, Any] = Field(default_factory=dict)


class EventBatch(_Strict):
    events: list[NodeEvent] = Field(max_length=MAX_EVENTS_PER_BATCH)


# What a deposit tells central only when the parcel came with no reservation (a walk-up): central
# has never heard of it and makes the reservation from these.
WALK_UP_FIELDS = ("walk_up", "carrier_id", "tracking_number", "reserved_size")


class DepositedData(_Strict):
    reservation_id: str = Field(max_length=32)
    compartment: str = Field(max_length=16)
    sealed_pickup_code: str = Field(max_length=1000)
    sealed_qr_payload: str = Field(max_length=2000)
    # Added for walk-ups, all optional: a node of an earlier version sends none of them.
    walk_up: bool = Field(default=False, description="no reservation: the node made one")
    carrier_id: str | None = Field(default=None, max_length=32)
    tracking_number: str | None = Field(default=None, min_length=1, max_length=64)
    reserved_size: Size | None = Field(default=None, description="the class the node reserved")
    # A parcel that joined a group-mate's pickup code: that parcel's reservation. Its sealed
    # code fields are then empty (the node never knew the code in clear a second time).
    shares_code_with: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _walk_up_says_what_it_is(self) -> Self:
        if self.walk_up and (
            self.carrier_id is None or self.tracking_number is None or self.reserved_size is None
        ):
            raise ValueError("a walk-up names its carrier_id, tracking_number and reserved_size")
        return self

    @model_serializer(mode="wrap")
    def _walk_up_fields_only_for_walk_ups(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        # A deposit against a reservation central made travels in exactly the earlier shape, and
        # so does a reissue (which inherits this model): a central not yet upgraded, whose model
        # forbids unknown fields, keeps accepting them from an upgraded node. Only a walk-up,
        # which such a central refuses anyway (unknown_reservation), carries the new fields.
        data: dict[str, Any] = handler(self)
        if not self.walk_up:
            for name in WALK_UP_FIELDS:
                data.pop(name, None)
        if self.shares_code_with is None:
            data.pop("shares_code_with", None)
        return data


class CodeReissuedData(DepositedData):
    """A new pickup code and QR payload for a parcel already in its compartment.

    Sealed like a deposit's (to central's key, bound to this event's id); the old pair no longer
    opens anything. `command_id` is central's command that asked for it, when one did. The
    walk-up fields it inherits keep their defaults (the node's reissue event has none of them)
    and so never travel.
    """

    command_id: str | None = Field(default=None, max_length=64)


class ReservationEventData(_Strict):
    reservation_id: str = Field(max_length=32)


class DropoffEventData(_Strict):
    """A drop-off put in (`dropoff.deposited`) or collected (`dropoff.collected`) at the node."""

    reservation_id: str = Field(max_length=32)
    compartment: str = Field(max_length=16)


class CompartmentEventData(_Strict):
    compartment: str = Field(max_length=16)
    detail: dict[str, Any] | None = None


# Kiosk usage events travel as the node records them: one model for both sides.
CodeFailedData = KioskCodeFailed
LockedOutData = KioskLockedOut
CourierSessionData = KioskSession


class EventResult(BaseModel):
    id: UUID
    status: Literal["applied", "duplicate", "rejected"]
    error: str | None = None
    detail: str | None = None


class EventBatchResult(BaseModel):
    results: list[EventResult]


# Feed down --------------------------------------------------------------------------------------


class DropoffCodeHash(BaseModel):
    """A drop-off's code as the node checks it: scrypt with the bank's salt (one hash per typed
    code whatever the number of drop-offs), and the SHA-256 of its QR payload."""

    code_hash: str = Field(description="hex scrypt(code, salt, n, r, p, dklen=32)")
    salt: str = Field(description="hex, the bank's drop-off salt")
    n: int
    r: int
    p: int
    qr_hash: str = Field(description="hex SHA-256 of the QR payload")


class FeedReservation(BaseModel):
    id: str
    carrier: str
    tracking_number: str
    size: Size
    status: str
    compartment: str | None
    reserved_until: datetime
    pickup_deadline: datetime | None
    updated_at: datetime
    # Added later, all with defaults: a node of an earlier version ignores them.
    kind: Literal["delivery", "dropoff"] = "delivery"
    accessible: bool = False
    group_id: str | None = None
    dropoff_code: DropoffCodeHash | None = None


class Command(BaseModel):
    id: str
    node_id: str
    bank_id: str
    type: CommandType
    payload: dict[str, Any]
    issued_at: int = Field(description="unix seconds")
    expires_at: int = Field(description="unix seconds")
    signature: str = Field(description="Ed25519 by central over the canonical JSON, base64url")

    def signed_fields(self) -> dict[str, Any]:
        return self.model_dump(exclude={"signature"})


class CourierCodeHash(BaseModel):
    carrier: str
    valid_from: datetime
    valid_until: datetime
    code_hash: str = Field(description="hex scrypt(code, salt, n, r, p, dklen=32)")
    salt: str = Field(description="hex, 16 random bytes")
    n: int
    r: int
    p: int


class NearbyBankInfo(BaseModel):
    bank_id: str
    name: str
    address: str
    distance_km: float


class BankMaintenance(BaseModel):
    """A bank an admin put into maintenance: the kiosk says so and shows the nearest banks."""

    reason: str
    since: datetime
    until: datetime | None = Field(default=None, description="the expected end, if known")
    nearby: list[NearbyBankInfo] = Field(default_factory=list)


class CompartmentMaintenance(BaseModel):
    label: str
    reason: str
    until: datetime | None = None


class FeedBank(BaseModel):
    """The bank's settings as central keeps them, sent when they changed since `version`."""

    version: int = Field(description="grows with every change; the node sends back the one it has")
    policy: NodePolicy
    allow_walk_up: bool = False
    max_extensions: int | None = Field(default=None, description="None: no limit but the hours")
    timezone: str = "UTC"
    # {"mon": [["08:00", "20:00"]], ...}; a missing day is closed; None means always open.
    opening_hours: dict[str, list[list[str]]] | None = None
    maintenance: BankMaintenance | None = None
    compartments_in_maintenance: list[CompartmentMaintenance] = Field(default_factory=list)


class FeedResponse(BaseModel):
    reservations: list[FeedReservation]
    commands: list[Command]
    courier_codes: list[CourierCodeHash]
    cursor: str
    more: bool = Field(description="a full page: ask again at once with the new cursor")
    # Added later: present only when the bank's settings differ from the version the node
    # sent (`settings_version`); a node of an earlier version ignores it.
    bank: FeedBank | None = None


class CommandAck(_Strict):
    outcome: Literal["ok", "failed"]
    detail: str | None = Field(default=None, max_length=2000)


class CommandAckResult(BaseModel):
    id: str
    status: Literal["pending", "acknowledged", "failed", "expired"]


# Heartbeat --------------------------------------------------------------------------------------


PowerSource = Literal["mains", "battery", "unknown"]
UpdateState = Literal[
    "idle", "installing", "switching", "verifying", "healthy", "failed", "rolled_back"
]


class NodeHealth(_Strict):
    """How the node's computer is doing; every field optional, a probe that fails sends None."""

    uptime_s: int | None = Field(default=None, ge=0, description="since the node process started")
    host_uptime_s: int | None = Field(default=None, ge=0, description="since the computer booted")
    disk_free_bytes: int | None = Field(default=None, ge=0)
    disk_total_bytes: int | None = Field(default=None, ge=0)
    cpu_temp_c: float | None = Field(default=None, ge=-100, le=200)
    enclosure_temp_c: float | None = Field(default=None, ge=-100, le=200)
    power: PowerSource = "unknown"
    battery_low: bool | None = None


class UpdateReport(_Strict):
    """Where the node stands with the software version central asked for."""

    state: UpdateState = "idle"
    running: str = Field(max_length=64, description="the version this process runs")
    wanted: str | None = Field(default=None, max_length=64)
    previous: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=2000)
    changed_at: AwareDatetime | None = None


class FeedHeld(_Strict):
    """The feed answer a node holds, as it asked for it: central checks it against what the
    feed would hold now and says in the heartbeat's answer whether a pull would bring news."""

    cursor: str = Field(max_length=500)
    tag: str = Field(max_length=64)  # the answer's ETag
    limit: int = Field(default=200, ge=1, le=500)
    courier_codes: bool = False
    settings_version: int | None = Field(default=None, ge=0)


class Heartbeat(_Strict):
    doors: dict[str, str] = Field(default_factory=dict, max_length=2000)
    boards: dict[str, Literal["ok", "error"]] = Field(default_factory=dict, max_length=64)
    outbox_depth: int = Field(ge=0)
    version: str = Field(max_length=64)
    # Added later, optional: a node of an earlier version sends neither, and a central of an
    # earlier version never sees them (the node leaves out what is None).
    health: NodeHealth | None = None
    update: UpdateReport | None = None
    # Sent only by a node holding a tagged feed answer, so only to a central that gives tags.
    feed: FeedHeld | None = None

    @model_serializer(mode="wrap")
    def _leave_out_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("health", "update", "feed"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class HeartbeatResult(BaseModel):
    server_time: int
    online: bool
    # The node software version an admin wants on this bank; None: keep what runs.
    wanted_version: str | None = None
    # The rollout that wants it: a node that failed to install a version does not try it again
    # for the same rollout, only when an admin sets it anew (a new rollout id).
    wanted_rollout: int | None = None
    # Added later: a pull of the feed would bring news (a command waits for the node, or the
    # answer it holds, `Heartbeat.feed`, is no longer current); the node pulls at once rather
    # than at its next feed interval. A central of an earlier version never says so.
    feed_news: bool = False
