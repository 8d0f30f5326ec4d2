"""Request and response bodies of the operator JSON API under /ops/api."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AlertStatus = Literal["open", "acknowledged", "resolved", "all"]
ReasonText = Annotated[str, Field(min_length=1, max_length=500)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# Session ------------------------------------------------------------------------------------------


class LoginIn(BaseModel):
    # Not stripped: a password's spaces are part of it.
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class OperatorOut(BaseModel):
    email: str
    role: Literal["admin", "viewer"]


class SessionOut(BaseModel):
    operator: OperatorOut
    csrf_token: str


class AuditEntryOut(BaseModel):
    at: datetime
    operator: str | None
    action: str
    target: str | None
    reason: str | None
    outcome: str


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]


# Alerts -------------------------------------------------------------------------------------------


class AlertOut(BaseModel):
    id: int
    bank_id: str | None
    bank_name: str | None
    type: str
    subject: str | None
    detail: dict[str, Any] | None
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


class AlertList(BaseModel):
    alerts: list[AlertOut]


class ManualNote(_In):
    note: str = Field(min_length=1, max_length=500)


class AlertCreate(_In):
    bank_id: str = Field(min_length=1, max_length=64)
    type: Literal["manual"]
    detail: ManualNote


class AlertUpdate(_In):
    reason: str | None = Field(default=None, min_length=1, max_length=500)


# Actions ------------------------------------------------------------------------------------------


class ActionIn(_In):
    reason: ReasonText


class ExtendIn(_In):
    # A node accepts extensions of 1 to 168 hours; the bank's policy may allow less.
    hours: int = Field(ge=1, le=168)
    reason: ReasonText


class CommandAccepted(BaseModel):
    command_id: str
    status: str


class ReservationDeadlines(BaseModel):
    id: str
    status: str
    reserved_until: datetime
    pickup_deadline: datetime | None


class ExtendOut(BaseModel):
    reservation: ReservationDeadlines
    # None when the parcel is not in a compartment yet: the node learns the new hold from its feed.
    command_id: str | None
    status: str | None


class CommandOut(BaseModel):
    id: str
    type: str
    bank_id: str
    status: str
    issued_at: datetime
    acknowledged_at: datetime | None
    result: dict[str, Any] | None
