"""PATCH /v1/reservations/{id}: the carrier sets or replaces the recipient's contact details."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.models import Reservation
from tests.central.conftest import World
from tests.central.reservations.test_api import deposit, reserve
from tests.clock import FakeClock

ALICE = {"name": "Alice Example", "email": "alice@example.com", "phone": "+1 212 555 0100"}


def patch(client: TestClient, world: World, rid: str, body: Any, carrier: str = "acme") -> Any:
    return client.patch(f"/v1/reservations/{rid}", json=body, headers=world.auth(carrier))


def stored_recipient(sessions: sessionmaker[Session], rid: str) -> dict[str, Any] | None:
    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None
        return row.recipient


def test_a_recipient_is_set_on_a_reserved_reservation(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    rid = reserve(client, world).json()["id"]
    clock.advance(minutes=5)

    response = patch(client, world, rid, {"recipient": {**ALICE, "language": "es"}})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == rid and body["status"] == "reserved"
    assert "recipient" not in body  # the answer never shows the contact details
    assert body["updated_at"] == clock().isoformat().replace("+00:00", "Z")
    last = body["history"][-1]
    assert (last["type"], last["actor"], last["from_status"], last["to_status"]) == (
        "recipient_updated",
        "carrier",
        "reserved",
        "reserved",
    )
    assert last["data"] == {"fields": ["email", "language", "name", "phone"]}
    assert stored_recipient(sessions, rid) == {**ALICE, "language": "es"}
    # No personal data in the history the carrier (and every report) reads.
    assert "alice" not in json.dumps(body["history"]).lower()


def test_a_deposited_parcels_recipient_is_replaced_as_a_whole(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    rid = reserve(client, world, recipient={"name": "Bob", "email": "bob@example.com"}).json()["id"]
    deposit(sessions, clock, rid)

    response = patch(client, world, rid, {"recipient": {"phone": "+12125550199"}})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "deposited"
    assert (
        response.json()["history"][-1]["reason"] == "recipient contact details replaced by carrier"
    )
    assert stored_recipient(sessions, rid) == {"phone": "+12125550199"}


def test_an_empty_recipient_removes_the_details(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(client, world, recipient=ALICE).json()["id"]

    response = patch(client, world, rid, {"recipient": {}})

    assert response.status_code == 200, response.text
    assert response.json()["history"][-1]["data"] == {"fields": []}
    assert stored_recipient(sessions, rid) is None


def test_a_closed_reservations_details_stay_wiped(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(client, world, recipient=ALICE).json()["id"]
    cancelled = client.delete(f"/v1/reservations/{rid}", headers=world.auth("acme"))
    assert cancelled.status_code == 200, cancelled.text
    history = cancelled.json()["history"]

    response = patch(client, world, rid, {"recipient": ALICE})

    assert response.status_code == 409, response.text
    assert (response.json()["error"], response.json()["status"]) == ("not_active", "cancelled")
    assert stored_recipient(sessions, rid) is None
    after = client.get(f"/v1/reservations/{rid}", headers=world.auth("acme")).json()
    assert after["history"] == history


def test_another_carriers_reservation_is_not_found(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(client, world).json()["id"]

    response = patch(client, world, rid, {"recipient": ALICE}, carrier="usps")

    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    assert stored_recipient(sessions, rid) is None
    assert patch(client, world, "rsv_nope", {"recipient": ALICE}).status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "nothing_to_change"),
        ({"recipient": None}, "nothing_to_change"),
        ({"recipient": {"email": "not-an-email"}}, "validation_error"),
        ({"recipient": {"phone": "call me"}}, "validation_error"),
        ({"recipient": {"language": "fr"}}, "validation_error"),
        ({"recipient": {"nickname": "Al"}}, "validation_error"),
        ({"status": "picked_up"}, "validation_error"),
    ],
)
def test_a_body_that_changes_nothing_or_is_bad_is_422(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    body: dict[str, Any],
    code: str,
) -> None:
    rid = reserve(client, world, recipient=ALICE).json()["id"]

    response = patch(client, world, rid, body)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert stored_recipient(sessions, rid) == ALICE
    history = client.get(f"/v1/reservations/{rid}", headers=world.auth("acme")).json()["history"]
    assert [entry["type"] for entry in history] == ["created"]


def test_without_a_valid_key_nothing_is_said_of_the_body(client: TestClient, world: World) -> None:
    rid = reserve(client, world).json()["id"]

    response = client.patch(
        f"/v1/reservations/{rid}", json={}, headers={"Authorization": "Bearer lk_wrong_key"}
    )

    assert response.status_code == 401, response.text
