"""Overflow end to end against central's real app: the kiosk lists the nearby banks central has
room at, moves a parcel there, and each side ends up with the reservation where it now is; a
carrier's move reaches the old bank's node as a command. Central down: nothing moves."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.models import BankCapacity, NodeCommand, Reservation
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.central.conftest import World
from tests.locker_node.sync.conftest import SyncedNode, courier_code

OVERFLOW = "/api/courier/overflow"


@pytest.fixture
def node(make_node: Callable[..., SyncedNode]) -> SyncedNode:
    return make_node()


def reserve(client: TestClient, world: World, number: str, size: str = "S") -> str:
    answer = client.post(
        "/v1/reservations",
        json={"tracking_number": number, "bank_id": "NYC-1", "size": size},
        headers=world.auth("acme"),
    )
    assert answer.status_code == 201, answer.text
    rid: str = answer.json()["id"]
    return rid


def local_status(node: SyncedNode, rid: str) -> str | None:
    with transaction(node.node.engine) as conn:
        found = repo.get_reservation(conn, rid)
    return None if found is None else found.status


def central_row(sessions: sessionmaker[Session], rid: str) -> Reservation:
    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None
        session.expunge(row)
        return row


def free(sessions: sessionmaker[Session], bank_id: str, size: str = "S") -> int:
    with sessions() as session:
        row = session.get(BankCapacity, (bank_id, size))
        assert row is not None
        return row.available


def test_a_courier_sends_a_parcel_to_a_nearby_bank(
    node: SyncedNode,
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
) -> None:
    rid = reserve(client, world, "ACME-OV-1")
    assert node.sync.run_once()
    assert local_status(node, rid) == "reserved"
    headers = node.login("acme", courier_code(app))

    listing = node.kiosk.get(OVERFLOW, params={"tracking_number": "ACME-OV-1"}, headers=headers)

    assert listing.status_code == 200, listing.text
    [bank] = listing.json()["banks"]  # BOS-1 is 300 km away
    assert (bank["bank_id"], bank["name"], bank["address"], bank["free"]) == (
        "NYC-2",
        "Bank NYC-2",
        "NYC-2 Street",
        2,
    )

    moved = node.kiosk.post(
        OVERFLOW, json={"tracking_number": "ACME-OV-1", "bank_id": "NYC-2"}, headers=headers
    )

    assert moved.status_code == 200, moved.text
    assert moved.json() == {
        "status": "redirected",
        "bank_id": "NYC-2",
        "name": "Bank NYC-2",
        "address": "NYC-2 Street",
        "size": "S",
    }
    row = central_row(sessions, rid)
    assert (row.bank_id, row.status) == ("NYC-2", "reserved")
    assert (free(sessions, "NYC-1"), free(sessions, "NYC-2")) == (2, 1)
    assert local_status(node, rid) == "cancelled"
    with sessions() as session:  # the node forgot it itself: no command was needed
        assert session.scalars(select(NodeCommand)).all() == []
    assert node.sync.run_once()
    assert local_status(node, rid) == "cancelled"  # and the feed does not bring it back


def test_with_central_down_the_parcel_stays_with_the_courier(
    node: SyncedNode,
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
) -> None:
    rid = reserve(client, world, "ACME-OV-2")
    assert node.sync.run_once()
    headers = node.login("acme", courier_code(app))
    node.transport.down = True

    listing = node.kiosk.get(OVERFLOW, params={"tracking_number": "ACME-OV-2"}, headers=headers)
    moved = node.kiosk.post(
        OVERFLOW, json={"tracking_number": "ACME-OV-2", "bank_id": "NYC-2"}, headers=headers
    )

    assert (listing.status_code, listing.json()["error"]) == (503, "central_unreachable")
    assert (moved.status_code, moved.json()["error"]) == (503, "central_unreachable")
    assert local_status(node, rid) == "reserved"
    assert central_row(sessions, rid).bank_id == "NYC-1"


def test_a_full_bank_is_refused_with_centrals_reason(
    node: SyncedNode,
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
) -> None:
    answer = client.post(
        "/v1/reservations",
        json={"tracking_number": "ACME-OV-F", "bank_id": "NYC-2", "size": "L"},
        headers=world.auth("acme"),
    )
    assert answer.status_code == 201
    rid = reserve(client, world, "ACME-OV-3", size="L")
    assert node.sync.run_once()
    headers = node.login("acme", courier_code(app))

    listing = node.kiosk.get(OVERFLOW, params={"tracking_number": "ACME-OV-3"}, headers=headers)
    moved = node.kiosk.post(
        OVERFLOW, json={"tracking_number": "ACME-OV-3", "bank_id": "NYC-2"}, headers=headers
    )

    assert listing.json() == {"banks": []}
    assert (moved.status_code, moved.json()["error"]) == (409, "no_capacity")
    assert local_status(node, rid) == "reserved"
    assert central_row(sessions, rid).bank_id == "NYC-1"


def test_a_carriers_move_reaches_the_old_banks_node(
    node: SyncedNode, client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(client, world, "ACME-OV-4")
    assert node.sync.run_once()
    assert local_status(node, rid) == "reserved"

    answer = client.post(
        f"/v1/reservations/{rid}/redirect", json={"bank_id": "NYC-2"}, headers=world.auth("acme")
    )
    assert answer.status_code == 200, answer.text
    assert node.sync.run_once()

    assert local_status(node, rid) == "cancelled"
    with sessions() as session:
        [command] = session.scalars(select(NodeCommand)).all()
        assert (command.type, command.status) == ("cancel_reservation", "acknowledged")
