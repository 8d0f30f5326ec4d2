"""Queries behind the dashboard's insight views: grouped, set-based, read only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from central.db import rowcount
from central.models import (
    Alert,
    Bank,
    BankCapacity,
    Compartment,
    Node,
    NodeEventRecord,
    Notice,
    OccupancySample,
    Reservation,
    ReservationEvent,
)
from central.models.base import UtcDateTime

# Grouped rows, unpacked by position where they are used.
Rows: TypeAlias = Sequence[Row[*tuple[Any, ...]]]
RESERVED = "reserved"
# A parcel is in a compartment while deposited, and still after its pickup deadline passed
# (expired) until the courier takes it back; an expired hold never had a compartment.
IN_LOCKER = ("deposited", "expired")


def _occupied_condition() -> ColumnElement[bool]:
    return and_(Reservation.status.in_(IN_LOCKER), Reservation.compartment_label.is_not(None))


def _holding_condition() -> ColumnElement[bool]:
    return or_(Reservation.status == RESERVED, _occupied_condition())


# Overview and bank summary ------------------------------------------------------------------------


def _rows(session: Session, stmt: Select[*tuple[Any, ...]]) -> Rows:
    # Plain Core execution: these read thousands of tuples, and the ORM's result layer would add
    # a noticeable share of the overview's time for nothing (no entities are loaded).
    return session.connection().execute(stmt).all()


def banks(session: Session, bank_id: str | None = None) -> Rows:
    stmt = select(
        Bank.id,
        Bank.name,
        Bank.address,
        Bank.lat,
        Bank.lon,
        Bank.timezone,
        Bank.status,
        Bank.maintenance_since,  # in maintenance when set (central.banks.settings)
    ).order_by(Bank.id)
    if bank_id is not None:
        stmt = stmt.where(Bank.id == bank_id)
    return _rows(session, stmt)


def compartment_counts(session: Session, bank_id: str | None = None) -> Rows:
    """(bank_id, size, total, out_of_service) per bank and class."""
    stmt = select(
        Compartment.bank_id,
        Compartment.size,
        func.count(),
        func.sum(case((Compartment.state == "out_of_service", 1), else_=0)),
    ).group_by(Compartment.bank_id, Compartment.size)
    if bank_id is not None:
        stmt = stmt.where(Compartment.bank_id == bank_id)
    return _rows(session, stmt)


def capacity(session: Session, bank_id: str | None = None) -> Rows:
    """(bank_id, size, total, available): the rows allocation decrements."""
    stmt = select(
        BankCapacity.bank_id, BankCapacity.size, BankCapacity.total, BankCapacity.available
    )
    if bank_id is not None:
        stmt = stmt.where(BankCapacity.bank_id == bank_id)
    return _rows(session, stmt)


def holding_counts(session: Session, bank_id: str | None = None) -> Rows:
    """(bank_id, size, reserved, occupied) per bank and class, in the reservation's class."""
    stmt = (
        select(
            Reservation.bank_id,
            Reservation.size,
            func.sum(case((Reservation.status == RESERVED, 1), else_=0)),
            func.sum(case((_occupied_condition(), 1), else_=0)),
        )
        .where(_holding_condition())
        .group_by(Reservation.bank_id, Reservation.size)
    )
    if bank_id is not None:
        stmt = stmt.where(Reservation.bank_id == bank_id)
    return _rows(session, stmt)


def nodes(session: Session, bank_id: str | None = None) -> Rows:
    """(bank_id, online, last_seen_at, health) of the enrolled nodes.

    Health (the last heartbeat's doors) only for one bank: the overview shows no doors, and a
    heartbeat's JSON per bank is not worth reading for it.
    """
    health: Any = Node.health if bank_id is not None else literal(None)
    stmt = select(Node.bank_id, Node.online, Node.last_seen_at, health).where(
        Node.revoked_at.is_(None)
    )
    if bank_id is not None:
        stmt = stmt.where(Node.bank_id == bank_id)
    return _rows(session, stmt)


def open_alert_counts(session: Session, bank_id: str | None = None) -> Rows:
    stmt = (
        select(Alert.bank_id, func.count())
        .where(Alert.resolved_at.is_(None))
        .group_by(Alert.bank_id)
    )
    if bank_id is not None:
        stmt = stmt.where(Alert.bank_id == bank_id)
    return _rows(session, stmt)


# Bank detail --------------------------------------------------------------------------------------


def compartments_of(session: Session, bank_id: str) -> Rows:
    return session.execute(
        select(Compartment.label, Compartment.size, Compartment.state)
        .where(Compartment.bank_id == bank_id)
        .order_by(Compartment.label)
    ).all()


def parcels_in_bank(session: Session, bank_id: str) -> Sequence[Reservation]:
    return session.scalars(
        select(Reservation)
        .where(Reservation.bank_id == bank_id, _occupied_condition())
        .order_by(Reservation.compartment_label, Reservation.deposited_at)
    ).all()


def recent_reservation_events(
    session: Session, bank_id: str, limit: int
) -> Sequence[ReservationEvent]:
    return session.scalars(
        select(ReservationEvent)
        .join(Reservation, Reservation.id == ReservationEvent.reservation_id)
        .where(Reservation.bank_id == bank_id)
        .order_by(ReservationEvent.at.desc(), ReservationEvent.id.desc())
        .limit(limit)
    ).all()


def recent_node_events(session: Session, bank_id: str, limit: int) -> Sequence[NodeEventRecord]:
    # Through the bank's nodes (past ones too): node_events is indexed by node, not by bank.
    node_ids = select(Node.id).where(Node.bank_id == bank_id).scalar_subquery()
    return session.scalars(
        select(NodeEventRecord)
        .where(NodeEventRecord.node_id.in_(node_ids))
        .order_by(NodeEventRecord.occurred_at.desc(), NodeEventRecord.id.desc())
        .limit(limit)
    ).all()


def recent_alerts(session: Session, bank_id: str, limit: int) -> Sequence[Alert]:
    return session.scalars(
        select(Alert)
        .where(Alert.bank_id == bank_id)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(limit)
    ).all()


# Parcel search ------------------------------------------------------------------------------------


def reservations_by_tracking(session: Session, tracking_number: str) -> Sequence[Reservation]:
    return session.scalars(
        select(Reservation)
        .where(Reservation.tracking_number == tracking_number)
        .order_by(Reservation.created_at, Reservation.id)
    ).all()


def histories(session: Session, reservation_ids: Sequence[str]) -> Sequence[ReservationEvent]:
    if not reservation_ids:
        return []
    return session.scalars(
        select(ReservationEvent)
        .where(ReservationEvent.reservation_id.in_(reservation_ids))
        .order_by(ReservationEvent.id)
    ).all()


# Recipient notices -------------------------------------------------------------------------------

# What an operator may see of a notice: never `payload_sealed` (the address, the pickup code).
NOTICE_COLUMNS = (
    Notice.reservation_id,
    Notice.id,
    Notice.kind,
    Notice.channel,
    Notice.destination_hint,
    Notice.status,
    Notice.attempts,
    Notice.created_at,
    Notice.sent_at,
    Notice.next_attempt_at,
    Notice.last_error,
    Notice.provider_ref,
)


def notice_counts(session: Session, reservation_ids: Sequence[str]) -> Rows:
    """(reservation_id, status, count) of these reservations' notices: one grouped query."""
    if not reservation_ids:
        return []
    stmt = (
        select(Notice.reservation_id, Notice.status, func.count())
        .where(Notice.reservation_id.in_(reservation_ids))
        .group_by(Notice.reservation_id, Notice.status)
    )
    return _rows(session, stmt)


def notices_of(session: Session, reservation_ids: Sequence[str]) -> Rows:
    """NOTICE_COLUMNS of these reservations' notices, oldest first."""
    if not reservation_ids:
        return []
    stmt = (
        select(*NOTICE_COLUMNS)
        .where(Notice.reservation_id.in_(reservation_ids))
        .order_by(Notice.reservation_id, Notice.created_at, Notice.id)
    )
    return _rows(session, stmt)


def reservation_ref(session: Session, reservation_id: str) -> Row[*tuple[Any, ...]] | None:
    """(id, tracking_number, bank_id, carrier_id) of a reservation, or None."""
    stmt = select(
        Reservation.id, Reservation.tracking_number, Reservation.bank_id, Reservation.carrier_id
    ).where(Reservation.id == reservation_id)
    return session.connection().execute(stmt).first()


def notice_health(session: Session, failed_since: datetime) -> Row[*tuple[Any, ...]]:
    """(failed since `failed_since`, waiting, oldest waiting's created_at) over every notice.

    Waiting: pending after at least one attempt. The row keeps no time of failure: a failed
    notice's `next_attempt_at` is its last claim (the attempt, plus at most the claim timeout),
    and it is what `ix_notices_due` (status, next_attempt_at) indexes, like the pending rows.
    """
    failed = and_(Notice.status == "failed", Notice.next_attempt_at >= failed_since)
    waiting = and_(Notice.status == "pending", Notice.attempts > 0)
    stmt = select(
        func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
        func.coalesce(func.sum(case((waiting, 1), else_=0)), 0),
        func.min(case((waiting, Notice.created_at))),
    ).where(or_(failed, Notice.status == "pending"))
    return session.connection().execute(stmt).one()


# Charts -------------------------------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def hours_between(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    if _dialect(session) == "postgresql":
        return func.extract("epoch", end - start) / 3600.0
    # SQLite's date functions count in milliseconds, but a julianday difference is a float of days
    # that misses whole hours (exactly 1 h came out as 0.99999999...): round to milliseconds first.
    milliseconds = func.round((func.julianday(end) - func.julianday(start)) * 86_400_000)
    return milliseconds / 3_600_000.0


def epoch_hour(session: Session, column: Any) -> ColumnElement[int]:
    """Whole hours since 1970 (UTC) of a timestamp column, an integer on every backend."""
    if _dialect(session) == "postgresql":
        return cast(func.floor(func.extract("epoch", column) / 3600), Integer)
    # `//`, not `/`: SQLAlchemy 2 makes `/` true division (a float per second on SQLite, so
    # grouping by it gave a row per second); `//` is SQLite's integer division, floor for t >= 0.
    return cast(func.strftime("%s", column), Integer) // 3600


def occupancy_series(session: Session, since: datetime, bank_id: str | None) -> Rows:
    stmt = (
        select(
            OccupancySample.taken_at,
            func.sum(OccupancySample.occupied),
            func.sum(OccupancySample.reserved),
            func.sum(OccupancySample.total),
        )
        .where(OccupancySample.taken_at >= since)
        .group_by(OccupancySample.taken_at)
        .order_by(OccupancySample.taken_at)
    )
    if bank_id is not None:
        stmt = stmt.where(OccupancySample.bank_id == bank_id)
    return session.execute(stmt).all()


DWELL_BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("< 1 h", 0, 1),
    ("1-6 h", 1, 6),
    ("6-12 h", 6, 12),
    ("12-24 h", 12, 24),
    ("24-48 h", 24, 48),
    ("48-72 h", 48, 72),
    ("> 72 h", 72, None),
)


def dwell_histogram(session: Session, since: datetime, bank_id: str | None) -> dict[int, int]:
    """Picked-up parcels closed since `since`, counted per DWELL_BUCKETS index."""
    hours = hours_between(session, Reservation.deposited_at, Reservation.closed_at)
    bucket = case(
        *[(hours < upper, index) for index, (_, _, upper) in enumerate(DWELL_BUCKETS) if upper],
        else_=len(DWELL_BUCKETS) - 1,
    )
    stmt = (
        select(bucket, func.count())
        .where(
            Reservation.status == "picked_up",
            Reservation.closed_at >= since,
            Reservation.deposited_at.is_not(None),
        )
        .group_by(bucket)
    )
    if bank_id is not None:
        stmt = stmt.where(Reservation.bank_id == bank_id)
    return {int(index): int(count) for index, count in session.execute(stmt).all()}


def throughput(session: Session, since: datetime, bank_id: str | None) -> Rows:
    """(epoch hour, event type, count) of deposits and pickups since `since`."""
    hour = epoch_hour(session, ReservationEvent.at)
    stmt = (
        select(hour, ReservationEvent.type, func.count())
        .where(
            ReservationEvent.at >= since,
            ReservationEvent.type.in_(("deposited", "picked_up")),
        )
        .group_by(hour, ReservationEvent.type)
    )
    if bank_id is not None:
        stmt = stmt.join(Reservation, Reservation.id == ReservationEvent.reservation_id).where(
            Reservation.bank_id == bank_id
        )
    return session.execute(stmt).all()


def node_events_since(
    session: Session, since: datetime, types: Sequence[str], bank_id: str | None
) -> Rows:
    """(type, occurred_at) of the applied node events of these types since `since`."""
    stmt = select(NodeEventRecord.type, NodeEventRecord.occurred_at).where(
        NodeEventRecord.occurred_at >= since,
        NodeEventRecord.type.in_(types),
        NodeEventRecord.status == "applied",
    )
    if bank_id is not None:
        # Through the bank's nodes: node_events is indexed by node, not by bank.
        node_ids = select(Node.id).where(Node.bank_id == bank_id).scalar_subquery()
        stmt = stmt.where(NodeEventRecord.node_id.in_(node_ids))
    return session.execute(stmt).all()


# Daily report -------------------------------------------------------------------------------------


def report_banks(session: Session, bank_id: str | None) -> Rows:
    """(bank_id, timezone, compartments) of the banks a report covers."""
    counts = (
        select(Compartment.bank_id, func.count().label("n"))
        .group_by(Compartment.bank_id)
        .subquery()
    )
    stmt = (
        select(Bank.id, Bank.timezone, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.bank_id == Bank.id)
        .order_by(Bank.id)
    )
    if bank_id is not None:
        stmt = stmt.where(Bank.id == bank_id)
    return session.execute(stmt).all()


def _in_zone(timezone: str, bank_id: str | None) -> ColumnElement[bool]:
    condition = Bank.timezone == timezone
    return and_(condition, Bank.id == bank_id) if bank_id is not None else condition


def transitions_in(
    session: Session, timezone: str, bank_id: str | None, start: datetime, end: datetime
) -> Rows:
    """(bank_id, type, count) of deposits, pickups and returns in [start, end)."""
    return session.execute(
        select(Reservation.bank_id, ReservationEvent.type, func.count())
        .join(Reservation, Reservation.id == ReservationEvent.reservation_id)
        .join(Bank, Bank.id == Reservation.bank_id)
        .where(
            _in_zone(timezone, bank_id),
            ReservationEvent.at >= start,
            ReservationEvent.at < end,
            ReservationEvent.type.in_(("deposited", "picked_up", "returned")),
        )
        .group_by(Reservation.bank_id, ReservationEvent.type)
    ).all()


def stays_overlapping(
    session: Session, timezone: str, bank_id: str | None, start: datetime, end: datetime
) -> Rows:
    """(bank_id, deposited_at, closed_at, status) of parcels in a locker during [start, end)."""
    return session.execute(
        select(
            Reservation.bank_id, Reservation.deposited_at, Reservation.closed_at, Reservation.status
        )
        .join(Bank, Bank.id == Reservation.bank_id)
        .where(
            _in_zone(timezone, bank_id),
            Reservation.deposited_at.is_not(None),
            Reservation.deposited_at < end,
            or_(Reservation.closed_at.is_(None), Reservation.closed_at > start),
        )
    ).all()


def node_event_counts(
    session: Session,
    timezone: str,
    bank_id: str | None,
    start: datetime,
    end: datetime,
    types: Sequence[str],
) -> Rows:
    return session.execute(
        select(NodeEventRecord.bank_id, NodeEventRecord.type, func.count())
        .join(Bank, Bank.id == NodeEventRecord.bank_id)
        .where(
            _in_zone(timezone, bank_id),
            NodeEventRecord.status == "applied",
            NodeEventRecord.occurred_at >= start,
            NodeEventRecord.occurred_at < end,
            NodeEventRecord.type.in_(types),
        )
        .group_by(NodeEventRecord.bank_id, NodeEventRecord.type)
    ).all()


# Occupancy sampling -------------------------------------------------------------------------------


def insert_occupancy_sample(session: Session, now: datetime) -> int:
    """One INSERT ... SELECT: a row per bank and class that has compartments or capacity."""
    compartments = (
        select(
            Compartment.bank_id.label("bank_id"),
            Compartment.size.label("size"),
            func.count().label("total"),
            func.sum(case((Compartment.state == "out_of_service", 1), else_=0)).label("oos"),
        )
        .group_by(Compartment.bank_id, Compartment.size)
        .subquery()
    )
    holding = (
        select(
            Reservation.bank_id.label("bank_id"),
            Reservation.size.label("size"),
            func.sum(case((Reservation.status == RESERVED, 1), else_=0)).label("reserved"),
            func.sum(case((_occupied_condition(), 1), else_=0)).label("occupied"),
        )
        .where(_holding_condition())
        .group_by(Reservation.bank_id, Reservation.size)
        .subquery()
    )
    source = (
        select(
            BankCapacity.bank_id,
            literal(now, UtcDateTime()),
            BankCapacity.size,
            func.coalesce(compartments.c.total, 0),
            case((BankCapacity.available < 0, 0), else_=BankCapacity.available),
            func.coalesce(holding.c.reserved, 0),
            func.coalesce(holding.c.occupied, 0),
            func.coalesce(compartments.c.oos, 0),
        )
        .outerjoin(
            compartments,
            and_(
                compartments.c.bank_id == BankCapacity.bank_id,
                compartments.c.size == BankCapacity.size,
            ),
        )
        .outerjoin(
            holding,
            and_(holding.c.bank_id == BankCapacity.bank_id, holding.c.size == BankCapacity.size),
        )
        .where(or_(BankCapacity.total > 0, compartments.c.total.is_not(None)))
    )
    columns = [
        "bank_id", "taken_at", "size", "total", "free", "reserved", "occupied", "out_of_service"
    ]  # fmt: skip
    # RETURNING, not rowcount: psycopg reports no count for INSERT ... SELECT here.
    stmt = insert(OccupancySample).from_select(columns, source).returning(OccupancySample.size)
    return len(session.execute(stmt).all())


def purge_occupancy_samples(session: Session, before: datetime) -> int:
    result = session.execute(delete(OccupancySample).where(OccupancySample.taken_at < before))
    return rowcount(result)
