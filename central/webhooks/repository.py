"""Queries for webhook endpoints, the delivery outbox and attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from central.bulk import BulkInsert
from central.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


def active_endpoints(session: Session, carrier_id: str) -> Sequence[WebhookEndpoint]:
    return session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.carrier_id == carrier_id, WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).all()


_ENDPOINTS = WebhookEndpoint.__table__
_SUBSCRIPTIONS = select(_ENDPOINTS.c.id, _ENDPOINTS.c.event_types).where(
    _ENDPOINTS.c.carrier_id == bindparam("p_carrier"), _ENDPOINTS.c.deleted_at.is_(None)
)


def subscriptions(session: Session, carrier_id: str) -> list[tuple[str, list[str]]]:
    """The carrier's live endpoints with the event types each wants (Core: runs on every event)."""
    rows = session.connection().execute(_SUBSCRIPTIONS, {"p_carrier": carrier_id})
    return sorted((row.id, list(row.event_types)) for row in rows)


def subscribed_endpoint_ids(session: Session, carrier_id: str, event_type: str) -> list[str]:
    """Ids of the carrier's endpoints that want this event type."""
    return [id_ for id_, types in subscriptions(session, carrier_id) if event_type in types]


def get_endpoint(session: Session, carrier_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.carrier_id != carrier_id or endpoint.deleted_at is not None:
        return None
    return endpoint


def add(session: Session, row: WebhookEndpoint | WebhookDelivery | WebhookAttempt) -> None:
    session.add(row)


def add_deliveries(
    session: Session,
    event_id: str,
    event_type: str,
    endpoint_ids: Sequence[str],
    body_sealed: str,
    now: datetime,
) -> None:
    """One pending delivery of the event for each endpoint, due now."""
    for endpoint_id in endpoint_ids:
        session.add(
            WebhookDelivery(
                event_id=event_id,
                event_type=event_type,
                endpoint_id=endpoint_id,
                body_sealed=body_sealed,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )


_INSERT_DELIVERIES = BulkInsert(
    cast(Table, WebhookDelivery.__table__),
    (
        "event_id",
        "event_type",
        "endpoint_id",
        "body_sealed",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
    ),
)


def delivery_rows(
    event_id: str,
    event_type: str,
    endpoint_ids: Sequence[str],
    body_sealed: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows `add_deliveries` adds, as plain values for `insert_deliveries`."""
    return [
        {
            "event_id": event_id,
            "event_type": event_type,
            "endpoint_id": endpoint_id,
            "body_sealed": body_sealed,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for endpoint_id in endpoint_ids
    ]


def insert_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Many events' deliveries in one statement, in the order given."""
    _INSERT_DELIVERIES.run(session, rows)


def delete_endpoint(session: Session, endpoint_id: str, now: datetime) -> None:
    session.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(deleted_at=now)
    )
    # Nothing more will reach a deleted endpoint; its pending deliveries end here, recorded.
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(status="cancelled", last_error="endpoint deleted")
    )


def due_deliveries(session: Session, now: datetime, limit: int) -> Sequence[WebhookDelivery]:
    """Due deliveries, locked for the caller's claim. On PostgreSQL rows another host is
    claiming are skipped (`FOR UPDATE SKIP LOCKED`): every host's dispatcher takes its own share
    and none takes a row twice; SQLite's single writer does the same by itself."""
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).all()


def endpoints_by_id(session: Session, ids: set[str]) -> dict[str, WebhookEndpoint]:
    if not ids:
        return {}
    rows = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id.in_(ids)))
    return {row.id: row for row in rows}


def attempts_of(session: Session, delivery_id: int) -> Sequence[WebhookAttempt]:
    return session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.id)
    ).all()


def deliveries_of(session: Session, endpoint_id: str, limit: int = 50) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    ).all()
