"""Drop-offs in what operators see: the dashboard counts one in its compartment, the reports,
charts and occupancy samples take them, analytics names them apart from deliveries, and an
operator cannot reissue a pickup code a drop-off does not have."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.analytics.service import SETTLE
from central.analytics.tasks import AnalyticsJobs
from central.config import CentralSettings
from central.models import AnalyticsEvent
from central.ops.insight.tasks import sample_occupancy
from tests.central.conftest import World
from tests.central.dropoffs.support import dropoff_event, make_dropoff, send
from tests.central.nodes.support import enroll
from tests.central.ops.support import ADMIN, fast, make_operator, sign_in
from tests.central.ops.test_insight import banks_of, sign_in_viewer
from tests.clock import FakeClock


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)  # cheap password hashing: sign-in is not what these tests measure


def dropoffs_in_every_state(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> dict[str, str]:
    node = enroll(client, sessions, clock)
    ids = {
        "inside": make_dropoff(client, world, "ACME-O1", sender={"email": "s@example.com"})["id"],
        "waiting": make_dropoff(client, world, "ACME-O2", size="M")["id"],
        "collected": make_dropoff(client, world, "ACME-O3", size="M")["id"],
    }
    send(
        node,
        dropoff_event("deposited", ids["inside"], clock(), "A01"),
        dropoff_event("deposited", ids["collected"], clock(), "A03"),
    )
    clock.advance(hours=2)
    send(node, dropoff_event("collected", ids["collected"], clock(), "A03"))
    return ids


def test_the_dashboard_counts_a_drop_off_in_its_compartment(
    client: TestClient,
    app: FastAPI,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    ids = dropoffs_in_every_state(client, world, sessions, clock)
    sign_in_viewer(app)

    overview = client.get("/ops/api/overview")
    assert overview.status_code == 200, overview.text
    classes = banks_of(overview.json())["NYC-1"]["classes"]
    assert classes["S"] == {
        "total": 2,
        "free": 1,
        "reserved": 0,
        "occupied": 1,
        "out_of_service": 0,
    }
    assert (classes["M"]["reserved"], classes["M"]["occupied"]) == (1, 0)

    bank = client.get("/ops/api/banks/NYC-1")
    assert bank.status_code == 200, bank.text
    grid = {c["label"]: c for c in bank.json()["compartments"]}
    parcel = grid["A01"]["parcel"]
    assert grid["A01"]["state"] == "occupied"
    assert parcel["reservation_id"] == ids["inside"] and parcel["status"] == "deposited"
    assert parcel["pickup_deadline"] is None and parcel["dwell_hours"] == 2.0
    assert grid["A03"]["state"] == "free" and grid["A03"]["parcel"] is None

    found = client.get("/ops/api/parcels", params={"tracking_number": "ACME-O3"}).json()
    (collected,) = found["parcels"]
    assert collected["status"] == "collected" and collected["pickup_deadline"] is None
    assert [h["status"] for h in collected["history"]] == ["reserved", "deposited", "collected"]
    assert (
        "s@example.com"
        not in client.get("/ops/api/parcels", params={"tracking_number": "ACME-O1"}).text
    )

    for path, params in (
        ("/ops/api/charts/throughput", {"hours": 24}),
        ("/ops/api/charts/dwell", {}),
        ("/ops/api/reports/daily", {"bank_id": "NYC-1"}),
        ("/ops/api/reports/daily.csv", {}),
    ):
        answer = client.get(path, params=params)
        assert answer.status_code == 200, (path, answer.text)
    with sessions.begin() as session:
        assert sample_occupancy(session, clock()) > 0


def test_an_operator_cannot_reissue_a_drop_offs_code(
    client: TestClient,
    app: FastAPI,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    ids = dropoffs_in_every_state(client, world, sessions, clock)
    make_operator(app, clock, ADMIN, "admin")
    csrf = sign_in(client, ADMIN)
    refused = client.post(
        f"/ops/api/reservations/{ids['inside']}/reissue-code",
        json={"reason": "the sender lost it"},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "not_a_delivery"


def test_analytics_names_drop_off_events_apart_from_deliveries(
    client: TestClient,
    app: FastAPI,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    ids = dropoffs_in_every_state(client, world, sessions, clock)
    clock.advance(seconds=SETTLE.total_seconds() + 60)
    jobs = AnalyticsJobs(app.state.sessions, app.state.keys, clock, None)
    jobs.fill()
    with sessions() as session:
        events = session.execute(
            select(AnalyticsEvent.reservation_id, AnalyticsEvent.event).order_by(AnalyticsEvent.id)
        ).all()
    by_dropoff = {
        name: [event for rid, event in events if rid == dropoff_id]
        for name, dropoff_id in ids.items()
    }
    assert by_dropoff == {
        "inside": ["Drop-off Created", "Drop-off Deposited"],
        "waiting": ["Drop-off Created"],
        "collected": ["Drop-off Created", "Drop-off Deposited", "Drop-off Collected"],
    }
    assert not [e for _, e in events if e.startswith(("Parcel", "Reservation"))]
