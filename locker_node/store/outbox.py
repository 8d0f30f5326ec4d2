"""The audit log and the outbox: what happened on the node, and what central is to hear of it.

`record` is the one way an event is kept: its audit row and its outbox row, written from the
event's typed model in the caller's transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from locker_node.store.rows import changed, every, one
from locker_node.store.schema import audit_log, outbox
from locker_wire.events import NodeEventModel, parse_event


def append_audit(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    reason: str = "",
    compartment: str | None = None,
    command_id: str | None = None,
    parcel_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(audit_log).values(
            at=at,
            actor=actor[:80],
            action=action[:40],
            reason=reason[:200],
            compartment=compartment,
            command_id=command_id,
            parcel_id=parcel_id,
            detail=None if detail is None else json.dumps(detail, sort_keys=True, default=str),
        )
    )


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    compartment: str | None
    reason: str
    command_id: str | None
    parcel_id: str | None
    detail: str | None


def audit_entries(conn: Connection, *, compartment: str | None = None) -> list[AuditEntry]:
    query = select(audit_log).order_by(audit_log.c.id)
    if compartment is not None:
        query = query.where(audit_log.c.compartment == compartment)
    return every(AuditEntry, conn.execute(query))


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    event_id: str
    type: str
    created_at: datetime
    payload: str
    sent_at: datetime | None

    @property
    def body(self) -> dict[str, Any]:
        """The stored envelope: id, type, bank_id, occurred_at and the event's data."""
        body = json.loads(self.payload)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise ValueError(f"outbox event {self.event_id} has no data object")
        return body

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body["data"]
        return data

    @property
    def occurred_at(self) -> str:
        return str(self.body["occurred_at"])

    def event(self) -> NodeEventModel:
        """The stored event as its typed model (`KeyError` or `ValueError` when it cannot be)."""
        return parse_event(self.type, self.data)


def record(
    conn: Connection,
    event: NodeEventModel,
    *,
    at: datetime,
    bank_id: str,
    actor: str | None = None,
    reason: str = "",
    command_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> str:
    """Keep one event in the caller's transaction: its audit row (when an `actor` did it and the
    event names an audit action) and its outbox row, under a node-made UUID that central uses
    to apply it at most once. Returns that id."""
    if actor is not None and event.action:
        append_audit(
            conn,
            at=at,
            actor=actor,
            action=event.action,
            reason=reason,
            compartment=getattr(event, "compartment", None),
            command_id=command_id,
            parcel_id=getattr(event, "parcel_id", None),
            detail=detail,
        )
    event_id = str(uuid.uuid4())
    # The envelope of the node-central wire's `NodeEvent`, plus the bank it happened at.
    body = {
        "id": event_id,
        "type": event.event_type,
        "bank_id": bank_id,
        "occurred_at": at.isoformat(),
        "data": event.model_dump(mode="json"),
    }
    conn.execute(
        insert(outbox).values(
            event_id=event_id,
            type=event.event_type,
            created_at=at,
            payload=json.dumps(body, sort_keys=True),
        )
    )
    return event_id


def outbox_events(
    conn: Connection, *, after_seq: int = 0, limit: int | None = None, unsent_only: bool = False
) -> list[OutboxEvent]:
    query = select(outbox).where(outbox.c.seq > after_seq).order_by(outbox.c.seq)
    if unsent_only:
        query = query.where(outbox.c.sent_at.is_(None))
    if limit is not None:
        query = query.limit(limit)
    return every(OutboxEvent, conn.execute(query))


def mark_events_sent(conn: Connection, event_ids: Sequence[str], now: datetime) -> int:
    return changed(
        conn.execute(
            update(outbox)
            .where(and_(outbox.c.event_id.in_(list(event_ids)), outbox.c.sent_at.is_(None)))
            .values(sent_at=now)
        )
    )


def outbox_depth(conn: Connection) -> int:
    """Events not yet delivered to central."""
    query = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
    return int(conn.execute(query).scalar_one())


def count_events_by_type(conn: Connection, types: Sequence[str]) -> dict[str, int]:
    """Events ever queued of each type (the outbox keeps every event): metrics counters."""
    query = (
        select(outbox.c.type, func.count())
        .where(outbox.c.type.in_(list(types)))
        .group_by(outbox.c.type)
    )
    counts = dict.fromkeys(types, 0)
    counts.update({str(event_type): int(n) for event_type, n in conn.execute(query)})
    return counts


def count_audit_since(conn: Connection, action: str, since: datetime) -> int:
    query = (
        select(func.count())
        .select_from(audit_log)
        .where(and_(audit_log.c.action == action, audit_log.c.at >= since))
    )
    return int(conn.execute(query).scalar_one())


def audit_for_command(conn: Connection, action: str, command_id: str) -> AuditEntry | None:
    query = (
        select(audit_log)
        .where(and_(audit_log.c.action == action, audit_log.c.command_id == command_id))
        .order_by(audit_log.c.id.desc())
        .limit(1)
    )
    return one(AuditEntry, conn.execute(query).first())
