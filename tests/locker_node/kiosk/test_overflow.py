"""The kiosk's overflow calls: nearby lockers for a parcel with no door here, and moving it to
one; central played by a fake link."""

from __future__ import annotations

import pytest

from locker_node.flows.errors import Conflict
from tests.locker_node.flows.test_overflow import NYC_2, FakeLink
from tests.locker_node.kiosk.rig import Rig

OVERFLOW = "/api/courier/overflow"


@pytest.fixture
def link(rig: Rig) -> FakeLink:
    fake = FakeLink()
    rig.node.flows.ports.central = fake
    return fake


def test_the_courier_sees_the_nearby_lockers_with_room(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0001", size="M")

    answer = rig.client.get(OVERFLOW, params={"tracking_number": "1Z0001"}, headers=rig.login())
    larger = rig.client.get(
        OVERFLOW, params={"tracking_number": "1Z0001", "size": "L"}, headers=rig.login()
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "banks": [
            {
                "bank_id": "NYC-2",
                "name": "Bank NYC-2",
                "address": "2 Second Ave",
                "distance_km": 1.6,
                "free": 3,
            }
        ]
    }
    assert larger.status_code == 200
    assert link.asked == [("nearby", "M", "False"), ("nearby", "L", "False")]


def test_the_courier_moves_the_parcel_and_hears_where_to_take_it(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0002")
    headers = rig.login()

    answer = rig.client.post(
        OVERFLOW, json={"tracking_number": "1Z0002", "bank_id": "NYC-2"}, headers=headers
    )
    again = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0002"}, headers=headers
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "redirected",
        "bank_id": "NYC-2",
        "name": "Bank NYC-2",
        "address": "2 Second Ave",
        "size": "S",
    }
    assert again.json()["error"] == "reservation_cancelled"


def test_central_unreachable_is_503_and_the_parcel_stays(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0003")
    headers = rig.login()
    link.down = True

    listing = rig.client.get(OVERFLOW, params={"tracking_number": "1Z0003"}, headers=headers)
    moving = rig.client.post(
        OVERFLOW, json={"tracking_number": "1Z0003", "bank_id": "NYC-2"}, headers=headers
    )

    for answer in (listing, moving):
        assert answer.status_code == 503
        assert answer.json()["error"] == "central_unreachable"
        assert answer.json()["detail"]
    deposit = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0003"}, headers=headers
    )
    assert deposit.status_code == 200  # still this bank's parcel


def test_a_node_without_central_says_so(rig: Rig) -> None:
    rig.add_reservation("1Z0004")

    answer = rig.client.get(OVERFLOW, params={"tracking_number": "1Z0004"}, headers=rig.login())

    assert (answer.status_code, answer.json()["error"]) == (503, "central_unreachable")


def test_centrals_refusal_is_passed_on(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0005")
    link.refusal = Conflict("no free S locker at that bank", code="no_capacity")

    answer = rig.client.post(
        OVERFLOW, json={"tracking_number": "1Z0005", "bank_id": "NYC-2"}, headers=rig.login()
    )

    assert (answer.status_code, answer.json()["error"]) == (409, "no_capacity")


def test_only_a_logged_in_courier_with_a_good_request(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0006")
    headers = rig.login()
    body = {"tracking_number": "1Z0006", "bank_id": "NYC-2"}
    rig.client.cookies.clear()  # the login's session cookie: the header alone says who

    anonymous = rig.client.post(OVERFLOW, json=body)
    listing = rig.client.get(OVERFLOW, params={"tracking_number": "1Z0006"})
    extra = rig.client.post(OVERFLOW, json=body | {"compartment": "A01"}, headers=headers)
    no_bank = rig.client.post(OVERFLOW, json={"tracking_number": "1Z0006"}, headers=headers)
    no_number = rig.client.get(OVERFLOW, headers=headers)
    unknown = rig.client.get(OVERFLOW, params={"tracking_number": "1Z9999"}, headers=headers)
    same = rig.client.post(OVERFLOW, json=body | {"bank_id": "TEST-1"}, headers=headers)

    assert (anonymous.status_code, listing.status_code) == (401, 401)
    assert (extra.status_code, extra.json()["error"]) == (422, "bad_input")
    assert (no_bank.status_code, no_number.status_code) == (422, 422)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "no_reservation")
    assert (same.status_code, same.json()["error"]) == (422, "same_bank")
    assert link.asked == []


def test_the_page_has_the_overflow_screens_and_script(rig: Rig) -> None:
    page = rig.client.get("/").text
    script = rig.client.get("/static/overflow.js")

    for screen in ("overflow", "overflow-done"):
        assert f'id="screen-{screen}"' in page
    assert page.index("/static/kiosk.js") < page.index("/static/overflow.js")
    assert script.status_code == 200 and "offerOverflow" in script.text
    assert NYC_2.bank_id not in page
