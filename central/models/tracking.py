"""What carriers report about parcels: one row per tracking event, however often it was reported."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class TrackingEventRecord(Base):
    """One carrier event for one reservation, from a poll or a push."""

    __tablename__ = "tracking_events"
    __table_args__ = (
        # The same scan arrives by poll and by push, and again with every later poll: it is one
        # event when the moment, the carrier's code and its meaning agree.
        UniqueConstraint("reservation_id", "occurred_at", "carrier_code", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"))
    # Empty, not NULL, when the carrier gives no code: NULLs never collide in a unique constraint,
    # so a code-less event would be stored again on every poll.
    carrier_code: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(24))  # carrier_adapters.base.TrackingStatus
    description: Mapped[str] = mapped_column(String(500))
    location: Mapped[str | None] = mapped_column(String(300), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(8))  # "poll" or "push"
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
