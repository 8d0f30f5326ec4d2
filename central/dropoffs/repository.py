"""Queries for drop-offs: reservations rows of kind `dropoff`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from central.models import Reservation, ReservationStatus
from central.models.base import ReservationKind


def code_in_use(session: Session, bank_id: str, code_hash: str) -> bool:
    """Whether a waiting drop-off at the bank has this code: a typed code must name one."""
    return (
        session.execute(
            select(Reservation.id)
            .where(
                Reservation.bank_id == bank_id,
                Reservation.kind == ReservationKind.DROPOFF.value,
                Reservation.status == ReservationStatus.RESERVED.value,
                Reservation.dropoff_code_hash == code_hash,
            )
            .limit(1)
        ).first()
        is not None
    )


def search(
    session: Session,
    carrier_id: str,
    *,
    tracking_number: str | None,
    status: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Reservation]:
    """The carrier's drop-offs, newest first, after the `before` position if given."""
    stmt = (
        select(Reservation)
        .where(
            Reservation.carrier_id == carrier_id,
            Reservation.kind == ReservationKind.DROPOFF.value,
        )
        .options(selectinload(Reservation.history))
        .order_by(Reservation.created_at.desc(), Reservation.id.desc())
        .limit(limit)
    )
    if tracking_number:
        stmt = stmt.where(Reservation.tracking_number == tracking_number)
    if status:
        stmt = stmt.where(Reservation.status == status)
    if before is not None:
        created, rid = before
        stmt = stmt.where(
            or_(
                Reservation.created_at < created,
                and_(Reservation.created_at == created, Reservation.id < rid),
            )
        )
    return session.scalars(stmt).all()
