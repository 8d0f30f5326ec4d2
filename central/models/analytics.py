"""Usage analytics: the durable outbox of events for Mixpanel and the fillers' cursors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class AnalyticsEvent(Base):
    """One usage event, free of personal data, waiting to be sent, sent, or kept locally.

    `insert_id` is derived from the source row, so filling twice makes no second row and every
    retry carries the same `$insert_id` (Mixpanel drops the duplicates).
    """

    __tablename__ = "analytics_outbox"
    __table_args__ = (Index("ix_analytics_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    insert_id: Mapped[str] = mapped_column(String(36), unique=True)
    event: Mapped[str] = mapped_column(String(40))
    # HMAC of the recipient's contact (or the reservation id); never the contact itself.
    distinct_id: Mapped[str] = mapped_column(String(64))
    reservation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # pending (to send) | sent | stale (older than Mixpanel's /track window, never sent)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class AnalyticsSubject(Base):
    """The distinct id of a reservation's recipient, taken while the recipient is still known.

    Recipient data is wiped when a reservation ends, possibly before its history has settled
    enough for the filler; the fill job keys every new reservation at once, so its later
    events still join up with the first.
    """

    __tablename__ = "analytics_subjects"

    reservation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    distinct_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class AnalyticsCursor(Base):
    """How far a filler has read its source: the last id, or the last (time, id) position."""

    __tablename__ = "analytics_cursors"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_key: Mapped[str | None] = mapped_column(String(40), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
