"""Walk-ups reach central: a deposit with no reservation is adopted at the node's bank."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.models import (
    BankCapacity,
    Compartment,
    NodeEventRecord,
    Reservation,
    ReservationEvent,
    WebhookDelivery,
)
from central.reservations import repository as reservations_repository
from tests.central.conftest import World
from tests.central.dropoffs.support import make_dropoff
from tests.central.nodes.support import NodeClient, enroll, reserve
from tests.central.nodes.test_events import (
    PICKUP_CODE,
    QR_PAYLOAD,
    deposit,
    event,
    send,
    setup,
    status_of,
)
from tests.clock import FakeClock


def walk_up_id() -> str:
    return f"walkup-{uuid.uuid4().hex[:24]}"


def walk_up(
    node: NodeClient,
    rid: str,
    *,
    carrier: str = "acme",
    number: str = "ACMEW1",
    size: str = "S",
    compartment: str = "A01",
    at: Any = None,
) -> dict[str, Any]:
    """The node's `parcel.deposited` for a parcel it took with no reservation."""
    made = deposit(node, rid, at if at is not None else node.clock(), compartment)
    made["data"] |= {
        "walk_up": True,
        "carrier_id": carrier,
        "tracking_number": number,
        "reserved_size": size,
    }
    return made


def available(sessions: sessionmaker[Session], bank_id: str = "NYC-1", size: str = "S") -> int:
    with sessions() as session:
        capacity = session.get(BankCapacity, (bank_id, size))
        assert capacity is not None
        return capacity.available


def webhooks(app: FastAPI, sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Every webhook body enqueued so far, in order, opened."""
    with sessions() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        return [json.loads(app.state.keys.decrypt(row.body_sealed)) for row in rows]


def history(sessions: sessionmaker[Session], rid: str) -> list[tuple[Any, ...]]:
    with sessions() as session:
        rows = session.scalars(
            select(ReservationEvent)
            .where(ReservationEvent.reservation_id == rid)
            .order_by(ReservationEvent.id)
        ).all()
        return [(r.type, r.to_status, r.actor, r.actor_id, r.reason) for r in rows]


def reservation_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Reservation)) or 0


def test_a_walk_up_is_adopted_and_told_to_the_carrier_with_its_code(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    free = available(sessions)
    rid = walk_up_id()
    at = clock() - timedelta(minutes=2)

    assert send(node, walk_up(node, rid, compartment="A02", at=at)) == [("applied", None)]

    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None
        assert (row.bank_id, row.carrier_id, row.tracking_number, row.size) == (
            "NYC-1",
            "acme",
            "ACMEW1",
            "S",
        )
        assert (row.status, row.compartment_label) == ("deposited", "A02")
        assert row.reserved_until == row.created_at == row.deposited_at == at
        assert row.pickup_deadline == at + timedelta(hours=72)
        compartment = session.scalars(
            select(Compartment).where(Compartment.bank_id == "NYC-1", Compartment.label == "A02")
        ).one()
        assert compartment.state == "occupied"
    assert history(sessions, rid) == [
        ("reserved", "reserved", "courier", node.node_id, "walk-up deposit at the kiosk"),
        ("deposited", "deposited", "courier", node.node_id, None),
    ]
    assert available(sessions) == free - 1

    [hook] = webhooks(app, sessions)  # no reservation.created: the deposit is its first word
    assert hook["type"] == "parcel.deposited"
    assert hook["data"]["id"] == rid and hook["data"]["status"] == "deposited"
    assert hook["data"]["pickup_code"] == PICKUP_CODE
    assert hook["data"]["qr_payload"] == QR_PAYLOAD

    found = client.get("/v1/reservations?tracking_number=acmew1", headers=world.auth("acme"))
    assert found.status_code == 200, found.text
    assert [(r["id"], r["status"]) for r in found.json()["items"]] == [(rid, "deposited")]

    picked = event("parcel.picked_up", {"reservation_id": rid}, clock())
    assert send(node, picked) == [("applied", None)]
    assert status_of(sessions, rid) == "picked_up"
    assert available(sessions) == free


def test_a_walk_up_takes_its_unit_even_from_a_full_class(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    reserve(client, world, "ACME-FULL1")
    reserve(client, world, "ACME-FULL2")
    assert available(sessions) == 0
    rid = walk_up_id()

    assert send(node, walk_up(node, rid)) == [("applied", None)]
    # total minus active holds, below zero until a parcel leaves: allocation refuses the class.
    assert available(sessions) == -1
    refused = client.post(
        "/v1/reservations",
        json={"tracking_number": "ACME-FULL3", "bank_id": "NYC-1", "size": "S"},
        headers=world.auth("acme"),
    )
    assert refused.status_code == 409 and refused.json()["error"] == "no_capacity"

    assert send(node, event("parcel.picked_up", {"reservation_id": rid}, clock())) == [
        ("applied", None)
    ]
    assert available(sessions) == 0


def test_a_reservation_made_at_another_bank_is_cancelled_for_the_walk_up(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    elsewhere = reserve(client, world, "ACME-W2", bank_id="NYC-2")
    free_here, free_there = available(sessions), available(sessions, "NYC-2")
    rid = walk_up_id()

    assert send(node, walk_up(node, rid, number="ACME-W2")) == [("applied", None)]

    assert status_of(sessions, elsewhere) == "cancelled"
    assert history(sessions, elsewhere)[-1] == (
        "cancelled",
        "cancelled",
        "system",
        None,
        "deposited as a walk-up at bank NYC-1",
    )
    assert status_of(sessions, rid) == "deposited"
    assert available(sessions, "NYC-2") == free_there + 1
    assert available(sessions) == free_here - 1
    kinds = [(h["type"], h["data"]["id"]) for h in webhooks(app, sessions)]
    assert kinds[-2:] == [("reservation.cancelled", elsewhere), ("parcel.deposited", rid)]


def test_a_reservation_the_node_had_not_heard_of_yet_is_replaced_at_the_same_bank(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    # Reserved while the node was offline: the courier found no reservation and walked up.
    node = setup(client, world, sessions, clock)
    free = available(sessions)
    mine = reserve(client, world, "ACME-W3")
    rid = walk_up_id()

    batch = [
        walk_up(node, rid, number="ACME-W3"),
        event("parcel.picked_up", {"reservation_id": mine}, clock()),
    ]
    # The reservation it replaced cannot be collected any more; the walk-up holds the unit.
    assert send(node, *batch) == [("applied", None), ("rejected", "invalid_transition")]
    assert (status_of(sessions, mine), status_of(sessions, rid)) == ("cancelled", "deposited")
    assert available(sessions) == free - 1


def test_a_parcel_deposited_elsewhere_already_rejects_the_walk_up(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    other = enroll(client, sessions, clock, bank_id="NYC-2")
    elsewhere = reserve(client, world, "ACME-W4", bank_id="NYC-2")
    assert send(other, deposit(other, elsewhere, clock())) == [("applied", None)]
    before = (reservation_count(sessions), available(sessions), len(webhooks(app, sessions)))
    rid = walk_up_id()
    sent = walk_up(node, rid, number="ACME-W4")

    assert send(node, sent) == [("rejected", "tracking_number_in_use")]

    assert (reservation_count(sessions), available(sessions), len(webhooks(app, sessions))) == (
        before
    )
    assert status_of(sessions, elsewhere) == "deposited"
    with sessions() as session:
        record = session.get(NodeEventRecord, sent["id"])
        assert record is not None
        assert (record.status, record.error) == ("rejected", "tracking_number_in_use")
    # Sent again (the node resends what it did not hear back about): the same event, once.
    assert send(node, sent) == [("duplicate", None)]


def test_what_adoption_cannot_attach_to_anyone_is_rejected_and_writes_nothing(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    waiting = reserve(client, world, "ACME-W5", bank_id="NYC-2")
    before = (reservation_count(sessions), available(sessions), len(webhooks(app, sessions)))
    resealed = walk_up(node, walk_up_id(), number="ACME-W5")
    resealed["data"]["sealed_pickup_code"] = walk_up(node, walk_up_id())["data"][
        "sealed_pickup_code"
    ]
    incomplete = walk_up(node, walk_up_id())
    del incomplete["data"]["reserved_size"]

    results = send(
        node,
        walk_up(node, walk_up_id(), carrier="nobody"),
        walk_up(node, walk_up_id(), number="ACME-W5", compartment="Z99"),
        resealed,
        incomplete,
        walk_up(node, "rsv_forged0123456789abc"),
        # A node of an earlier version names a reservation central lacks: as ever.
        deposit(node, walk_up_id(), clock()),
    )

    assert results == [
        ("rejected", "unknown_carrier"),
        ("rejected", "unknown_compartment"),
        ("rejected", "invalid_seal"),
        ("rejected", "invalid_event"),
        ("rejected", "invalid_event"),
        ("rejected", "unknown_reservation"),
    ]
    assert (reservation_count(sessions), available(sessions), len(webhooks(app, sessions))) == (
        before
    )
    assert status_of(sessions, waiting) == "reserved"  # not cancelled for a refused walk-up


def test_a_number_not_valid_for_the_carrier_is_kept_as_given_and_said_so(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = walk_up_id()

    assert send(node, walk_up(node, rid, carrier="usps", number="notusps 42")) == [
        ("applied", None)
    ]

    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None and (row.carrier_id, row.tracking_number) == ("usps", "NOTUSPS42")
    reason = history(sessions, rid)[0][4]
    assert reason.startswith("walk-up deposit at the kiosk; kept as given: ")
    assert "not a valid USPS tracking number" in reason


def test_an_offline_walk_up_and_its_pickup_arrive_in_one_batch(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    free = available(sessions)
    rid = walk_up_id()
    then = clock() - timedelta(hours=5)  # queued on the node while central was unreachable
    batch = [
        walk_up(node, rid, at=then),
        event("parcel.picked_up", {"reservation_id": rid}, then + timedelta(hours=1)),
    ]

    assert send(node, *batch) == [("applied", None), ("applied", None)]
    assert send(node, *batch) == [("duplicate", None), ("duplicate", None)]

    assert status_of(sessions, rid) == "picked_up"
    assert [step[1] for step in history(sessions, rid)] == ["reserved", "deposited", "picked_up"]
    assert available(sessions) == free


def test_a_walk_up_once_adopted_is_a_reservation_like_any_other(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    other = enroll(client, sessions, clock, bank_id="NYC-2")
    rid = walk_up_id()
    assert send(node, walk_up(node, rid)) == [("applied", None)]
    free = available(sessions)

    # Another event of the same walk-up (not a resend): the normal path, which refuses it.
    assert send(node, walk_up(node, rid)) == [("rejected", "invalid_transition")]
    # Another bank's node naming it: as missing as any other bank's reservation.
    assert send(other, walk_up(other, rid, number="ACMEW9")) == [
        ("rejected", "unknown_reservation")
    ]
    reissue = deposit(node, rid, clock())
    reissue["type"] = "parcel.code_reissued"
    assert send(node, reissue) == [("applied", None)]
    assert available(sessions) == free

    feed = node.get("/v1/node/feed?courier_codes=false")
    assert feed.status_code == 200, feed.text
    [item] = [r for r in feed.json()["reservations"] if r["id"] == rid]
    assert (item["status"], item["compartment"], item["tracking_number"]) == (
        "deposited",
        "A01",
        "ACMEW1",
    )


def test_a_reservation_made_meanwhile_undoes_the_whole_adoption(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The carrier reserves the number again between adoption's checks and its insert: the
    # insert meets the new reservation, and the cancel made before it is undone with it.
    node = setup(client, world, sessions, clock)
    elsewhere = reserve(client, world, "ACME-W6", bank_id="NYC-2")
    before = (reservation_count(sessions), available(sessions), len(webhooks(app, sessions)))
    monkeypatch.setattr(reservations_repository, "insert_if_no_active_twin", lambda *_: False)

    assert send(node, walk_up(node, walk_up_id(), number="ACME-W6")) == [
        ("rejected", "tracking_number_in_use")
    ]

    assert status_of(sessions, elsewhere) == "reserved"
    assert (reservation_count(sessions), available(sessions), len(webhooks(app, sessions))) == (
        before
    )


def test_a_waiting_drop_off_under_the_same_number_rejects_the_walk_up(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    dropoff = make_dropoff(client, world, "ACME-W9")
    rid = walk_up_id()

    assert send(node, walk_up(node, rid, number="ACME-W9")) == [
        ("rejected", "tracking_number_in_use")
    ]
    assert status_of(sessions, dropoff["id"]) == "reserved"
