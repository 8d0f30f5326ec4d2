"""Drop-off webhooks: created, deposited, collected, expired and cancelled, in the reservation
events' envelope and signature, carrying the drop-off without its code."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.reservations.transitions import expire_holds
from central.webhooks import signing
from central.webhooks.tasks import WebhookDispatcher
from tests.central.conftest import World
from tests.central.dropoffs.support import (
    HOOK_SECRET,
    dropoff_event,
    make_dropoff,
    register_hook,
    send,
    webhooks,
)
from tests.central.nodes.support import enroll
from tests.clock import FakeClock

DROPOFF_FIELDS = {
    "id",
    "kind",
    "status",
    "carrier",
    "tracking_number",
    "bank",
    "size",
    "compartment",
    "reserved_until",
    "created_at",
    "history",
}


def delivered(app: FastAPI, clock: FakeClock) -> list[httpx.Request]:
    """Run the webhook dispatcher against a carrier endpoint that takes everything."""
    received: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(endpoint))
    WebhookDispatcher(app.state.sessions, app.state.keys, client, clock).run_once()
    return received


def test_each_step_is_a_signed_event_without_the_code(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    register_hook(client, world)
    node = enroll(client, sessions, clock)
    auth = world.auth("acme")
    made = make_dropoff(client, world, "ACME-W1", sender={"email": "s@example.com"})
    cancelled = make_dropoff(client, world, "ACME-W2")
    assert client.delete(f"/v1/dropoffs/{cancelled['id']}", headers=auth).status_code == 200
    send(node, dropoff_event("deposited", made["id"], clock(), "A01"))
    send(node, dropoff_event("collected", made["id"], clock(), "A01"))

    requests = delivered(app, clock)
    bodies: list[dict[str, Any]] = []
    for request in requests:
        header = request.headers[signing.HEADER]
        assert signing.verify(HOOK_SECRET, request.content, header, now=clock().timestamp())
        bodies.append(json.loads(request.content))
    assert [(b["type"], b["data"]["id"]) for b in bodies] == [
        ("dropoff.created", made["id"]),
        ("dropoff.created", cancelled["id"]),
        ("dropoff.cancelled", cancelled["id"]),
        ("dropoff.deposited", made["id"]),
        ("dropoff.collected", made["id"]),
    ]
    for body in bodies:
        assert set(body) == {"id", "type", "created_at", "data"}
        assert set(body["data"]) == DROPOFF_FIELDS
        assert body["data"]["kind"] == "dropoff"
        raw = json.dumps(body)
        assert made["dropoff_code"] not in raw and made["qr_payload"] not in raw
        assert cancelled["dropoff_code"] not in raw and "s@example.com" not in raw
    assert len({b["id"] for b in bodies}) == len(bodies)
    assert bodies[3]["data"]["status"] == "deposited"
    assert bodies[3]["data"]["compartment"] == "A01"
    assert bodies[4]["data"]["history"][-1]["type"] == "collected"


def test_an_unused_drop_off_expires_with_its_event(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    register_hook(client, world)
    did = make_dropoff(client, world, "ACME-W3", hold_hours=2)["id"]
    clock.advance(hours=2, seconds=1)
    with app.state.sessions.begin() as session:
        assert expire_holds(Ctx(session=session, keys=app.state.keys, now=clock())) == 1
    last = webhooks(app)[-1]
    assert last["type"] == "dropoff.expired" and last["data"]["id"] == did
    assert last["data"]["status"] == "expired"


def test_endpoints_subscribe_to_drop_off_events_by_name(
    client: TestClient, world: World, app: FastAPI
) -> None:
    answer = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/drop", "events": ["dropoff.created", "dropoff.expired"]},
        headers=world.auth("acme"),
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["events"] == ["dropoff.created", "dropoff.expired"]
    everything = client.post(
        "/v1/webhooks", json={"url": "http://carrier.test/all"}, headers=world.auth("acme")
    ).json()
    assert {
        "dropoff.created",
        "dropoff.deposited",
        "dropoff.collected",
        "dropoff.expired",
        "dropoff.cancelled",
    } <= set(everything["events"])
    unknown = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/x", "events": ["dropoff.lost"]},
        headers=world.auth("acme"),
    )
    assert unknown.status_code == 422

    made = make_dropoff(client, world, "ACME-W4")
    client.delete(f"/v1/dropoffs/{made['id']}", headers=world.auth("acme"))
    # The first endpoint wants only `dropoff.created` of these; the second wants both.
    assert sorted(w["type"] for w in webhooks(app)) == [
        "dropoff.cancelled",
        "dropoff.created",
        "dropoff.created",
    ]
