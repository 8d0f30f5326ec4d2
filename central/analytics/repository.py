"""Queries for the analytics outbox, its fillers' cursors and their sources."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.db import rowcount
from central.models import (
    Alert,
    AnalyticsCursor,
    AnalyticsEvent,
    AnalyticsSubject,
    BankCapacity,
    Compartment,
    Node,
    NodeEventRecord,
    Reservation,
    ReservationEvent,
    WebhookDelivery,
)

_OUTBOX = cast(Table, AnalyticsEvent.__table__)
_SUBJECTS = cast(Table, AnalyticsSubject.__table__)
# Filling twice, or after a cursor was reset, adds nothing: the source decides the insert id.
_INSERT_NEW = {
    name: dialect.insert(_OUTBOX).on_conflict_do_nothing(index_elements=["insert_id"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_SUBJECTS = {
    name: dialect.insert(_SUBJECTS).on_conflict_do_nothing(index_elements=["reservation_id"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


class HistoryRow(NamedTuple):
    """A reservation history entry with what analytics needs of its reservation."""

    id: int
    reservation_id: str
    type: str
    from_status: str | None
    at: datetime
    data: dict[str, Any] | None
    bank_id: str
    size: str
    carrier_id: str
    created_at: datetime
    deposited_at: datetime | None
    recipient: dict[str, Any] | None
    kind: str = "delivery"  # a ReservationKind


def cursor(session: Session, source: str) -> AnalyticsCursor | None:
    return session.get(AnalyticsCursor, source)


def save_cursor(session: Session, row: AnalyticsCursor) -> None:
    session.merge(row)


def history_after(session: Session, last_id: int, limit: int) -> Sequence[HistoryRow]:
    rows = session.execute(
        select(
            ReservationEvent.id,
            ReservationEvent.reservation_id,
            ReservationEvent.type,
            ReservationEvent.from_status,
            ReservationEvent.at,
            ReservationEvent.data,
            Reservation.bank_id,
            Reservation.size,
            Reservation.carrier_id,
            Reservation.created_at,
            Reservation.deposited_at,
            Reservation.recipient,
            Reservation.kind,
        )
        .join(Reservation, Reservation.id == ReservationEvent.reservation_id)
        .where(ReservationEvent.id > last_id)
        .order_by(ReservationEvent.id)
        .limit(limit)
    ).all()
    return [HistoryRow(*row) for row in rows]


def node_events_window(
    session: Session,
    position: tuple[datetime, str] | None,
    until: datetime,
    limit: int,
) -> Sequence[NodeEventRecord]:
    """The next `limit` node events after `position` received no later than `until`."""
    stmt = (
        select(NodeEventRecord)
        .where(NodeEventRecord.received_at <= until)
        .order_by(NodeEventRecord.received_at, NodeEventRecord.id)
        .limit(limit)
    )
    if position is not None:
        at, key = position
        stmt = stmt.where(
            or_(
                NodeEventRecord.received_at > at,
                and_(NodeEventRecord.received_at == at, NodeEventRecord.id > key),
            )
        )
    return session.scalars(stmt).all()


def created_after(
    session: Session, last_id: int, limit: int
) -> Sequence[tuple[int, str, dict[str, Any] | None]]:
    """Reservation creations after `last_id`: (history id, reservation id, recipient)."""
    rows = session.execute(
        select(ReservationEvent.id, ReservationEvent.reservation_id, Reservation.recipient)
        .join(Reservation, Reservation.id == ReservationEvent.reservation_id)
        .where(ReservationEvent.id > last_id, ReservationEvent.type == "created")
        .order_by(ReservationEvent.id)
        .limit(limit)
    ).all()
    return [(int(i), str(rid), recipient) for i, rid, recipient in rows]


def insert_subjects(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        connection = session.connection()
        connection.execute(_INSERT_SUBJECTS[connection.dialect.name], list(rows))


def subjects_of(session: Session, reservation_ids: Collection[str]) -> dict[str, str]:
    if not reservation_ids:
        return {}
    rows = session.execute(
        select(AnalyticsSubject.reservation_id, AnalyticsSubject.distinct_id).where(
            AnalyticsSubject.reservation_id.in_(list(reservation_ids))
        )
    ).all()
    return {str(rid): str(distinct_id) for rid, distinct_id in rows}


def purge_subjects(session: Session, before: datetime) -> int:
    return rowcount(
        session.execute(delete(AnalyticsSubject).where(AnalyticsSubject.created_at < before))
    )


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        connection = session.connection()
        connection.execute(_INSERT_NEW[connection.dialect.name], list(rows))


def due(session: Session, now: datetime, limit: int) -> Sequence[AnalyticsEvent]:
    return session.scalars(
        select(AnalyticsEvent)
        .where(AnalyticsEvent.status == "pending", AnalyticsEvent.next_attempt_at <= now)
        .order_by(AnalyticsEvent.id)
        .limit(limit)
    ).all()


def mark_sent(session: Session, ids: Collection[int], now: datetime) -> int:
    return rowcount(
        session.execute(
            update(AnalyticsEvent)
            .where(AnalyticsEvent.id.in_(list(ids)), AnalyticsEvent.status == "pending")
            .values(status="sent", sent_at=now, last_error=None)
        )
    )


def mark_stale(session: Session, ids: Collection[int]) -> int:
    return rowcount(
        session.execute(
            update(AnalyticsEvent)
            .where(AnalyticsEvent.id.in_(list(ids)), AnalyticsEvent.status == "pending")
            .values(status="stale")
        )
    )


def mark_failed(
    session: Session, ids: Collection[int], next_attempt_at: datetime, error: str
) -> None:
    session.execute(
        update(AnalyticsEvent)
        .where(AnalyticsEvent.id.in_(list(ids)))
        .values(
            attempts=AnalyticsEvent.attempts + 1,
            next_attempt_at=next_attempt_at,
            last_error=error[:500],
        )
    )


def purge(session: Session, before: datetime) -> int:
    """Rows that are done with (sent, kept locally, stale) and older than `before`."""
    return rowcount(
        session.execute(
            delete(AnalyticsEvent).where(
                AnalyticsEvent.status != "pending", AnalyticsEvent.occurred_at < before
            )
        )
    )


def pending_depth(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AnalyticsEvent)
            .where(AnalyticsEvent.status == "pending")
        )
        or 0
    )


# Network-wide gauges for /metrics: totals and per size class, never per bank (5,000 banks would
# be 5,000 series per gauge).


class NetworkGauges(NamedTuple):
    capacity: list[tuple[str, int, int]]  # size, total units, available units
    compartments: list[tuple[str, str, int]]  # size, state, count
    open_alerts: list[tuple[str, int]]  # type, count
    nodes: list[tuple[bool, int]]  # online, count
    webhook_depth: int
    analytics_depth: int


def network_gauges(session: Session) -> NetworkGauges:
    capacity = session.execute(
        select(
            BankCapacity.size,
            func.coalesce(func.sum(BankCapacity.total), 0),
            func.coalesce(func.sum(BankCapacity.available), 0),
        ).group_by(BankCapacity.size)
    ).all()
    compartments = session.execute(
        select(Compartment.size, Compartment.state, func.count()).group_by(
            Compartment.size, Compartment.state
        )
    ).all()
    alerts = session.execute(
        select(Alert.type, func.count()).where(Alert.resolved_at.is_(None)).group_by(Alert.type)
    ).all()
    nodes = session.execute(
        select(Node.online, func.count()).where(Node.revoked_at.is_(None)).group_by(Node.online)
    ).all()
    webhooks = session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
    )
    return NetworkGauges(
        capacity=[(str(size), int(total), int(free)) for size, total, free in capacity],
        compartments=[(str(size), str(state), int(n)) for size, state, n in compartments],
        open_alerts=[(str(kind), int(n)) for kind, n in alerts],
        nodes=[(bool(online), int(n)) for online, n in nodes],
        webhook_depth=int(webhooks or 0),
        analytics_depth=pending_depth(session),
    )
