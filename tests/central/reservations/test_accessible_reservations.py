"""Reservations whose recipient needs an accessible compartment, and the others around them
(both databases; batches of mixed requests through the intake)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.models import Bank, Reservation, WebhookDelivery
from central.reservations.schemas import ReservationCreate
from tests.central.banks.test_accessible_banks import add_accessible_bank, counts_of
from tests.central.conftest import World
from tests.central.reservations.test_intake import _create_together
from tests.clock import FakeClock

# ADA-1 at the conftest banks' spot (NYC-1), ADA-FAR about 2.5 km north of it.
FAR = {"lat": 40.7731, "lon": -73.9835}


def reserve(
    client: TestClient,
    world: World,
    number: str,
    *,
    accessible: bool | None = None,
    **body: Any,
) -> Any:
    payload: dict[str, Any] = {"tracking_number": number, "bank_id": "ADA-1", "size": "M"}
    if accessible is not None:
        payload["recipient"] = {"email": "r@example.com", "accessible": accessible}
    return client.post("/v1/reservations", json=payload | body, headers=world.auth("acme"))


def stored(sessions: sessionmaker[Session], rid: str) -> Reservation:
    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None
        return row


@pytest.fixture
def ada(world: World, sessions: sessionmaker[Session], clock: FakeClock) -> World:
    """ADA-1: S A01-A02, M A03-A04, L A05; A03 (M) is accessible."""
    add_accessible_bank(sessions, clock, accessible="A03")
    return world


def test_an_accessible_reservation_takes_an_accessible_unit(
    client: TestClient, ada: World, sessions: sessionmaker[Session]
) -> None:
    response = reserve(client, ada, "ACME-A1", accessible=True)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["accessible"] is True
    row = stored(sessions, body["id"])
    assert (row.accessible, row.accessible_unit) == (True, True)
    # The wish is a column, not a contact detail: the recipient keeps only their details.
    assert row.recipient == {"email": "r@example.com"}
    assert counts_of(sessions, "ADA-1")["M"] == (2, 1, 1, 0)
    fetched = client.get(f"/v1/reservations/{body['id']}", headers=ada.auth("acme"))
    assert fetched.json()["accessible"] is True


def test_with_no_accessible_unit_free_at_the_bank_it_is_409_with_alternatives(
    client: TestClient, ada: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, bank_id="ADA-FAR", accessible="A04", **FAR)
    assert reserve(client, ada, "ACME-A1", accessible=True).status_code == 201
    refused = reserve(client, ada, "ACME-A2", accessible=True)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "no_accessible_capacity"
    # Only banks with a free accessible unit of the class, not NYC-1 next door (none there).
    assert [(a["bank_id"], a["free"]) for a in body["alternatives"]] == [("ADA-FAR", 1)]
    # A plain M unit is still free at ADA-1 and a plain request takes it.
    plain = reserve(client, ada, "ACME-P1")
    assert plain.status_code == 201, plain.text
    assert plain.json()["accessible"] is False
    assert counts_of(sessions, "ADA-1")["M"] == (2, 0, 1, 0)


def test_near_the_nearest_bank_with_a_free_accessible_unit_wins(
    client: TestClient, ada: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, bank_id="ADA-FAR", accessible="A04", **FAR)
    near = {"lat": 40.7506, "lon": -73.9935, "radius_km": 5}
    # ADA-1 is at the spot, as is NYC-1; neither NYC bank has an accessible compartment.
    first = reserve(client, ada, "ACME-N1", accessible=True, bank_id=None, near=near)
    assert first.status_code == 201, first.text
    assert first.json()["bank"]["id"] == "ADA-1"
    second = reserve(client, ada, "ACME-N2", accessible=True, bank_id=None, near=near)
    assert second.status_code == 201, second.text
    assert second.json()["bank"]["id"] == "ADA-FAR"
    third = reserve(client, ada, "ACME-N3", accessible=True, bank_id=None, near=near)
    assert third.status_code == 409
    assert third.json()["error"] == "no_accessible_capacity"
    # Without the need the nearest bank with a plain unit free takes it, as ever.
    plain = reserve(client, ada, "ACME-N4", bank_id=None, near=near)
    assert plain.status_code == 201, plain.text
    assert plain.json()["bank"]["id"] == "ADA-1"


def test_plain_reservations_take_plain_units_first_and_the_accessible_one_last(
    client: TestClient, ada: World, sessions: sessionmaker[Session]
) -> None:
    first = reserve(client, ada, "ACME-P1", accessible=False)
    assert first.status_code == 201, first.text
    assert stored(sessions, first.json()["id"]).accessible_unit is False
    assert counts_of(sessions, "ADA-1")["M"] == (2, 1, 1, 1)
    # Only the accessible unit is left: a parcel goes there rather than nowhere.
    last = reserve(client, ada, "ACME-P2")
    assert last.status_code == 201, last.text
    assert stored(sessions, last.json()["id"]).accessible_unit is True
    assert counts_of(sessions, "ADA-1")["M"] == (2, 0, 1, 0)
    full = reserve(client, ada, "ACME-P3")
    assert (full.status_code, full.json()["error"]) == (409, "no_capacity")
    # Ending each gives back the unit it held, of its kind.
    client.delete(f"/v1/reservations/{last.json()['id']}", headers=ada.auth("acme"))
    assert counts_of(sessions, "ADA-1")["M"] == (2, 1, 1, 1)
    client.delete(f"/v1/reservations/{first.json()['id']}", headers=ada.auth("acme"))
    assert counts_of(sessions, "ADA-1")["M"] == (2, 2, 1, 1)


def test_cancelling_an_accessible_reservation_gives_its_accessible_unit_back(
    client: TestClient, ada: World, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(client, ada, "ACME-A1", accessible=True).json()["id"]
    cancelled = client.delete(f"/v1/reservations/{rid}", headers=ada.auth("acme"))
    assert cancelled.status_code == 200, cancelled.text
    assert counts_of(sessions, "ADA-1")["M"] == (2, 2, 1, 1)
    again = reserve(client, ada, "ACME-A2", accessible=True)
    assert again.status_code == 201, again.text


def test_a_closed_reservation_forgets_that_its_recipient_asked_for_an_accessible_door(
    client: TestClient, ada: World, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(client, ada, "ACME-A1", accessible=True).json()["id"]
    assert stored(sessions, rid).accessible is True
    client.delete(f"/v1/reservations/{rid}", headers=ada.auth("acme"))

    closed = stored(sessions, rid)
    assert (closed.accessible, closed.accessible_unit, closed.recipient) == (False, True, None)
    shown = client.get(f"/v1/reservations/{rid}", headers=ada.auth("acme")).json()
    assert shown["accessible"] is False


def test_repeating_an_accessible_request_returns_the_same_reservation(
    client: TestClient, ada: World, sessions: sessionmaker[Session]
) -> None:
    first = reserve(client, ada, "ACME-A1", accessible=True)
    again = reserve(client, ada, "ACME-A1", accessible=True)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert counts_of(sessions, "ADA-1")["M"] == (2, 1, 1, 0)


def test_upsizing_finds_a_larger_accessible_unit(
    client: TestClient, ada: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, bank_id="ADA-UP", accessible="A05", lat=10, lon=10)
    with sessions.begin() as session:
        bank = session.get(Bank, "ADA-UP")
        assert bank is not None
        bank.allow_upsize = True
    response = reserve(client, ada, "ACME-U1", accessible=True, bank_id="ADA-UP")
    assert response.status_code == 201, response.text
    assert response.json()["size"] == "L"
    assert counts_of(sessions, "ADA-UP")["L"] == (1, 0, 1, 0)


def test_an_accessible_reservation_notifies_the_carriers_endpoints(
    client: TestClient, ada: World, sessions: sessionmaker[Session]
) -> None:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=ada.auth("acme"),
    )
    assert hook.status_code == 201, hook.text
    response = reserve(client, ada, "ACME-A1", accessible=True)
    assert response.status_code == 201, response.text
    with sessions() as session:
        types = session.scalars(select(WebhookDelivery.event_type)).all()
    assert types == ["reservation.created"]


def test_accessibility_is_asked_for_when_reserving_not_patched_later(
    client: TestClient, ada: World
) -> None:
    rid = reserve(client, ada, "ACME-A1").json()["id"]
    patched = client.patch(
        f"/v1/reservations/{rid}",
        json={"recipient": {"email": "r@example.com", "accessible": True}},
        headers=ada.auth("acme"),
    )
    assert patched.status_code == 422, patched.text


def test_a_batch_mixing_accessible_and_plain_requests_answers_each_as_alone(
    app: FastAPI, ada: World, sessions: sessionmaker[Session]
) -> None:
    """On PostgreSQL plain requests share the batch statement; the accessible ones, and the
    plain one that only the accessible unit could serve, are made alone after it."""
    acme = f"Bearer {ada.keys['acme']}"

    def body(number: str, accessible: bool = False) -> ReservationCreate:
        return ReservationCreate.model_validate(
            {
                "tracking_number": number,
                "bank_id": "ADA-1",
                "size": "M",
                "recipient": {"accessible": accessible},
            }
        )

    outcomes = _create_together(
        app.state.reservation_intake,
        [
            (acme, body("ACME-B1")),
            (acme, body("ACME-B2")),  # only the accessible unit is left for it...
            (acme, body("ACME-B3", accessible=True)),  # ...or for this one, made after it
            (acme, body("ACME-B4")),
        ],
    )
    made = [o[0].tracking_number if isinstance(o, tuple) else o for o in outcomes]
    assert made[:2] == ["ACME-B1", "ACME-B2"]
    assert [getattr(o, "code", None) for o in outcomes[2:]] == [
        "no_accessible_capacity",
        "no_capacity",
    ]
    with sessions() as session:
        units = dict(
            session.execute(select(Reservation.tracking_number, Reservation.accessible_unit)).all()
        )
        assert session.scalar(select(func.count()).select_from(Reservation)) == 2
    assert units == {"ACME-B1": False, "ACME-B2": True}
    assert counts_of(sessions, "ADA-1")["M"] == (2, 0, 1, 0)


def test_a_batch_gives_the_accessible_unit_to_who_needs_it_when_it_comes_first(
    app: FastAPI, ada: World, sessions: sessionmaker[Session]
) -> None:
    acme = f"Bearer {ada.keys['acme']}"
    accessible = ReservationCreate.model_validate(
        {
            "tracking_number": "ACME-C1",
            "bank_id": "ADA-1",
            "size": "M",
            "recipient": {"accessible": True},
        }
    )
    plain = [
        ReservationCreate.model_validate(
            {"tracking_number": f"ACME-C{n}", "bank_id": "ADA-1", "size": "M"}
        )
        for n in (2, 3)
    ]
    outcomes = _create_together(
        app.state.reservation_intake, [(acme, accessible), (acme, plain[0]), (acme, plain[1])]
    )
    assert isinstance(outcomes[0], tuple) and outcomes[0][0].accessible is True
    assert isinstance(outcomes[1], tuple)
    assert getattr(outcomes[2], "code", None) == "no_capacity"
    assert counts_of(sessions, "ADA-1")["M"] == (2, 0, 1, 0)
