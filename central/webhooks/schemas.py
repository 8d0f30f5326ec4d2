"""Wire shapes of webhook registration in carrier API v1."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "reservation.created",
    "reservation.cancelled",
    "reservation.expired",
    "reservation.redirected",
    "parcel.deposited",
    "parcel.code_reissued",
    "parcel.picked_up",
    "parcel.expired",
    "parcel.returned",
    "parcel.reminder",
    "dropoff.created",
    "dropoff.deposited",
    "dropoff.collected",
    "dropoff.expired",
    "dropoff.cancelled",
    # A bank (or one compartment) in maintenance and back: one event per carrier with parcels
    # there, listing them (central.banks.settings).
    "bank.maintenance_started",
    "bank.maintenance_ended",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000)
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="signing secret; when absent one is generated and returned once",
    )
    events: list[EventType] | None = Field(
        default=None, min_length=1, description="event types to receive; default: all"
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: datetime
    secret: str | None = Field(default=None, description="only in the answer that generated it")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
