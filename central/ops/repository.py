"""Queries for operator accounts, sessions, sign-in failures, the audit log and alerts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased

from central.db import rowcount
from central.models import (
    Alert,
    Bank,
    Compartment,
    Node,
    NodeCommand,
    OperatorAccount,
    OperatorAuditEntry,
    OperatorLoginFailure,
    OperatorSession,
    Reservation,
    ReservationStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)


def add(session: Session, row: object) -> None:
    session.add(row)


# Accounts -----------------------------------------------------------------------------------------


def operator_by_email(session: Session, email: str) -> OperatorAccount | None:
    return session.scalars(select(OperatorAccount).where(OperatorAccount.email == email)).first()


def get_operator(session: Session, operator_id: int) -> OperatorAccount | None:
    return session.get(OperatorAccount, operator_id)


def list_operators(session: Session) -> Sequence[OperatorAccount]:
    return session.scalars(select(OperatorAccount).order_by(OperatorAccount.email)).all()


def emails_of(session: Session, operator_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {i for i in operator_ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(OperatorAccount.id, OperatorAccount.email).where(OperatorAccount.id.in_(ids))
    )
    return {row.id: row.email for row in rows}


def set_login(session: Session, operator_id: int, now: datetime, password_hash: str | None) -> None:
    values: dict[str, Any] = {"last_login_at": now}
    if password_hash is not None:
        values["password_hash"] = password_hash
    session.execute(
        update(OperatorAccount).where(OperatorAccount.id == operator_id).values(**values)
    )


# Sessions -----------------------------------------------------------------------------------------


def session_with_operator(
    session: Session, session_id: str
) -> tuple[OperatorSession, OperatorAccount] | None:
    row = session.execute(
        select(OperatorSession, OperatorAccount)
        .join(OperatorAccount, OperatorAccount.id == OperatorSession.operator_id)
        .where(OperatorSession.id == session_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


def touch_session(session: Session, session_id: str, now: datetime) -> None:
    session.execute(
        update(OperatorSession).where(OperatorSession.id == session_id).values(last_seen_at=now)
    )


def revoke_session(session: Session, session_id: str, now: datetime) -> bool:
    result = session.execute(
        update(OperatorSession)
        .where(OperatorSession.id == session_id, OperatorSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return rowcount(result) == 1


def revoke_sessions_of(session: Session, operator_id: int, now: datetime) -> int:
    result = session.execute(
        update(OperatorSession)
        .where(OperatorSession.operator_id == operator_id, OperatorSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return rowcount(result)


# Sign-in throttle ---------------------------------------------------------------------------------


def failures_since(session: Session, key: str, since: datetime) -> Sequence[datetime]:
    return session.scalars(
        select(OperatorLoginFailure.at)
        .where(OperatorLoginFailure.throttle_key == key, OperatorLoginFailure.at > since)
        .order_by(OperatorLoginFailure.at)
    ).all()


def record_failure(session: Session, key: str, now: datetime, forget_before: datetime) -> None:
    # Old failures of this key no longer count: drop them as new ones come in.
    session.execute(
        delete(OperatorLoginFailure).where(
            OperatorLoginFailure.throttle_key == key, OperatorLoginFailure.at <= forget_before
        )
    )
    session.add(OperatorLoginFailure(throttle_key=key, at=now))


def clear_failures(session: Session, key: str) -> None:
    session.execute(delete(OperatorLoginFailure).where(OperatorLoginFailure.throttle_key == key))


# Audit --------------------------------------------------------------------------------------------


def recent_audit(session: Session, limit: int) -> Sequence[tuple[OperatorAuditEntry, str | None]]:
    rows = session.execute(
        select(OperatorAuditEntry, OperatorAccount.email)
        .outerjoin(OperatorAccount, OperatorAccount.id == OperatorAuditEntry.operator_id)
        .order_by(OperatorAuditEntry.at.desc(), OperatorAuditEntry.id.desc())
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


# Alerts -------------------------------------------------------------------------------------------


def open_alert(
    session: Session, bank_id: str | None, alert_type: str, subject: str | None
) -> Alert | None:
    bank = Alert.bank_id.is_(None) if bank_id is None else Alert.bank_id == bank_id
    about = Alert.subject.is_(None) if subject is None else Alert.subject == subject
    return session.scalars(
        select(Alert)
        .where(bank, Alert.type == alert_type, about, Alert.resolved_at.is_(None))
        .order_by(Alert.id)
        .limit(1)
    ).first()


def get_alert(session: Session, alert_id: int) -> Alert | None:
    return session.get(Alert, alert_id)


def open_alerts_of_type(session: Session, alert_type: str) -> Sequence[Alert]:
    return session.scalars(
        select(Alert).where(Alert.type == alert_type, Alert.resolved_at.is_(None))
    ).all()


def resolve_open(
    session: Session,
    *,
    bank_id: str | None,
    alert_type: str,
    subjects: Sequence[str] | None,
    now: datetime,
) -> int:
    """Resolve (as the system) the open alerts of one type at one bank, optionally by subject."""
    bank = Alert.bank_id.is_(None) if bank_id is None else Alert.bank_id == bank_id
    statement = update(Alert).where(bank, Alert.type == alert_type, Alert.resolved_at.is_(None))
    if subjects is not None:
        statement = statement.where(Alert.subject.in_(subjects))
    return rowcount(session.execute(statement.values(resolved_at=now)))


def list_alerts(
    session: Session,
    *,
    status: str,
    bank_id: str | None,
    alert_type: str | None,
    limit: int,
) -> Sequence[tuple[Alert, str | None, str | None, str | None]]:
    """Alerts newest first, with the bank's name and the acknowledging/resolving operators."""
    acker = aliased(OperatorAccount)
    resolver = aliased(OperatorAccount)
    statement = (
        select(Alert, Bank.name, acker.email, resolver.email)
        .outerjoin(Bank, Bank.id == Alert.bank_id)
        .outerjoin(acker, acker.id == Alert.acknowledged_by)
        .outerjoin(resolver, resolver.id == Alert.resolved_by)
    )
    if status == "open":
        statement = statement.where(Alert.resolved_at.is_(None))
    elif status == "acknowledged":
        statement = statement.where(Alert.resolved_at.is_(None), Alert.acknowledged_at.isnot(None))
    elif status == "resolved":
        statement = statement.where(Alert.resolved_at.isnot(None))
    if bank_id is not None:
        statement = statement.where(Alert.bank_id == bank_id)
    if alert_type is not None:
        statement = statement.where(Alert.type == alert_type)
    rows = session.execute(
        statement.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    ).all()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def bank_name(session: Session, bank_id: str) -> str | None:
    return session.scalar(select(Bank.name).where(Bank.id == bank_id))


def parcels_awaiting_return(session: Session, bank_id: str) -> int:
    """Parcels still in a compartment after their pickup deadline: expired after a deposit."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Reservation)
            .where(
                Reservation.bank_id == bank_id,
                Reservation.status == ReservationStatus.EXPIRED.value,
                Reservation.deposited_at.isnot(None),
            )
        )
        or 0
    )


def reservations_by_id(session: Session, ids: Sequence[str]) -> Sequence[Reservation]:
    if not ids:
        return []
    return session.scalars(select(Reservation).where(Reservation.id.in_(ids))).all()


def last_attempts(
    session: Session, endpoint_id: str, limit: int
) -> Sequence[tuple[datetime, int | None, str | None]]:
    """The endpoint's latest delivery attempts, newest first: (attempted_at, status, error)."""
    rows = session.execute(
        select(WebhookAttempt.attempted_at, WebhookAttempt.status_code, WebhookAttempt.error)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookAttempt.attempted_at.desc(), WebhookAttempt.id.desc())
        .limit(limit)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def webhook_endpoint(session: Session, endpoint_id: str) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id)


# Actions ------------------------------------------------------------------------------------------


def has_active_node(session: Session, bank_id: str) -> bool:
    return (
        session.scalar(
            select(Node.id).where(Node.bank_id == bank_id, Node.revoked_at.is_(None)).limit(1)
        )
        is not None
    )


def compartment_exists(session: Session, bank_id: str, label: str) -> bool:
    return (
        session.scalar(
            select(Compartment.id).where(Compartment.bank_id == bank_id, Compartment.label == label)
        )
        is not None
    )


def get_command(session: Session, command_id: str) -> NodeCommand | None:
    return session.get(NodeCommand, command_id)


def reservation_for_update(session: Session, reservation_id: str) -> Reservation | None:
    return session.scalars(
        select(Reservation).where(Reservation.id == reservation_id).with_for_update()
    ).one_or_none()


def remote_opens_since(session: Session, since: datetime) -> Sequence[datetime]:
    """When each remote open issued after `since`, to any node, was issued, oldest first."""
    return session.scalars(
        select(NodeCommand.issued_at)
        .where(NodeCommand.type == "open_compartment", NodeCommand.issued_at > since)
        .order_by(NodeCommand.issued_at)
    ).all()
