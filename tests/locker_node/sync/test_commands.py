"""Central's signed commands on the node: verified, carried out once, rate limited, acked."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.models import NodeCommand
from central.nodes.commands import issue_command, signing_key
from locker_node.domain.lifecycle import EventType, ReservationStatus
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_wire import signing
from locker_wire.schemas import Command
from tests.central.conftest import World
from tests.central.nodes.support import reserve
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import SyncedNode, courier_code


def command(
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    command_type: str,
    ttl: timedelta = timedelta(minutes=15),
    **payload: Any,
) -> Command:
    with sessions.begin() as session:
        return issue_command(
            session, app.state.keys, "NYC-1", command_type, payload, clock(), ttl=ttl
        )


def central_status(sessions: sessionmaker[Session], command_id: str) -> tuple[str, Any]:
    with sessions() as session:
        row = session.get(NodeCommand, command_id)
        assert row is not None
        return row.status, row.result


def test_open_disable_enable_cancel_are_carried_out_and_acked_once(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    first, second = (c.label for c in node.config.compartments[:2])
    rid = reserve(client, world, "ACME-CMD1")
    assert node.sync.run_once()
    opened = command(app, sessions, clock, "open_compartment", compartment=first)
    disabled = command(app, sessions, clock, "disable_compartment", compartment=second)
    cancelled = command(app, sessions, clock, "cancel_reservation", reservation_id=rid)
    extended = command(app, sessions, clock, "extend_deadline", reservation_id=rid, hours=4)

    assert node.sync.pull_feed() == 4

    assert node.door_is_open(first)
    assert not node.node.doors.status(second).in_service
    with transaction(node.node.engine) as conn:
        local = repo.get_reservation(conn, rid)
    assert local is not None and local.status == ReservationStatus.CANCELLED
    assert central_status(sessions, opened.id)[0] == "acknowledged"
    assert central_status(sessions, disabled.id)[0] == "acknowledged"
    assert central_status(sessions, cancelled.id)[0] == "acknowledged"
    status, result = central_status(sessions, extended.id)
    assert status == "failed" and "no parcel" in result["detail"]
    # Acked: the feed no longer carries them, so nothing runs twice.
    assert node.sync.pull_feed() == 0

    enabled = command(app, sessions, clock, "enable_compartment", compartment=second)
    assert node.sync.pull_feed() == 1
    assert node.node.doors.status(second).in_service
    assert central_status(sessions, enabled.id)[0] == "acknowledged"
    types = [e.type for e in node.outbox()]
    assert EventType.COMPARTMENT_OUT_OF_SERVICE in types


def test_a_command_seen_again_after_a_lost_ack_is_not_run_twice(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    label = node.config.compartments[0].label
    opened = command(app, sessions, clock, "open_compartment", compartment=label)
    node.transport.fail_after = 1  # the feed arrives, the ack does not
    assert node.sync.pull_feed() == 1
    node.board.close_door(node.lock_of(label))

    node.transport.fail_after = None
    node.transport.down = False
    assert node.sync.pull_feed() == 1

    assert not node.door_is_open(label)
    assert central_status(sessions, opened.id)[0] == "acknowledged"


def test_expired_tampered_and_other_node_commands_are_refused_and_acked_failed(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    label = node.config.compartments[0].label

    tampered = command(app, sessions, clock, "open_compartment", compartment=label)
    forged = tampered.model_copy(
        update={"payload": {"compartment": node.config.compartments[1].label}}
    )
    assert node.sync.handle_command(forged).outcome == "failed"

    expiring = command(
        app, sessions, clock, "open_compartment", ttl=timedelta(minutes=1), compartment=label
    )
    clock.advance(minutes=2)
    ack = node.sync.handle_command(expiring)
    assert ack.outcome == "failed" and ack.detail is not None and "command_expired" in ack.detail

    fields = {
        **expiring.model_dump(exclude={"signature"}),
        "id": str(uuid.uuid4()),
        "node_id": "node_someone_else",
        "expires_at": int(clock().timestamp()) + 600,
    }
    other = Command.model_validate(
        {**fields, "signature": signing.sign_command(signing_key(app.state.keys), fields)}
    )
    ack = node.sync.handle_command(other)
    assert ack.outcome == "failed" and ack.detail is not None and "wrong_node" in ack.detail

    assert not any(node.door_is_open(c.label) for c in node.config.compartments)
    status, result = central_status(sessions, tampered.id)
    assert status == "failed" and "invalid_signature" in result["detail"]
    assert central_status(sessions, expiring.id)[0] == "failed"


def test_remote_opens_beyond_the_limit_are_refused(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node(remote_open_limit=3, remote_open_window_s=600)
    labels = [c.label for c in node.config.compartments]
    issued = [
        command(app, sessions, clock, "open_compartment", compartment=label) for label in labels
    ]

    node.sync.pull_feed()

    opened = {label for label in labels if node.door_is_open(label)}
    statuses = {c.payload["compartment"]: central_status(sessions, c.id) for c in issued}
    assert len(opened) == 3
    assert opened == {label for label, (status, _) in statuses.items() if status == "acknowledged"}
    refused = [result for status, result in statuses.values() if status == "failed"]
    assert len(refused) == 2 and all("rate limited" in r["detail"] for r in refused)

    # The window moves on: an open is allowed again.
    clock.advance(minutes=11)
    closed = sorted(set(labels) - opened)[0]
    later = command(app, sessions, clock, "open_compartment", compartment=closed)
    node.sync.pull_feed()
    assert node.door_is_open(closed)
    assert central_status(sessions, later.id)[0] == "acknowledged"


def test_extend_deadline_and_invalidate_code_act_on_the_parcel_in_its_compartment(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    rid = reserve(client, world, "ACME-CMD2")
    assert node.sync.run_once()
    deposited = node.deposit("ACME-CMD2", node.login("acme", courier_code(app)))
    [event] = [e for e in node.outbox() if e.type == "parcel.deposited"]
    code = node.node.keys.unseal(event.data["sealed_pickup_code"])
    with transaction(node.node.engine) as conn:
        before = repo.get_parcel(conn, deposited["parcel_id"])
    assert before is not None

    extended = command(app, sessions, clock, "extend_deadline", reservation_id=rid, hours=24)
    assert node.sync.pull_feed() == 1
    with transaction(node.node.engine) as conn:
        after = repo.get_parcel(conn, deposited["parcel_id"])
        live = repo.get_pickup_code(conn, deposited["parcel_id"])
    assert after is not None and live is not None
    assert after.pickup_deadline == before.pickup_deadline + timedelta(hours=24)
    assert live.expires_at == after.pickup_deadline
    assert central_status(sessions, extended.id)[0] == "acknowledged"

    revoked = command(app, sessions, clock, "invalidate_code", reservation_id=rid)
    assert node.sync.pull_feed() == 1
    assert central_status(sessions, revoked.id)[0] == "acknowledged"
    answer = node.kiosk.post("/api/pickup", json={"code": code})
    assert answer.status_code != 200
    assert not node.door_is_open(deposited["compartment"])


def test_a_carriers_extension_reaches_the_node_by_the_feed_and_a_command_never_adds_to_it(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    rid = reserve(client, world, "ACME-CMD3")
    assert node.sync.run_once()
    deposited = node.deposit("ACME-CMD3", node.login("acme", courier_code(app)))
    assert node.sync.run_once()  # the deposit reaches central
    with transaction(node.node.engine) as conn:
        before = repo.get_parcel(conn, deposited["parcel_id"])
    assert before is not None

    answer = client.post(
        f"/v1/reservations/{rid}/extend", json={"hours": 10}, headers=world.auth("acme")
    )
    assert answer.status_code == 200, answer.text
    central_deadline = answer.json()["pickup_deadline"]
    node.sync.pull_feed()

    def node_deadline() -> Any:
        with transaction(node.node.engine) as conn:
            parcel = repo.get_parcel(conn, deposited["parcel_id"])
            live = repo.get_pickup_code(conn, deposited["parcel_id"])
        assert parcel is not None and live is not None
        assert live.expires_at == parcel.pickup_deadline
        return parcel.pickup_deadline

    moved = node_deadline()
    assert moved > before.pickup_deadline
    assert moved.isoformat().replace("+00:00", "Z")[:19] == central_deadline[:19]

    # An operator's command naming the same deadline (as central sends it now) moves nothing
    # more, nor does the feed said again.
    same = command(
        app,
        sessions,
        clock,
        "extend_deadline",
        reservation_id=rid,
        hours=10,
        until=moved.isoformat(),
    )
    node.sync.pull_feed()
    assert central_status(sessions, same.id)[0] == "acknowledged"
    assert node_deadline() == moved
