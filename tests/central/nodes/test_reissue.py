"""`parcel.code_reissued` from a node: history, the new code to the carrier, never kept in clear."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.models import NodeEventRecord, ReservationEvent, WebhookDelivery
from central.nodes import events as node_events
from central.nodes import reissue
from central.nodes import repository as nodes_repository
from central.nodes.batch import BatchState, Handler
from central.nodes.commands import issue_command
from central.webhooks.schemas import EVENT_TYPES
from locker_wire.schemas import CodeReissuedData, NodeEvent
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll, reserve
from tests.central.nodes.test_events import (
    PICKUP_CODE,
    deposit,
    event,
    every_stored_text,
    send,
    setup,
)
from tests.clock import FakeClock

NEW_CODE = "50283716"
NEW_QR = "qr_Hn3vW7pLk2QmZ8xTc4RbJ9sYf6DgE1aU"


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler as `central.nodes.events` registers it."""
    monkeypatch.setitem(node_events._DATA_MODELS, reissue.EVENT_TYPE, reissue.CodeReissuedData)
    monkeypatch.setitem(
        node_events._HANDLERS, reissue.EVENT_TYPE, Handler(reissue.on_code_reissued)
    )


def reissued(
    node: NodeClient,
    reservation_id: str,
    at: datetime,
    *,
    compartment: str = "A01",
    command_id: str | None = None,
    seal_for: str | None = None,
) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    sealed_id = seal_for or event_id
    data: dict[str, Any] = {
        "reservation_id": reservation_id,
        "compartment": compartment,
        "sealed_pickup_code": node.sealed(sealed_id, "pickup_code", NEW_CODE),
        "sealed_qr_payload": node.sealed(sealed_id, "qr_payload", NEW_QR),
    }
    if command_id is not None:
        data["command_id"] = command_id
    return {
        "id": event_id,
        "type": "parcel.code_reissued",
        "occurred_at": at.isoformat(),
        "data": data,
    }


def history(sessions: sessionmaker[Session], rid: str) -> list[ReservationEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                select(ReservationEvent)
                .where(ReservationEvent.reservation_id == rid)
                .order_by(ReservationEvent.id)
            )
        )


def webhooks(app: FastAPI, sessions: sessionmaker[Session], kind: str) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_type == kind)
        ).all()
        return [json.loads(app.state.keys.decrypt(row.body_sealed)) for row in rows]


def deposited(
    client: TestClient, world: World, node: NodeClient, clock: FakeClock, number: str
) -> str:
    rid = reserve(client, world, number)
    assert send(node, deposit(node, rid, clock())) == [("applied", None)]
    return rid


def issue_reissue(app: FastAPI, sessions: sessionmaker[Session], clock: FakeClock, rid: str) -> str:
    with sessions.begin() as session:
        return issue_command(
            session,
            app.state.keys,
            "NYC-1",
            "invalidate_code",
            {"reservation_id": rid, "reissue": True, "reason": "recipient lost the code"},
            clock(),
        ).id


def test_the_new_code_goes_to_the_carrier_and_is_never_stored(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    database_url: str,
) -> None:
    node = setup(client, world, sessions, clock)
    rid = deposited(client, world, node, clock, "ACME-R1")
    command_id = issue_reissue(app, sessions, clock, rid)
    clock.advance(minutes=5)
    sent = reissued(node, rid, clock(), command_id=command_id)

    assert send(node, sent) == [("applied", None)]

    last = history(sessions, rid)[-1]
    assert (last.type, last.from_status, last.to_status) == (
        "code_reissued",
        "deposited",
        "deposited",
    )
    assert last.actor == "operator" and last.at == clock()
    assert last.data == {
        "node_event_id": sent["id"],
        "compartment": "A01",
        "command_id": command_id,
    }
    assert "lost" not in (last.reason or "")  # the operator's own words stay in the audit
    [hook] = webhooks(app, sessions, "parcel.code_reissued")
    assert hook["type"] == "parcel.code_reissued"
    assert (hook["data"]["id"], hook["data"]["status"]) == (rid, "deposited")
    assert hook["data"]["pickup_code"] == NEW_CODE
    assert hook["data"]["qr_payload"] == NEW_QR
    assert hook["data"]["history"][-1]["type"] == "code_reissued"
    assert "pickup_code" not in json.dumps(hook["data"]["history"])

    stored = every_stored_text(sessions)
    for secret in (NEW_CODE, NEW_QR, PICKUP_CODE):
        assert secret not in stored
    assert "sealed_pickup_code" in stored  # the node event is kept, sealed
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                raw = file.read_bytes()
                assert NEW_CODE.encode() not in raw and NEW_QR.encode() not in raw

    # Resending changes nothing: applied once, by the event's id.
    assert send(node, sent) == [("duplicate", None)]
    assert len(webhooks(app, sessions, "parcel.code_reissued")) == 1


def test_without_a_command_of_this_node_the_actor_is_the_system(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    rid = deposited(client, world, node, clock, "ACME-R2")
    other = deposited(client, world, node, clock, "ACME-R3")
    others_command = issue_reissue(app, sessions, clock, other)

    results = send(
        node,
        reissued(node, rid, clock()),
        reissued(node, rid, clock(), command_id=others_command),  # for another reservation
        reissued(node, rid, clock(), command_id=str(uuid.uuid4())),  # unknown
    )

    assert results == [("applied", None)] * 3
    entries = [e for e in history(sessions, rid) if e.type == "code_reissued"]
    assert [(e.actor, e.actor_id) for e in entries] == [("system", None)] * 3
    assert all("command_id" not in (e.data or {}) for e in entries)
    assert len(webhooks(app, sessions, "parcel.code_reissued")) == 3


def test_only_a_parcel_deposited_at_the_nodes_bank_gets_a_new_code(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    waiting = reserve(client, world, "ACME-R4")
    elsewhere = reserve(client, world, "ACME-R5", bank_id="NYC-2")
    other_node = enroll(client, sessions, clock, bank_id="NYC-2")
    assert send(other_node, deposit(other_node, elsewhere, clock())) == [("applied", None)]
    picked = deposited(client, world, node, clock, "ACME-R6")
    picked_up = event("parcel.picked_up", {"reservation_id": picked}, clock())
    assert send(node, picked_up) == [("applied", None)]
    fine = deposited(client, world, node, clock, "ACME-R7")
    before = len(history(sessions, fine))

    results = send(
        node,
        reissued(node, waiting, clock()),
        reissued(node, elsewhere, clock()),
        reissued(node, picked, clock()),
        reissued(node, "rsv_nope", clock()),
        reissued(node, fine, clock(), seal_for=str(uuid.uuid4())),  # sealed for another event
        reissued(node, fine, clock(), compartment="Z99"),
    )

    assert results == [
        ("rejected", "not_deposited"),
        ("rejected", "unknown_reservation"),
        ("rejected", "not_deposited"),
        ("rejected", "unknown_reservation"),
        ("rejected", "invalid_seal"),
        ("rejected", "unknown_compartment"),
    ]
    assert webhooks(app, sessions, "parcel.code_reissued") == []
    assert len(history(sessions, fine)) == before
    for rid in (waiting, elsewhere, picked):
        assert all(e.type != "code_reissued" for e in history(sessions, rid))
    with sessions() as session:
        rejected = session.scalars(
            select(NodeEventRecord).where(NodeEventRecord.type == "parcel.code_reissued")
        ).all()
    assert {row.status for row in rejected} == {"rejected"}


def test_the_handler_called_directly_records_and_enqueues(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    rid = deposited(client, world, node, clock, "ACME-R8")
    wire = reissued(node, rid, clock())
    node_event = NodeEvent.model_validate(wire)
    data = CodeReissuedData.model_validate(wire["data"])

    with sessions.begin() as session:
        ctx = Ctx(session=session, keys=app.state.keys, now=clock())
        node_row = nodes_repository.get_node(session, node.node_id)
        assert node_row is not None
        state = BatchState(
            compartments=nodes_repository.compartment_rows(session, "NYC-1"),
            reservations=nodes_repository.lock_reservations(session, "NYC-1", [rid]),
        )
        reissue.on_code_reissued(ctx, node_row, node_event, data, state)

    assert history(sessions, rid)[-1].type == "code_reissued"
    [hook] = webhooks(app, sessions, "parcel.code_reissued")
    assert hook["data"]["pickup_code"] == NEW_CODE


def test_carriers_can_subscribe_to_code_reissued_alone(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    assert "parcel.code_reissued" in EVENT_TYPES
    hook = client.post(
        "/v1/webhooks",
        json={
            "url": "http://carrier.test/reissued",
            "secret": "whsec-0123456789abcdef",
            "events": ["parcel.code_reissued"],
        },
        headers=world.auth("acme"),
    )
    assert hook.status_code == 201, hook.text
    assert hook.json()["events"] == ["parcel.code_reissued"]
    everything = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/all", "secret": "whsec-0123456789abcdef"},
        headers=world.auth("acme"),
    )
    assert "parcel.code_reissued" in everything.json()["events"]
    node = enroll(client, sessions, clock)
    rid = deposited(client, world, node, clock, "ACME-R9")

    assert send(node, reissued(node, rid, clock())) == [("applied", None)]

    with sessions() as session:
        endpoints = {
            row.endpoint_id
            for row in session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_type == "parcel.code_reissued")
            )
        }
    assert endpoints == {hook.json()["id"], everything.json()["id"]}
