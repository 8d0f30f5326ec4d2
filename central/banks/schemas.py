"""Wire shapes of banks in carrier API v1."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from central.models.base import SizeClass


class Location(BaseModel):
    lat: float
    lon: float


class InnerDimensions(BaseModel):
    length_mm: int
    width_mm: int
    height_mm: int


class ClassCapacity(BaseModel):
    total: int = Field(description="working compartments of this class")
    free: int = Field(description="units a new reservation can take now")
    accessible_total: int = Field(
        default=0, description="of `total`, the compartments within reach from a wheelchair"
    )
    accessible_free: int = Field(
        default=0,
        description="of `free`, the accessible units: what a reservation whose recipient asks "
        "for an accessible compartment (`recipient.accessible`) can take now",
    )
    inner_dimensions: InnerDimensions


class BankPolicy(BaseModel):
    hold_hours: int
    pickup_hours: int
    reminder_hours: int
    max_extension_hours: int
    max_weight_g: int


class BankOut(BaseModel):
    id: str
    name: str
    address: str
    location: Location
    timezone: str
    opening_hours: dict[str, Any] | None = Field(
        description='per weekday ("mon".."sun") a list of ["HH:MM", "HH:MM"] spans; null: 24/7'
    )
    status: str
    distance_km: float | None = None
    capacity: dict[SizeClass, ClassCapacity]
    policy: BankPolicy


class BankList(BaseModel):
    items: list[BankOut]
    next_cursor: str | None = None


class CourierCode(BaseModel):
    code: str
    valid_from: str
    valid_until: str


class PublicBank(BaseModel):
    """A bank as the public locker finder shows it: where it is and which sizes have room."""

    id: str
    name: str
    address: str
    location: Location
    timezone: str = Field(description="the bank's IANA time zone, in which opening hours apply")
    opening_hours: dict[str, Any] | None = Field(
        description='per weekday ("mon".."sun") a list of ["HH:MM", "HH:MM"] spans; a missing '
        "day: closed; null: always open"
    )
    distance_m: int = Field(description="from the point asked about, in whole metres")
    sizes: dict[SizeClass, bool] = Field(
        description="per size class the bank has: true when at least one unit of it is free"
    )


class PublicBankList(BaseModel):
    items: list[PublicBank] = Field(description="nearest first")
