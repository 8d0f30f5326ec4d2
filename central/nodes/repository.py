"""Queries for nodes, their nonces, events, commands and alerts."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    and_,
    any_,
    bindparam,
    delete,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from central.bulk import BulkInsert, BulkUpdate, document, recordset, value_of
from central.db import rowcount
from central.models import (
    Alert,
    Bank,
    BankCapacity,
    Carrier,
    Compartment,
    EnrollmentToken,
    Node,
    NodeCommand,
    NodeEventRecord,
    NodeNonce,
    Reservation,
)

_DIALECTS = {"postgresql": postgresql, "sqlite": sqlite}
_EVENTS = cast(Table, NodeEventRecord.__table__)
_ALERTS = cast(Table, Alert.__table__)
# Built once, on the tables, and run on the connection: a batch of node events costs one
# statement per kind of write, not a statement (and an ORM round) per event.
_CLAIM_EVENTS = sqlite.insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id)
_INSERT_ALERTS = BulkInsert(_ALERTS, ("bank_id", "type", "subject", "detail", "created_at"))
_SET_EVENT_OUTCOME = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"))
    .values(status=bindparam("new_status"), error=bindparam("new_error"))
)


def add(session: Session, row: object) -> None:
    session.add(row)


def among(
    session: Session,
    column: ColumnElement[str] | InstrumentedAttribute[str],
    values: Collection[str],
) -> ColumnElement[bool]:
    """`column IN values`, for the hundreds of ids or labels a batch of events names. On
    PostgreSQL one array parameter (`= ANY`): psycopg parses a statement with hundreds of
    parameters anew on each run, which costs more than running it."""
    ordered = sorted(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(ordered, postgresql.ARRAY(String)))
    return column.in_(ordered)


# Enrollment ---------------------------------------------------------------------------------------


def token_by_hash(session: Session, token_hash: str) -> EnrollmentToken | None:
    return session.scalars(
        select(EnrollmentToken).where(EnrollmentToken.token_hash == token_hash)
    ).one_or_none()


def use_token(session: Session, token_id: int, now: datetime) -> bool:
    """Spend the token; False when another request spent it first."""
    result = session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.id == token_id, EnrollmentToken.used_at.is_(None))
        .values(used_at=now)
    )
    return rowcount(result) == 1


def lock_bank(session: Session, bank_id: str) -> Bank | None:
    """The bank row, locked until commit: enrollments of one bank happen one after the other."""
    return session.scalars(select(Bank).where(Bank.id == bank_id).with_for_update()).one_or_none()


def active_node_of_bank(session: Session, bank_id: str) -> Node | None:
    return session.scalars(
        select(Node).where(Node.bank_id == bank_id, Node.revoked_at.is_(None))
    ).first()


def revoke_nodes_of_bank(session: Session, bank_id: str, now: datetime) -> list[str]:
    ids = list(
        session.scalars(
            select(Node.id).where(Node.bank_id == bank_id, Node.revoked_at.is_(None))
        ).all()
    )
    if ids:
        session.execute(update(Node).where(Node.id.in_(ids)).values(revoked_at=now, online=False))
        session.execute(
            update(NodeCommand)
            .where(NodeCommand.node_id.in_(ids), NodeCommand.status == "pending")
            .values(status="expired")
        )
    return ids


def get_node(session: Session, node_id: str) -> Node | None:
    return session.get(Node, node_id)


def compartments_of(session: Session, bank_id: str) -> Sequence[Compartment]:
    return session.scalars(
        select(Compartment).where(Compartment.bank_id == bank_id).order_by(Compartment.label)
    ).all()


def compartment(session: Session, bank_id: str, label: str) -> Compartment | None:
    return session.scalars(
        select(Compartment).where(Compartment.bank_id == bank_id, Compartment.label == label)
    ).one_or_none()


class CompartmentRow(NamedTuple):
    id: int
    label: str
    state: str
    size: str
    accessible: bool = False


def compartment_rows(
    session: Session, bank_id: str, labels: Collection[str] | None = None
) -> dict[str, CompartmentRow]:
    """The bank's compartments by label (those of `labels` only, when given), as plain rows:
    read once for a whole batch of events."""
    if labels is not None and not labels:
        return {}
    stmt = select(
        Compartment.id,
        Compartment.label,
        Compartment.state,
        Compartment.size,
        Compartment.accessible,
    ).where(Compartment.bank_id == bank_id)
    if labels is not None:
        stmt = stmt.where(among(session, Compartment.label, labels))
    rows = session.execute(stmt)
    return {
        row.label: CompartmentRow(
            row.id, row.label, str(row.state), str(row.size), bool(row.accessible)
        )
        for row in rows
    }


_SET_COMPARTMENT_STATES = BulkUpdate(cast(Table, Compartment.__table__), "id", ("state",))


_CAPACITY = cast(Table, BankCapacity.__table__)
_CHANGE_WORKING_UNITS = (
    update(_CAPACITY)
    .where(_CAPACITY.c.bank_id == bindparam("p_bank"), _CAPACITY.c.size == bindparam("p_size"))
    .values(
        total=_CAPACITY.c.total + bindparam("delta", type_=Integer),
        available=_CAPACITY.c.available + bindparam("delta", type_=Integer),
        accessible_total=_CAPACITY.c.accessible_total
        + bindparam("accessible_delta", type_=Integer),
        accessible_available=_CAPACITY.c.accessible_available
        + bindparam("accessible_delta", type_=Integer),
    )
)


def change_working_units(
    session: Session,
    bank_id: str,
    deltas: dict[str, int],
    accessible_deltas: dict[str, int] | None = None,
) -> None:
    """Compartments leaving (-1) or returning to (+1) service, per size class; of those, the
    accessible ones also in `accessible_deltas`.

    Holds are unchanged, so `available` moves with `total` and stays `total - holds`; it may go
    below zero when more parcels hold a class than it has working compartments, and then
    allocation (`available > 0`) refuses that class until enough come back or are collected.
    The accessible counts move the same way.
    """
    accessible = accessible_deltas or {}
    params = [
        {
            "p_bank": bank_id,
            "p_size": size,
            "delta": delta,
            "accessible_delta": accessible.get(size, 0),
        }
        for size, delta in sorted(deltas.items())
        if delta or accessible.get(size, 0)
    ]
    if params:
        session.connection().execute(_CHANGE_WORKING_UNITS, params)


def set_compartment_states(session: Session, states: dict[int, str]) -> None:
    """Several compartments' states (by id) in one statement."""
    _SET_COMPARTMENT_STATES.run(
        session, [{"id": cid, "state": state} for cid, state in sorted(states.items())]
    )


def lock_reservations(
    session: Session, bank_id: str, reservation_ids: Iterable[str]
) -> dict[str, Reservation]:
    """The bank's reservations among these ids, locked until commit, by id.

    One statement for a whole batch of events, locking in id order so that two transactions
    locking overlapping sets wait for each other rather than deadlock. The history is not
    loaded: whoever needs it reads it.
    """
    ids = set(reservation_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(Reservation)
        .where(among(session, Reservation.id, ids), Reservation.bank_id == bank_id)
        .order_by(Reservation.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {row.id: row for row in rows}


def carrier_ids(session: Session) -> Sequence[str]:
    return session.scalars(select(Carrier.id).order_by(Carrier.id)).all()


# Signed requests ----------------------------------------------------------------------------------


_RECORD_NONCE = {
    name: dialect.insert(cast(Table, NodeNonce.__table__))
    .on_conflict_do_nothing()
    .returning(NodeNonce.__table__.c.nonce)
    for name, dialect in _DIALECTS.items()
}


def record_nonce(session: Session, node_id: str, nonce: str, now: datetime) -> bool:
    """Remember a nonce; False when the node used it before (a replay).

    One statement, on every signed request: of two concurrent requests with the same nonce one
    waits for the other's commit and then inserts nothing, instead of failing its transaction.
    RETURNING, not rowcount, says which: drivers disagree on the count of ON CONFLICT DO NOTHING.
    """
    connection = session.connection()
    values = {"node_id": node_id, "nonce": nonce, "seen_at": now}
    return connection.execute(_RECORD_NONCE[connection.dialect.name], values).first() is not None


def purge_nonces(session: Session, before: datetime) -> int:
    return rowcount(session.execute(delete(NodeNonce).where(NodeNonce.seen_at < before)))


# Events -------------------------------------------------------------------------------------------


def claim_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Record node events before applying them; the ids this call recorded (the others were
    recorded before, or by a concurrent batch that committed first).

    One INSERT ... ON CONFLICT DO NOTHING for the lot. The rows go in sorted by id: PostgreSQL
    takes the unique-index locks in row order, so two concurrent batches holding the same events
    in different orders wait for each other instead of deadlocking. On PostgreSQL the rows
    travel as one JSON document (`_CLAIM_EVENTS_JSON`): a VALUES list of 500 rows is 4,500
    parameters, which psycopg parses and adapts one by one in Python on every batch.
    """
    if not rows:
        return set()
    connection = session.connection()
    ordered = sorted(rows, key=lambda row: str(row["id"]))
    if connection.dialect.name == "postgresql":
        claimed = connection.execute(_CLAIM_EVENTS_JSON, {"p_rows": document(ordered)})
    else:
        claimed = connection.execute(_CLAIM_EVENTS, ordered)
    return {str(event_id) for event_id in claimed.scalars()}


_CLAIMED = (
    *("id", "node_id", "bank_id", "type", "occurred_at", "received_at"),
    *("status", "error", "data"),
)
# The same claim on PostgreSQL, its rows read from one JSON document in the order given (by id).
_CLAIM_EVENTS_JSON = text(
    f"INSERT INTO node_events ({', '.join(_CLAIMED)}) "  # noqa: S608 - the table's own names
    f"SELECT {', '.join(value_of(_EVENTS, name) for name in _CLAIMED)} "
    f"FROM {recordset(_EVENTS, _CLAIMED)} ORDER BY r.ord ON CONFLICT DO NOTHING RETURNING id"
)


def set_event_outcomes(session: Session, outcomes: Iterable[tuple[str, str, str | None]]) -> None:
    """(event id, status, error) for events whose handler changed the recorded decision."""
    params = [
        {"event_id": event_id, "new_status": status, "new_error": error}
        for event_id, status, error in outcomes
    ]
    if params:
        session.connection().execute(_SET_EVENT_OUTCOME, params)


def insert_alerts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Several alerts in one statement: bank_id, type, subject, detail, created_at each."""
    _INSERT_ALERTS.run(session, [{"subject": None, **row} for row in rows])


_REFRESH_ALERTS = BulkUpdate(_ALERTS, "id", ("detail",))


def raise_bank_alerts(session: Session, bank_id: str, rows: Sequence[dict[str, Any]]) -> None:
    """One open alert per (bank, type, subject), for a batch of them in three statements at most.

    `rows` have type, subject, detail and created_at. An open alert for the same type and
    subject gets the latest detail (a door left open again is the same trouble, not a new
    one); the others are inserted together. The later of two in one batch wins.
    """
    latest: dict[tuple[str, str | None], dict[str, Any]] = {}
    for row in rows:
        key = (row["type"], row["subject"])
        latest[key] = {**row, "created_at": latest.get(key, row)["created_at"]}
    if not latest:
        return
    subjects = {subject for _, subject in latest if subject is not None}
    # The open alerts of these subjects only: a bank in trouble may have thousands open.
    about = [among(session, _ALERTS.c.subject, subjects)] if subjects else []
    if any(subject is None for _, subject in latest):
        about.append(_ALERTS.c.subject.is_(None))
    open_ids = {
        (row.type, row.subject): row.id
        for row in session.execute(
            select(_ALERTS.c.id, _ALERTS.c.type, _ALERTS.c.subject).where(
                _ALERTS.c.bank_id == bank_id,
                _ALERTS.c.resolved_at.is_(None),
                _ALERTS.c.type.in_(sorted({kind for kind, _ in latest})),
                or_(*about),
            )
        )
    }
    _REFRESH_ALERTS.run(
        session,
        [
            {"id": open_ids[key], "detail": row["detail"]}
            for key, row in latest.items()
            if key in open_ids
        ],
    )
    insert_alerts(
        session,
        [{"bank_id": bank_id, **row} for key, row in latest.items() if key not in open_ids],
    )


# Feed ---------------------------------------------------------------------------------------------


def changed_reservations(
    session: Session, bank_id: str, after: tuple[datetime, str], limit: int
) -> Sequence[Reservation]:
    """The bank's reservations after a position in (updated_at, id) order."""
    at, rid = after
    return session.scalars(
        select(Reservation)
        .where(
            Reservation.bank_id == bank_id,
            or_(
                Reservation.updated_at > at,
                and_(Reservation.updated_at == at, Reservation.id > rid),
            ),
        )
        .order_by(Reservation.updated_at, Reservation.id)
        .limit(limit)
    ).all()


def pending_commands(session: Session, node_id: str, now: datetime) -> Sequence[NodeCommand]:
    return session.scalars(
        select(NodeCommand)
        .where(
            NodeCommand.node_id == node_id,
            NodeCommand.status == "pending",
            NodeCommand.expires_at > now,
        )
        .order_by(NodeCommand.issued_at, NodeCommand.id)
    ).all()


def get_command(session: Session, command_id: str) -> NodeCommand | None:
    return session.get(NodeCommand, command_id)


def finish_command(
    session: Session, command_id: str, status: str, result: dict[str, Any], now: datetime
) -> bool:
    # An expired command may still have been carried out just before it expired: its ack counts.
    outcome = session.execute(
        update(NodeCommand)
        .where(NodeCommand.id == command_id, NodeCommand.status.in_(("pending", "expired")))
        .values(status=status, result=result, acknowledged_at=now)
    )
    return rowcount(outcome) == 1


def expire_commands(session: Session, now: datetime) -> int:
    result = session.execute(
        update(NodeCommand)
        .where(NodeCommand.status == "pending", NodeCommand.expires_at <= now)
        .values(status="expired")
    )
    return rowcount(result)


# Health and alerts --------------------------------------------------------------------------------


def record_heartbeat(
    session: Session, node_id: str, now: datetime, health: dict[str, Any], version: str
) -> None:
    session.execute(
        update(Node)
        .where(Node.id == node_id)
        .values(last_seen_at=now, online=True, health=health, version=version)
    )


class SilentNode(NamedTuple):
    id: str
    bank_id: str
    last_seen_at: datetime


_NODES = cast(Table, Node.__table__)


def mark_silent_offline(session: Session, seen_before: datetime) -> list[SilentNode]:
    """Take every active node not seen since `seen_before` offline; the nodes it took.

    One statement, so the node rows are locked for as long as it runs and no longer: after an
    outage of central thousands of nodes fall silent at once, and their heartbeats, which update
    the same rows, must not queue behind a long transaction. A heartbeat that lands first keeps
    its node online (the condition is checked again on each row).
    """
    result = session.connection().execute(
        update(_NODES)
        .where(
            _NODES.c.revoked_at.is_(None),
            _NODES.c.online.is_(True),
            _NODES.c.last_seen_at < seen_before,
        )
        .values(online=False)
        .returning(_NODES.c.id, _NODES.c.bank_id, _NODES.c.last_seen_at)
    )
    return sorted(SilentNode(row.id, row.bank_id, row.last_seen_at) for row in result)


def resolve_alerts(session: Session, bank_id: str, alert_type: str, now: datetime) -> int:
    result = session.execute(
        update(Alert)
        .where(Alert.bank_id == bank_id, Alert.type == alert_type, Alert.resolved_at.is_(None))
        .values(resolved_at=now)
    )
    return rowcount(result)


def resolve_subject_alerts(
    session: Session, bank_id: str, keys: Sequence[tuple[str, str]], now: datetime
) -> None:
    """Resolve the bank's open alerts of these (type, subject) pairs, in one statement."""
    if keys:
        session.execute(
            update(Alert)
            .where(
                Alert.bank_id == bank_id,
                Alert.resolved_at.is_(None),
                or_(
                    *(and_(Alert.type == kind, Alert.subject == subject) for kind, subject in keys)
                ),
            )
            .values(resolved_at=now)
        )


def alerts_of(session: Session, bank_id: str) -> Sequence[Alert]:
    return session.scalars(select(Alert).where(Alert.bank_id == bank_id).order_by(Alert.id)).all()


# Fleet health -------------------------------------------------------------------------------------


class FleetRow(NamedTuple):
    bank_id: str
    bank_name: str
    timezone: str
    node_id: str | None
    online: bool | None
    version: str | None
    last_seen_at: datetime | None
    health: dict[str, Any] | None


def fleet_rows(session: Session) -> list[FleetRow]:
    """Every bank with its active node (None when it has none), in bank id order: one query."""
    rows = session.execute(
        select(
            Bank.id,
            Bank.name,
            Bank.timezone,
            Node.id,
            Node.online,
            Node.version,
            Node.last_seen_at,
            Node.health,
        )
        .outerjoin(Node, and_(Node.bank_id == Bank.id, Node.revoked_at.is_(None)))
        .order_by(Bank.id, Node.enrolled_at.desc())
    )
    seen: set[str] = set()
    out: list[FleetRow] = []
    for row in rows:
        if row[0] in seen:  # an enrollment revokes the bank's earlier node; the newest counts
            continue
        seen.add(row[0])
        out.append(FleetRow(*row))
    return out


def open_alerts_of_types(
    session: Session, types: Sequence[str]
) -> list[tuple[str, int, str, str | None, datetime]]:
    """Open bank alerts of these types: (bank_id, id, type, subject, created_at), oldest first."""
    rows = session.execute(
        select(Alert.bank_id, Alert.id, Alert.type, Alert.subject, Alert.created_at)
        .where(Alert.resolved_at.is_(None), Alert.bank_id.is_not(None), Alert.type.in_(list(types)))
        .order_by(Alert.id)
    )
    return [(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
