"""Walk-ups through real processes: a courier deposits a parcel that has no reservation at a node
that allows it, and central adopts it, whether it hears at once or only after an outage."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from central.models import Bank
from locker_node.store import couriers, outbox
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.e2e.harness import BANK, World, create_world, eventually, provision_node
from tests.e2e.test_node_central import node_store, pickup, status_of, subscribe
from tests.locker_node.e2e.nodes import NodeProcess, spawn

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with create_world(tmp_path) as built:
        yield built


def provision_walk_up_node(world: World) -> tuple[Path, int]:
    """`provision_node`, and the bank takes parcels with no reservation: central's bank policy
    says so (its feed's bank settings override the node's configuration)."""
    with world.sessions.begin() as session:
        bank = session.get(Bank, BANK)
        assert bank is not None
        bank.allow_walk_up = True
    config, port = provision_node(world)
    config.write_text(config.read_text() + "\n[deposit]\nallow_walk_up = true\n")
    return config, port


def courier_login(
    node: NodeProcess, kiosk: httpx.Client, world: World, engine: Engine
) -> dict[str, str]:
    """Log in once the day's courier codes are on the node: a login tried before would count
    as a wrong code, and a few of those lock the keypad out."""

    def has_codes() -> bool | None:
        with transaction(engine) as conn:
            return "acme" in couriers.carriers_with_credentials(conn, datetime.now(UTC)) or None

    eventually(has_codes, "the courier codes")
    answer = kiosk.post(
        f"{node.base_url}/api/courier/login", json={"carrier": "acme", "pin": world.courier_code()}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def walk_up(node: NodeProcess, kiosk: httpx.Client, headers: dict[str, str], tracking: str) -> str:
    """Scan a parcel the node has no reservation for, give its size, confirm; its compartment."""
    answer = kiosk.post(
        f"{node.base_url}/api/courier/deposit",
        json={"tracking_number": tracking, "size": "S"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    deposit_id = answer.json()["deposit_id"]

    def confirm() -> str | None:
        done = kiosk.post(
            f"{node.base_url}/api/courier/deposit/{deposit_id}/confirm", headers=headers
        )
        return str(done.json()["compartment"]) if done.status_code == 200 else None

    return eventually(confirm, "the deposit to be confirmed")  # the door closes by itself


def found_at_central(world: World, tracking: str) -> dict[str, Any] | None:
    """The carrier's deposited reservation for the number (as the node keeps it: upper case,
    no spaces or dashes, which is what reaches central with a walk-up)."""
    answer = httpx.get(
        f"{world.base}/v1/reservations",
        params={"tracking_number": tracking},
        headers=world.carrier.headers,
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items[0] if items and items[0]["status"] == "deposited" else None


def free_small_units(world: World) -> int:
    answer = httpx.get(f"{world.base}/v1/banks/{BANK}", headers=world.carrier.headers)
    assert answer.status_code == 200, answer.text
    free: int = answer.json()["capacity"]["S"]["free"]
    return free


def deposited_webhooks(world: World) -> list[dict[str, Any]]:
    world.dispatch()
    return [b for b in world.carrier.received if b["type"] == "parcel.deposited"]


def test_a_walk_up_reaches_central_and_the_carrier(world: World) -> None:
    with world.server():
        subscribe(world)
        config, port = provision_walk_up_node(world)
        node = spawn(config, port=port)
        engine, _ = node_store(config)
        try:
            with httpx.Client(timeout=5) as kiosk:
                node.wait_ready(kiosk)
                free = free_small_units(world)
                headers = courier_login(node, kiosk, world, engine)
                compartment = walk_up(node, kiosk, headers, "ACMEWALKE2E1")

                adopted = eventually(
                    lambda: found_at_central(world, "ACMEWALKE2E1"), "the walk-up at central"
                )
                rid = adopted["id"]
                assert rid.startswith("walkup-")
                assert (adopted["bank"]["id"], adopted["compartment"]) == (BANK, compartment)
                assert free_small_units(world) == free - 1
                [webhook] = eventually(lambda: deposited_webhooks(world) or None, "the webhook")
                assert webhook["data"]["id"] == rid

                # Central's copy has come down the feed since: the node's own row is as it was.
                with transaction(engine) as conn:
                    local = repo.get_reservation(conn, rid)
                assert local is not None and local.walk_up and local.status == "deposited"

                pickup(node, kiosk, str(webhook["data"]["pickup_code"]))
                eventually(
                    lambda: status_of(world, rid)["status"] == "picked_up" or None,
                    "the pickup at central",
                )
                assert free_small_units(world) == free
        finally:
            node.stop()
            engine.dispose()

    parcel = [e for e in world.node_events() if e[0].startswith("parcel.")]
    assert parcel == [("parcel.deposited", "applied"), ("parcel.picked_up", "applied")]


def test_a_walk_up_while_central_is_down_is_adopted_once_when_it_is_back(world: World) -> None:
    with world.server():
        subscribe(world)
        config, port = provision_walk_up_node(world)
        node = spawn(config, port=port)
        free = free_small_units(world)
    engine, _ = node_store(config)
    try:
        with httpx.Client(timeout=5) as kiosk:
            node.wait_ready(kiosk)
            with world.server():
                # The day's courier codes reach the node while central is up.
                headers = courier_login(node, kiosk, world, engine)
            # Central is down from here until the walk-up is on the node's outbox.
            walk_up(node, kiosk, headers, "ACMEWALKE2E2")
            with transaction(engine) as conn:
                waiting = [e.type for e in outbox.outbox_events(conn, unsent_only=True)]
            assert "parcel.deposited" in waiting
            assert world.node_events() == []

            with world.server():
                adopted = eventually(
                    lambda: found_at_central(world, "ACMEWALKE2E2"), "the walk-up at central"
                )
                assert free_small_units(world) == free - 1
                [webhook] = eventually(lambda: deposited_webhooks(world) or None, "the webhook")
                assert webhook["data"]["id"] == adopted["id"]

                def all_sent() -> bool | None:
                    with transaction(engine) as conn:
                        return not outbox.outbox_events(conn, unsent_only=True) or None

                eventually(all_sent, "the outbox to drain")
                world.dispatch()
                history = [entry["type"] for entry in status_of(world, adopted["id"])["history"]]
    finally:
        node.stop()
        engine.dispose()

    assert history == ["reserved", "deposited"]
    assert world.carrier.parcel_events() == ["parcel.deposited"]
    assert [e for e in world.node_events() if e[0].startswith("parcel.")] == [
        ("parcel.deposited", "applied")
    ]
