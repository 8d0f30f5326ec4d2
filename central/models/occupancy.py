"""Occupancy history: one row per bank, size class and sampling instant, for the dashboard."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class OccupancySample(Base):
    """What one size class of one bank looked like at `taken_at` (see central.ops.insight)."""

    __tablename__ = "occupancy_samples"
    __table_args__ = (Index("ix_occupancy_samples_taken_at", "taken_at"),)

    # The key leads with (bank_id, taken_at): it is also the index a bank's chart reads.
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    size: Mapped[str] = mapped_column(String(4), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    free: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer)
    occupied: Mapped[int] = mapped_column(Integer)
    out_of_service: Mapped[int] = mapped_column(Integer)
