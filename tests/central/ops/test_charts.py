"""Chart buckets: events land in whole UTC hours, and every event of a bucket is counted."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from central.config import CentralSettings
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, app_sessions, enroll
from tests.central.nodes.test_events import deposit, event, send
from tests.central.ops.support import VIEWER, fast, make_operator, sign_in
from tests.clock import FakeClock


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)  # cheap password hashing: sign-in is not what these tests measure


def reserve(client: TestClient, world: World, number: str, *, size: str) -> str:
    body = {"tracking_number": number, "bank_id": "NYC-1", "size": size}
    response = client.post("/v1/reservations", json=body, headers=world.auth("acme"))
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def at(clock: FakeClock, when: datetime) -> datetime:
    """Move the clock to `when`: central stamps a transition with its own time of receipt."""
    assert when >= clock()
    return clock.set(when)


def deposit_at(node: NodeClient, clock: FakeClock, when: datetime, rid: str, label: str) -> None:
    assert send(node, deposit(node, rid, at(clock, when), label)) == [("applied", None)]


def pick_up_at(node: NodeClient, clock: FakeClock, when: datetime, rid: str) -> None:
    picked_up = event("parcel.picked_up", {"reservation_id": rid}, at(clock, when))
    assert send(node, picked_up) == [("applied", None)]


def signed_in_get(
    client: TestClient, app: FastAPI, clock: FakeClock, path: str, **params: Any
) -> Any:
    make_operator(app, clock, VIEWER, "viewer")
    sign_in(client, VIEWER)
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_throughput_counts_every_event_of_an_hour(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    # NYC-1 has five compartments: S A01-A02, M A03-A04, L A05.
    slots = {"A01": "S", "A02": "S", "A03": "M", "A04": "M", "A05": "L"}
    node = enroll(client, app_sessions(app), clock)
    ids = {
        label: reserve(client, world, f"ACME-T{label}", size=size) for label, size in slots.items()
    }
    start = clock().replace(minute=0, second=0, microsecond=0)  # 15:00 UTC
    one, two = start + timedelta(hours=1), start + timedelta(hours=2)
    # Minutes and seconds apart within an hour, up to its last second and from its first.
    deposit_at(node, clock, start + timedelta(minutes=3, seconds=7), ids["A01"], "A01")
    deposit_at(node, clock, start + timedelta(minutes=17, seconds=41), ids["A02"], "A02")
    pick_up_at(node, clock, start + timedelta(minutes=40, seconds=2), ids["A01"])
    deposit_at(node, clock, one - timedelta(seconds=1), ids["A03"], "A03")
    deposit_at(node, clock, one, ids["A04"], "A04")
    pick_up_at(node, clock, one + timedelta(minutes=12, seconds=30), ids["A02"])
    deposit_at(node, clock, one + timedelta(minutes=29, microseconds=250_000), ids["A05"], "A05")
    pick_up_at(node, clock, two + timedelta(minutes=5), ids["A03"])
    at(clock, two + timedelta(minutes=20))

    series = signed_in_get(client, app, clock, "/ops/api/charts/throughput", hours=24)["series"]

    assert len(series) == 24
    assert series[-1]["hour"] == two.isoformat()
    busy = {
        p["hour"]: (p["deposits"], p["pickups"]) for p in series if p["deposits"] or p["pickups"]
    }
    assert busy == {
        start.isoformat(): (3, 1),
        one.isoformat(): (2, 1),
        two.isoformat(): (0, 1),
    }
    # The same buckets through the per-bank query, which joins the reservations.
    nyc1 = client.get("/ops/api/charts/throughput", params={"hours": 24, "bank_id": "NYC-1"})
    assert nyc1.json()["series"] == series
    nyc2 = client.get("/ops/api/charts/throughput", params={"hours": 24, "bank_id": "NYC-2"})
    assert not [p for p in nyc2.json()["series"] if p["deposits"] or p["pickups"]]


def test_dwell_of_exactly_one_hour_is_in_the_one_to_six_hour_bucket(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    node = enroll(client, app_sessions(app), clock)
    exact = reserve(client, world, "ACME-E1", size="S")
    short = reserve(client, world, "ACME-E2", size="S")
    start = clock()
    deposit_at(node, clock, start, exact, "A01")
    deposit_at(node, clock, start + timedelta(minutes=1), short, "A02")
    pick_up_at(node, clock, start + timedelta(hours=1), exact)  # 1 h to the microsecond
    pick_up_at(node, clock, start + timedelta(hours=1, seconds=59), short)  # 59 min 59 s

    buckets = signed_in_get(client, app, clock, "/ops/api/charts/dwell")["buckets"]

    assert {b["label"]: b["count"] for b in buckets if b["count"]} == {"< 1 h": 1, "1-6 h": 1}
