"""A walk-up made while central is unreachable reaches it on the next sync, and central's copy
that comes back down the feed leaves the node's own reservation as it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.models import Bank, BankCapacity, Reservation
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.schema import reservations
from locker_wire.schemas import FeedReservation, FeedResponse
from tests.central.conftest import World
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import SyncedNode, courier_code
from tests.locker_node.sync.test_delivery import CarrierReceiver, dispatch, subscribe


@pytest.fixture
def node(make_node: Callable[..., SyncedNode], sessions: sessionmaker[Session]) -> SyncedNode:
    """A node of bank NYC-1 that takes parcels with no reservation (`allow_walk_up`): central's
    bank policy says so, and its feed's bank settings override the node's configuration."""
    with sessions.begin() as session:
        bank = session.get(Bank, "NYC-1")
        assert bank is not None
        bank.allow_walk_up = True
    return make_node(deposit={"allow_walk_up": True})


def walk_up(node: SyncedNode, tracking: str, size: str, headers: dict[str, str]) -> str:
    """A courier deposits a parcel the node has no reservation for; its compartment."""
    answer = node.kiosk.post(
        "/api/courier/deposit", json={"tracking_number": tracking, "size": size}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    opened = answer.json()
    node.board.close_door(node.lock_of(opened["compartment"]))
    confirm = node.kiosk.post(
        f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
    )
    assert confirm.status_code == 200, confirm.text
    compartment: str = confirm.json()["compartment"]
    return compartment


def local_reservations(node: SyncedNode) -> list[repo.Reservation]:
    with transaction(node.node.engine) as conn:
        rows = conn.execute(select(reservations.c.id)).scalars().all()
        found = [repo.get_reservation(conn, rid) for rid in rows]
    return [row for row in found if row is not None]


def available(sessions: sessionmaker[Session], size: str = "M") -> int:
    with sessions() as session:
        row = session.get(BankCapacity, ("NYC-1", size))
        assert row is not None
        return row.available


def test_an_offline_walk_up_is_adopted_once_when_the_node_syncs(
    node: SyncedNode,
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    subscribe(client, world)
    assert node.sync.run_once()  # the day's courier codes
    free = available(sessions)

    node.transport.down = True
    compartment = walk_up(node, "ACME-WALK-1", "M", node.login("acme", courier_code(app)))
    [mine] = local_reservations(node)
    assert mine.id.startswith("walkup-") and mine.walk_up
    assert (mine.status, mine.tracking_number) == ("deposited", "ACMEWALK1")
    assert not node.sync.run_once()
    assert available(sessions) == free

    node.transport.down = False
    assert node.sync.run_once()
    assert node.sync.run_once()  # nothing more to send: adopted once

    with sessions() as session:
        adopted = session.get(Reservation, mine.id)
        assert adopted is not None
        assert (adopted.bank_id, adopted.carrier_id, adopted.tracking_number) == (
            "NYC-1",
            "acme",
            "ACMEWALK1",
        )
        assert (adopted.status, adopted.size, adopted.compartment_label) == (
            "deposited",
            "M",
            compartment,
        )
        assert session.scalar(select(func.count()).select_from(Reservation)) == 1
    assert available(sessions) == free - 1
    receiver = CarrierReceiver()
    dispatch(app, clock, receiver)
    [webhook] = receiver.of_type("parcel.deposited")
    data = webhook["data"]
    assert isinstance(data, dict) and data["id"] == mine.id

    # Central's copy came down the feed (status deposited): the node's own row is untouched.
    assert local_reservations(node) == [mine]

    node.pickup(str(data["pickup_code"]))
    assert node.sync.run_once()
    assert available(sessions) == free
    with sessions() as session:
        adopted = session.get(Reservation, mine.id)
        assert adopted is not None and adopted.status == "picked_up"


def feed_item(reservation: repo.Reservation, **changes: Any) -> FeedReservation:
    return FeedReservation.model_validate(
        {
            "id": reservation.id,
            "carrier": reservation.carrier_id,
            "tracking_number": reservation.tracking_number,
            "size": "S",
            "status": "deposited",
            "compartment": "A01",
            "reserved_until": reservation.created_at,
            "pickup_deadline": reservation.pickup_deadline,
            "updated_at": reservation.updated_at,
        }
        | changes
    )


@pytest.mark.parametrize("status", ["deposited", "reserved", "cancelled", "picked_up"])
def test_a_feed_entry_for_a_walk_up_the_node_holds_changes_nothing(
    node: SyncedNode, app: FastAPI, status: str
) -> None:
    assert node.sync.run_once()
    node.transport.down = True
    walk_up(node, "ACME-WALK-2", "M", node.login("acme", courier_code(app)))
    [mine] = local_reservations(node)

    node.node.flows.apply_feed_page(
        FeedResponse(
            reservations=[feed_item(mine, status=status)],
            commands=[],
            courier_codes=[],
            cursor="c",
            more=False,
        )
    )

    assert local_reservations(node) == [mine]
