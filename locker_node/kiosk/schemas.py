"""Request and response bodies of the kiosk's local JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# Lengths are bounded here so that nothing oversized reaches the service; what the text must
# look like (digits, tracking-number shape) the service checks, with its own error codes.
_BODY = ConfigDict(extra="forbid", str_max_length=128)


class PickupIn(BaseModel):
    model_config = _BODY

    code: str = Field(max_length=32)


class QrPickupIn(BaseModel):
    model_config = _BODY

    token: str = Field(max_length=128)


class LoginIn(BaseModel):
    model_config = _BODY

    carrier: str = Field(max_length=64)
    pin: str = Field(max_length=32)


class DepositIn(BaseModel):
    model_config = _BODY

    tracking_number: str = Field(max_length=64)
    size: str | None = Field(default=None, max_length=2, description="walk-ups only")
    compartment: str | None = Field(
        default=None,
        max_length=16,
        description="put the parcel with a group-mate: one of the deposit answer's `shared_doors`",
    )


class DoorOut(BaseModel):
    compartment: str
    door: str
    compartments: list[str] = Field(
        default_factory=list,
        description="every door the code opened (a parcel group's parcels share one code), "
        "`compartment` first",
    )
    failed: list[str] = Field(
        default_factory=list,
        description="doors of the code that did not open: their parcels stay, the code still works",
    )


class LoginOut(BaseModel):
    token: str
    carrier: str
    expires_in_s: int


class SessionOut(BaseModel):
    carrier: str
    expires_in_s: int


class CarriersOut(BaseModel):
    carriers: list[str]


class DepositOut(BaseModel):
    deposit_id: str
    compartment: str
    size: str
    door: str
    status: str
    moved_from: list[str]
    shared_doors: list[str] = Field(
        default_factory=list,
        description="compartments holding a parcel for the same recipient that this one may go "
        "in with instead (ask again with `compartment`)",
    )


class ConfirmOut(BaseModel):
    deposit_id: str
    parcel_id: str
    compartment: str
    status: str
    pickup_deadline: datetime


class CancelOut(BaseModel):
    deposit_id: str
    status: str = Field(
        description="`removing`: the door is open for the courier to take the parcel out, then "
        "cancel again with the door closed; `cancelled`: done, the compartment is free"
    )
    compartment: str
    door: str


class ReturnOut(BaseModel):
    parcel_id: str
    tracking_number: str
    compartment: str
    pickup_deadline: datetime


class ReturnsOut(BaseModel):
    returns: list[ReturnOut]


class ReturnDoorOut(BaseModel):
    parcel_id: str
    compartment: str
    door: str
    status: str


class KeypadOut(BaseModel):
    locked: bool
    retry_after_s: int


class DoorStateOut(BaseModel):
    compartment: str
    state: str = Field(description="`open`, `closed`, or `unknown` when the sensor is not read")


class MaintenanceNearbyOut(BaseModel):
    bank_id: str
    name: str
    address: str
    distance_km: float


class MaintenanceOut(BaseModel):
    reason: str
    since: datetime
    until: datetime | None = Field(description="the expected end, if central gave one")
    nearby: list[MaintenanceNearbyOut] = Field(description="the nearest banks, nearest first")


class CompartmentMaintenanceOut(BaseModel):
    label: str
    reason: str
    until: datetime | None


class SettingsOut(BaseModel):
    """Central's bank settings in force on the node (they override its configuration)."""

    version: int
    hold_hours: int
    pickup_hours: int
    allow_walk_up: bool
    allow_upsize: bool
    max_extensions: int | None
    opening_hours: dict[str, list[list[str]]] | None = Field(
        description="per weekday (mon..sun) [start, end] periods in the bank's time; null: "
        "always open"
    )
    timezone: str
    compartments_in_maintenance: list[CompartmentMaintenanceOut]


class StatusOut(BaseModel):
    bank_id: str
    kiosk_id: str
    code_digits: int
    keypad: KeypadOut
    door: DoorStateOut | None = Field(
        default=None,
        description="the door asked for with `?door=<label>`, so that the open-door screen can "
        "go home once it is shut; null when not asked for or not a compartment of this bank",
    )
    maintenance: MaintenanceOut | None = Field(
        default=None,
        description="the bank is in maintenance: nothing goes in, pickups still work",
    )
    settings: SettingsOut | None = Field(
        default=None, description="central's bank settings; null until the node has any"
    )


class LayoutDoorOut(BaseModel):
    label: str
    size: str | None = Field(description="size class; null when the kiosk was not told")
    height: int = Field(description="relative height on screen: S 1, M 2, L 3, XL 4")
    accessible: bool = Field(default=False, description="within reach from a wheelchair")


class LayoutColumnOut(BaseModel):
    name: str
    compartments: list[LayoutDoorOut] = Field(description="from the top of the column down")


class LayoutOut(BaseModel):
    bank_id: str
    columns: list[LayoutColumnOut]
