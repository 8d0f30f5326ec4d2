"""Fleet health: heartbeats carrying the node computer's health raise and resolve bank alerts;
the fleet API's version spread and health rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.models import Alert, Node
from central.nodes.health import HealthLimits, assess
from locker_wire.schemas import NodeHealth
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll
from tests.central.ops.support import ADMIN, VIEWER, fast, make_operator, sign_in
from tests.clock import FakeClock

GB = 1_000_000_000
NORMAL: dict[str, Any] = {
    "uptime_s": 3600,
    "host_uptime_s": 86400,
    "disk_free_bytes": 20 * GB,
    "disk_total_bytes": 32 * GB,
    "cpu_temp_c": 48.5,
    "enclosure_temp_c": 31.0,
    "power": "mains",
    "battery_low": False,
}


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)  # cheap password hashing for the fleet page's sign-in


def beat(node: NodeClient, version: str = "1.2.0", **health: Any) -> None:
    body = {
        "doors": {"A01": "closed"},
        "boards": {"main": "ok"},
        "outbox_depth": 0,
        "version": version,
        "health": NORMAL | health,
    }
    response = node.post("/v1/node/heartbeat", body)
    assert response.status_code == 200, response.text


def open_alerts(sessions: sessionmaker[Session]) -> list[tuple[str | None, str, str | None]]:
    with sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.resolved_at.is_(None)))
        return sorted((a.bank_id, a.type, a.subject) for a in rows)


def all_alerts(sessions: sessionmaker[Session]) -> list[Alert]:
    with sessions() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


@contextmanager
def alert_statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements that read or write the alerts table while the block runs."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        if "alerts" in str(args[2]).lower():
            seen.append(str(args[2]))

    event.listen(app.state.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(app.state.engine, "before_cursor_execute", count)


def test_the_health_report_is_kept_beside_doors_and_boards(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    beat(node)
    with sessions() as session:
        row = session.get(Node, node.node_id)
        assert row is not None and row.health is not None
        assert row.health == {
            "doors": {"A01": "closed"},
            "boards": {"main": "ok"},
            "outbox_depth": 0,
            **NORMAL,
            "alerting": [],
        }
    assert open_alerts(sessions) == []


def test_each_condition_raises_its_alert_and_normal_readings_resolve_it(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    other = enroll(client, sessions, clock, "NYC-2")
    beat(node)
    beat(other, power="battery")  # another bank's trouble stays its own
    clock.advance(seconds=30)
    beat(
        node,
        power="battery",
        battery_low=True,
        cpu_temp_c=85.0,
        enclosure_temp_c=60.5,
        disk_free_bytes=300_000_000,
    )
    assert open_alerts(sessions) == [
        ("NYC-1", "battery_low", "battery"),
        ("NYC-1", "disk_low", "disk"),
        ("NYC-1", "overheating", "cpu"),
        ("NYC-1", "overheating", "enclosure"),
        ("NYC-1", "power_lost", "power"),
        ("NYC-2", "power_lost", "power"),
    ]
    raised = {(a.type, a.subject): a for a in all_alerts(sessions) if a.bank_id == "NYC-1"}
    assert raised[("overheating", "cpu")].detail == {
        "node_id": node.node_id,
        "sensor": "cpu",
        "temp_c": 85.0,
        "max_c": 80.0,
    }
    assert raised[("power_lost", "power")].created_at == clock()
    disk = raised[("disk_low", "disk")].detail
    assert disk is not None and disk["free_bytes"] == 300_000_000 and disk["min_mb"] == 500

    clock.advance(minutes=5)
    beat(node)
    assert open_alerts(sessions) == [("NYC-2", "power_lost", "power")]
    resolved = [a for a in all_alerts(sessions) if a.bank_id == "NYC-1"]
    assert len(resolved) == 5 and all(a.resolved_at == clock() for a in resolved)


def test_one_alert_while_the_trouble_lasts_and_no_alert_query_when_nothing_changes(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    beat(node, power="battery")
    for _ in range(3):
        clock.advance(seconds=30)
        with alert_statements(app) as statements:
            beat(node, power="battery", uptime_s=4000)
        assert statements == []  # the heartbeat is the hottest node call
    clock.advance(seconds=30)
    with alert_statements(app) as statements:
        beat(node)
    assert statements  # back on mains: resolved
    clock.advance(seconds=30)
    beat(node, power="battery")  # lost again: a new alert, the old one stays resolved
    power = [a for a in all_alerts(sessions) if a.type == "power_lost"]
    assert [a.resolved_at is None for a in power] == [False, True]


def test_a_temperature_alert_resolves_only_below_the_hysteresis(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    beat(node, cpu_temp_c=80.0)  # at the maximum is not over it
    assert open_alerts(sessions) == []
    beat(node, cpu_temp_c=80.5)
    beat(node, cpu_temp_c=77.0)  # cooler, but within 5 °C of the maximum: still hot
    beat(node, cpu_temp_c=81.0)
    assert open_alerts(sessions) == [("NYC-1", "overheating", "cpu")]
    assert len(all_alerts(sessions)) == 1
    beat(node, cpu_temp_c=75.0)
    assert open_alerts(sessions) == []


def test_a_reading_that_is_missing_leaves_its_alert_as_it_is(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    beat(node, power="battery", cpu_temp_c=90.0)
    beat(node, power="unknown", cpu_temp_c=None, battery_low=None, disk_free_bytes=None)
    assert open_alerts(sessions) == [
        ("NYC-1", "overheating", "cpu"),
        ("NYC-1", "power_lost", "power"),
    ]
    # A heartbeat without any health (a node of an earlier version) changes nothing either.
    plain = {"doors": {}, "boards": {}, "outbox_depth": 0, "version": "1.0.0"}
    assert node.post("/v1/node/heartbeat", plain).status_code == 200
    with sessions() as session:
        row = session.get(Node, node.node_id)
        assert row is not None and row.health is not None
        assert row.health["alerting"] == ["overheating:cpu", "power_lost:power"]
    assert len(open_alerts(sessions)) == 2


def test_a_new_node_of_the_bank_resolves_what_its_first_report_shows_fixed(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    old = enroll(client, sessions, clock)
    beat(old, power="battery", disk_free_bytes=1_000)
    new = enroll(client, sessions, clock)  # the node was replaced; it knows no alert state
    beat(new, disk_free_bytes=1_000)
    assert open_alerts(sessions) == [("NYC-1", "disk_low", "disk")]
    assert len(all_alerts(sessions)) == 2  # the disk alert kept, not raised twice


@pytest.fixture
def strict_disk(settings: CentralSettings) -> CentralSettings:
    return settings.model_copy(
        update={"health_disk_free_min_mb": 100, "health_disk_free_min_pct": 25.0}
    )


def test_disk_limits_come_from_the_settings(strict_disk: CentralSettings, clock: FakeClock) -> None:
    limits = HealthLimits.from_settings(strict_disk)
    roomy = NodeHealth.model_validate(NORMAL)  # 20 of 32 GB: 62.5 % free
    tight = NodeHealth.model_validate(NORMAL | {"disk_free_bytes": 7 * GB})  # 21.9 % free
    assert ("disk_low", "disk") in assess(roomy, limits)[1]
    bad, _ = assess(tight, limits)
    assert bad[("disk_low", "disk")]["free_pct"] == 21.9
    # By default (500 MB, 5 %) the same disk is fine.
    assert ("disk_low", "disk") in assess(tight, HealthLimits())[1]


def test_the_fleet_api_gives_the_version_spread_and_each_banks_health(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    nyc1 = enroll(client, sessions, clock)
    nyc2 = enroll(client, sessions, clock, "NYC-2")
    beat(nyc1, version="1.9.0", power="battery", cpu_temp_c=91.0)
    beat(nyc2, version="1.10.0")  # newer than 1.9.0 by PEP 440, older as text
    assert client.get("/ops/api/fleet").status_code == 401
    make_operator(app, clock, VIEWER, "viewer")
    sign_in(client, VIEWER)
    response = client.get("/ops/api/fleet")
    assert response.status_code == 200, response.text
    fleet = response.json()
    assert fleet["newest_version"] == "1.10.0"
    assert fleet["versions"] == [
        {"version": "1.10.0", "nodes": 1, "newest": True, "wanted_by": []},
        {"version": "1.9.0", "nodes": 1, "newest": False, "wanted_by": []},
    ]
    assert fleet["totals"] == {
        "banks": 3,
        "nodes": 2,
        "online": 2,
        "on_battery": 1,
        "with_alerts": 1,
        "behind_newest": 1,
        "behind_wanted": 0,
    }
    banks = {bank["bank_id"]: bank for bank in fleet["banks"]}
    assert list(banks) == ["BOS-1", "NYC-1", "NYC-2"]
    assert banks["BOS-1"]["node_id"] is None and banks["BOS-1"]["power"] == "unknown"
    one = banks["NYC-1"]
    assert (one["version"], one["behind_newest"], one["online"]) == ("1.9.0", True, True)
    assert (one["power"], one["cpu_temp_c"], one["disk_free_pct"]) == ("battery", 91.0, 62.5)
    assert one["last_seen_at"] == clock().isoformat()
    assert sorted((a["type"], a["subject"]) for a in one["alerts"]) == [
        ("overheating", "cpu"),
        ("power_lost", "power"),
    ]
    assert banks["NYC-2"]["behind_newest"] is False and banks["NYC-2"]["alerts"] == []
    assert fleet["limits"]["cpu_temp_max_c"] == 80.0


def test_the_fleet_page_is_for_signed_in_operators(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    page = client.get("/ops/fleet", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/ops/login")
    make_operator(app, clock, ADMIN, "admin")
    sign_in(client, ADMIN)
    page = client.get("/ops/fleet")
    assert page.status_code == 200
    assert 'src="/ops/static/fleet.js"' in page.text and 'id="fleet-rows"' in page.text
    assert 'aria-current="page"' in page.text and "Node software updates" in page.text
