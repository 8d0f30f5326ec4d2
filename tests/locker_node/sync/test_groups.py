"""A recipient's parcels at one bank, end to end: central groups them, the node gives them one
pickup code, central tells the carrier that code for each, and one pickup collects them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.models import Reservation
from locker_node.domain.lifecycle import EventType
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_wire.schemas import DepositedData
from tests.central.conftest import World
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import SyncedNode, courier_code
from tests.locker_node.sync.test_delivery import CarrierReceiver, dispatch, subscribe

ANA = {"name": "Ana", "email": "ana.garcia@example.com"}


def reserve(client: TestClient, world: World, number: str, size: str) -> dict[str, Any]:
    response = client.post(
        "/v1/reservations",
        json={"tracking_number": number, "bank_id": "NYC-1", "size": size, "recipient": ANA},
        headers=world.auth("acme"),
    )
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_one_code_for_the_group_from_the_node_to_the_carrier_and_back(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    subscribe(client, world)
    node = make_node()
    first = reserve(client, world, "ACME-GR1", "S")
    clock.advance(minutes=1)
    second = reserve(client, world, "ACME-GR2", "M")
    group = first["group"]["id"]
    assert second["group"]["id"] == group
    assert node.sync.run_once()
    with transaction(node.node.engine) as conn:
        stored = repo.get_reservation(conn, second["id"])
    assert stored is not None and stored.group_id == group  # the feed brought the group

    headers = node.login("acme", courier_code(app))
    node.deposit("ACME-GR1", headers)
    node.deposit("ACME-GR2", headers)
    [own, joined] = [e for e in node.outbox() if e.type == EventType.PARCEL_DEPOSITED]
    wire = node.sync.wire_event(joined)
    assert wire is not None
    assert wire["data"]["shares_code_with"] == first["id"]
    assert wire["data"]["sealed_pickup_code"] == "" == wire["data"]["sealed_qr_payload"]
    DepositedData.model_validate(wire["data"])  # what central takes
    own_wire = node.sync.wire_event(own)
    assert own_wire is not None and "shares_code_with" not in own_wire["data"]
    assert node.sync.run_once()

    receiver = CarrierReceiver()
    dispatch(app, clock, receiver)
    deposits = {body["data"]["id"]: body["data"] for body in receiver.of_type("parcel.deposited")}
    code = deposits[first["id"]]["pickup_code"]
    assert deposits[second["id"]]["pickup_code"] == code
    assert deposits[second["id"]]["qr_payload"] == deposits[first["id"]]["qr_payload"]
    assert deposits[second["id"]]["shares_code_with"] == first["id"]
    assert deposits[second["id"]]["group"] == {
        "id": group,
        "reservations": [first["id"], second["id"]],
    }

    opened = node.kiosk.post("/api/pickup", json={"code": code})

    assert opened.status_code == 200, opened.text
    assert len(opened.json()["compartments"]) == 2
    assert node.sync.run_once()
    with sessions() as session:
        for rid in (first["id"], second["id"]):
            row = session.get(Reservation, rid)
            assert row is not None and row.status == "picked_up"
