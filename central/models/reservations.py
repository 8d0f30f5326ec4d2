"""Reservations and their append-only history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from central.models.base import Base, UtcDateTime

_ACTIVE = text("status IN ('reserved', 'deposited')")


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        # One active reservation per carrier and tracking number: the idempotency guarantee holds
        # even when two identical requests race.
        Index(
            "uq_reservations_active_tracking",
            "carrier_id",
            "tracking_number",
            unique=True,
            postgresql_where=_ACTIVE,
            sqlite_where=_ACTIVE,
        ),
        Index("ix_reservations_status_reserved_until", "status", "reserved_until"),
        Index("ix_reservations_status_pickup_deadline", "status", "pickup_deadline"),
        Index("ix_reservations_carrier_tracking", "carrier_id", "tracking_number"),
        # The node feed reads one bank's changes in (updated_at, id) order.
        Index("ix_reservations_bank_updated", "bank_id", "updated_at", "id"),
        Index("ix_reservations_group", "group_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"))
    tracking_number: Mapped[str] = mapped_column(String(64))
    # Indexed by ix_reservations_bank_updated, which leads with it.
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"))
    size: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16))
    compartment_label: Mapped[str | None] = mapped_column(String(16), nullable=True)
    length_mm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    width_mm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height_mm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    weight_g: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Kept only while the parcel is active; wiped when the reservation ends.
    recipient: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The pickup code and QR payload while the parcel waits, for the recipient's page and
    # notices: sealed with the service key, never in clear; wiped with the recipient.
    pickup_secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    reserved_until: Mapped[datetime] = mapped_column(UtcDateTime)
    pickup_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deposited_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # What the carrier last said (a carrier_adapters TrackingStatus) and when it was last asked.
    tracking_status: Mapped[str | None] = mapped_column(String(24), nullable=True)
    tracking_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # `delivery` or `dropoff` (a ReservationKind).
    kind: Mapped[str] = mapped_column(String(16), default="delivery", server_default="delivery")
    # The recipient asked for an accessible compartment; `accessible_unit`: the unit it holds
    # is one of the bank's accessible ones (asked for, or the last free of its class).
    accessible: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    accessible_unit: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # Parcels of one carrier for one recipient at one bank share a group (and at the node, a
    # pickup code); derived from the bank, carrier and a keyed hash of the contact.
    group_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # A drop-off's code as the node checks it ($scrypt$ string, salted per bank) and the SHA-256
    # of its QR payload: what travels in the node's feed. The code itself is only sealed
    # (pickup_secret_sealed) for the sender's notice.
    dropoff_code_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dropoff_qr_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    history: Mapped[list[ReservationEvent]] = relationship(
        lazy="raise", order_by="ReservationEvent.id"
    )


class ReservationEvent(Base):
    """One transition or notable fact; rows are only ever inserted (a trigger refuses changes)."""

    __tablename__ = "reservation_events"
    # The daily report and the throughput chart read the history by time.
    __table_args__ = (Index("ix_reservation_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    actor: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)

    @classmethod
    def note(
        cls,
        reservation: Reservation,
        kind: str,
        *,
        actor: str,
        actor_id: str | None = None,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        at: datetime,
    ) -> ReservationEvent:
        """A fact in the reservation's history that changes no status: an extension, a
        reminder, a reissued code, new contact details, a recipient's request."""
        return cls(
            reservation_id=reservation.id,
            type=kind,
            from_status=reservation.status,
            to_status=reservation.status,
            actor=actor,
            actor_id=actor_id,
            reason=reason,
            data=data,
            at=at,
        )
