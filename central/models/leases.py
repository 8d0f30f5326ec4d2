"""Leases that let exactly one scheduler per deployment run the jobs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The fencing token: one more each time the lease changes holder (`central.leases`).
    token: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
