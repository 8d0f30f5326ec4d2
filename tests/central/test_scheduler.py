"""Scheduled jobs: reservation expiry, and one scheduler per deployment through a lease."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from central.config import CentralSettings
from central.models import BankCapacity
from central.scheduler import Jobs
from tests.central.conftest import World
from tests.clock import FakeClock


def jobs_for(app: FastAPI, clock: FakeClock) -> Jobs:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings: CentralSettings = app.state.settings
    return Jobs(app.state.sessions, app.state.keys, clock, http, settings)


def test_holds_expire_after_reserved_until_and_free_their_unit(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    auth = world.auth("acme")
    body = {"tracking_number": "ACME-E1", "bank_id": "NYC-1", "size": "S", "hold_hours": 2}
    rid = client.post("/v1/reservations", json=body, headers=auth).json()["id"]
    keep = client.post(
        "/v1/reservations",
        json=body | {"tracking_number": "ACME-E2", "hold_hours": 5},
        headers=auth,
    ).json()["id"]
    jobs = jobs_for(app, clock)

    clock.advance(hours=1)
    assert jobs.expire_reservations() == 0
    clock.advance(hours=1, seconds=1)
    assert jobs.expire_reservations() == 1
    assert jobs.expire_reservations() == 0  # nothing twice

    expired = client.get(f"/v1/reservations/{rid}", headers=auth).json()
    assert expired["status"] == "expired"
    last = expired["history"][-1]
    assert (last["type"], last["actor"], last["from_status"]) == ("expired", "system", "reserved")
    assert client.get(f"/v1/reservations/{keep}", headers=auth).json()["status"] == "reserved"
    with app.state.sessions() as session:
        capacity = session.get(BankCapacity, ("NYC-1", "S"))
        assert capacity is not None and capacity.available == 1


def test_only_one_scheduler_holds_the_lease(app: FastAPI, clock: FakeClock) -> None:
    first, second = jobs_for(app, clock), jobs_for(app, clock)
    assert first.is_leader()
    assert not second.is_leader()
    clock.advance(seconds=10)
    assert first.is_leader()  # renewing
    assert not second.is_leader()
    clock.advance(seconds=31)  # the first one died: its lease lapses
    assert second.is_leader()
    assert not first.is_leader()


def test_pickup_deadline_reminder_then_expiry(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    from sqlalchemy import select

    from central.models import WebhookDelivery
    from tests.central.reservations.test_api import deposit

    auth = world.auth("acme")
    client.post("/v1/webhooks", json={"url": "http://carrier.test/h"}, headers=auth)
    body = {"tracking_number": "ACME-P1", "bank_id": "NYC-1", "size": "S"}
    rid = client.post("/v1/reservations", json=body, headers=auth).json()["id"]
    deposit(app.state.sessions, clock, rid)  # pickup deadline: 72 h from now
    jobs = jobs_for(app, clock)

    clock.advance(hours=47)
    assert jobs.send_reminders() == 0  # 25 h left: not yet
    clock.advance(hours=1, minutes=1)
    assert jobs.send_reminders() == 1  # 24 h before the deadline
    assert jobs.send_reminders() == 0  # once only
    assert jobs.expire_pickups() == 0

    clock.advance(hours=24)
    assert jobs.expire_pickups() == 1
    got = client.get(f"/v1/reservations/{rid}", headers=auth).json()
    assert got["status"] == "expired"
    assert [h["type"] for h in got["history"]][-2:] == ["reminder", "expired"]
    assert got["history"][-1]["actor"] == "system"
    with app.state.sessions() as session:
        types = [d.event_type for d in session.scalars(select(WebhookDelivery))]
        assert types.count("parcel.reminder") == 1
        assert types.count("parcel.expired") == 1
        # The parcel is still in its compartment until the courier takes it back.
        capacity = session.get(BankCapacity, ("NYC-1", "S"))
        assert capacity is not None and capacity.available == 1
