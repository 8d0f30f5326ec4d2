"""Wire shapes of reservations in carrier API v1."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from central.banks.schemas import Location
from central.models.base import SizeClass

_STRICT = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default


class Near(BaseModel):
    model_config = _STRICT
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_km: float = Field(default=5.0, gt=0, le=100)


class Parcel(BaseModel):
    model_config = _STRICT
    length_mm: int = Field(gt=0, le=5000)
    width_mm: int = Field(gt=0, le=5000)
    height_mm: int = Field(gt=0, le=5000)
    weight_g: int | None = Field(default=None, ge=0, le=1_000_000)


class Recipient(BaseModel):
    model_config = _STRICT
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,32}$")
    language: Literal["en", "es"] | None = Field(
        default=None, description="the language of the network's notices; English when absent"
    )


class ReservationRecipient(Recipient):
    """The recipient as a new reservation gives it: contact details, and whether they need an
    accessible compartment (which only the reservation itself can ask for, not a later change)."""

    accessible: bool = Field(
        default=False,
        description="the recipient needs a compartment within reach from a wheelchair: only a "
        "bank with a free accessible unit of a fitting class is chosen (409 "
        "`no_accessible_capacity` otherwise)",
    )


class ReservationCreate(BaseModel):
    model_config = _STRICT
    tracking_number: str = Field(min_length=4, max_length=64)
    bank_id: str | None = Field(default=None, min_length=1, max_length=64)
    near: Near | None = None
    size: SizeClass | None = None
    parcel: Parcel | None = None
    recipient: ReservationRecipient | None = None
    hold_hours: int | None = Field(default=None, ge=1, le=24 * 14)

    @model_validator(mode="after")
    def _one_place_and_one_size(self) -> Self:
        if (self.bank_id is None) == (self.near is None):
            raise ValueError("give exactly one of bank_id or near")
        if self.size is None and self.parcel is None:
            raise ValueError("give size or parcel dimensions")
        return self


class ExtendRequest(BaseModel):
    model_config = _STRICT
    hours: int = Field(ge=1, le=24 * 14, description="hours to add to the current deadline")
    reason: str | None = Field(default=None, max_length=500)


class CancelRequest(BaseModel):
    model_config = _STRICT
    reason: str | None = Field(default=None, max_length=500)


class BankRef(BaseModel):
    id: str
    name: str
    address: str
    location: Location


class HistoryEntry(BaseModel):
    type: str
    from_status: str | None
    to_status: str | None
    actor: str
    reason: str | None
    at: datetime
    data: dict[str, Any] | None = None


class GroupRef(BaseModel):
    """Parcels for one recipient at one bank from one carrier: one pickup code opens every
    door that holds them (those deposited while a group-mate waited in the locker)."""

    id: str = Field(description="`grp_` and 24 hex characters; nothing of the contact in it")
    reservations: list[str] = Field(
        description="the group's active reservations, oldest first, this one included"
    )


class ReservationOut(BaseModel):
    id: str
    kind: str = Field(
        default="delivery", description="`delivery`, or `dropoff` for a sender's parcel"
    )
    status: str
    carrier: str
    tracking_number: str
    bank: BankRef
    size: SizeClass
    compartment: str | None
    parcel: Parcel | None
    accessible: bool = Field(
        default=False, description="the recipient asked for an accessible compartment"
    )
    tracking_status: str | None = Field(
        default=None, description="the carrier's latest normalised tracking status, if known"
    )
    reserved_until: datetime
    pickup_deadline: datetime | None
    group: GroupRef | None = Field(
        default=None,
        description="the recipient's parcels at this bank (a reservation with their email or "
        "phone); null without contact details",
    )
    created_at: datetime
    updated_at: datetime
    history: list[HistoryEntry]


# What a drop-off's webhooks carry of it: everything its carrier sees but the code, which the
# carrier got in the answer that made the drop-off.
DROPOFF_WEBHOOK_FIELDS = frozenset(
    {
        "id",
        "kind",
        "status",
        "carrier",
        "tracking_number",
        "bank",
        "size",
        "compartment",
        "reserved_until",
        "created_at",
        "history",
    }
)


class ReservationList(BaseModel):
    items: list[ReservationOut]
    next_cursor: str | None = None


class Alternative(BaseModel):
    bank_id: str
    name: str
    distance_km: float
    free: int


class ReservationPatch(BaseModel):
    """What a carrier may change on its active reservation; only what is given changes."""

    model_config = _STRICT
    recipient: Recipient | None = Field(
        default=None,
        description="the recipient's contact details, replacing any given before as a whole",
    )
