"""Request and response bodies of the paging API (/ops/api/paging)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

AlertTypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
BankIdName = Annotated[str, Field(min_length=1, max_length=64)]
PageStatus = Literal["pending", "sent", "failed", "cancelled", "unsent"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubscriptionIn(_In):
    """What to be paged for (None: every alert type, every bank) and where to: one's own email,
    a webhook target, or both."""

    alert_types: list[AlertTypeName] | None = Field(default=None, max_length=64)
    bank_ids: list[BankIdName] | None = Field(default=None, max_length=1000)
    email: bool = False
    target_id: int | None = Field(default=None, ge=1)
    on_resolve: bool = True


class SubscriptionOut(BaseModel):
    id: int
    operator: str
    alert_types: list[str] | None
    bank_ids: list[str] | None
    email: bool
    target_id: int | None
    target_name: str | None
    on_resolve: bool
    created_at: datetime
    updated_at: datetime


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class TargetIn(_In):
    name: str = Field(min_length=1, max_length=64)
    # Checked by central.paging.senders.check_target_url: http(s), a host, no credentials.
    url: str = Field(min_length=1, max_length=2000)


class TargetUpdate(_In):
    enabled: bool


class TargetOut(BaseModel):
    """A webhook target as anyone may see it: its URL's scheme and host only."""

    id: int
    name: str
    host: str
    enabled: bool
    created_at: datetime


class TargetList(BaseModel):
    targets: list[TargetOut]


class TestSendOut(BaseModel):
    delivered: bool
    detail: str


class PageOut(BaseModel):
    id: int
    alert_id: int
    alert_type: str
    bank_id: str | None
    transition: str
    channel: str
    destination: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    digest_size: int | None
    last_error: str | None


class PageList(BaseModel):
    pages: list[PageOut]


class AlertKindOut(BaseModel):
    type: str
    label: str


class BankChoiceOut(BaseModel):
    id: str
    name: str


class PagingOptions(BaseModel):
    """What the paging page offers: alert kinds in words, banks, and whether email can go."""

    alert_kinds: list[AlertKindOut]
    banks: list[BankChoiceOut]
    email_configured: bool
    digest_threshold: int
