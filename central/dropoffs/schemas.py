"""Wire shapes of drop-offs in carrier API v1."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from central.models.base import SizeClass
from central.reservations.schemas import BankRef, HistoryEntry, Parcel, Recipient

_STRICT = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default


class Sender(Recipient):
    """Who drops the parcel off: the network sends them the drop-off code when the carrier
    leaves its customers' notices to the network."""


class DropoffCreate(BaseModel):
    model_config = _STRICT
    tracking_number: str = Field(
        min_length=4, max_length=64, description="the carrier's label or tracking number"
    )
    bank_id: str = Field(min_length=1, max_length=64)
    size: SizeClass | None = None
    parcel: Parcel | None = None
    sender: Sender | None = None
    hold_hours: int | None = Field(
        default=None,
        ge=1,
        le=24 * 14,
        description="how long the code works; the bank's hold when absent, bounded by its policy",
    )

    @model_validator(mode="after")
    def _one_size(self) -> Self:
        if self.size is None and self.parcel is None:
            raise ValueError("give size or parcel dimensions")
        return self


class DropoffData(BaseModel):
    """A drop-off as webhooks carry it: everything the API shows but its code."""

    id: str
    kind: Literal["dropoff"] = "dropoff"
    status: str
    carrier: str
    tracking_number: str
    bank: BankRef
    size: SizeClass
    compartment: str | None
    reserved_until: datetime
    created_at: datetime
    history: list[HistoryEntry]


class DropoffOut(DropoffData):
    dropoff_code: str | None = Field(
        description="the 10 digits the sender types at the kiosk; until the drop-off ends"
    )
    qr_payload: str | None = Field(
        description="what the kiosk's scanner reads instead of the code (show it as a QR code)"
    )


class DropoffList(BaseModel):
    items: list[DropoffOut]
    next_cursor: str | None = None
