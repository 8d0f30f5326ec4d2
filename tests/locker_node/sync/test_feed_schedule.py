"""The node's side of the fleet model: a conditional feed at its own interval, the outbox sent
promptly, a pull at once when central has a command or the kiosk meets an unknown parcel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from central.models import NodeCommand, Reservation
from central.nodes.commands import issue_command
from locker_node.config import SyncConfig, parse_config
from locker_node.sync.service import SyncSchedule
from tests.central.conftest import World
from tests.central.nodes.support import reserve
from tests.clock import FakeClock
from tests.locker_node.kiosk.rig import node_config_data
from tests.locker_node.support import wait_until
from tests.locker_node.sync.conftest import SyncedNode, courier_code

FEED = "/v1/node/feed"


def feed_answers(node: SyncedNode) -> list[int]:
    return [status for _, path, status in node.transport.answers if path == FEED]


def test_a_pull_that_finds_nothing_new_gets_a_304_and_applies_nothing(
    make_node: Callable[..., SyncedNode],
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    rid = reserve(client, world, "ACME-S1")
    node.sync.pull_feed()
    node.sync.pull_feed()
    node.sync.pull_feed()
    # The first pull brings the courier codes too; the one without them is a full one once.
    assert feed_answers(node) == [200, 200, 304]

    # A change at central (any field of the row, whatever the clock says) ends it.
    with sessions.begin() as session:
        session.execute(update(Reservation).where(Reservation.id == rid).values(size="M"))
    node.sync.pull_feed()
    node.sync.pull_feed()
    assert feed_answers(node) == [200, 200, 304, 200, 304]


def test_a_node_of_an_earlier_central_pulls_the_full_feed(
    make_node: Callable[..., SyncedNode], client: TestClient, world: World
) -> None:
    node = make_node()
    node.transport.strip_etag = True
    reserve(client, world, "ACME-S2")
    node.sync.pull_feed()
    node.sync.pull_feed()
    assert feed_answers(node) == [200, 200]


def test_an_unacknowledged_command_comes_again_in_a_full_feed(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = make_node()
    node.sync.pull_feed()
    label = node.config.compartments[0].label
    with sessions.begin() as session:
        command = issue_command(
            session, app.state.keys, "NYC-1", "open_compartment", {"compartment": label}, clock()
        )
    node.transport.refuse_acks = True
    assert node.sync.pull_feed() == 1
    node.board.close_door(node.lock_of(label))
    node.transport.refuse_acks = False
    # Not a 304 for the answer that brought it: the feed repeats it and the ack goes through.
    assert node.sync.pull_feed() == 1
    assert feed_answers(node) == [200, 200, 200]
    with sessions() as session:
        row = session.get(NodeCommand, command.id)
        assert row is not None and row.status == "acknowledged"
    node.sync.pull_feed()
    node.sync.pull_feed()
    assert feed_answers(node)[-1] == 304


def test_the_heartbeat_brings_a_waiting_command_at_once(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = make_node()
    node.sync.pull_feed()
    node.transport.answers.clear()
    assert node.sync.run_once(heartbeat=True, feed=False)
    assert feed_answers(node) == []
    label = node.config.compartments[0].label
    with sessions.begin() as session:
        issue_command(
            session, app.state.keys, "NYC-1", "open_compartment", {"compartment": label}, clock()
        )
    assert node.sync.run_once(heartbeat=True, feed=False)
    assert feed_answers(node) == [200]
    assert node.door_is_open(label)


def test_the_heartbeat_says_when_the_feed_the_node_holds_is_no_longer_current(
    make_node: Callable[..., SyncedNode],
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    # A node that holds no tagged answer yet pulls after its heartbeat.
    assert node.sync.run_once(heartbeat=True, feed=False)
    assert feed_answers(node) == [200]
    node.transport.answers.clear()
    assert node.sync.run_once(heartbeat=True, feed=False)
    assert feed_answers(node) == []
    rid = reserve(client, world, "ACME-S4")
    assert node.sync.run_once(heartbeat=True, feed=False)
    assert feed_answers(node) == [200]
    assert node.has_reservation(rid)
    # Any change of the row counts, as for a conditional pull.
    with sessions.begin() as session:
        session.execute(update(Reservation).where(Reservation.id == rid).values(size="M"))
    assert node.sync.run_once(heartbeat=True, feed=False)
    assert node.sync.run_once(heartbeat=True, feed=False)
    assert feed_answers(node) == [200, 200]


def test_a_pass_with_nothing_due_and_nothing_queued_asks_central_nothing(
    make_node: Callable[..., SyncedNode],
) -> None:
    node = make_node()
    node.transport.answers.clear()  # the enrollment
    assert node.sync.run_once(heartbeat=False, feed=False)
    assert node.transport.answers == []


def test_an_unknown_parcel_makes_the_node_pull_the_feed_before_it_decides(
    make_node: Callable[..., SyncedNode], client: TestClient, world: World, app: FastAPI
) -> None:
    # The feed is pulled at the start and then only every hour.
    node = make_node(interval_s=0.05, feed_interval_s=3600, heartbeat_s=3600)
    node.sync.start()
    try:
        wait_until(lambda: node.sync.read_cursor() is not None, what="the first pull")
        headers = node.login("acme", courier_code(app))
        reserve(client, world, "ACME-S3")  # made after the node's first pull
        deposited = node.deposit("ACME-S3", headers)
        assert deposited["parcel_id"]
        nothing = node.kiosk.post(
            "/api/courier/deposit", json={"tracking_number": "ACME-NONE"}, headers=headers
        )
        assert (nothing.status_code, nothing.json()["error"]) == (404, "no_reservation")
    finally:
        node.sync.stop()
    assert node.node.flows.ports.feed is None
    # The first pull, then one for each parcel the node did not know.
    assert len(feed_answers(node)) == 3


def test_the_feed_falls_between_heartbeats_and_each_is_due_an_interval_after_it_was_tried() -> None:
    config = SyncConfig(heartbeat_s=30, feed_interval_s=30)
    schedule = SyncSchedule(config, start=100.0)
    assert schedule.due(100.0) == (True, True)
    schedule.tried(100.0, heartbeat=True, feed=True)
    assert schedule.due(114.9) == (False, False)
    assert schedule.due(115.0) == (False, True)
    schedule.tried(115.0, heartbeat=False, feed=True)
    assert schedule.due(130.0) == (True, False)
    schedule.tried(130.0, heartbeat=True, feed=False)
    assert schedule.due(145.0) == (False, True)
    # Tried and failed counts as tried: due again an interval later, not at once.
    schedule.tried(145.0, heartbeat=False, feed=True)
    assert schedule.due(150.0) == (False, False)


def test_an_old_sync_section_keeps_its_feed_pace_and_a_new_one_gets_the_default(
    tmp_path: Path,
) -> None:
    data = node_config_data(tmp_path / "data")
    data["central_url"] = "https://central.example.net"
    data["sync"] = {"interval_s": 5, "heartbeat_s": 30, "courier_codes_s": 600}
    old = parse_config(data).sync
    assert (old.interval_s, old.feed_interval_s) == (5, 5)
    data["sync"] = {"interval_s": 5, "feed_interval_s": 60}
    assert parse_config(data).sync.feed_interval_s == 60
    data["sync"] = {}
    assert (parse_config(data).sync.interval_s, parse_config(data).sync.feed_interval_s) == (2, 600)
