"""Queries for nodes, their nonces, events, commands and alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.db import rowcount
from central.models import (
    Alert,
    Bank,
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


def add(session: Session, row: object) -> None:
    session.add(row)


def _insert_unless_present(session: Session, model: Any, values: dict[str, Any]) -> bool:
    """Insert a row unless its primary key exists; True when this call inserted it.

    One statement, so of two concurrent inserts one waits for the other's commit and then
    inserts nothing, instead of failing its transaction. RETURNING, not rowcount, says which:
    drivers disagree on the count of ON CONFLICT DO NOTHING.
    """
    dialect = _DIALECTS[session.get_bind().dialect.name]
    key = next(iter(model.__table__.primary_key.columns))
    stmt = dialect.insert(model).values(values).on_conflict_do_nothing().returning(key)
    return session.execute(stmt).first() is not None


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


def set_compartment_state(session: Session, compartment_id: int, state: str) -> None:
    session.execute(update(Compartment).where(Compartment.id == compartment_id).values(state=state))


def carrier_ids(session: Session) -> Sequence[str]:
    return session.scalars(select(Carrier.id).order_by(Carrier.id)).all()


# Signed requests ----------------------------------------------------------------------------------


def record_nonce(session: Session, node_id: str, nonce: str, now: datetime) -> bool:
    """Remember a nonce; False when the node used it before (a replay)."""
    return _insert_unless_present(
        session, NodeNonce, {"node_id": node_id, "nonce": nonce, "seen_at": now}
    )


def purge_nonces(session: Session, before: datetime) -> int:
    return rowcount(session.execute(delete(NodeNonce).where(NodeNonce.seen_at < before)))


# Events -------------------------------------------------------------------------------------------


def claim_event(session: Session, values: dict[str, Any]) -> bool:
    """Record a node event before applying it; False when it was recorded before."""
    return _insert_unless_present(session, NodeEventRecord, values)


def set_event_outcome(session: Session, event_id: str, status: str, error: str | None) -> None:
    session.execute(
        update(NodeEventRecord)
        .where(NodeEventRecord.id == event_id)
        .values(status=status, error=error)
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


def silent_nodes(session: Session, seen_before: datetime) -> Sequence[Node]:
    return session.scalars(
        select(Node)
        .where(Node.revoked_at.is_(None), Node.online.is_(True), Node.last_seen_at < seen_before)
        .order_by(Node.id)
    ).all()


def mark_offline(session: Session, node_id: str, seen_before: datetime) -> bool:
    """Conditional, so a heartbeat that lands meanwhile keeps the node online."""
    result = session.execute(
        update(Node)
        .where(Node.id == node_id, Node.online.is_(True), Node.last_seen_at < seen_before)
        .values(online=False)
    )
    return rowcount(result) == 1


def resolve_alerts(session: Session, bank_id: str, alert_type: str, now: datetime) -> int:
    result = session.execute(
        update(Alert)
        .where(Alert.bank_id == bank_id, Alert.type == alert_type, Alert.resolved_at.is_(None))
        .values(resolved_at=now)
    )
    return rowcount(result)


def alerts_of(session: Session, bank_id: str) -> Sequence[Alert]:
    return session.scalars(select(Alert).where(Alert.bank_id == bank_id).order_by(Alert.id)).all()
