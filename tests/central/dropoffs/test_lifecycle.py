"""A drop-off's life through the node's signed event batches: deposited by the sender, collected
by the courier; refused transitions refused with a code; a deposit the node took while central
thought the drop-off closed is deposited after all."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.models import Compartment, NodeEventRecord
from central.reservations.transitions import expire_holds
from tests.central.conftest import World
from tests.central.dropoffs.support import (
    available,
    dropoff_event,
    make_dropoff,
    register_hook,
    send,
    stored,
    webhooks,
)
from tests.central.nodes.support import NodeClient, enroll, reserve
from tests.central.nodes.test_events import deposit, event
from tests.clock import FakeClock


def compartment_state(sessions: sessionmaker[Session], label: str) -> str:
    with sessions() as session:
        state = session.scalar(
            select(Compartment.state).where(
                Compartment.bank_id == "NYC-1", Compartment.label == label
            )
        )
        assert state is not None
        return state


def node_for(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> NodeClient:
    register_hook(client, world)
    return enroll(client, sessions, clock)


def test_deposited_by_the_sender_then_collected_by_the_courier(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = node_for(client, world, sessions, clock)
    free = available(sessions)
    body = make_dropoff(client, world, "ACME-D1", sender={"email": "s@example.com"})
    did = body["id"]

    at = clock() - timedelta(minutes=2)  # reported a little late, from the node's outbox
    assert send(node, dropoff_event("deposited", did, at, "A02")) == [("applied", None)]
    row = stored(sessions, did)
    assert row.status == "deposited" and row.compartment_label == "A02"
    assert row.deposited_at == at and row.pickup_deadline is None and row.closed_at is None
    assert compartment_state(sessions, "A02") == "occupied"
    assert available(sessions) == free - 1  # still held: the parcel is in
    got = client.get(f"/v1/dropoffs/{did}", headers=world.auth("acme")).json()
    assert got["status"] == "deposited" and got["compartment"] == "A02"
    last = got["history"][-1]
    assert (last["type"], last["from_status"], last["actor"]) == (
        "deposited",
        "reserved",
        "recipient",
    )
    assert last["reason"] == "dropped off by the sender at the kiosk"

    clock.advance(hours=5)
    assert send(node, dropoff_event("collected", did, clock(), "A02")) == [("applied", None)]
    row = stored(sessions, did)
    assert row.status == "collected" and row.closed_at == clock()
    assert row.recipient is None and row.pickup_secret_sealed is None
    assert row.dropoff_code_hash is None and row.dropoff_qr_hash is None
    assert compartment_state(sessions, "A02") == "free"
    assert available(sessions) == free
    got = client.get(f"/v1/dropoffs/{did}", headers=world.auth("acme")).json()
    assert got["status"] == "collected" and got["dropoff_code"] is None
    assert [(h["type"], h["actor"]) for h in got["history"]] == [
        ("created", "carrier"),
        ("deposited", "recipient"),
        ("collected", "courier"),
    ]
    assert [w["type"] for w in webhooks(app)] == [
        "dropoff.created",
        "dropoff.deposited",
        "dropoff.collected",
    ]
    # Nothing of a delivery's: no pickup deadline, never "picked up" or "returned".
    assert client.delete(f"/v1/dropoffs/{did}", headers=world.auth("acme")).status_code == 409


def test_refused_transitions_are_refused_with_a_code(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = node_for(client, world, sessions, clock)
    did = make_dropoff(client, world, "ACME-R1")["id"]
    delivery = reserve(client, world, "ACME-R2")
    other_bank = make_dropoff(client, world, "ACME-R3", bank_id="NYC-2")["id"]
    now = clock()

    assert send(
        node,
        dropoff_event("collected", did, now),  # not in yet
        dropoff_event("deposited", delivery, now),  # a courier's delivery
        dropoff_event("deposited", other_bank, now),  # another bank's
        dropoff_event("deposited", did, now, "Z99"),  # no such compartment
        deposit(node, did, now),  # a courier's deposit into a drop-off
    ) == [
        ("rejected", "invalid_transition"),
        ("rejected", "not_a_dropoff"),
        ("rejected", "unknown_reservation"),
        ("rejected", "unknown_compartment"),
        ("rejected", "not_a_delivery"),
    ]
    assert stored(sessions, did).status == "reserved"
    assert stored(sessions, delivery).status == "reserved"

    deposited = dropoff_event("deposited", did, now, "A01")
    assert send(node, deposited) == [("applied", None)]
    assert send(node, deposited) == [("duplicate", None)]
    assert send(
        node,
        dropoff_event("deposited", did, now, "A02"),  # a second, different deposit
        event("parcel.picked_up", {"reservation_id": did}, now),
        event("parcel.returned", {"reservation_id": did}, now),
    ) == [
        ("rejected", "invalid_transition"),
        ("rejected", "not_a_delivery"),
        ("rejected", "not_a_delivery"),
    ]
    row = stored(sessions, did)
    assert row.status == "deposited" and row.compartment_label == "A01"
    with sessions() as session:
        refused = session.scalars(
            select(NodeEventRecord.error).where(NodeEventRecord.status == "rejected")
        ).all()
    assert sorted(e for e in refused if e) == sorted(
        [
            "invalid_transition",
            "invalid_transition",
            "not_a_dropoff",
            "unknown_reservation",
            "unknown_compartment",
            "not_a_delivery",
            "not_a_delivery",
            "not_a_delivery",
        ]
    )
    assert [w["type"] for w in webhooks(app)] == [
        "dropoff.created",
        "reservation.created",
        "dropoff.created",
        "dropoff.deposited",
    ]


def test_a_deposit_the_node_took_before_hearing_of_the_expiry_stands(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = node_for(client, world, sessions, clock)
    free = available(sessions)
    did = make_dropoff(client, world, "ACME-X1", hold_hours=1)["id"]
    dropped_at = clock() + timedelta(minutes=59)  # in time, by the node's clock
    clock.advance(hours=1, minutes=1)
    with sessions.begin() as session:
        assert expire_holds(Ctx(session=session, keys=app.state.keys, now=clock())) == 1
    assert stored(sessions, did).status == "expired"
    assert available(sessions) == free

    clock.advance(minutes=10)  # the node was offline until now
    assert send(node, dropoff_event("deposited", did, dropped_at, "A01")) == [("applied", None)]
    row = stored(sessions, did)
    assert row.status == "deposited" and row.closed_at is None
    assert row.deposited_at == dropped_at and row.compartment_label == "A01"
    assert available(sessions) == free - 1  # the parcel holds a unit again
    assert compartment_state(sessions, "A01") == "occupied"
    history = client.get(f"/v1/dropoffs/{did}", headers=world.auth("acme")).json()["history"]
    assert [(h["type"], h["from_status"]) for h in history] == [
        ("created", None),
        ("expired", "reserved"),
        ("deposited", "expired"),
    ]
    assert [w["type"] for w in webhooks(app)] == [
        "dropoff.created",
        "dropoff.expired",
        "dropoff.deposited",
    ]

    assert send(node, dropoff_event("collected", did, clock(), "A01")) == [("applied", None)]
    assert available(sessions) == free


def test_a_deposit_after_a_cancel_stands_unless_the_number_is_taken_again(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = node_for(client, world, sessions, clock)
    auth = world.auth("acme")
    first = make_dropoff(client, world, "ACME-Y1")["id"]
    second = make_dropoff(client, world, "ACME-Y2")["id"]
    for did in (first, second):
        assert client.delete(f"/v1/dropoffs/{did}", headers=auth).status_code == 200
    replacement = make_dropoff(client, world, "ACME-Y2")["id"]
    free = available(sessions)

    assert send(
        node,
        dropoff_event("deposited", first, clock(), "A01"),
        dropoff_event("deposited", second, clock(), "A02"),
    ) == [("applied", None), ("rejected", "tracking_number_in_use")]
    assert stored(sessions, first).status == "deposited"
    assert stored(sessions, second).status == "cancelled"
    assert stored(sessions, replacement).status == "reserved"
    assert available(sessions) == free - 1
    assert compartment_state(sessions, "A02") == "free"
