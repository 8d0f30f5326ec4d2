"""Carrier API for drop-offs: making one (code, capacity, idempotency, refusals), reading,
searching and cancelling, one carrier's never seen by another, and how they sit beside
deliveries."""

from __future__ import annotations

import hashlib
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.dropoffs import endpoints
from central.dropoffs.codes import SCRYPT_N, SCRYPT_P, SCRYPT_R, bank_salt
from tests.central.conftest import World
from tests.central.dropoffs.support import available, make_dropoff, stored
from tests.central.nodes.support import enroll
from tests.central.nodes.test_events import every_stored_text
from tests.clock import FakeClock

USPS_NUMBER = "9400111206206406260787"
QR_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")  # what the node's QR reader accepts


def test_a_drop_off_takes_a_unit_and_answers_with_its_code(
    client: TestClient, world: World, app: FastAPI, sessions: sessionmaker[Session]
) -> None:
    free = available(sessions)
    body = make_dropoff(client, world, "acme-r1")

    assert set(body) == {
        "id",
        "kind",
        "status",
        "carrier",
        "tracking_number",
        "bank",
        "size",
        "compartment",
        "reserved_until",
        "created_at",
        "dropoff_code",
        "qr_payload",
        "history",
    }
    assert body["kind"] == "dropoff" and body["status"] == "reserved"
    assert body["carrier"] == "acme" and body["tracking_number"] == "ACME-R1"
    assert body["bank"]["id"] == "NYC-1" and body["size"] == "S"
    assert body["compartment"] is None
    assert re.fullmatch(r"[0-9]{10}", body["dropoff_code"])
    assert QR_TOKEN.fullmatch(body["qr_payload"])
    assert [(h["type"], h["to_status"], h["actor"]) for h in body["history"]] == [
        ("created", "reserved", "carrier")
    ]
    assert available(sessions) == free - 1


def test_the_code_is_stored_only_as_the_hashes_the_node_checks(
    client: TestClient, world: World, app: FastAPI, sessions: sessionmaker[Session]
) -> None:
    body = make_dropoff(client, world, "ACME-R2")
    code, payload = body["dropoff_code"], body["qr_payload"]

    row = stored(sessions, body["id"])
    salt = bank_salt(app.state.keys, "NYC-1")
    assert len(salt) == 16
    digest = hashlib.scrypt(
        code.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    ).hex()
    assert row.dropoff_code_hash == f"$scrypt$n=16384,r=8,p=1${salt.hex()}${digest}"
    assert row.dropoff_qr_hash == hashlib.sha256(payload.encode()).hexdigest()
    assert row.kind == "dropoff" and row.pickup_deadline is None
    everything = every_stored_text(sessions)
    assert code not in everything and payload not in everything

    # Every drop-off of a bank shares the salt (the node hashes a typed code once); another
    # bank's differs.
    other = stored(sessions, make_dropoff(client, world, "ACME-R3")["id"])
    assert other.dropoff_code_hash is not None
    assert other.dropoff_code_hash.split("$")[3] == salt.hex()
    assert bank_salt(app.state.keys, "NYC-2") != salt


def test_the_node_feed_carries_the_code_hashes_of_a_waiting_drop_off(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    body = make_dropoff(client, world, "ACME-F1")

    feed = node.get("/v1/node/feed")
    assert feed.status_code == 200, feed.text
    (item,) = [r for r in feed.json()["reservations"] if r["id"] == body["id"]]
    assert item["kind"] == "dropoff" and item["status"] == "reserved"
    code = item["dropoff_code"]
    typed = hashlib.scrypt(
        body["dropoff_code"].encode(),
        salt=bytes.fromhex(code["salt"]),
        n=code["n"],
        r=code["r"],
        p=code["p"],
        dklen=32,
    )
    assert typed.hex() == code["code_hash"]
    assert code["qr_hash"] == hashlib.sha256(body["qr_payload"].encode()).hexdigest()


def test_parcel_dimensions_pick_the_smallest_class(client: TestClient, world: World) -> None:
    parcel = {"length_mm": 150, "width_mm": 600, "height_mm": 300, "weight_g": 2000}
    body = make_dropoff(client, world, "ACME-P1", size=None, parcel=parcel)
    assert body["size"] == "M"


def test_repeating_the_tracking_number_answers_the_same_drop_off_and_code(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    first = make_dropoff(client, world, "ACME-I1", sender={"email": "s@example.com"})
    free = available(sessions)
    again = make_dropoff(client, world, "acme-i1", expect=200)
    assert again == first
    assert available(sessions) == free
    # Another carrier's number is its own parcel.
    other = make_dropoff(client, world, USPS_NUMBER, carrier="usps", bank_id="NYC-2")
    mine = make_dropoff(client, world, USPS_NUMBER, bank_id="NYC-2", expect=201)
    assert mine["id"] != other["id"]


def test_a_tracking_number_belongs_to_one_active_delivery_or_drop_off(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    dropoff = make_dropoff(client, world, "ACME-T1")
    free = available(sessions)
    as_delivery = client.post(
        "/v1/reservations",
        json={"tracking_number": "ACME-T1", "bank_id": "NYC-1", "size": "S"},
        headers=world.auth("acme"),
    )
    assert as_delivery.status_code == 409, as_delivery.text
    assert as_delivery.json()["error"] == "tracking_number_in_use"
    assert as_delivery.json()["dropoff_id"] == dropoff["id"]

    delivery = client.post(
        "/v1/reservations",
        json={"tracking_number": "ACME-T2", "bank_id": "NYC-2", "size": "S"},
        headers=world.auth("acme"),
    )
    assert delivery.status_code == 201
    refused = make_dropoff(client, world, "ACME-T2", expect=409)
    assert refused["error"] == "tracking_number_in_use"
    assert refused["reservation_id"] == delivery.json()["id"]
    assert available(sessions) == free  # neither refusal kept a unit

    # Once the drop-off is over, its number is free for a delivery.
    assert client.delete(f"/v1/dropoffs/{dropoff['id']}", headers=world.auth("acme")).is_success
    again = client.post(
        "/v1/reservations",
        json={"tracking_number": "ACME-T1", "bank_id": "NYC-1", "size": "S"},
        headers=world.auth("acme"),
    )
    assert again.status_code == 201 and again.json()["kind"] == "delivery"


def test_no_capacity_answers_409_with_alternatives(client: TestClient, world: World) -> None:
    make_dropoff(client, world, "ACME-L1", size="L")
    refused = make_dropoff(client, world, "ACME-L2", size="L", expect=409)
    assert refused["error"] == "no_capacity"
    assert [a["bank_id"] for a in refused["alternatives"]] == ["NYC-2"]


def test_bad_input_is_422_and_an_unknown_bank_404(client: TestClient, world: World) -> None:
    invalid = make_dropoff(client, world, "NOT-A-USPS-NUMBER", carrier="usps", expect=422)
    assert invalid["error"] == "invalid_tracking_number"
    assert make_dropoff(client, world, "ACME-B1", size=None, expect=422)["error"] == (
        "validation_error"
    )
    assert make_dropoff(client, world, "ACME-B2", size="XXL", expect=422)["error"] == (
        "validation_error"
    )
    huge = {"length_mm": 3000, "width_mm": 3000, "height_mm": 3000}
    assert make_dropoff(client, world, "ACME-B3", size=None, parcel=huge, expect=422)["error"] == (
        "parcel_too_large"
    )
    too_long = make_dropoff(client, world, "ACME-B4", hold_hours=24 * 14, expect=422)
    assert too_long["error"] == "hold_too_long"
    bad_sender = make_dropoff(client, world, "ACME-B5", sender={"email": "nope"}, expect=422)
    assert bad_sender["error"] == "validation_error"
    assert make_dropoff(client, world, "ACME-B6", extra_field=1, expect=422)["error"] == (
        "validation_error"
    )
    unknown = make_dropoff(client, world, "ACME-B7", bank_id="NOPE-1", expect=404)
    assert unknown["error"] == "unknown_bank"
    unauthenticated = client.post(
        "/v1/dropoffs", json={"tracking_number": "ACME-B8", "bank_id": "NYC-1", "size": "S"}
    )
    assert unauthenticated.status_code == 401


def test_a_hold_within_policy_sets_reserved_until(
    client: TestClient, world: World, clock: FakeClock
) -> None:
    body = make_dropoff(client, world, "ACME-H1", hold_hours=100)
    assert body["reserved_until"].startswith("2026-03-06T19:00:00")
    default = make_dropoff(client, world, "ACME-H2")
    assert default["reserved_until"].startswith("2026-03-05T15:00:00")  # the bank's 72 h


def test_a_carrier_never_sees_another_carriers_drop_off(client: TestClient, world: World) -> None:
    body = make_dropoff(client, world, "ACME-S1")
    for path in (f"/v1/dropoffs/{body['id']}", f"/v1/reservations/{body['id']}"):
        assert client.get(path, headers=world.auth("usps")).status_code == 404
    assert client.delete(f"/v1/dropoffs/{body['id']}", headers=world.auth("usps")).status_code == (
        404
    )
    listed = client.get("/v1/dropoffs", headers=world.auth("usps")).json()
    assert listed == {"items": [], "next_cursor": None}


def test_reading_a_drop_off_and_a_reservation_by_each_others_paths(
    client: TestClient, world: World
) -> None:
    body = make_dropoff(client, world, "ACME-G1")
    auth = world.auth("acme")
    got = client.get(f"/v1/dropoffs/{body['id']}", headers=auth)
    assert got.status_code == 200 and got.json() == body
    as_reservation = client.get(f"/v1/reservations/{body['id']}", headers=auth).json()
    assert as_reservation["kind"] == "dropoff" and as_reservation["status"] == "reserved"
    assert "dropoff_code" not in as_reservation

    delivery = client.post(
        "/v1/reservations",
        json={"tracking_number": "ACME-G2", "bank_id": "NYC-1", "size": "S"},
        headers=auth,
    ).json()
    assert delivery["kind"] == "delivery"
    assert client.get(f"/v1/dropoffs/{delivery['id']}", headers=auth).status_code == 404
    assert client.delete(f"/v1/dropoffs/{delivery['id']}", headers=auth).status_code == 404


def test_search_by_status_and_tracking_number_a_page_at_a_time(
    client: TestClient, world: World, clock: FakeClock
) -> None:
    auth = world.auth("acme")
    ids = []
    for n in range(3):
        size = "S" if n < 2 else "M"
        ids.append(make_dropoff(client, world, f"ACME-Q{n}", bank_id="NYC-2", size=size)["id"])
        clock.advance(seconds=1)
    client.delete(f"/v1/dropoffs/{ids[0]}", headers=auth)
    client.post(
        "/v1/reservations",
        json={"tracking_number": "ACME-Q9", "bank_id": "NYC-1", "size": "S"},
        headers=auth,
    )

    first = client.get("/v1/dropoffs", params={"limit": 2}, headers=auth).json()
    assert [d["id"] for d in first["items"]] == [ids[2], ids[1]]
    rest = client.get(
        "/v1/dropoffs", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth
    ).json()
    assert [d["id"] for d in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    reserved = client.get("/v1/dropoffs", params={"status": "reserved"}, headers=auth).json()
    assert [d["id"] for d in reserved["items"]] == [ids[2], ids[1]]
    by_number = client.get("/v1/dropoffs", params={"tracking_number": "acme-q1"}, headers=auth)
    assert [d["id"] for d in by_number.json()["items"]] == [ids[1]]
    bad = client.get("/v1/dropoffs", params={"cursor": "not a cursor"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_cursor"
    assert client.get("/v1/dropoffs", params={"status": "lost"}, headers=auth).status_code == 422


def test_cancelling_frees_the_unit_and_ends_the_code(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    free = available(sessions)
    body = make_dropoff(client, world, "ACME-C1", sender={"email": "s@example.com"})
    auth = world.auth("acme")

    cancelled = client.delete(f"/v1/dropoffs/{body['id']}", headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    out = cancelled.json()
    assert out["status"] == "cancelled"
    assert out["dropoff_code"] is None and out["qr_payload"] is None
    assert out["history"][-1]["type"] == "cancelled"
    assert available(sessions) == free
    row = stored(sessions, body["id"])
    assert row.dropoff_code_hash is None and row.dropoff_qr_hash is None
    assert row.recipient is None and row.pickup_secret_sealed is None
    assert row.closed_at is not None

    again = client.delete(f"/v1/dropoffs/{body['id']}", headers=auth)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert available(sessions) == free


def test_a_wrong_key_is_refused_before_any_code_is_hashed(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[str] = []
    monkeypatch.setattr(endpoints, "draw_secret", lambda keys, bank_id: drawn.append(bank_id))
    refused = client.post(
        "/v1/dropoffs",
        json={"tracking_number": "ACME-K1", "bank_id": "NYC-1", "size": "S"},
        # Well formed, of a known prefix, but not the key: refused by the database check.
        headers={"Authorization": f"Bearer {world.keys['acme'][:-4]}AAAA"},
    )
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_api_key"
    assert drawn == []
