"""The scheduler and drop-offs: an unused drop-off expires with its hold (unit released, code
and sender wiped); a drop-off in the locker is never reminded, expired or sent back."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.models import Notice, ReservationEvent
from central.scheduler import Jobs
from tests.central.conftest import World
from tests.central.dropoffs.support import (
    available,
    dropoff_event,
    make_dropoff,
    send,
    stored,
    webhooks,
)
from tests.central.nodes.support import enroll, reserve
from tests.central.nodes.test_events import deposit
from tests.central.nodes.test_events import send as send_parcel_events
from tests.clock import FakeClock


def jobs_for(app: FastAPI, clock: FakeClock) -> Jobs:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings: CentralSettings = app.state.settings
    return Jobs(app.state.sessions, app.state.keys, clock, http, settings)


def test_an_unused_drop_off_expires_and_frees_its_unit(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    free = available(sessions)
    body = make_dropoff(client, world, "ACME-E1", hold_hours=2, sender={"email": "s@example.com"})
    keep = make_dropoff(client, world, "ACME-E2", hold_hours=5)
    jobs = jobs_for(app, clock)

    clock.advance(hours=1)
    assert jobs.expire_reservations() == 0
    clock.advance(hours=1, seconds=1)
    assert jobs.expire_reservations() == 1
    assert jobs.expire_reservations() == 0

    expired = client.get(f"/v1/dropoffs/{body['id']}", headers=world.auth("acme")).json()
    assert expired["status"] == "expired" and expired["dropoff_code"] is None
    last = expired["history"][-1]
    assert (last["type"], last["actor"], last["from_status"]) == ("expired", "system", "reserved")
    kept = client.get(f"/v1/dropoffs/{keep['id']}", headers=world.auth("acme")).json()
    assert kept["status"] == "reserved"
    assert available(sessions) == free - 1
    row = stored(sessions, body["id"])
    assert row.recipient is None and row.pickup_secret_sealed is None
    assert row.dropoff_code_hash is None and row.dropoff_qr_hash is None

    # The node hears of it in its feed: expired, with no code to accept any more.
    feed = node.get("/v1/node/feed").json()["reservations"]
    (item,) = [r for r in feed if r["id"] == body["id"]]
    assert item["status"] == "expired" and item["dropoff_code"] is None


def test_a_drop_off_in_the_locker_has_no_pickup_deadline_to_pass(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    dropoff = make_dropoff(client, world, "ACME-K1", sender={"email": "s@example.com"})["id"]
    delivery = reserve(client, world, "ACME-K2")
    assert send(node, dropoff_event("deposited", dropoff, clock(), "A01")) == [("applied", None)]
    assert send_parcel_events(node, deposit(node, delivery, clock(), "A02")) == [("applied", None)]
    jobs = jobs_for(app, clock)

    clock.advance(hours=60)
    assert jobs.send_reminders() == 1  # the delivery's, 24 h before its deadline
    clock.advance(hours=20)
    assert jobs.expire_pickups() == 1  # the delivery's
    clock.advance(days=30)
    assert jobs.send_reminders() == 0 and jobs.expire_pickups() == 0
    assert jobs.expire_reservations() == 0

    row = stored(sessions, dropoff)
    assert row.status == "deposited" and row.pickup_deadline is None
    assert stored(sessions, delivery).status == "expired"
    with sessions() as session:
        types = session.scalars(
            select(ReservationEvent.type).where(ReservationEvent.reservation_id == dropoff)
        ).all()
        kinds = session.scalars(select(Notice.kind).where(Notice.reservation_id == dropoff)).all()
    assert list(types) == ["created", "deposited"]
    assert list(kinds) == ["dropoff_code"]
    assert not [w for w in webhooks(app) if w["data"]["id"] == dropoff]  # no endpoint: none
    as_reservation = client.get(f"/v1/reservations/{dropoff}", headers=world.auth("acme")).json()
    assert as_reservation["pickup_deadline"] is None and as_reservation["kind"] == "dropoff"
    extended = client.post(
        f"/v1/reservations/{dropoff}/extend", json={"hours": 5}, headers=world.auth("acme")
    )
    assert extended.status_code == 409 and extended.json()["error"] == "not_extendable"
