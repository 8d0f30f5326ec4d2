"""Parcel groups in the carrier API: one recipient's parcels at one bank, listed together."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.keys import ServiceKeys
from central.models import Reservation, WebhookDelivery
from central.reservations.groups import contact_key, group_id_for
from tests.central.conftest import TEST_SECRET, World
from tests.central.reservations.test_api import reserve
from tests.clock import FakeClock

KEYS = ServiceKeys(TEST_SECRET.encode())
ANA = {"name": "Ana", "email": "Ana.Garcia@Example.com", "phone": "+1 (212) 555-0143"}


def test_a_group_id_is_keyed_deterministic_and_says_nothing_of_the_contact() -> None:
    made = group_id_for(KEYS, "NYC-1", "acme", ANA)

    assert made is not None and made.startswith("grp_") and len(made) == 28
    assert made == group_id_for(KEYS, "NYC-1", "acme", {"email": "ana.garcia@example.com "})
    assert "ana" not in made.lower() and "example" not in made
    # Another bank, another carrier, another recipient, another service key: another group.
    assert made != group_id_for(KEYS, "NYC-2", "acme", ANA)
    assert made != group_id_for(KEYS, "NYC-1", "ups", ANA)
    assert made != group_id_for(KEYS, "NYC-1", "acme", {"email": "bob@example.com"})
    other_keys = ServiceKeys(b"another-secret-key-0123456789-abcdefghijklmnop")
    assert made != group_id_for(other_keys, "NYC-1", "acme", ANA)
    # Without contact details there is no group; a name alone is none.
    assert group_id_for(KEYS, "NYC-1", "acme", None) is None
    assert group_id_for(KEYS, "NYC-1", "acme", {"name": "Ana"}) is None


def test_the_contact_is_the_email_else_the_phone_as_e164() -> None:
    assert contact_key(ANA) == "email:ana.garcia@example.com"
    assert contact_key({"phone": "+1 (212) 555-0143"}) == "phone:+12125550143"
    assert contact_key({"phone": "+1 212-555-0143"}) == "phone:+12125550143"
    # No country code: its digits, as given (no default country is guessed here).
    assert contact_key({"phone": "(212) 555-0143"}) == "phone:2125550143"
    assert contact_key({"email": "", "phone": ""}) is None


def created(client: TestClient, world: World, number: str, **body: Any) -> dict[str, Any]:
    response = reserve(client, world, tracking_number=number, **body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def fetched(client: TestClient, world: World, rid: str, carrier: str = "acme") -> dict[str, Any]:
    response = client.get(f"/v1/reservations/{rid}", headers=world.auth(carrier))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_recipients_reservations_at_a_bank_are_one_group(
    client: TestClient, world: World, database_url: str, clock: FakeClock
) -> None:
    first = created(client, world, "ACME-G1", recipient=ANA)
    clock.advance(minutes=1)
    second = created(client, world, "ACME-G2", size="M", recipient={"email": ANA["email"].lower()})
    lone = created(client, world, "ACME-G3", size="M")
    other = created(client, world, "ACME-G4", recipient={"email": "bob@example.com"})

    group = first["group"]
    assert group["id"] == group_id_for(KEYS, "NYC-1", "acme", ANA)
    assert group["reservations"] == [first["id"]]
    assert second["group"]["id"] == group["id"]
    if database_url.startswith("sqlite"):
        # One indexed lookup when it is made: the group-mates come with the answer.
        assert second["group"]["reservations"] == [first["id"], second["id"]]
    else:
        # PostgreSQL's batched creates read nothing more: the answer lists the new one alone.
        assert second["group"]["reservations"] == [second["id"]]
    assert lone["group"] is None
    assert other["group"]["id"] != group["id"]
    assert other["group"]["reservations"] == [other["id"]]
    for rid in (first["id"], second["id"]):
        assert fetched(client, world, rid)["group"] == {
            "id": group["id"],
            "reservations": [first["id"], second["id"]],
        }
    listed = client.get("/v1/reservations", headers=world.auth("acme")).json()["items"]
    groups = {item["id"]: item["group"] for item in listed}
    assert groups[lone["id"]] is None
    assert groups[first["id"]]["reservations"] == [first["id"], second["id"]]


def test_a_group_is_its_active_reservations_and_one_carriers_own(
    client: TestClient, world: World, clock: FakeClock
) -> None:
    first = created(client, world, "ACME-G5", recipient=ANA)
    clock.advance(minutes=1)
    second = created(client, world, "ACME-G6", size="M", recipient=ANA)
    theirs = created(client, world, "1Z999AA10123456784", carrier="ups", recipient=ANA)

    assert theirs["group"]["id"] != first["group"]["id"]
    assert theirs["group"]["reservations"] == [theirs["id"]]
    cancelled = client.delete(f"/v1/reservations/{first['id']}", headers=world.auth("acme"))
    assert cancelled.status_code == 200, cancelled.text

    assert fetched(client, world, second["id"])["group"]["reservations"] == [second["id"]]
    # A closed reservation still shows its group, itself and the active rest of it.
    assert fetched(client, world, first["id"])["group"]["reservations"] == [
        second["id"],
        first["id"],
    ]


def test_contact_details_given_later_put_the_reservation_in_its_group(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    first = created(client, world, "ACME-G7", recipient=ANA)
    clock.advance(minutes=1)
    later = created(client, world, "ACME-G8", size="M")
    assert later["group"] is None

    patched = client.patch(
        f"/v1/reservations/{later['id']}",
        json={"recipient": {"phone": "+44 20 7946 0958", "email": ANA["email"]}},
        headers=world.auth("acme"),
    )

    assert patched.status_code == 200, patched.text
    assert patched.json()["group"] == {
        "id": first["group"]["id"],
        "reservations": [first["id"], later["id"]],
    }
    removed = client.patch(
        f"/v1/reservations/{later['id']}", json={"recipient": {}}, headers=world.auth("acme")
    )
    assert removed.status_code == 200 and removed.json()["group"] is None
    with sessions() as session:
        row = session.get(Reservation, later["id"])
        assert row is not None and row.group_id is None


def test_the_created_webhook_carries_the_group(
    client: TestClient, world: World, app: FastAPI, sessions: sessionmaker[Session]
) -> None:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=world.auth("acme"),
    )
    assert hook.status_code == 201, hook.text

    made = created(client, world, "ACME-G9", recipient=ANA)

    with sessions() as session:
        bodies = [
            json.loads(app.state.keys.decrypt(sealed))
            for sealed in session.scalars(
                select(WebhookDelivery.body_sealed).where(
                    WebhookDelivery.event_type == "reservation.created"
                )
            )
        ]
    assert [body["data"]["group"] for body in bodies] == [made["group"]]
    assert ANA["email"].lower() not in json.dumps(bodies).lower()
