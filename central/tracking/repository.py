"""Queries for tracking events and the tracking columns of reservations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.models import ACTIVE_STATUSES, Reservation, ReservationStatus, TrackingEventRecord

EventKey = tuple[datetime, str, str]
"""What makes two reports one event: when it happened, the carrier's code, its status."""


def active_by_number(session: Session, carrier_id: str, tracking_number: str) -> list[Reservation]:
    """The carrier's active reservations for a number, locked until the transaction ends."""
    return list(
        session.scalars(
            select(Reservation)
            .where(
                Reservation.carrier_id == carrier_id,
                Reservation.tracking_number == tracking_number,
                Reservation.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
            .order_by(Reservation.id)
            .with_for_update()
        ).all()
    )


def get_for_update(session: Session, reservation_id: str) -> Reservation | None:
    return session.scalars(
        select(Reservation)
        .where(Reservation.id == reservation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def due_for_poll(
    session: Session, carrier_id: str, *, checked_before: datetime, limit: int
) -> Sequence[tuple[str, str]]:
    """(id, tracking number) of reserved parcels to ask about, least recently checked first."""
    rows = session.execute(
        select(Reservation.id, Reservation.tracking_number)
        .where(
            Reservation.carrier_id == carrier_id,
            Reservation.status == ReservationStatus.RESERVED.value,
            or_(
                Reservation.tracking_checked_at.is_(None),
                Reservation.tracking_checked_at < checked_before,
            ),
        )
        .order_by(
            Reservation.tracking_checked_at.asc().nulls_first(),
            Reservation.created_at,
            Reservation.id,
        )
        .limit(limit)
    ).all()
    return [(row.id, row.tracking_number) for row in rows]


def set_tracking(session: Session, reservation_id: str, values: dict[str, Any]) -> None:
    """Write tracking columns only: never the lifecycle, and not `updated_at` either."""
    session.execute(update(Reservation).where(Reservation.id == reservation_id).values(**values))


def mark_checked(session: Session, reservation_ids: Iterable[str], now: datetime) -> None:
    ids = list(reservation_ids)
    if ids:
        session.execute(
            update(Reservation)
            .where(Reservation.id.in_(ids), Reservation.status == ReservationStatus.RESERVED.value)
            .values(tracking_checked_at=now)
        )


def latest_event_at(session: Session, reservation_id: str) -> datetime | None:
    return session.scalar(
        select(TrackingEventRecord.occurred_at)
        .where(TrackingEventRecord.reservation_id == reservation_id)
        .order_by(TrackingEventRecord.occurred_at.desc())
        .limit(1)
    )


def event_keys(session: Session, reservation_id: str) -> set[EventKey]:
    rows = session.execute(
        select(
            TrackingEventRecord.occurred_at,
            TrackingEventRecord.carrier_code,
            TrackingEventRecord.status,
        ).where(TrackingEventRecord.reservation_id == reservation_id)
    ).all()
    return {(row.occurred_at, row.carrier_code, row.status) for row in rows}


def add_event(session: Session, values: dict[str, Any]) -> bool:
    """Insert one event unless it is there already; whether it was new.

    The database decides, so a poll and a push recording the same event at the same moment
    store it once instead of one of them failing.
    """
    # RETURNING rather than rowcount: the ORM's INSERT path does not report rowcount on psycopg.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(TrackingEventRecord).values(**values).on_conflict_do_nothing()
        return session.execute(pg_stmt.returning(TrackingEventRecord.id)).first() is not None
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(TrackingEventRecord).values(**values).on_conflict_do_nothing()
        return session.execute(lite_stmt.returning(TrackingEventRecord.id)).first() is not None
    raise NotImplementedError(f"tracking events on {dialect} are not supported")


def events_of(session: Session, reservation_id: str) -> Sequence[TrackingEventRecord]:
    """A reservation's tracking events, newest first."""
    return session.scalars(
        select(TrackingEventRecord)
        .where(TrackingEventRecord.reservation_id == reservation_id)
        .order_by(TrackingEventRecord.occurred_at.desc(), TrackingEventRecord.id.desc())
    ).all()
