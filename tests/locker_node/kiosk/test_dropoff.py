"""Drop-offs through the kiosk's API: the sender's code, QR, confirm and cancel; the courier's
list, open and confirm; every refusal with its status and code."""

from __future__ import annotations

from typing import Any

from locker_node.domain.lifecycle import Occupancy, ParcelStatus
from locker_node.hardware.simulator import Fault
from tests.locker_node.dropoffs import CODE, QR, add_dropoff
from tests.locker_node.kiosk.rig import LAYOUT, OTHER_COURIER_CODE, Rig


def start(rig: Rig, code: str = CODE) -> Any:
    return rig.client.post("/api/dropoff", json={"code": code})


def dropped_off(rig: Rig) -> dict[str, Any]:
    add_dropoff(rig.node.flows, "RET0001")
    opened = start(rig).json()
    rig.close_door(opened["compartment"])
    confirmed = rig.client.post(f"/api/dropoff/{opened['dropoff_id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    [parcel] = rig.node.flows.list_dropoffs(rig.node.flows.authenticate(login_token(rig)))
    return {"parcel_id": parcel.parcel_id, "compartment": parcel.compartment}


def login_token(rig: Rig) -> str:
    return rig.login()["Authorization"].removeprefix("Bearer ")


def test_a_sender_drops_a_parcel_off(rig: Rig) -> None:
    add_dropoff(rig.node.flows, "RET0001", size="L")

    opened = start(rig)
    body = opened.json()
    early = rig.client.post(f"/api/dropoff/{body['dropoff_id']}/confirm")
    rig.close_door(body["compartment"])
    confirmed = rig.client.post(f"/api/dropoff/{body['dropoff_id']}/confirm")
    again = start(rig)

    assert opened.status_code == 200
    assert body == {
        "dropoff_id": body["dropoff_id"],
        "compartment": "C01",
        "door": "open",
        "moved_from": [],
    }
    assert early.status_code == 409 and early.json()["error"] == "door_open"
    assert confirmed.status_code == 200
    assert confirmed.json() == {
        "dropoff_id": body["dropoff_id"],
        "status": "deposited",
        "compartment": "C01",
    }
    assert again.status_code == 409 and again.json()["error"] == "already_dropped_off"
    assert len(rig.events("dropoff.deposited")) == 1


def test_the_qr_payload_opens_a_door(rig: Rig) -> None:
    add_dropoff(rig.node.flows, "RET0001")

    unknown = rig.client.post("/api/dropoff/qr", json={"token": "x" * 22})
    malformed = rig.client.post("/api/dropoff/qr", json={"token": "not a token"})
    opened = rig.client.post("/api/dropoff/qr", json={"token": QR})

    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_qr"
    assert malformed.status_code == 422 and malformed.json()["error"] == "bad_input"
    assert opened.status_code == 200 and rig.door_is_open(opened.json()["compartment"])


def test_wrong_codes_lock_the_keypad_the_pickup_screen_uses(rig: Rig) -> None:
    add_dropoff(rig.node.flows, "RET0001")

    answers = [start(rig, "1111111111") for _ in range(5)]
    locked = start(rig)
    pickup = rig.pickup("2222222222")

    assert [a.json().get("attempts_left") for a in answers[:4]] == [4, 3, 2, 1]
    assert answers[0].status_code == 401 and answers[0].json()["error"] == "invalid_code"
    assert answers[4].json()["retry_after_s"] == 30
    assert locked.status_code == 429 and locked.json()["error"] == "locked_out"
    assert int(locked.headers["retry-after"]) > 0
    assert pickup.status_code == 429
    assert rig.client.get("/api/status").json()["keypad"]["locked"] is True
    assert not any(rig.door_is_open(label) for label, _, _ in LAYOUT)


def test_bad_input_is_a_422_and_unknown_ids_a_404(rig: Rig) -> None:
    short = start(rig, "12345")
    letters = start(rig, "12345abcde")
    extra = rig.client.post("/api/dropoff", json={"code": CODE, "more": 1})
    too_long = rig.client.post("/api/dropoff", json={"code": "1" * 33})
    bad_id = rig.client.post("/api/dropoff/not-an-id/confirm")
    unknown = rig.client.post(f"/api/dropoff/{'0' * 32}/cancel")

    for answer in (short, letters, extra, too_long, bad_id):
        assert answer.status_code == 422 and answer.json()["error"] == "bad_input", answer.text
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_dropoff"
    assert rig.client.get("/api/status").json()["keypad"]["locked"] is False


def test_the_sender_cancels_and_the_code_still_works(rig: Rig) -> None:
    add_dropoff(rig.node.flows, "RET0001")
    opened = start(rig).json()
    base = f"/api/dropoff/{opened['dropoff_id']}"

    removing = rig.client.post(f"{base}/cancel")
    rig.close_door(opened["compartment"])
    cancelled = rig.client.post(f"{base}/cancel")
    confirm_after = rig.client.post(f"{base}/confirm")
    reopened = start(rig)

    assert removing.json() == {
        "dropoff_id": opened["dropoff_id"],
        "status": "removing",
        "compartment": opened["compartment"],
        "door": "open",
    }
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert confirm_after.status_code == 409 and confirm_after.json()["error"] == "dropoff_closed"
    assert reopened.status_code == 200


def test_a_door_that_does_not_open_is_a_503_and_the_code_stays_good(rig: Rig) -> None:
    add_dropoff(rig.node.flows, "RET0001")
    for _, _, lock in LAYOUT:
        rig.board.set_fault(Fault.JAM, lock=lock)

    failed = start(rig)

    assert failed.status_code == 503 and failed.json()["error"] == "door_fault"
    assert failed.json()["compartment"] and len(failed.json()["moved_from"]) == 4
    rig.board.clear_faults()
    assert start(rig).status_code == 200


def test_no_room_is_a_409(rig: Rig) -> None:
    add_dropoff(rig.node.flows, "RET0001", size="XL")
    add_dropoff(rig.node.flows, "RET0002", size="XL", code="3333333333", qr="dropoff-qr-token-xl2")
    first = start(rig).json()
    rig.close_door(first["compartment"])
    rig.client.post(f"/api/dropoff/{first['dropoff_id']}/confirm")

    full = start(rig, "3333333333")

    assert full.status_code == 409 and full.json()["error"] == "no_capacity"


def test_the_courier_collects_through_the_kiosk(rig: Rig) -> None:
    parcel = dropped_off(rig)
    headers = rig.login()
    base = f"/api/courier/dropoffs/{parcel['parcel_id']}"

    rig.client.cookies.clear()  # the login's session cookie: this one asks with none
    anonymous = rig.client.get("/api/courier/dropoffs")
    listed = rig.client.get("/api/courier/dropoffs", headers=headers)
    early = rig.client.post(f"{base}/confirm", headers=headers)
    opened = rig.client.post(f"{base}/open", headers=headers)
    rig.close_door(parcel["compartment"])
    collected = rig.client.post(f"{base}/confirm", headers=headers)

    assert anonymous.status_code == 401
    [item] = listed.json()["dropoffs"]
    assert item["parcel_id"] == parcel["parcel_id"] and item["tracking_number"] == "RET0001"
    assert item["compartment"] == parcel["compartment"] and item["deposited_at"]
    assert early.status_code == 409 and early.json()["error"] == "door_not_opened"
    assert opened.json() == {
        "parcel_id": parcel["parcel_id"],
        "compartment": parcel["compartment"],
        "door": "open",
        "status": "awaiting_collection",
    }
    assert collected.status_code == 200 and collected.json()["status"] == "collected"
    assert rig.parcel(parcel["parcel_id"]).status == ParcelStatus.COLLECTED
    assert rig.compartment(parcel["compartment"]).occupancy == Occupancy.FREE
    assert rig.client.get("/api/courier/dropoffs", headers=headers).json() == {"dropoffs": []}


def test_another_carriers_courier_cannot_collect(rig: Rig) -> None:
    parcel = dropped_off(rig)
    rig.add_courier("fedex", OTHER_COURIER_CODE)
    fedex = rig.login("fedex", OTHER_COURIER_CODE)

    listed = rig.client.get("/api/courier/dropoffs", headers=fedex)
    opened = rig.client.post(f"/api/courier/dropoffs/{parcel['parcel_id']}/open", headers=fedex)
    bad = rig.client.post("/api/courier/dropoffs/nope/open", headers=fedex)

    assert listed.json() == {"dropoffs": []}
    assert opened.status_code == 404 and opened.json()["error"] == "unknown_parcel"
    assert bad.status_code == 422
    assert not rig.door_is_open(parcel["compartment"])


def test_the_page_has_the_drop_off_screens(rig: Rig) -> None:
    page = rig.client.get("/").text
    script = rig.client.get("/static/dropoff.js")

    for screen in ("dropoff", "dropoff-qr", "dropoff-door", "dropoff-done", "collect"):
        assert f'id="screen-{screen}"' in page
    assert 'id="go-dropoff"' in page and 'id="go-dropoffs"' in page
    assert page.index("/static/kiosk.js") < page.index("/static/dropoff.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
