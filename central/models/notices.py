"""The notice outbox: one row per notice to a recipient, per channel, sent once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class Notice(Base):
    """One email or SMS to a parcel's recipient.

    `key` names the fact it tells of and the channel (`<reservation>/<kind>/<fact>/<channel>`):
    its unique index is what makes a notice once per event and channel, whichever transaction or
    process enqueues it. What is sent (the address or number, and for some kinds the pickup code)
    is sealed with the service key while the notice waits, and wiped once it is sent or given up:
    the row then keeps only what an operator needs to see that it went.
    """

    __tablename__ = "notices"
    __table_args__ = (
        Index("ix_notices_due", "status", "next_attempt_at"),
        Index("ix_notices_reservation", "reservation_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    # No foreign key: a notice outlives nothing it needs, and the reservation row is never deleted.
    reservation_id: Mapped[str] = mapped_column(String(32))
    bank_id: Mapped[str] = mapped_column(String(64))
    carrier_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(2))
    # An operator's view of where it went, masked ("j…@example.com", "…34").
    destination_hint: Mapped[str] = mapped_column(String(64))
    payload_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # The provider's id for it (Twilio's message SID) or the email's Message-ID.
    provider_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
