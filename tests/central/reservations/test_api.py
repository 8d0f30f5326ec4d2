"""Carrier API v1: reservations, from the carrier's side of the wire."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.keys import ServiceKeys
from central.models import Actor, BankCapacity, Reservation, ReservationStatus
from central.reservations.transitions import transition
from tests.central.conftest import TEST_SECRET, World, make_bank
from tests.clock import FakeClock

USPS_NUMBER = "9400111206206406260787"


def reserve(client: TestClient, world: World, carrier: str = "acme", **body: Any) -> Any:
    payload = {"tracking_number": "ACME-0001", "bank_id": "NYC-1", "size": "S"} | body
    return client.post("/v1/reservations", json=payload, headers=world.auth(carrier))


def free_units(sessions: sessionmaker[Session], bank_id: str, size: str) -> int:
    with sessions() as session:
        row = session.get(BankCapacity, (bank_id, size))
        assert row is not None
        return row.available


def test_reserve_by_bank_and_size(client: TestClient, world: World, sessions: Any) -> None:
    response = reserve(client, world)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "reserved"
    assert body["bank"]["id"] == "NYC-1"
    assert body["size"] == "S"
    assert body["carrier"] == "acme"
    assert body["compartment"] is None
    assert [h["type"] for h in body["history"]] == ["created"]
    assert body["history"][0]["actor"] == "carrier"
    assert free_units(sessions, "NYC-1", "S") == 1


def test_same_tracking_number_returns_the_same_reservation(
    client: TestClient, world: World, sessions: Any
) -> None:
    first = reserve(client, world)
    again = reserve(client, world, tracking_number=" acme-0001 ")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert free_units(sessions, "NYC-1", "S") == 1


def test_parcel_dimensions_pick_the_smallest_class_in_any_orientation(
    client: TestClient, world: World
) -> None:
    # 150 mm thick: too thick for S (80 mm) but fits M on its side.
    parcel = {"length_mm": 150, "width_mm": 600, "height_mm": 300, "weight_g": 2000}
    response = reserve(client, world, size=None, parcel=parcel)
    assert response.status_code == 201, response.text
    assert response.json()["size"] == "M"
    assert response.json()["parcel"]["weight_g"] == 2000


def test_near_search_takes_the_nearest_bank_with_room(client: TestClient, world: World) -> None:
    near = {"lat": 40.7360, "lon": -73.9912, "radius_km": 5}
    response = reserve(client, world, bank_id=None, near=near)
    assert response.status_code == 201, response.text
    assert response.json()["bank"]["id"] == "NYC-2"


def test_no_capacity_answers_409_with_alternatives(client: TestClient, world: World) -> None:
    assert reserve(client, world, tracking_number="ACME-L1", size="L").status_code == 201
    response = reserve(client, world, tracking_number="ACME-L2", size="L")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "no_capacity"
    assert [a["bank_id"] for a in body["alternatives"]] == ["NYC-2"]
    assert body["alternatives"][0]["free"] == 1


def test_alternatives_are_the_nearest_banks_with_room_however_many_lack_it(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    # Twelve banks nearer than NYC-2 (1.64 km away) have no L class, then eight with one L
    # each, one every 111 m north of NYC-1: more than one read of capacity goes by empty.
    with sessions.begin() as session:
        for n in range(20):
            make_bank(
                session,
                bank_id=f"CROWD-{n:02d}",
                now=clock(),
                lat=40.7506 + 0.001 * (n + 1),
                compartments="S:1" if n < 12 else "L:1",
            )
    assert reserve(client, world, tracking_number="ACME-L1", size="L").status_code == 201
    response = reserve(client, world, tracking_number="ACME-L2", size="L")
    assert response.status_code == 409
    alternatives = response.json()["alternatives"]
    assert [a["bank_id"] for a in alternatives] == [
        "CROWD-12",
        "CROWD-13",
        "NYC-2",
        "CROWD-14",
        "CROWD-15",
    ]
    assert [a["free"] for a in alternatives] == [1, 1, 1, 1, 1]
    distances = [a["distance_km"] for a in alternatives]
    assert distances == sorted(distances)
    assert distances[0] == pytest.approx(1.443, abs=0.01)


def test_another_carriers_reservation_is_not_found(client: TestClient, world: World) -> None:
    rid = reserve(client, world).json()["id"]
    for method, path in [
        ("GET", f"/v1/reservations/{rid}"),
        ("DELETE", f"/v1/reservations/{rid}"),
        ("POST", f"/v1/reservations/{rid}/extend"),
    ]:
        kwargs: dict[str, Any] = {"json": {"hours": 1}} if method == "POST" else {}
        response = client.request(method, path, headers=world.auth("fedex"), **kwargs)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"
    listed = client.get("/v1/reservations", headers=world.auth("fedex")).json()
    assert listed["items"] == []


def test_cancel_frees_the_unit_and_is_recorded(
    client: TestClient, world: World, sessions: Any
) -> None:
    rid = reserve(client, world).json()["id"]
    response = client.delete(f"/v1/reservations/{rid}", headers=world.auth("acme"))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert [h["type"] for h in response.json()["history"]] == ["created", "cancelled"]
    assert free_units(sessions, "NYC-1", "S") == 2
    # Once cancelled, the same tracking number may be reserved again.
    assert reserve(client, world).status_code == 201


def deposit(sessions: sessionmaker[Session], clock: FakeClock, rid: str) -> None:
    """What the node's deposit event will do: the service-level transition."""
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        ctx = Ctx(session=session, keys=ServiceKeys(TEST_SECRET.encode()), now=clock())
        transition(
            ctx,
            reservation,
            ReservationStatus.DEPOSITED,
            actor=Actor.COURIER,
            changes={
                "compartment_label": "A01",
                "deposited_at": clock(),
                "pickup_deadline": clock() + timedelta(hours=72),
            },
        )


def test_cancel_after_deposit_is_409(
    client: TestClient, world: World, sessions: Any, clock: FakeClock
) -> None:
    rid = reserve(client, world).json()["id"]
    deposit(sessions, clock, rid)
    response = client.delete(f"/v1/reservations/{rid}", headers=world.auth("acme"))
    assert response.status_code == 409
    assert response.json()["error"] == "not_cancellable"
    got = client.get(f"/v1/reservations/{rid}", headers=world.auth("acme")).json()
    assert got["status"] == "deposited"
    assert got["compartment"] == "A01"


def test_extend_moves_the_pickup_deadline_within_policy(
    client: TestClient, world: World, sessions: Any, clock: FakeClock
) -> None:
    rid = reserve(client, world).json()["id"]
    deposit(sessions, clock, rid)
    before = client.get(f"/v1/reservations/{rid}", headers=world.auth("acme")).json()
    response = client.post(
        f"/v1/reservations/{rid}/extend", json={"hours": 48}, headers=world.auth("acme")
    )
    assert response.status_code == 200, response.text
    assert response.json()["pickup_deadline"] > before["pickup_deadline"]
    assert response.json()["history"][-1]["type"] == "extended"
    too_far = client.post(
        f"/v1/reservations/{rid}/extend", json={"hours": 48}, headers=world.auth("acme")
    )
    assert too_far.status_code == 409
    assert too_far.json()["error"] == "extension_limit"


def test_search_finds_own_reservations_by_number_and_status(
    client: TestClient, world: World
) -> None:
    for n in range(3):
        reserve(client, world, tracking_number=f"ACME-S{n}", size="M" if n else "S")
    rid = reserve(client, world, tracking_number="ACME-S9").json()["id"]
    client.delete(f"/v1/reservations/{rid}", headers=world.auth("acme"))
    auth = world.auth("acme")
    by_number = client.get("/v1/reservations?tracking_number=acme-s1", headers=auth).json()
    assert [r["tracking_number"] for r in by_number["items"]] == ["ACME-S1"]
    cancelled = client.get("/v1/reservations?status=cancelled", headers=auth).json()
    assert [r["id"] for r in cancelled["items"]] == [rid]
    page = client.get("/v1/reservations?limit=2", headers=auth).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get(f"/v1/reservations?limit=2&cursor={page['next_cursor']}", headers=auth)
    seen = {r["id"] for r in page["items"]} | {r["id"] for r in rest.json()["items"]}
    assert len(seen) == 4


def test_known_carriers_tracking_numbers_are_checked(client: TestClient, world: World) -> None:
    ok = reserve(client, world, carrier="usps", tracking_number=USPS_NUMBER)
    assert ok.status_code == 201, ok.text
    bad = reserve(client, world, carrier="usps", tracking_number="9400111206206406260788")
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_tracking_number"
    # A valid UPS number is still not a USPS number.
    ups = reserve(client, world, carrier="usps", tracking_number="1Z5R89390357567127")
    assert ups.json()["error"] == "invalid_tracking_number"


BAD_INPUTS: list[tuple[str, Any, int, str]] = [
    ("missing tracking number", {"bank_id": "NYC-1", "size": "S"}, 422, "validation_error"),
    ("missing place", {"tracking_number": "ACME-1", "size": "S"}, 422, "validation_error"),
    ("missing size", {"tracking_number": "ACME-1", "bank_id": "NYC-1"}, 422, "validation_error"),
    (
        "unknown size",
        {"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "XXL"},
        422,
        "validation_error",
    ),
    (
        "negative dimension",
        {
            "tracking_number": "ACME-1",
            "bank_id": "NYC-1",
            "parcel": {"length_mm": -1, "width_mm": 10, "height_mm": 10},
        },
        422,
        "validation_error",
    ),
    (
        "larger than every class",
        {
            "tracking_number": "ACME-1",
            "bank_id": "NYC-1",
            "parcel": {"length_mm": 900, "width_mm": 900, "height_mm": 900},
        },
        422,
        "parcel_too_large",
    ),
    (
        "too heavy",
        {
            "tracking_number": "ACME-1",
            "bank_id": "NYC-1",
            "parcel": {"length_mm": 10, "width_mm": 10, "height_mm": 10, "weight_g": 90_000},
        },
        422,
        "parcel_too_heavy",
    ),
    (
        "unknown bank",
        {"tracking_number": "ACME-1", "bank_id": "NOPE", "size": "S"},
        404,
        "unknown_bank",
    ),
    (
        "class the bank lacks",
        {"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "XL"},
        422,
        "size_unavailable",
    ),
    (
        "misspelt field",
        {"trackingnumber": "ACME-1", "bank_id": "NYC-1", "size": "S"},
        422,
        "validation_error",
    ),
    ("not an object", [1, 2], 422, "validation_error"),
    (
        "hold too long",
        {"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "S", "hold_hours": 300},
        422,
        "hold_too_long",
    ),
]


@pytest.mark.parametrize(
    ("case", "payload", "status", "code"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_refused_with_a_code_and_changes_nothing(
    client: TestClient,
    world: World,
    sessions: Any,
    case: str,
    payload: Any,
    status: int,
    code: str,
) -> None:
    response = client.post("/v1/reservations", json=payload, headers=world.auth("acme"))
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Reservation)) == 0


def test_bad_json_is_400(client: TestClient, world: World) -> None:
    response = client.post(
        "/v1/reservations",
        content=b'{"tracking_number": ',
        headers=world.auth("acme") | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", "application/json"),
        (b'{"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "S"}', "text/plain"),
        (b'{"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "S"}', None),
        (b"tracking_number=ACME-1", "application/x-www-form-urlencoded"),
    ],
    ids=["empty", "text", "no content type", "form"],
)
def test_a_create_body_that_is_not_json_is_422(
    client: TestClient, world: World, sessions: Any, content: bytes, content_type: str | None
) -> None:
    headers = world.auth("acme") | ({"Content-Type": content_type} if content_type else {})
    response = client.post("/v1/reservations", content=content, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Reservation)) == 0


def test_a_json_media_type_with_parameters_is_accepted(client: TestClient, world: World) -> None:
    response = client.post(
        "/v1/reservations",
        content=b'{"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "S"}',
        headers=world.auth("acme") | {"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text


def test_the_create_route_documents_its_body_and_key(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/reservations"]["post"]
    reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert operation["requestBody"]["required"] is True
    schemas = spec["components"]["schemas"]
    body = schemas[reference.rsplit("/", 1)[1]]
    assert {"tracking_number", "bank_id", "near", "size", "parcel"} <= set(body["properties"])
    # every model the body refers to is there too
    for name in ("Near", "Parcel", "Recipient"):
        assert name in schemas
    (scheme,) = operation["security"][0]
    assert spec["components"]["securitySchemes"][scheme]["scheme"] == "bearer"


def test_history_is_append_only_in_the_database(
    client: TestClient, world: World, sessions: Any
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    reserve(client, world)
    for statement in (
        "UPDATE reservation_events SET reason = 'x'",
        "DELETE FROM reservation_events",
    ):
        with pytest.raises(DatabaseError), sessions.begin() as session:
            session.execute(text(statement))


def test_repeating_a_number_at_a_full_bank_returns_the_reservation(
    client: TestClient, world: World, sessions: Any
) -> None:
    first = reserve(client, world, tracking_number="ACME-L1", size="L")
    assert first.status_code == 201
    # NYC-1 has one L compartment, now taken: the repeat still finds its reservation.
    again = reserve(client, world, tracking_number="ACME-L1", size="L")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert free_units(sessions, "NYC-1", "L") == 0
