"""Outbox to central and feed to the store, end to end through central's real app."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.models import BankCapacity, Compartment, NodeEventRecord, Reservation
from central.webhooks.tasks import WebhookDispatcher
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.central.conftest import World
from tests.central.nodes.support import reserve
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import SyncedNode, courier_code


class CarrierReceiver:
    """The carrier's webhook endpoint: records what central sends it."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(json.loads(request.content))
        return httpx.Response(200)

    def parcel_events(self) -> list[object]:
        return [body["type"] for body in self.received if str(body["type"]).startswith("parcel.")]

    def of_type(self, event_type: str) -> list[dict[str, object]]:
        return [body for body in self.received if body["type"] == event_type]


def subscribe(client: TestClient, world: World) -> None:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=world.auth("acme"),
    )
    assert hook.status_code == 201, hook.text


def dispatch(app: FastAPI, clock: FakeClock, receiver: CarrierReceiver) -> None:
    with httpx.Client(transport=httpx.MockTransport(receiver)) as http:
        WebhookDispatcher(app.state.sessions, app.state.keys, http, clock).run_once()


def history(client: TestClient, world: World, rid: str) -> list[str | None]:
    answer = client.get(f"/v1/reservations/{rid}", headers=world.auth("acme"))
    assert answer.status_code == 200, answer.text
    return [entry["to_status"] for entry in answer.json()["history"]]


def central_events(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        rows = session.scalars(select(NodeEventRecord)).all()
        return [(row.id, row.status) for row in rows]


def test_reservation_deposit_webhook_pickup_and_history(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    subscribe(client, world)
    node = make_node()
    rid = reserve(client, world, "ACME-SYNC1")

    assert node.sync.run_once(heartbeat=True)
    with transaction(node.node.engine) as conn:
        local = repo.get_reservation(conn, rid)
    assert local is not None and local.tracking_number == "ACMESYNC1"

    deposited = node.deposit("ACME-SYNC1", node.login("acme", courier_code(app)))
    assert node.sync.deliver_outbox() == 1
    receiver = CarrierReceiver()
    dispatch(app, clock, receiver)
    [webhook] = receiver.of_type("parcel.deposited")
    data = webhook["data"]
    assert isinstance(data, dict) and data["id"] == rid
    assert data["compartment"] == deposited["compartment"]

    node.pickup(str(data["pickup_code"]))
    assert node.sync.run_once()
    dispatch(app, clock, receiver)

    assert receiver.parcel_events() == ["parcel.deposited", "parcel.picked_up"]
    assert history(client, world, rid)[-2:] == ["deposited", "picked_up"]
    assert [status for _, status in central_events(sessions)] == ["applied", "applied"]
    assert all(event.sent_at is not None for event in node.outbox())


def test_a_deposit_and_pickup_while_central_is_down_arrive_once_in_order_later(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    subscribe(client, world)
    node = make_node()
    rid = reserve(client, world, "ACME-SYNC2")
    assert node.sync.run_once()

    node.transport.down = True
    headers = node.login("acme", courier_code(app))
    deposited = node.deposit("ACME-SYNC2", headers)
    secrets = {
        e.data["parcel_id"]: node.node.keys.unseal(e.data["sealed_pickup_code"])
        for e in node.outbox()
        if e.type == "parcel.deposited"
    }
    node.pickup(secrets[deposited["parcel_id"]])
    assert not node.sync.run_once(heartbeat=True)
    assert not node.sync.run_once()
    assert central_events(sessions) == []

    node.transport.down = False
    assert node.sync.run_once(heartbeat=True)
    assert node.sync.run_once()  # nothing left: nothing is sent twice

    receiver = CarrierReceiver()
    dispatch(app, clock, receiver)
    assert receiver.parcel_events() == ["parcel.deposited", "parcel.picked_up"]
    assert history(client, world, rid)[-2:] == ["deposited", "picked_up"]
    assert [status for _, status in central_events(sessions)] == ["applied", "applied"]
    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None and reservation.status == "picked_up"


def test_batches_go_in_order_and_a_lost_answer_or_outage_mid_way_loses_nothing(
    make_node: Callable[..., SyncedNode],
    sessions: sessionmaker[Session],
) -> None:
    node = make_node(batch_size=2)
    labels = [c.label for c in node.config.compartments]
    for label in labels:
        node.node.doors.mark_out_of_service(label, "test")
    queued = [e.event_id for e in node.outbox() if e.type == "compartment.out_of_service"]
    assert len(queued) == 5

    # The first batch is applied but its answer lost: nothing after it may go first.
    node.transport.lose_answers = 1
    assert not node.sync.run_once()
    assert not [e for e in node.outbox() if e.sent_at is not None]
    # Resent (a duplicate now), the second batch goes, then central goes away mid-way.
    node.transport.fail_after = 2
    assert not node.sync.run_once()
    assert [e.event_id for e in node.outbox() if e.sent_at is not None] == queued[:4]

    node.transport.fail_after = None
    node.transport.down = False
    assert node.sync.run_once()

    sent = [event_id for batch in node.transport.batches for event_id in batch]
    assert sent == queued[:2] + queued[:4] + queued[4:]
    records = central_events(sessions)
    assert sorted(event_id for event_id, _ in records) == sorted(queued)
    assert {status for _, status in records} == {"applied"}
    assert all(e.sent_at is not None for e in node.outbox())


def test_a_compartment_back_in_service_and_kiosk_usage_reach_central(
    make_node: Callable[..., SyncedNode],
    sessions: sessionmaker[Session],
) -> None:
    node = make_node()
    label = node.config.compartments[0].label
    with sessions() as session:
        size = session.scalars(
            select(Compartment.size).where(
                Compartment.bank_id == node.config.bank_id, Compartment.label == label
            )
        ).one()
        before = session.get(BankCapacity, (node.config.bank_id, size))
        assert before is not None
        units = (before.total, before.available)

    node.node.doors.mark_out_of_service(label, "disabled by an operator")
    node.node.doors.return_to_service(label)
    wrong = node.kiosk.post("/api/pickup", json={"code": "0000000000"})
    assert wrong.status_code == 401, wrong.text
    assert node.sync.run_once()

    records = dict(central_event_types(sessions))
    assert records == {
        "compartment.out_of_service": "applied",
        "compartment.in_service": "applied",
        "kiosk.code_failed": "applied",
    }
    with sessions() as session:
        state = session.scalars(
            select(Compartment.state).where(
                Compartment.bank_id == node.config.bank_id, Compartment.label == label
            )
        ).one()
        after = session.get(BankCapacity, (node.config.bank_id, size))
        assert after is not None
        assert (state, (after.total, after.available)) == ("free", units)


def central_event_types(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        return [
            (row.type, row.status)
            for row in session.scalars(select(NodeEventRecord).order_by(NodeEventRecord.type))
        ]
