"""Guarded opens: a request to open several doors of a bank, waiting for a second admin."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class OpenRequest(Base):
    """ "Open all" (or several doors) at one bank: asked by one admin, carried out only once a
    different admin approves it before `expires_at`; then `command_id` is the signed command."""

    __tablename__ = "open_requests"
    __table_args__ = (
        # The sweep finds pending requests past their expiry; a bank's page its pending ones.
        Index("ix_open_requests_status_expires", "status", "expires_at"),
        Index("ix_open_requests_bank_status", "bank_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "opr_" + random
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"))
    # The doors asked for; None with `all_doors`: every compartment of the bank at approval time.
    labels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    all_doors: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    reason: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))  # pending approved refused expired cancelled
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    command_id: Mapped[str | None] = mapped_column(ForeignKey("node_commands.id"), nullable=True)
