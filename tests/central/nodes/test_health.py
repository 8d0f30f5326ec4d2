"""Heartbeats, and a bank going offline after three missed ones and back online with the next."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.models import Alert, Node
from central.scheduler import INTERVALS, Jobs
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll
from tests.clock import FakeClock

BEAT = {
    "doors": {"A01": "closed", "A02": "open"},
    "boards": {"main": "ok", "aux": "error"},
    "outbox_depth": 7,
    "version": "1.2.3",
}


def jobs_for(app: FastAPI, clock: FakeClock) -> Jobs:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings: CentralSettings = app.state.settings
    return Jobs(app.state.sessions, app.state.keys, clock, http, settings)


def node_row(sessions: sessionmaker[Session], node: NodeClient) -> Node:
    with sessions() as session:
        row = session.get(Node, node.node_id)
        assert row is not None
        return row


def alerts(sessions: sessionmaker[Session]) -> list[Alert]:
    with sessions() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def test_a_heartbeat_records_health_and_last_seen(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    clock.advance(seconds=30)
    response = node.post("/v1/node/heartbeat", BEAT)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "server_time": int(clock().timestamp()),
        "online": True,
        "wanted_version": None,
        "wanted_rollout": None,
        "feed_news": False,
    }
    row = node_row(sessions, node)
    assert row.last_seen_at == clock() and row.online and row.version == "1.2.3"
    assert row.health == {
        "doors": BEAT["doors"],
        "boards": BEAT["boards"],
        "outbox_depth": 7,
    }
    bad = node.post("/v1/node/heartbeat", BEAT | {"outbox_depth": -1})
    assert (bad.status_code, bad.json()["error"]) == (422, "validation_error")


def test_three_missed_heartbeats_take_the_bank_offline_and_one_brings_it_back(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    quiet = enroll(client, sessions, clock, "NYC-2")
    jobs = jobs_for(app, clock)
    assert "detect_offline_nodes" in jobs.all() and INTERVALS["detect_offline_nodes"] == 30
    assert node.post("/v1/node/heartbeat", BEAT).status_code == 200

    clock.advance(seconds=60)
    assert quiet.post("/v1/node/heartbeat", BEAT).status_code == 200
    clock.advance(seconds=30)
    assert jobs.detect_offline_nodes() == 0  # 90 s exactly: three beats missed only after that
    clock.advance(seconds=1)
    assert jobs.detect_offline_nodes() == 1
    assert jobs.detect_offline_nodes() == 0  # one alert, not one per run
    assert not node_row(sessions, node).online
    assert node_row(sessions, quiet).online
    [alert] = alerts(sessions)
    assert (alert.bank_id, alert.type, alert.resolved_at) == ("NYC-1", "bank_offline", None)
    assert alert.detail is not None and alert.detail["node_id"] == node.node_id

    clock.advance(minutes=5)
    assert node.post("/v1/node/heartbeat", BEAT).status_code == 200
    assert node_row(sessions, node).online
    [alert] = alerts(sessions)
    assert alert.resolved_at == clock()
    jobs.close()


def test_a_revoked_node_is_never_reported_offline(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    enroll(client, sessions, clock)
    enroll(client, sessions, clock)  # replaces the first
    clock.advance(seconds=60)
    jobs = jobs_for(app, clock)
    clock.advance(seconds=31)
    assert jobs.detect_offline_nodes() == 1  # only the current node
    jobs.close()


def test_a_fleet_falling_silent_goes_offline_in_one_statement(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    # After an outage every node is silent at once: their rows are locked by one short UPDATE,
    # not one by one through a long transaction their heartbeats would queue behind.
    nodes = [enroll(client, sessions, clock, bank) for bank in ("NYC-1", "NYC-2", "BOS-1")]
    jobs = jobs_for(app, clock)
    clock.advance(minutes=5)
    updates: list[str] = []

    def count(*args: object) -> None:
        if str(args[2]).lstrip().upper().startswith("UPDATE NODES"):
            updates.append(str(args[2]))

    event.listen(app.state.engine, "before_cursor_execute", count)
    try:
        assert jobs.detect_offline_nodes() == 3
    finally:
        event.remove(app.state.engine, "before_cursor_execute", count)
    assert len(updates) == 1
    assert not any(node_row(sessions, node).online for node in nodes)
    found = alerts(sessions)
    assert sorted((a.bank_id, a.type) for a in found) == [
        ("BOS-1", "bank_offline"),
        ("NYC-1", "bank_offline"),
        ("NYC-2", "bank_offline"),
    ]
    assert {a.detail["node_id"] for a in found if a.detail} == {n.node_id for n in nodes}
    jobs.close()
