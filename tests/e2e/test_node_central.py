"""A real central server and a real `locker-node run` process, from reservation to pickup."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import database_path, transaction
from locker_node.store.database import make_engine as make_node_engine
from locker_node.store.keys import NodeKeys
from tests.e2e.harness import World, create_world, deposit, eventually, provision_node, reserve
from tests.locker_node.e2e.nodes import NodeProcess, spawn

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with create_world(tmp_path) as built:
        yield built


def pickup(node: NodeProcess, kiosk: httpx.Client, code: str) -> None:
    answer = kiosk.post(f"{node.base_url}/api/pickup", json={"code": code})
    assert answer.status_code == 200, answer.text


def subscribe(world: World) -> None:
    answer = httpx.post(
        f"{world.base}/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=world.carrier.headers,
    )
    assert answer.status_code == 201, answer.text


def status_of(world: World, rid: str) -> dict[str, Any]:
    answer = httpx.get(f"{world.base}/v1/reservations/{rid}", headers=world.carrier.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def reaches(world: World, rid: str, status: str) -> Callable[[], bool | None]:
    return lambda: status_of(world, rid)["status"] == status or None


def pickup_code_from_webhook(world: World) -> str:
    def delivered() -> str | None:
        world.dispatch()
        found = [b for b in world.carrier.received if b["type"] == "parcel.deposited"]
        return str(found[0]["data"]["pickup_code"]) if found else None

    return eventually(delivered, "the parcel.deposited webhook")


def test_reserve_deposit_webhook_pickup_through_real_processes(world: World) -> None:
    with world.server():
        subscribe(world)
        config, port = provision_node(world)
        node = spawn(config, port=port)
        try:
            with httpx.Client(timeout=5) as kiosk:
                node.wait_ready(kiosk)
                rid = reserve(world, "ACME-E2E-1")
                deposit(node, kiosk, world, "ACME-E2E-1")
                code = pickup_code_from_webhook(world)
                pickup(node, kiosk, code)
                eventually(reaches(world, rid, "picked_up"), "the pickup at central")
        finally:
            node.stop()
        world.dispatch()
        history = [entry["to_status"] for entry in status_of(world, rid)["history"]]

    assert world.carrier.parcel_events() == ["parcel.deposited", "parcel.picked_up"]
    assert history[-2:] == ["deposited", "picked_up"]
    assert parcel_events_applied(world)


def node_store(config: Path) -> tuple[Engine, NodeKeys]:
    data_dir = config.parent / "data"
    return make_node_engine(database_path(data_dir)), NodeKeys.load_or_create(data_dir)


def test_central_down_for_the_whole_cycle_gets_every_event_once_in_order_after(
    world: World,
) -> None:
    with world.server():
        subscribe(world)
        config, port = provision_node(world)
        rid = reserve(world, "ACME-E2E-2")
        node = spawn(config, port=port)
    engine, keys = node_store(config)
    try:
        with httpx.Client(timeout=5) as kiosk:
            node.wait_ready(kiosk)

            def known() -> bool | None:
                with transaction(engine) as conn:
                    return repo.get_reservation(conn, rid) is not None or None

            with world.server():
                eventually(known, "the reservation to reach the node")
            # Central is down from here until the parcel has come and gone.
            deposit(node, kiosk, world, "ACME-E2E-2")
            with transaction(engine) as conn:
                [event] = [e for e in outbox.outbox_events(conn) if e.type == "parcel.deposited"]
            # The recipient's code, which the carrier cannot send while central is down.
            pickup(node, kiosk, keys.unseal(event.data["sealed_pickup_code"]))
            with transaction(engine) as conn:
                waiting = [e.type for e in outbox.outbox_events(conn, unsent_only=True)]
            assert waiting[-2:] == ["parcel.deposited", "parcel.picked_up"]
            assert world.node_events() == []

            with world.server():
                eventually(reaches(world, rid, "picked_up"), "the events at central")
                world.dispatch()
                history = [entry["to_status"] for entry in status_of(world, rid)["history"]]
    finally:
        node.stop()
        engine.dispose()

    assert world.carrier.parcel_events() == ["parcel.deposited", "parcel.picked_up"]
    assert history[-2:] == ["deposited", "picked_up"]
    assert parcel_events_applied(world)


def parcel_events_applied(world: World) -> bool:
    """Central applied the deposit and the pickup once each, and everything else the node sent.

    A courier login tried before the node had the day's codes is reported too (kiosk usage).
    """
    events = world.node_events()
    parcel = [event for event in events if event[0].startswith("parcel.")]
    assert parcel == [("parcel.deposited", "applied"), ("parcel.picked_up", "applied")], events
    assert {status for _, status in events} == {"applied"}, events
    return True
