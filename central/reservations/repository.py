"""Queries for reservations and their history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from central.db import rowcount
from central.models import ACTIVE_STATUSES, Reservation, ReservationEvent


def add(session: Session, row: Reservation | ReservationEvent) -> None:
    session.add(row)


_ACTIVE = text("status IN ('reserved', 'deposited')")
_RESERVATIONS = cast(Table, Reservation.__table__)
# Built once, on the tables, and run on the connection: constructing an INSERT with twenty literal
# values, or passing it through the ORM's bulk-insert machinery, costs more than running it.
_INSERT_UNLESS_TWIN = {
    name: dialect.insert(_RESERVATIONS)
    .on_conflict_do_nothing(index_elements=["carrier_id", "tracking_number"], index_where=_ACTIVE)
    .returning(_RESERVATIONS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_EVENT = insert(cast(Table, ReservationEvent.__table__))


def insert_if_no_active_twin(session: Session, values: dict[str, Any]) -> bool:
    """Insert a reservation unless the carrier has an active one for the same tracking number.

    One statement against the partial unique index: under a race the loser waits for the
    winner's commit and then inserts nothing, instead of failing the whole transaction.
    RETURNING, not rowcount, says which: drivers disagree on the count of ON CONFLICT DO NOTHING.
    """
    connection = session.connection()
    stmt = _INSERT_UNLESS_TWIN[connection.dialect.name]
    return connection.execute(stmt, values).first() is not None


def insert_event(session: Session, values: dict[str, Any]) -> None:
    session.connection().execute(_INSERT_EVENT, values)


def find_active(session: Session, carrier_id: str, tracking_number: str) -> Reservation | None:
    return session.scalars(
        select(Reservation)
        .where(
            Reservation.carrier_id == carrier_id,
            Reservation.tracking_number == tracking_number,
            Reservation.status.in_([s.value for s in ACTIVE_STATUSES]),
        )
        .options(selectinload(Reservation.history))
    ).one_or_none()


def get(session: Session, reservation_id: str, *, for_update: bool = False) -> Reservation | None:
    stmt = (
        select(Reservation)
        .where(Reservation.id == reservation_id)
        .options(selectinload(Reservation.history))
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def history_of(session: Session, reservation_id: str) -> Sequence[ReservationEvent]:
    return session.scalars(
        select(ReservationEvent)
        .where(ReservationEvent.reservation_id == reservation_id)
        .order_by(ReservationEvent.id)
    ).all()


def search(
    session: Session,
    carrier_id: str,
    *,
    tracking_number: str | None,
    status: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Reservation]:
    stmt = (
        select(Reservation)
        .where(Reservation.carrier_id == carrier_id)
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


def set_status(session: Session, reservation_id: str, source: str, values: dict[str, Any]) -> bool:
    """Compare-and-set on the status, so two racing transitions cannot both apply."""
    result = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation_id, Reservation.status == source)
        .values(**values)
    )
    return rowcount(result) == 1


def update_fields(session: Session, reservation_id: str, values: dict[str, Any]) -> None:
    session.execute(update(Reservation).where(Reservation.id == reservation_id).values(**values))


def expired_holds(session: Session, now: datetime, limit: int) -> Sequence[str]:
    return session.scalars(
        select(Reservation.id)
        .where(Reservation.status == "reserved", Reservation.reserved_until <= now)
        .order_by(Reservation.reserved_until)
        .limit(limit)
    ).all()


def expired_pickups(session: Session, now: datetime, limit: int) -> Sequence[str]:
    return session.scalars(
        select(Reservation.id)
        .where(Reservation.status == "deposited", Reservation.pickup_deadline <= now)
        .order_by(Reservation.pickup_deadline)
        .limit(limit)
    ).all()


def due_reminders(session: Session, now: datetime, limit: int) -> Sequence[Reservation]:
    """Deposited parcels whose bank's reminder time has come and that have had no reminder yet.

    The reminder's history entry is the record that it went out, so none is ever sent twice.
    Earliest deadlines come first; the caller checks each bank's reminder offset.
    """
    reminded = (
        select(ReservationEvent.id)
        .where(
            ReservationEvent.reservation_id == Reservation.id,
            ReservationEvent.type == "reminder",
        )
        .exists()
    )
    return session.scalars(
        select(Reservation)
        .where(
            Reservation.status == "deposited",
            Reservation.pickup_deadline > now,
            ~reminded,
        )
        .order_by(Reservation.pickup_deadline)
        .options(selectinload(Reservation.history))
        .limit(limit)
    ).all()
