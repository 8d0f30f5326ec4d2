"""Banks, their compartments and capacity per size class."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from central.models.base import Base, UtcDateTime


class Bank(Base):
    __tablename__ = "banks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # {"mon": [["08:00", "20:00"]], ...}; a missing day is closed; None means always open.
    opening_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    hold_hours: Mapped[int] = mapped_column(Integer, default=72)
    pickup_hours: Mapped[int] = mapped_column(Integer, default=72)
    reminder_hours: Mapped[int] = mapped_column(Integer, default=24)
    max_extension_hours: Mapped[int] = mapped_column(Integer, default=72)
    max_weight_g: Mapped[int] = mapped_column(Integer, default=25_000)
    allow_upsize: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Bank settings (central.banks.settings). In maintenance while `maintenance_since` is set:
    # the status stays active, allocation skips the bank, its node's kiosk says why.
    maintenance_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    maintenance_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    maintenance_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Grows with every policy or maintenance change; the node's feed compares it with its own.
    settings_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    allow_walk_up: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    max_extensions: Mapped[int | None] = mapped_column(Integer, nullable=True)

    compartments: Mapped[list[Compartment]] = relationship(
        back_populates="bank", lazy="raise", order_by="Compartment.label"
    )
    capacity: Mapped[list[BankCapacity]] = relationship(back_populates="bank", lazy="raise")


class BankCapacity(Base):
    """Free units per size class: the one row a reservation decrements, atomically."""

    __tablename__ = "bank_capacity"

    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), primary_key=True)
    size: Mapped[str] = mapped_column(String(4), primary_key=True)
    length_mm: Mapped[int] = mapped_column(Integer)
    width_mm: Mapped[int] = mapped_column(Integer)
    height_mm: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer, default=0)  # working compartments of this class
    available: Mapped[int] = mapped_column(Integer, default=0)  # total minus active holds
    # Of those, the accessible ones (ADA height): kept for reservations that ask for one, and
    # given to others only when no other unit of the class is free.
    accessible_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    accessible_available: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    bank: Mapped[Bank] = relationship(back_populates="capacity", lazy="raise")


class Compartment(Base):
    __tablename__ = "compartments"
    __table_args__ = (UniqueConstraint("bank_id", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    size: Mapped[str] = mapped_column(String(4))
    length_mm: Mapped[int] = mapped_column(Integer)
    width_mm: Mapped[int] = mapped_column(Integer)
    height_mm: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="free")
    # Within reach from a wheelchair (ADA height).
    accessible: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # One compartment in maintenance (central.banks.settings): out of service while it lasts.
    maintenance_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    maintenance_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    maintenance_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    bank: Mapped[Bank] = relationship(back_populates="compartments", lazy="raise")
