"""Queries for paging: the scan of alert transitions, subscriptions, targets and the outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, and_, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.models import (
    Alert,
    Bank,
    OperatorAccount,
    PageOutbox,
    PageScan,
    PageSubscription,
    PageTarget,
)

_SCANS = cast(Table, PageScan.__table__)
_OUTBOX = cast(Table, PageOutbox.__table__)
# Written by every host's scan: a row another wrote first is left as it is.
_SCAN_ONCE = {
    name: dialect.insert(_SCANS).on_conflict_do_nothing(index_elements=["alert_id", "transition"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_PAGE_ONCE = {
    name: dialect.insert(_OUTBOX).on_conflict_do_nothing(
        index_elements=["alert_id", "transition", "destination"]
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _skip_locked(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# Scan ---------------------------------------------------------------------------------------------


def _not_scanned(transition: str) -> Any:
    return ~exists().where(PageScan.alert_id == Alert.id, PageScan.transition == transition)


def unscanned(session: Session, since: datetime, limit: int) -> list[tuple[Alert, str]]:
    """Alerts raised, and alerts resolved, since `since` whose transition no scan handled yet,
    oldest first; at most `limit` of each."""
    raised = session.scalars(
        select(Alert)
        .where(Alert.created_at >= since, _not_scanned("raised"))
        .order_by(Alert.id)
        .limit(limit)
    ).all()
    resolved = session.scalars(
        select(Alert)
        .where(
            Alert.resolved_at.is_not(None),
            Alert.resolved_at >= since,
            _not_scanned("resolved"),
        )
        .order_by(Alert.id)
        .limit(limit)
    ).all()
    return [(alert, "raised") for alert in raised] + [(alert, "resolved") for alert in resolved]


def live_subscriptions(
    session: Session,
) -> Sequence[Row[PageSubscription, str, str | None, str | None, bool | None]]:
    """Subscriptions of enabled operators, with the operator's email and their target's name,
    URL hint and whether it is enabled (None without a target)."""
    return session.execute(
        select(
            PageSubscription,
            OperatorAccount.email,
            PageTarget.name,
            PageTarget.url_hint,
            PageTarget.enabled,
        )
        .join(OperatorAccount, OperatorAccount.id == PageSubscription.operator_id)
        .outerjoin(PageTarget, PageTarget.id == PageSubscription.target_id)
        .where(OperatorAccount.disabled_at.is_(None))
        .order_by(PageSubscription.id)
    ).all()


def mark_scanned(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        connection = session.connection()
        connection.execute(_SCAN_ONCE[connection.dialect.name], rows)


def insert_pages(session: Session, rows: list[dict[str, Any]]) -> None:
    """Outbox rows in one statement; a (alert, transition, destination) paged already is left."""
    if rows:
        connection = session.connection()
        # One order for every host: two scans inserting the same rows wait, never deadlock.
        ordered = sorted(rows, key=lambda r: (r["alert_id"], r["transition"], r["destination"]))
        connection.execute(_PAGE_ONCE[connection.dialect.name], ordered)


def forget_scans(session: Session, before: datetime) -> None:
    """Scans of transitions older than the scan's window: it can no longer see them."""
    session.execute(delete(PageScan).where(PageScan.scanned_at < before))


def forget_pages(session: Session, before: datetime) -> None:
    """Pages that ended (sent, failed, cancelled) before `before`."""
    session.execute(
        delete(PageOutbox).where(PageOutbox.status != "pending", PageOutbox.created_at < before)
    )


# Outbox -------------------------------------------------------------------------------------------


def due_pages(session: Session, now: datetime, limit: int) -> Sequence[PageOutbox]:
    """Due pages, locked for the caller's claim; on PostgreSQL rows another host is claiming
    are skipped (`FOR UPDATE SKIP LOCKED`); SQLite's single writer does the same by itself."""
    stmt = (
        select(PageOutbox)
        .where(PageOutbox.status == "pending", PageOutbox.next_attempt_at <= now)
        .order_by(PageOutbox.next_attempt_at, PageOutbox.id)
        .limit(limit)
    )
    if _skip_locked(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).all()


def end_pending(
    session: Session, status: str, reason: str, *, channel: str | None = None, **where: Any
) -> int:
    """End pending pages (of a channel, or a destination) with `status` and why."""
    conditions = [PageOutbox.status == "pending"]
    if channel is not None:
        conditions.append(PageOutbox.channel == channel)
    for column, value in where.items():
        conditions.append(getattr(PageOutbox, column) == value)
    result = session.execute(
        update(PageOutbox).where(and_(*conditions)).values(status=status, last_error=reason)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def alerts_by_id(session: Session, ids: Iterable[int]) -> dict[int, Alert]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {a.id: a for a in session.scalars(select(Alert).where(Alert.id.in_(wanted)))}


def bank_names(session: Session, ids: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = session.execute(select(Bank.id, Bank.name).where(Bank.id.in_(wanted)))
    return {row.id: row.name for row in rows}


def enabled_operator_emails(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(OperatorAccount.id, OperatorAccount.email).where(
            OperatorAccount.id.in_(wanted), OperatorAccount.disabled_at.is_(None)
        )
    )
    return {row.id: row.email for row in rows}


def targets_by_id(session: Session, ids: Iterable[int]) -> dict[int, PageTarget]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {t.id: t for t in session.scalars(select(PageTarget).where(PageTarget.id.in_(wanted)))}


def recent_pages(
    session: Session, *, status: str | None, limit: int
) -> Sequence[Row[PageOutbox, str, str | None]]:
    """The latest pages with their alert's type and bank, newest first."""
    stmt = (
        select(PageOutbox, Alert.type, Alert.bank_id)
        .join(Alert, Alert.id == PageOutbox.alert_id)
        .order_by(PageOutbox.id.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(PageOutbox.status == status)
    return session.execute(stmt).all()


# Subscriptions and targets ------------------------------------------------------------------------


def subscriptions_of(
    session: Session, operator_id: int | None
) -> Sequence[Row[PageSubscription, str, str | None]]:
    """(subscription, operator email, target name): one operator's, or everyone's (None)."""
    stmt = (
        select(PageSubscription, OperatorAccount.email, PageTarget.name)
        .join(OperatorAccount, OperatorAccount.id == PageSubscription.operator_id)
        .outerjoin(PageTarget, PageTarget.id == PageSubscription.target_id)
        .order_by(OperatorAccount.email, PageSubscription.id)
    )
    if operator_id is not None:
        stmt = stmt.where(PageSubscription.operator_id == operator_id)
    return session.execute(stmt).all()


def subscription(session: Session, subscription_id: int) -> PageSubscription | None:
    return session.get(PageSubscription, subscription_id)


def targets(session: Session) -> Sequence[PageTarget]:
    return session.scalars(select(PageTarget).order_by(PageTarget.name)).all()


def target(session: Session, target_id: int, *, for_update: bool = False) -> PageTarget | None:
    return session.get(PageTarget, target_id, with_for_update=for_update or None)


def target_named(session: Session, name: str) -> PageTarget | None:
    return session.scalars(select(PageTarget).where(PageTarget.name == name)).first()


def detach_target(session: Session, target_id: int, now: datetime) -> None:
    """Before a target goes: subscriptions that paged it page by email alone, or not at all."""
    session.execute(
        delete(PageSubscription).where(
            PageSubscription.target_id == target_id, PageSubscription.email.is_(False)
        )
    )
    session.execute(
        update(PageSubscription)
        .where(PageSubscription.target_id == target_id)
        .values(target_id=None, updated_at=now)
    )


def existing_banks(session: Session, ids: Iterable[str]) -> set[str]:
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    return set(session.scalars(select(Bank.id).where(Bank.id.in_(wanted))))


def all_banks(session: Session) -> Sequence[Row[str, str]]:
    return session.execute(select(Bank.id, Bank.name).order_by(Bank.id)).all()
