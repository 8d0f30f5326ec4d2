"""Carrier API v1: moving a reserved parcel to another bank (overflow), and what follows it:
capacity, history, the webhook, the recipient's notice and the old bank's node."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central.models import BankCapacity, NodeCommand, Notice, Reservation, WebhookDelivery
from locker_wire.commands import CancelReservation, parse_command
from locker_wire.schemas import Command
from tests.central.conftest import World, make_bank
from tests.central.nodes.support import enroll
from tests.clock import FakeClock

# NYC-1 and NYC-2 are 1.6 km apart; BOS-1 is 300 km away. Each has S:2, M:2, L:1.
HOOK = {"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"}


def reserve(client: TestClient, world: World, number: str = "ACME-0001", **body: Any) -> Any:
    payload = {"tracking_number": number, "bank_id": "NYC-1", "size": "S"} | body
    response = client.post("/v1/reservations", json=payload, headers=world.auth("acme"))
    assert response.status_code == 201, response.text
    return response.json()


def move(
    client: TestClient, world: World, rid: str, body: Any = None, carrier: str = "acme"
) -> Any:
    path = f"/v1/reservations/{rid}/redirect"
    if body is None:
        return client.post(path, headers=world.auth(carrier))
    return client.post(path, json=body, headers=world.auth(carrier))


def free(sessions: sessionmaker[Session], bank_id: str, size: str) -> int:
    with sessions() as session:
        row = session.get(BankCapacity, (bank_id, size))
        assert row is not None
        return row.available


def stored(sessions: sessionmaker[Session], rid: str) -> Reservation:
    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None
        session.expunge(row)
        return row


def webhook_bodies(app: FastAPI, sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        return [json.loads(app.state.keys.decrypt(row.body_sealed)) for row in rows]


def test_a_carrier_moves_its_reservation_to_a_named_bank(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    created = reserve(client, world)
    clock.advance(hours=2)

    answer = move(client, world, created["id"], {"bank_id": "NYC-2"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"], body["bank"]["id"], body["size"]) == (
        created["id"],
        "reserved",
        "NYC-2",
        "S",
    )
    last = body["history"][-1]
    assert (last["type"], last["actor"], last["from_status"], last["to_status"]) == (
        "redirected",
        "carrier",
        "reserved",
        "reserved",
    )
    assert last["data"] == {"from_bank": "NYC-1", "to_bank": "NYC-2", "by": "carrier"}
    assert (free(sessions, "NYC-1", "S"), free(sessions, "NYC-2", "S")) == (2, 1)
    # The new bank's 72 h hold from now ends later than the one it had: that is the hold now.
    row = stored(sessions, created["id"])
    assert row.reserved_until == clock() + timedelta(hours=72)
    assert row.updated_at == clock()
    # The carrier reads it where it now is.
    again = client.get(f"/v1/reservations/{created['id']}", headers=world.auth("acme"))
    assert again.json()["bank"]["id"] == "NYC-2"


def test_the_longer_hold_is_kept(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    created = reserve(client, world, hold_hours=100)

    assert move(client, world, created["id"], {"bank_id": "NYC-2"}).status_code == 200

    assert stored(sessions, created["id"]).reserved_until == clock() + timedelta(hours=100)


@pytest.mark.parametrize("body", [None, {}])
def test_no_place_means_the_nearest_bank_with_room_within_5_km(
    client: TestClient, world: World, body: Any
) -> None:
    created = reserve(client, world)

    answer = move(client, world, created["id"], body)

    assert answer.status_code == 200, answer.text
    assert answer.json()["bank"]["id"] == "NYC-2"  # BOS-1 is far beyond 5 km


def test_near_a_place_takes_the_nearest_bank_with_room_there(
    client: TestClient, world: World
) -> None:
    created = reserve(client, world)

    answer = move(client, world, created["id"], {"near": {"lat": 42.36, "lon": -71.06}})

    assert answer.status_code == 200, answer.text
    assert answer.json()["bank"]["id"] == "BOS-1"


def test_a_full_target_is_409_no_capacity_with_alternatives_and_changes_nothing(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    with sessions.begin() as session:
        make_bank(session, bank_id="NYC-3", now=clock(), lat=40.7410, lon=-73.9897)
    for number in ("ACME-F1", "ACME-F2"):
        reserve(client, world, number, bank_id="NYC-2")
    created = reserve(client, world)
    before = stored(sessions, created["id"])

    answer = move(client, world, created["id"], {"bank_id": "NYC-2"})

    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "no_capacity"
    assert [a["bank_id"] for a in answer.json()["alternatives"]] == ["NYC-3"]
    assert (free(sessions, "NYC-1", "S"), free(sessions, "NYC-2", "S")) == (1, 0)
    after = stored(sessions, created["id"])
    assert (after.bank_id, after.reserved_until, after.updated_at) == (
        before.bank_id,
        before.reserved_until,
        before.updated_at,
    )
    history = client.get(f"/v1/reservations/{created['id']}", headers=world.auth("acme"))
    assert [h["type"] for h in history.json()["history"]] == ["created"]


def test_a_near_search_with_no_room_is_409_too(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    reserve(client, world, "ACME-X1", bank_id="NYC-2", size="L")
    created = reserve(client, world, size="L")

    answer = move(client, world, created["id"])

    assert answer.status_code == 409
    assert (answer.json()["error"], answer.json()["alternatives"]) == ("no_capacity", [])
    assert free(sessions, "NYC-1", "L") == 0  # still held where it was


def test_only_a_reserved_delivery_moves(client: TestClient, world: World) -> None:
    created = reserve(client, world)
    cancel = client.delete(f"/v1/reservations/{created['id']}", headers=world.auth("acme"))
    assert cancel.status_code == 200

    answer = move(client, world, created["id"], {"bank_id": "NYC-2"})

    assert answer.status_code == 409
    assert (answer.json()["error"], answer.json()["status"]) == ("not_redirectable", "cancelled")


def test_a_deposited_parcel_stays(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    created = reserve(client, world)
    with sessions.begin() as session:
        session.execute(
            update(Reservation)
            .where(Reservation.id == created["id"])
            .values(status="deposited", compartment_label="A01")
        )

    answer = move(client, world, created["id"], {"bank_id": "NYC-2"})

    assert answer.status_code == 409
    assert answer.json()["error"] == "not_redirectable"
    assert free(sessions, "NYC-2", "S") == 2


def test_another_carriers_reservation_is_not_found(client: TestClient, world: World) -> None:
    created = reserve(client, world)

    assert move(client, world, created["id"], {"bank_id": "NYC-2"}, "fedex").status_code == 404
    assert move(client, world, "rsv_nope", {"bank_id": "NYC-2"}).status_code == 404
    assert client.post(f"/v1/reservations/{created['id']}/redirect").status_code == 401


def test_bad_places_are_refused(client: TestClient, world: World) -> None:
    created = reserve(client, world)
    rid = created["id"]

    both = move(client, world, rid, {"bank_id": "NYC-2", "near": {"lat": 1, "lon": 1}})
    unknown = move(client, world, rid, {"bank_id": "NOWHERE"})
    misspelt = move(client, world, rid, {"bank": "NYC-2"})

    assert (both.status_code, both.json()["error"]) == (422, "validation_error")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_bank")
    assert misspelt.status_code == 422


def test_moving_it_to_where_it_is_changes_nothing(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    created = reserve(client, world)

    answer = move(client, world, created["id"], {"bank_id": "NYC-1"})

    assert answer.status_code == 200
    assert [h["type"] for h in answer.json()["history"]] == ["created"]
    assert free(sessions, "NYC-1", "S") == 1


def test_parcel_dimensions_must_fit_the_new_bank(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    parcel = {"length_mm": 150, "width_mm": 600, "height_mm": 300}
    created = reserve(client, world, size=None, parcel=parcel)
    assert created["size"] == "M"
    # NYC-2's medium doors are made too shallow for it: only its large ones fit the parcel.
    with sessions.begin() as session:
        session.execute(
            update(BankCapacity)
            .where(BankCapacity.bank_id == "NYC-2", BankCapacity.size == "M")
            .values(height_mm=100)
        )

    answer = move(client, world, created["id"], {"bank_id": "NYC-2"})

    assert (answer.status_code, answer.json()["error"]) == (422, "parcel_too_large")


def test_the_carrier_hears_a_reservation_redirected_webhook(
    client: TestClient, world: World, app: FastAPI, sessions: sessionmaker[Session]
) -> None:
    assert client.post("/v1/webhooks", json=HOOK, headers=world.auth("acme")).status_code == 201
    created = reserve(client, world)

    move(client, world, created["id"], {"bank_id": "NYC-2"})

    *_, body = webhook_bodies(app, sessions)
    assert body["type"] == "reservation.redirected"
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["data"]["id"] == created["id"]
    assert body["data"]["bank"]["id"] == "NYC-2"
    assert body["data"]["history"][-1]["data"]["from_bank"] == "NYC-1"


def test_a_webhook_can_ask_for_redirects_alone(
    client: TestClient, world: World, app: FastAPI, sessions: sessionmaker[Session]
) -> None:
    hook = HOOK | {"events": ["reservation.redirected"]}
    assert client.post("/v1/webhooks", json=hook, headers=world.auth("acme")).status_code == 201
    created = reserve(client, world)

    move(client, world, created["id"], {"bank_id": "NYC-2"})

    assert [b["type"] for b in webhook_bodies(app, sessions)] == ["reservation.redirected"]


def test_the_recipient_is_told_where_the_parcel_goes(
    client: TestClient, world: World, app: FastAPI, sessions: sessionmaker[Session]
) -> None:
    recipient = {"email": "ana@example.com", "phone": "+1 212 555 0100", "language": "es"}
    created = reserve(client, world, recipient=recipient)

    move(client, world, created["id"], {"bank_id": "NYC-2"})

    with sessions() as session:
        rows = session.scalars(select(Notice).order_by(Notice.id)).all()
        facts = [json.loads(app.state.keys.decrypt(row.payload_sealed)) for row in rows]
    assert [(r.kind, r.channel, r.bank_id, r.language) for r in rows] == [
        ("redirected", "email", "NYC-2", "es"),
        ("redirected", "sms", "NYC-2", "es"),
    ]
    assert all("code" not in f for f in facts)


def test_the_old_banks_node_is_told_to_forget_it(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    created = reserve(client, world)

    move(client, world, created["id"], {"bank_id": "NYC-2"})

    with sessions() as session:
        [command] = session.scalars(select(NodeCommand)).all()
        assert (command.bank_id, command.node_id, command.type) == (
            "NYC-1",
            node.node_id,
            "cancel_reservation",
        )
        assert command.payload == {"reservation_id": created["id"], "reason": "redirected"}
        # Alive until the hold would have ended at the old bank.
        assert command.expires_at == command.issued_at + timedelta(hours=72)
    feed = node.get("/v1/node/feed?courier_codes=false")
    assert feed.status_code == 200, feed.text
    [sent] = feed.json()["commands"]
    payload = parse_command(Command.model_validate(sent))
    assert isinstance(payload, CancelReservation) and payload.reservation_id == created["id"]
    assert [r["id"] for r in feed.json()["reservations"]] == []  # no longer in its feed


def test_an_accessible_reservation_moves_only_to_a_free_accessible_unit(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    def accessible_units(bank_id: str, count: int) -> None:
        with sessions.begin() as session:
            session.execute(
                update(BankCapacity)
                .where(BankCapacity.bank_id == bank_id, BankCapacity.size == "S")
                .values(accessible_total=count, accessible_available=count)
            )

    def accessible_free(bank_id: str) -> int:
        with sessions() as session:
            row = session.get(BankCapacity, (bank_id, "S"))
            assert row is not None
            return row.accessible_available

    accessible_units("NYC-1", 1)
    created = reserve(client, world, recipient={"accessible": True})
    assert stored(sessions, created["id"]).accessible_unit
    assert accessible_free("NYC-1") == 0

    refused = move(client, world, created["id"], {"bank_id": "NYC-2"})
    accessible_units("NYC-2", 1)
    moved = move(client, world, created["id"], {"bank_id": "NYC-2"})

    assert (refused.status_code, refused.json()["error"]) == (409, "no_capacity")
    assert moved.status_code == 200, moved.text
    row = stored(sessions, created["id"])
    assert (row.bank_id, row.accessible, row.accessible_unit) == ("NYC-2", True, True)
    assert (accessible_free("NYC-1"), accessible_free("NYC-2")) == (1, 0)
    assert (free(sessions, "NYC-1", "S"), free(sessions, "NYC-2", "S")) == (2, 1)
