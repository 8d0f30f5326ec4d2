"""Bodies of the kiosk's overflow calls: nearby banks with room, and moving a parcel there."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Lengths are bounded here; what the text must look like the flow checks, with its own codes.
_BODY = ConfigDict(extra="forbid", str_max_length=128)


class NearbyBankOut(BaseModel):
    bank_id: str
    name: str
    address: str
    distance_km: float
    free: int = Field(description="free doors there the parcel could take")


class NearbyBanksOut(BaseModel):
    banks: list[NearbyBankOut] = Field(description="nearest first")


class RedirectIn(BaseModel):
    model_config = _BODY

    tracking_number: str = Field(max_length=64)
    bank_id: str = Field(max_length=64)
    size: str | None = Field(
        default=None, max_length=2, description="the class needed: the parcel did not fit"
    )


class RedirectedOut(BaseModel):
    status: Literal["redirected"] = "redirected"
    bank_id: str
    name: str
    address: str
    size: str
