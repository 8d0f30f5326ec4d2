"""Queries for drop-offs: reservations rows of kind `dropoff`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

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
