"""Helpers for the bank settings tests: a signed-in admin, a node, capacity and audit reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.models import BankCapacity, Compartment, OperatorAuditEntry, WebhookDelivery
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll
from tests.central.ops.support import ADMIN, VIEWER, make_operator, sign_in
from tests.clock import FakeClock

PICKUP_CODE = "73915824"
QR_PAYLOAD = "qr_Zx9fK2mQ7vLp4TnW8sYb3RcJ6hDg1eUa"
WEEKDAYS_8_TO_20 = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


@dataclass
class Operator:
    """A signed-in operator's client: every call carries the session's CSRF token."""

    client: TestClient
    csrf: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(
            method,
            path,
            json=body,
            headers={"X-CSRF-Token": self.csrf} if self.csrf else {},
        )


@dataclass
class Setup:
    admin: Operator
    node: NodeClient


def set_up(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    *,
    webhooks_for: tuple[str, ...] = ("acme",),
) -> Setup:
    """Operators (an admin signed in, a viewer), NYC-1's node, and webhook endpoints."""
    make_operator(app, clock, ADMIN, "admin")
    make_operator(app, clock, VIEWER, "viewer")
    for carrier in webhooks_for:
        hook = client.post(
            "/v1/webhooks",
            json={"url": f"http://{carrier}.test/hooks", "secret": "whsec-0123456789abcdef"},
            headers=world.auth(carrier),
        )
        assert hook.status_code == 201, hook.text
    node = enroll(client, sessions, clock)
    return Setup(Operator(client, sign_in(client, ADMIN)), node)


def as_viewer(app: FastAPI) -> Operator:
    viewer = TestClient(app)
    return Operator(viewer, sign_in(viewer, VIEWER))


def capacity(sessions: sessionmaker[Session], bank_id: str = "NYC-1") -> dict[str, tuple[int, ...]]:
    """(total, available, accessible_total, accessible_available) per class."""
    with sessions() as session:
        return {
            row.size: (row.total, row.available, row.accessible_total, row.accessible_available)
            for row in session.scalars(select(BankCapacity).where(BankCapacity.bank_id == bank_id))
        }


def state_of(sessions: sessionmaker[Session], label: str, bank_id: str = "NYC-1") -> str:
    with sessions() as session:
        return session.scalars(
            select(Compartment.state).where(
                Compartment.bank_id == bank_id, Compartment.label == label
            )
        ).one()


def audit_rows(sessions: sessionmaker[Session]) -> list[tuple[int | None, str, str, str | None]]:
    """(operator id, action, outcome, target id) of every audit entry, oldest first."""
    with sessions() as session:
        return [
            (row.operator_id, row.action, row.outcome, row.target_id)
            for row in session.scalars(
                select(OperatorAuditEntry)
                .where(OperatorAuditEntry.action != "login")
                .order_by(OperatorAuditEntry.id)
            )
        ]


def audit_details(sessions: sessionmaker[Session], action: str) -> list[dict[str, Any] | None]:
    with sessions() as session:
        return [
            row.detail
            for row in session.scalars(
                select(OperatorAuditEntry)
                .where(OperatorAuditEntry.action == action)
                .order_by(OperatorAuditEntry.id)
            )
        ]


def webhook_bodies(app: FastAPI, sessions: sessionmaker[Session], event_type: str) -> list[Any]:
    """The decrypted bodies of the queued deliveries of one event type, one per event."""
    import json

    with sessions() as session:
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_type == event_type)
            .order_by(WebhookDelivery.id)
        ).all()
        seen: dict[str, Any] = {}
        for row in rows:
            seen.setdefault(row.event_id, json.loads(app.state.keys.decrypt(row.body_sealed)))
        return list(seen.values())


def reserve(
    client: TestClient,
    world: World,
    number: str,
    *,
    carrier: str = "acme",
    bank_id: str = "NYC-1",
    size: str = "S",
    **extra: Any,
) -> Any:
    return client.post(
        "/v1/reservations",
        json={"tracking_number": number, "bank_id": bank_id, "size": size, **extra},
        headers=world.auth(carrier),
    )


def deposit_event(
    node: NodeClient, reservation_id: str, at: datetime, compartment: str
) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    return node_event(
        "parcel.deposited",
        {
            "reservation_id": reservation_id,
            "compartment": compartment,
            "sealed_pickup_code": node.sealed(event_id, "pickup_code", PICKUP_CODE),
            "sealed_qr_payload": node.sealed(event_id, "qr_payload", QR_PAYLOAD),
        },
        at,
        event_id,
    )


def node_event(
    kind: str, data: dict[str, Any], at: datetime, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": kind,
        "occurred_at": at.isoformat(),
        "data": data,
    }


def send(node: NodeClient, *events: dict[str, Any]) -> list[tuple[str, str | None]]:
    response = node.post("/v1/node/events", {"events": list(events)})
    assert response.status_code == 200, response.text
    return [(r["status"], r["error"]) for r in response.json()["results"]]


def feed_bank(node: NodeClient, version: int | None = None) -> Any:
    query = "/v1/node/feed?courier_codes=false" + (
        f"&settings_version={version}" if version is not None else ""
    )
    response = node.get(query)
    assert response.status_code == 200, response.text
    return response.json()["bank"]
