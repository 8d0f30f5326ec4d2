"""Request and response bodies of the kiosk's drop-off routes (senders and collecting couriers)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# As the other kiosk bodies: lengths bounded here, the shape of a code checked by the flow.
_BODY = ConfigDict(extra="forbid", str_max_length=128)


class DropoffCodeIn(BaseModel):
    model_config = _BODY

    code: str = Field(max_length=32, description="the 10-digit drop-off code")


class DropoffQrIn(BaseModel):
    model_config = _BODY

    token: str = Field(max_length=128, description="the payload of the drop-off QR code")


class DropoffOut(BaseModel):
    dropoff_id: str
    compartment: str
    door: str
    moved_from: list[str] = Field(
        default_factory=list, description="doors that did not open before this one did"
    )


class DropoffConfirmOut(BaseModel):
    dropoff_id: str
    status: str = Field(description="`deposited`: the parcel waits for the carrier's courier")
    compartment: str


class DropoffCancelOut(BaseModel):
    dropoff_id: str
    status: str = Field(
        description="`removing`: the door is open for the sender to take the parcel out, then "
        "cancel again with the door closed; `cancelled`: done, the code still works"
    )
    compartment: str
    door: str


class CollectItemOut(BaseModel):
    parcel_id: str
    tracking_number: str
    compartment: str
    deposited_at: datetime


class CollectListOut(BaseModel):
    dropoffs: list[CollectItemOut]


class CollectDoorOut(BaseModel):
    parcel_id: str
    compartment: str
    door: str
    status: str = Field(description="`awaiting_collection` while open, then `collected`")
