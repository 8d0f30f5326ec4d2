"""Acceptance: a node's UPS lines, played by gpiozero's MockFactory, reach central through the
real sync service's heartbeats as `power_lost` and `battery_low` alerts, resolved when power
comes back; the fleet page's API shows the bank on battery meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gpiozero.pins.mock import MockFactory
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.models import Alert
from locker_node.app import Node, build_node
from locker_node.config import HealthConfig, UpsConfig, load_config
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.sync.provision import provision
from locker_node.sync.service import SyncService
from tests.central.conftest import World
from tests.central.nodes.support import issue_token
from tests.central.ops.support import VIEWER, fast, make_operator, sign_in
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import CentralTransport

ON_BATTERY = "GPIO6"
BATTERY_LOW = "GPIO5"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)  # cheap password hashing for the operator's sign-in


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def ups_node(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    world: World,
    tmp_path: Path,
    pins: MockFactory,
) -> Iterator[tuple[Node, SyncService]]:
    """A node enrolled with central whose [health.ups] lines are on the mock GPIO header."""
    transport = CentralTransport(client)
    config_path = tmp_path / "node" / "node.toml"
    provision(
        central_url="http://central",
        bank_id="NYC-1",
        token=issue_token(sessions, clock),
        config_path=config_path,
        transport=transport,
    )
    loaded = load_config(config_path)
    (tmp_path / "cpu").write_text("52000\n")
    config = loaded.model_copy(
        update={
            "health": HealthConfig(
                cpu_temperature_file=tmp_path / "cpu",
                ups=UpsConfig(on_battery_pin=ON_BATTERY, battery_low_pin=BATTERY_LOW),
            )
        }
    )
    node = build_node(
        config,
        boards={"main": SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)},
        clock=clock,
        migrate_in_process=True,
        central_transport=transport,
        pin_factory=pins,
    )
    # Driven pass by pass from the test instead of by the thread.
    service, node.sync = node.sync, None
    assert service is not None
    node.start()
    yield node, service
    service.stop()
    node.stop()


def open_alerts(sessions: sessionmaker[Session]) -> list[tuple[str | None, str]]:
    with sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.resolved_at.is_(None)))
        return sorted((a.bank_id, a.type) for a in rows)


def test_ups_lines_raise_and_resolve_power_alerts_at_central(
    ups_node: tuple[Node, SyncService],
    pins: MockFactory,
    client: TestClient,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node, sync = ups_node
    assert node.health is not None and node.health.ups is not None
    assert sync.run_once(heartbeat=True)
    assert open_alerts(sessions) == []

    pins.pin(ON_BATTERY).drive_high()  # the mains fails: the UPS runs on its battery
    clock.advance(seconds=30)
    assert sync.run_once(heartbeat=True)
    assert open_alerts(sessions) == [("NYC-1", "power_lost")]

    make_operator(app, clock, VIEWER, "viewer")
    sign_in(client, VIEWER)
    fleet = client.get("/ops/api/fleet").json()
    [bank] = [b for b in fleet["banks"] if b["bank_id"] == "NYC-1"]
    assert (bank["power"], bank["battery_low"], bank["cpu_temp_c"]) == ("battery", False, 52.0)
    assert [a["type"] for a in bank["alerts"]] == ["power_lost"]

    pins.pin(BATTERY_LOW).drive_high()  # and after a while the battery runs low
    clock.advance(seconds=30)
    assert sync.run_once(heartbeat=True)
    assert open_alerts(sessions) == [("NYC-1", "battery_low"), ("NYC-1", "power_lost")]
    clock.advance(seconds=30)
    assert sync.run_once(heartbeat=True)  # still so: still one alert of each
    with sessions() as session:
        assert len(session.scalars(select(Alert)).all()) == 2

    pins.pin(ON_BATTERY).drive_low()  # power is back, the UPS charges its battery
    pins.pin(BATTERY_LOW).drive_low()
    clock.advance(seconds=30)
    assert sync.run_once(heartbeat=True)
    assert open_alerts(sessions) == []
    with sessions() as session:
        resolved = session.scalars(select(Alert)).all()
        assert {a.type for a in resolved} == {"power_lost", "battery_low"}
        assert all(a.resolved_at == clock() for a in resolved)
