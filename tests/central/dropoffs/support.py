"""Helpers for the drop-off tests: making drop-offs, a node's drop-off events, what was queued."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.models import BankCapacity, Reservation, WebhookDelivery
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient

HOOK_SECRET = "whsec-0123456789abcdef"


def make_dropoff(
    client: TestClient,
    world: World,
    number: str,
    *,
    carrier: str = "acme",
    bank_id: str = "NYC-1",
    size: str | None = "S",
    expect: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    """POST /v1/dropoffs; the answer's body, after checking its status."""
    body: dict[str, Any] = {"tracking_number": number, "bank_id": bank_id, **extra}
    if size is not None:
        body["size"] = size
    response = client.post("/v1/dropoffs", json=body, headers=world.auth(carrier))
    assert response.status_code == expect, response.text
    answer: dict[str, Any] = response.json()
    return answer


def register_hook(client: TestClient, world: World, carrier: str = "acme") -> None:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": HOOK_SECRET},
        headers=world.auth(carrier),
    )
    assert hook.status_code == 201, hook.text


def webhooks(app: FastAPI) -> list[dict[str, Any]]:
    """Every webhook body queued so far, in order, opened."""
    with app.state.sessions() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        return [json.loads(app.state.keys.decrypt(row.body_sealed)) for row in rows]


def available(sessions: sessionmaker[Session], bank_id: str = "NYC-1", size: str = "S") -> int:
    with sessions() as session:
        row = session.get(BankCapacity, (bank_id, size))
        assert row is not None
        return row.available


def stored(sessions: sessionmaker[Session], dropoff_id: str) -> Reservation:
    with sessions() as session:
        row = session.get(Reservation, dropoff_id)
        assert row is not None
        session.expunge(row)
        return row


def dropoff_event(
    kind: str,
    reservation_id: str,
    at: datetime,
    compartment: str = "A01",
) -> dict[str, Any]:
    """A node's `dropoff.deposited` or `dropoff.collected` event, as the sync client sends it."""
    return {
        "id": str(uuid.uuid4()),
        "type": f"dropoff.{kind}",
        "occurred_at": at.isoformat(),
        "data": {"reservation_id": reservation_id, "compartment": compartment},
    }


def send(node: NodeClient, *events: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Post a signed batch; each event's (status, error)."""
    response = node.post("/v1/node/events", {"events": list(events)})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [e["id"] for e in events]
    return [(r["status"], r["error"]) for r in results]
