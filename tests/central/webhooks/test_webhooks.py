"""Webhooks out: registration, signatures, the durable outbox and retries."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.models import WebhookAttempt, WebhookDelivery
from central.webhooks import signing
from central.webhooks.tasks import WebhookDispatcher, retry_delay
from tests.central.conftest import World
from tests.clock import FakeClock

SECRET = "whsec-0123456789abcdef"


def register(client: TestClient, world: World, **body: Any) -> Any:
    payload = {"url": "http://carrier.test/hooks", "secret": SECRET} | body
    return client.post("/v1/webhooks", json=payload, headers=world.auth("acme"))


def reserve(client: TestClient, world: World, number: str) -> str:
    response = client.post(
        "/v1/reservations",
        json={"tracking_number": number, "bank_id": "NYC-1", "size": "S"},
        headers=world.auth("acme"),
    )
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


class Receiver:
    """A carrier's endpoint: down until `up_at`, then answering 200; records every request."""

    def __init__(self, clock: FakeClock, down_for: timedelta = timedelta(0)) -> None:
        self.clock = clock
        self.up_at = clock() + down_for
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.clock() < self.up_at:
            return httpx.Response(503, text="down for maintenance")
        return httpx.Response(200, json={"ok": True})


def dispatcher(app: FastAPI, clock: FakeClock, receiver: Receiver) -> WebhookDispatcher:
    client = httpx.Client(transport=httpx.MockTransport(receiver))
    return WebhookDispatcher(app.state.sessions, app.state.keys, client, clock)


def test_register_list_and_delete(client: TestClient, world: World) -> None:
    created = register(client, world, secret=None, events=["parcel.deposited"])
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["events"] == ["parcel.deposited"]
    assert len(body["secret"]) >= 32  # generated, shown once
    listed = client.get("/v1/webhooks", headers=world.auth("acme")).json()["items"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert listed[0]["secret"] is None
    assert client.get(f"/v1/webhooks/{body['id']}", headers=world.auth("fedex")).status_code == 404
    deleted = client.delete(f"/v1/webhooks/{body['id']}", headers=world.auth("acme"))
    assert deleted.status_code == 204
    assert client.get("/v1/webhooks", headers=world.auth("acme")).json()["items"] == []


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://carrier.test/x", "invalid_url"),
        ("http://user:pw@carrier.test/x", "invalid_url"),
        ("not a url at all", "invalid_url"),
    ],
)
def test_bad_webhook_urls_are_refused(
    client: TestClient, world: World, url: str, code: str
) -> None:
    response = register(client, world, url=url)
    assert response.status_code == 422
    assert response.json()["error"] == code


def test_signature_recipe() -> None:
    body = b'{"id":"evt_1"}'
    header = signing.sign(SECRET, body, 1_700_000_000)
    t, v1 = header.split(",")
    assert t == "t=1700000000"
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert v1 == f"v1={expected}"
    assert signing.verify(SECRET, body, header, now=1_700_000_010)
    assert not signing.verify(SECRET, body + b" ", header, now=1_700_000_010)
    assert not signing.verify("another-secret-value", body, header, now=1_700_000_010)
    assert not signing.verify(SECRET, body, header, now=1_700_000_000 + 3600)  # replayed late


def test_receiver_down_for_an_hour_gets_every_event_with_stable_ids(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    register(client, world)
    rids = [reserve(client, world, f"ACME-W{n}") for n in range(2)]
    client.delete(f"/v1/reservations/{rids[0]}", headers=world.auth("acme"))
    receiver = Receiver(clock, down_for=timedelta(hours=1))
    worker = dispatcher(app, clock, receiver)

    for _ in range(150):  # two and a half hours, a minute at a time
        worker.run_once()
        clock.advance(minutes=1)

    bodies: dict[str, set[bytes]] = defaultdict(set)
    for request in receiver.requests:
        payload = json.loads(request.content)
        bodies[payload["id"]].add(request.content)
        # Each attempt is signed afresh over the same bytes, and verifies.
        header = request.headers[signing.HEADER]
        timestamp = int(header.split(",")[0].removeprefix("t="))
        assert signing.verify(SECRET, request.content, header, now=timestamp)
    delivered_types = sorted(json.loads(next(iter(b)))["type"] for b in bodies.values())
    assert delivered_types == [
        "reservation.cancelled",
        "reservation.created",
        "reservation.created",
    ]
    assert all(len(variants) == 1 for variants in bodies.values())  # same bytes, same id
    assert len(receiver.requests) > 3  # there were retries while it was down

    with app.state.sessions() as session:
        deliveries = session.scalars(select(WebhookDelivery)).all()
        assert {d.status for d in deliveries} == {"delivered"}
        attempts = session.scalars(select(WebhookAttempt)).all()
        assert len(attempts) == len(receiver.requests)  # every attempt recorded
        assert sum(1 for a in attempts if a.status_code == 200) == 3
        assert all(
            d.delivered_at and d.delivered_at >= d.created_at + timedelta(hours=1)
            for d in deliveries
        )


def test_delivery_gives_up_only_after_the_retry_window(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    register(client, world)
    start = clock()
    reserve(client, world, "ACME-DOWN")
    receiver = Receiver(clock, down_for=timedelta(days=30))
    worker = dispatcher(app, clock, receiver)
    for _ in range(80):
        worker.run_once()
        clock.advance(hours=1)
    with app.state.sessions() as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
        assert delivery.status == "failed"
        attempts = session.scalars(select(WebhookAttempt)).all()
        assert max(a.attempted_at for a in attempts) - start >= timedelta(hours=24)


def test_backoff_grows_and_is_capped() -> None:
    delays = [retry_delay(n, jitter=lambda: 0.0) for n in range(1, 12)]
    assert delays[0] == timedelta(seconds=30)
    assert delays[1] == timedelta(seconds=60)
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == timedelta(hours=1)


def test_unsubscribed_events_and_other_carriers_get_nothing(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    register(client, world, events=["parcel.deposited"])
    client.post(
        "/v1/webhooks",
        json={"url": "http://fedex.test/hooks", "secret": SECRET},
        headers=world.auth("fedex"),
    )
    reserve(client, world, "ACME-Q1")
    with app.state.sessions() as session:
        assert session.scalars(select(WebhookDelivery)).all() == []


def test_outbox_bodies_are_sealed(client: TestClient, world: World, app: FastAPI) -> None:
    register(client, world)
    reserve(client, world, "ACME-SEAL")
    with app.state.sessions() as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
        assert "ACME-SEAL" not in delivery.body_sealed
        assert "ACME-SEAL" in app.state.keys.decrypt(delivery.body_sealed)
