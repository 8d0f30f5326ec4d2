"""Maintenance of a bank or one compartment: allocation skips it, carriers with parcels there
hear of it, its node's feed says so, and leaving it gives everything back exactly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from central.banks.settings import alert_overdue_maintenance
from central.cli import app as cli
from central.config import CentralSettings
from central.models import Alert
from tests.central.banks.settings_support import (
    as_viewer,
    audit_details,
    audit_rows,
    capacity,
    deposit_event,
    feed_bank,
    node_event,
    reserve,
    send,
    set_up,
    state_of,
    webhook_bodies,
)
from tests.central.conftest import TEST_SECRET, World
from tests.central.ops.support import fast
from tests.clock import FakeClock

BANK = "/ops/api/banks/NYC-1"
REASON = "replacing the lock board"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


def test_a_bank_in_maintenance_is_skipped_and_back_afterwards(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    held = reserve(client, world, "ACME-M1")
    assert held.status_code == 201, held.text
    until = clock() + timedelta(hours=4)

    started = s.admin.call(
        "POST", f"{BANK}/maintenance", {"reason": REASON, "until": until.isoformat()}
    )

    assert started.status_code == 200, started.text
    assert started.json()["maintenance"]["reason"] == REASON
    refused = reserve(client, world, "ACME-M2")
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "bank_in_maintenance"
    assert [a["bank_id"] for a in body["alternatives"]] == ["NYC-2"]
    # A search near the bank goes to the next one.
    near = client.post(
        "/v1/reservations",
        json={
            "tracking_number": "ACME-M3",
            "near": {"lat": 40.7506, "lon": -73.9935, "radius_km": 5},
            "size": "S",
        },
        headers=world.auth("acme"),
    )
    assert near.status_code == 201, near.text
    assert near.json()["bank"]["id"] == "NYC-2"
    # The carrier API says so too; the carrier with a parcel there was told, once.
    assert client.get("/v1/banks/NYC-1", headers=world.auth("acme")).json()["status"] == (
        "maintenance"
    )
    [told] = webhook_bodies(app, sessions, "bank.maintenance_started")
    assert told["data"]["bank_id"] == "NYC-1"
    assert told["data"]["reason"] == REASON
    assert [r["id"] for r in told["data"]["reservations"]] == [held.json()["id"]]
    # The node learns it from its feed, with the nearest banks that have room.
    bank = feed_bank(s.node, 1)
    assert bank["maintenance"]["reason"] == REASON
    assert [n["bank_id"] for n in bank["maintenance"]["nearby"]] == ["NYC-2"]
    assert feed_bank(s.node, bank["version"]) is None
    overview = s.admin.call("GET", "/ops/api/overview").json()
    flags = {b["id"]: b["maintenance"] for r in overview["regions"] for b in r["banks"]}
    assert flags == {"NYC-1": True, "NYC-2": False, "BOS-1": False}

    ended = s.admin.call("DELETE", f"{BANK}/maintenance", {"reason": "board replaced"})

    assert ended.status_code == 200, ended.text
    assert ended.json()["maintenance"] is None
    assert reserve(client, world, "ACME-M2").status_code == 201
    [back] = webhook_bodies(app, sessions, "bank.maintenance_ended")
    assert back["data"]["since"] == told["data"]["since"]
    assert feed_bank(s.node, bank["version"])["maintenance"] is None
    assert audit_rows(sessions)[-2:] == [
        (1, "bank_maintenance", "ok", "NYC-1"),
        (1, "bank_maintenance_end", "ok", "NYC-1"),
    ]


def test_asking_again_updates_the_reason_and_tells_nobody_twice(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    assert reserve(client, world, "ACME-M1").status_code == 201
    first = s.admin.call("POST", f"{BANK}/maintenance", {"reason": REASON}).json()
    clock.advance(minutes=5)
    second = s.admin.call("POST", f"{BANK}/maintenance", {"reason": "and the screen"}).json()
    assert second["maintenance"]["reason"] == "and the screen"
    assert second["maintenance"]["since"] == first["maintenance"]["since"]
    assert second["settings_version"] == first["settings_version"] + 1
    assert len(webhook_bodies(app, sessions, "bank.maintenance_started")) == 1


def test_refusals_are_clear_and_audited(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    past = (clock() - timedelta(minutes=1)).isoformat()
    cases = [
        ("DELETE", f"{BANK}/maintenance", None, 409, "not_in_maintenance"),
        ("POST", f"{BANK}/maintenance", {"reason": REASON, "until": past}, 422, "invalid_until"),
        ("POST", f"{BANK}/maintenance", {"reason": "x", "until": "2030-01-01T10:00"}, 422, None),
        ("POST", f"{BANK}/maintenance", {"reason": ""}, 422, "validation_error"),
        ("POST", "/ops/api/banks/NOPE/maintenance", {"reason": REASON}, 404, "unknown_bank"),
        ("POST", f"{BANK}/compartments/Z99/maintenance", {"reason": REASON}, 404, None),
    ]
    for method, path, body, status, code in cases:
        response = s.admin.call(method, path, body)
        assert response.status_code == status, (path, body, response.text)
        if code is not None:
            assert response.json()["error"] == code
    assert (
        s.admin.call("POST", f"{BANK}/compartments/Z99/maintenance", {"reason": REASON}).json()[
            "error"
        ]
        == "unknown_compartment"
    )
    # A viewer reads the settings but changes nothing; the refusal is audited.
    viewer = as_viewer(app)
    assert viewer.call("GET", f"{BANK}/settings").status_code == 200
    refused = viewer.call("POST", f"{BANK}/maintenance", {"reason": REASON})
    assert refused.status_code == 403
    assert audit_rows(sessions)[-1] == (2, "bank_maintenance", "forbidden", "NYC-1")
    # Without the CSRF token nothing happens either.
    bare = client.post(f"{BANK}/maintenance", json={"reason": REASON})
    assert bare.status_code == 403 and bare.json()["error"] == "csrf_failed"
    assert s.admin.call("GET", f"{BANK}/settings").json()["maintenance"] is None


def test_a_compartment_in_maintenance_leaves_capacity_and_comes_back_exactly(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    before = capacity(sessions)
    path = f"{BANK}/compartments/A03/maintenance"

    started = s.admin.call("POST", path, {"reason": "hinge"})

    assert started.status_code == 200, started.text
    assert [c["label"] for c in started.json()["compartments_in_maintenance"]] == ["A03"]
    assert state_of(sessions, "A03") == "out_of_service"
    total, free, *_ = before["M"]
    assert capacity(sessions)["M"][:2] == (total - 1, free - 1)
    assert feed_bank(s.node)["compartments_in_maintenance"] == [
        {"label": "A03", "reason": "hinge", "until": None}
    ]
    # The node reporting it back in service does not end an admin's maintenance.
    send(s.node, node_event("compartment.in_service", {"compartment": "A03"}, clock()))
    assert state_of(sessions, "A03") == "out_of_service"

    assert s.admin.call("DELETE", path).status_code == 200

    assert state_of(sessions, "A03") == "free"
    assert capacity(sessions) == before


def test_a_compartment_holding_a_parcel_comes_back_occupied_with_its_hold(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    rid = reserve(client, world, "ACME-P1").json()["id"]
    assert send(s.node, deposit_event(s.node, rid, clock(), "A01")) == [("applied", None)]
    before = capacity(sessions)
    path = f"{BANK}/compartments/A01/maintenance"

    assert s.admin.call("POST", path, {"reason": "sensor"}).status_code == 200

    [told] = webhook_bodies(app, sessions, "bank.maintenance_started")
    assert told["data"]["compartment"] == "A01"
    assert [r["id"] for r in told["data"]["reservations"]] == [rid]
    total, free, *_ = before["S"]
    assert capacity(sessions)["S"][:2] == (total - 1, free - 1)
    # Picked up meanwhile: the hold goes, the compartment stays out until the work is done.
    send(s.node, node_event("parcel.picked_up", {"reservation_id": rid}, clock()))
    assert capacity(sessions)["S"][:2] == (total - 1, free)
    assert state_of(sessions, "A01") == "out_of_service"

    s.admin.call("DELETE", path)

    assert state_of(sessions, "A01") == "free"
    assert capacity(sessions)["S"][:2] == (total, free + 1)


def test_a_parcel_still_in_it_when_maintenance_ends_keeps_it_occupied(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    rid = reserve(client, world, "ACME-P2").json()["id"]
    send(s.node, deposit_event(s.node, rid, clock(), "A02"))
    before = capacity(sessions)
    path = f"{BANK}/compartments/A02/maintenance"
    s.admin.call("POST", path, {"reason": "sensor"})
    s.admin.call("DELETE", path)
    assert state_of(sessions, "A02") == "occupied"
    assert capacity(sessions) == before


def test_a_compartment_its_node_reports_broken_stays_out_after_maintenance(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    before = capacity(sessions)
    path = f"{BANK}/compartments/A05/maintenance"
    s.admin.call("POST", path, {"reason": "new shelf"})
    send(s.node, node_event("compartment.out_of_service", {"compartment": "A05"}, clock()))
    s.admin.call("DELETE", path)
    assert state_of(sessions, "A05") == "out_of_service"
    total, free, *_ = before["L"]
    assert capacity(sessions)["L"][:2] == (total - 1, free - 1)
    send(s.node, node_event("compartment.in_service", {"compartment": "A05"}, clock()))
    assert capacity(sessions) == before


def test_overdue_maintenance_raises_an_alert_until_it_ends(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    until = (clock() + timedelta(hours=2)).isoformat()
    s.admin.call("POST", f"{BANK}/maintenance", {"reason": REASON, "until": until})
    s.admin.call("POST", f"{BANK}/compartments/A01/maintenance", {"reason": "x", "until": until})

    def open_alerts() -> list[str]:
        with sessions() as session:
            return sorted(
                a.subject or ""
                for a in session.scalars(
                    select(Alert).where(
                        Alert.type == "maintenance_overdue", Alert.resolved_at.is_(None)
                    )
                )
                if a.bank_id == "NYC-1"
            )

    with sessions.begin() as session:
        assert alert_overdue_maintenance(session, clock()) == 0
    clock.advance(hours=3)
    for _ in range(2):  # raised once however often the job runs
        with sessions.begin() as session:
            alert_overdue_maintenance(session, clock())
    assert open_alerts() == ["A01", "bank"]
    assert s.admin.call("GET", f"{BANK}/settings").json()["maintenance"]["overdue"] is True
    s.admin.call("DELETE", f"{BANK}/maintenance")
    assert open_alerts() == ["A01"]
    later = (clock() + timedelta(hours=1)).isoformat()
    s.admin.call("POST", f"{BANK}/compartments/A01/maintenance", {"reason": "x", "until": later})
    assert open_alerts() == []


def test_the_cli_puts_a_bank_into_maintenance_and_out_audited(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    settings: CentralSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCKER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LOCKER_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()

    started = runner.invoke(cli, ["bank", "maintenance", "NYC-1", "--reason", REASON])
    assert started.exit_code == 0, started.output
    assert "bank NYC-1 is in maintenance" in started.output
    assert reserve(client, world, "ACME-C1").json()["error"] == "bank_in_maintenance"
    part = runner.invoke(
        cli, ["bank", "maintenance", "NYC-1", "--reason", "hinge", "--compartment", "a03"]
    )
    assert part.exit_code == 0, part.output
    wrong = runner.invoke(cli, ["bank", "maintenance-end", "NYC-2"])
    assert wrong.exit_code == 1
    assert "not_in_maintenance" in wrong.output
    bad = runner.invoke(cli, ["bank", "maintenance", "NYC-1", "--reason", "x", "--until", "soon"])
    assert bad.exit_code == 1 and "until" in bad.output
    for args in (["NYC-1"], ["NYC-1", "--compartment", "A03"]):
        ended = runner.invoke(cli, ["bank", "maintenance-end", *args])
        assert ended.exit_code == 0, ended.output

    # The server's few-second snapshot of the bank (`BankDirectory`) has not lapsed yet: the
    # CLI is another process, whose change the server sees once it does.
    app.state.bank_directory.forget("NYC-1")
    assert reserve(client, world, "ACME-C1").status_code == 201
    assert audit_rows(sessions) == [
        (None, "bank_maintenance", "ok", "NYC-1"),
        (None, "compartment_maintenance", "ok", "NYC-1/A03"),
        (None, "bank_maintenance_end", "not_in_maintenance", "NYC-2"),
        (None, "bank_maintenance_end", "ok", "NYC-1"),
        (None, "compartment_maintenance_end", "ok", "NYC-1/A03"),
    ]
    assert all(d and d["via"] == "cli" for d in audit_details(sessions, "bank_maintenance"))


def test_moving_a_parcel_to_a_bank_in_maintenance_is_refused(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    rid = reserve(client, world, "ACME-R1", bank_id="NYC-2").json()["id"]
    s.admin.call("POST", f"{BANK}/maintenance", {"reason": REASON})
    moved = client.post(
        f"/v1/reservations/{rid}/redirect", json={"bank_id": "NYC-1"}, headers=world.auth("acme")
    )
    assert moved.status_code == 409
    assert moved.json()["error"] == "bank_in_maintenance"
    dropoff = client.post(
        "/v1/dropoffs",
        json={"tracking_number": "ACME-D1", "bank_id": "NYC-1", "size": "S"},
        headers=world.auth("acme"),
    )
    assert dropoff.status_code == 409
    assert dropoff.json()["error"] == "bank_in_maintenance"
