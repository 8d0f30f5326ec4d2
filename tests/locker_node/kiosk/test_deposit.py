"""Couriers: log in, open a fitting door, confirm once it is shut; too small, jams, walk-ups."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from locker_node.domain.lifecycle import DepositStatus, Occupancy, ReservationStatus
from locker_node.hardware.simulator import Fault
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.locker_node.kiosk.rig import (
    COURIER_CODE,
    OTHER_COURIER_CODE,
    Rig,
    deposit_row,
    open_sealed,
)
from tests.locker_node.kiosk.rig import reservation_row as reservation


def start(rig: Rig, headers: dict[str, str], tracking: str, **extra: str) -> dict[str, object]:
    answer = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": tracking, **extra}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_a_deposit_opens_a_free_door_of_the_reserved_size(rig: Rig) -> None:
    rig.add_reservation("1Z0001", size="M")
    headers = rig.login()

    opened = start(rig, headers, "1z 0001")  # typed with a space, in lower case

    assert opened["compartment"] == "B01" and opened["size"] == "M"
    assert opened["door"] == "open" and opened["moved_from"] == []
    assert rig.door_is_open("B01")
    assert rig.compartment("B01").occupancy == Occupancy.BOUND


def test_confirm_needs_the_door_shut_and_then_issues_a_code(rig: Rig) -> None:
    reservation_id = rig.add_reservation("1Z0001")
    headers = rig.login()
    opened = start(rig, headers, "1Z0001")
    url = f"/api/courier/deposit/{opened['deposit_id']}/confirm"

    refused = rig.client.post(url, headers=headers)
    rig.close_door("A01")
    confirmed = rig.client.post(url, headers=headers)
    repeated = rig.client.post(url, headers=headers)

    assert refused.status_code == 409 and refused.json()["error"] == "door_open"
    assert confirmed.status_code == 200
    body = confirmed.json()
    assert body["status"] == "confirmed" and body["compartment"] == "A01"
    assert "code" not in str(body).replace("pickup_deadline", "")  # never shown to the courier
    assert repeated.status_code == 200 and repeated.json() == body
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED
    assert reservation(rig, reservation_id).status == ReservationStatus.DEPOSITED
    [event] = rig.events("parcel.deposited")
    assert event.data["reservation_id"] == reservation_id
    assert event.data["compartment"] == "A01"
    secrets = open_sealed(rig.keys, event.data)
    assert "sealed_pickup_code" in event.data and "pickup_code" not in event.data
    assert len(secrets["pickup_code"]) == rig.config.pickup.code_digits == 10
    assert len(secrets["qr_payload"]) >= 22


def test_too_small_reopens_into_the_next_class_and_frees_the_first(rig: Rig) -> None:
    rig.add_reservation("1Z0001", size="S")
    headers = rig.login()
    opened = start(rig, headers, "1Z0001")
    rig.close_door("A01")

    answer = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/too-small", headers=headers
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["deposit_id"] == opened["deposit_id"]
    assert (body["compartment"], body["size"], body["moved_from"]) == ("B01", "M", ["A01"])
    assert rig.door_is_open("B01")
    assert rig.compartment("A01").occupancy == Occupancy.FREE
    rig.close_door("B01")
    confirmed = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
    )
    assert confirmed.json()["compartment"] == "B01"


def test_too_small_in_the_largest_class_is_refused(rig: Rig) -> None:
    rig.add_reservation("1Z0001", size="XL")
    headers = rig.login()
    opened = start(rig, headers, "1Z0001")

    answer = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/too-small", headers=headers
    )

    assert answer.status_code == 409 and answer.json()["error"] == "no_larger_compartment"
    assert deposit_row(rig, str(opened["deposit_id"])).compartment == "D01"


def test_a_jammed_door_moves_the_deposit_to_another_compartment(rig: Rig) -> None:
    rig.add_reservation("1Z0001")
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A01"))
    headers = rig.login()

    opened = start(rig, headers, "1Z0001")

    assert opened["compartment"] == "A02" and opened["moved_from"] == ["A01"]
    a01 = rig.compartment("A01")
    assert not a01.in_service and a01.occupancy == Occupancy.FREE
    assert rig.compartment("A02").occupancy == Occupancy.BOUND
    assert [e.data["compartment"] for e in rig.events("compartment.out_of_service")] == ["A01"]


def test_a_jam_with_no_other_door_free_is_a_door_fault(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(deposit={"allow_upsize": False})
    rig.add_courier()
    for label in ("A01", "A02", "A03", "A04"):
        rig.board.set_fault(Fault.JAM, lock=rig.lock_of(label))
    rig.add_reservation("1Z0001")
    headers = rig.login()

    answer = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0001"}, headers=headers
    )

    assert answer.status_code == 503 and answer.json()["error"] == "door_fault"
    assert answer.json()["moved_from"] == ["A01", "A02", "A03", "A04"]
    assert reservation(rig, "res-1z0001").status == ReservationStatus.RESERVED
    assert all(not rig.compartment(label).in_service for label in ("A01", "A02", "A03", "A04"))


def test_the_courier_can_report_a_door_that_did_not_open(rig: Rig) -> None:
    rig.add_reservation("1Z0001")
    headers = rig.login()
    opened = start(rig, headers, "1Z0001")

    answer = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/door-problem", headers=headers
    )

    assert answer.status_code == 200
    assert (answer.json()["compartment"], answer.json()["moved_from"]) == ("A02", ["A01"])
    assert not rig.compartment("A01").in_service


def test_a_full_class_upsizes_only_when_the_bank_allows(make_rig: Callable[..., Rig]) -> None:
    for allow, expected in ((True, 200), (False, 409)):
        rig = make_rig(deposit={"allow_upsize": allow})
        rig.add_courier()
        headers = rig.login()
        for n in range(5):
            rig.add_reservation(f"1Z000{n}")
        for n in range(4):
            rig.deposit(f"1Z000{n}", headers)

        answer = rig.client.post(
            "/api/courier/deposit", json={"tracking_number": "1Z0004"}, headers=headers
        )

        assert answer.status_code == expected, answer.text
        if allow:
            assert answer.json()["compartment"] == "B01"
        else:
            assert answer.json()["error"] == "no_capacity"


def test_cancel_with_the_door_open_frees_the_compartment_once_the_parcel_is_out(
    rig: Rig,
) -> None:
    reservation_id = rig.add_reservation("1Z0001")
    headers = rig.login()
    opened = start(rig, headers, "1Z0001")
    url = f"/api/courier/deposit/{opened['deposit_id']}/cancel"

    removing = rig.client.post(url, headers=headers)
    bound_while_removing = rig.compartment("A01").occupancy
    still_open = rig.client.post(url, headers=headers)
    rig.close_door("A01")
    cancelled = rig.client.post(url, headers=headers)

    assert removing.status_code == 200
    assert removing.json() == {
        "deposit_id": opened["deposit_id"],
        "status": "removing",
        "compartment": "A01",
        "door": "open",
    }
    assert bound_while_removing == Occupancy.BOUND
    assert still_open.status_code == 409 and still_open.json()["error"] == "door_open"
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert rig.compartment("A01").occupancy == Occupancy.FREE
    assert reservation(rig, reservation_id).status == ReservationStatus.RESERVED
    again = rig.client.post(f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "deposit_closed"


def test_cancel_after_the_door_closed_reopens_it_and_never_frees_a_full_compartment(
    rig: Rig,
) -> None:
    # The parcel went in and the door closed; the courier presses Cancel instead of Done.
    rig.add_reservation("1Z0002")
    headers = rig.login()
    opened = start(rig, headers, "1Z0002")
    rig.close_door("A01")
    url = f"/api/courier/deposit/{opened['deposit_id']}/cancel"

    removing = rig.client.post(url, headers=headers)

    assert removing.status_code == 200 and removing.json()["status"] == "removing"
    assert rig.door_is_open("A01")  # opened again for the parcel to come out
    assert rig.compartment("A01").occupancy == Occupancy.BOUND  # never free with it inside
    rig.close_door("A01")
    cancelled = rig.client.post(url, headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert rig.compartment("A01").occupancy == Occupancy.FREE


def test_a_courier_who_cancels_and_then_keeps_the_parcel_in_can_still_confirm(rig: Rig) -> None:
    rig.add_reservation("1Z0003")
    headers = rig.login()
    opened = start(rig, headers, "1Z0003")
    rig.client.post(f"/api/courier/deposit/{opened['deposit_id']}/cancel", headers=headers)
    rig.close_door("A01")

    confirmed = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
    )

    assert confirmed.status_code == 200, confirmed.text
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED


def test_scanning_the_same_parcel_again_reopens_its_compartment(rig: Rig) -> None:
    rig.add_reservation("1Z0001")
    headers = rig.login()
    first = start(rig, headers, "1Z0001")
    rig.close_door("A01")

    second = start(rig, headers, "1Z0001")

    assert second["deposit_id"] == first["deposit_id"] and second["compartment"] == "A01"
    assert rig.door_is_open("A01")
    assert rig.compartment("A02").occupancy == Occupancy.FREE


@pytest.mark.parametrize(
    ("status", "error"),
    [("cancelled", "reservation_cancelled"), ("deposited", "already_deposited")],
)
def test_reservations_past_reserved_are_refused(rig: Rig, status: str, error: str) -> None:
    reservation_id = rig.add_reservation("1Z0001")
    headers = rig.login()
    if status == "deposited":
        rig.deposit("1Z0001", headers)
    else:
        with transaction(rig.engine) as conn:
            repo.update_reservation(conn, reservation_id, rig.clock(), status=status)

    answer = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0001"}, headers=headers
    )

    assert answer.status_code == 409 and answer.json()["error"] == error


def test_an_expired_reservation_is_refused(rig: Rig) -> None:
    rig.add_reservation("1Z0001", hold=timedelta(hours=1))
    rig.clock.advance(hours=2)
    headers = rig.login()

    answer = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0001"}, headers=headers
    )

    assert answer.status_code == 409 and answer.json()["error"] == "reservation_expired"


def test_another_carriers_reservation_is_not_found(rig: Rig) -> None:
    rig.add_reservation("1Z0001", carrier="fedex")
    headers = rig.login()

    answer = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0001"}, headers=headers
    )

    assert answer.status_code == 404 and answer.json()["error"] == "no_reservation"
    assert rig.compartment("A01").occupancy == Occupancy.FREE


def test_another_carriers_deposit_is_not_found(rig: Rig) -> None:
    rig.add_courier("fedex", OTHER_COURIER_CODE)
    rig.add_reservation("1Z0001")
    opened = start(rig, rig.login(), "1Z0001")
    fedex = rig.login("fedex", OTHER_COURIER_CODE)

    answer = rig.client.post(f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=fedex)

    assert answer.status_code == 404 and answer.json()["error"] == "unknown_deposit"


def test_walk_ups_need_the_policy_and_a_size(make_rig: Callable[..., Rig]) -> None:
    closed = make_rig()
    closed.add_courier()
    refused = closed.client.post(
        "/api/courier/deposit",
        json={"tracking_number": "WALK0001", "size": "S"},
        headers=closed.login(),
    )
    assert refused.status_code == 404 and refused.json()["error"] == "no_reservation"

    rig = make_rig(deposit={"allow_walk_up": True})
    rig.add_courier()
    headers = rig.login()
    sizeless = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "WALK0001"}, headers=headers
    )
    opened = start(rig, headers, "WALK0001", size="L")
    rig.close_door(str(opened["compartment"]))
    confirmed = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
    )

    assert sizeless.status_code == 422 and sizeless.json()["error"] == "size_required"
    assert opened["compartment"] == "C01"
    [event] = rig.events("parcel.deposited")
    assert event.data["walk_up"] is True and confirmed.status_code == 200


def test_walk_ups_leave_room_for_reservations(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(deposit={"allow_walk_up": True})
    rig.add_courier()
    rig.add_reservation("RES0001", size="L")
    rig.add_reservation("RES0002", size="L")  # both large compartments are promised
    headers = rig.login()

    answer = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "WALK0001", "size": "L"}, headers=headers
    )

    assert answer.status_code == 409 and answer.json()["error"] == "no_capacity"


def test_a_session_ends_after_inactivity_and_at_logout(rig: Rig) -> None:
    headers = rig.login()
    assert rig.client.get("/api/courier/session", headers=headers).status_code == 200

    rig.clock.advance(minutes=5, seconds=1)
    expired = rig.client.get("/api/courier/session", headers=headers)
    assert expired.status_code == 401 and expired.json()["error"] == "session_expired"

    headers = rig.login()
    assert rig.client.post("/api/courier/logout", headers=headers).status_code == 204
    after = rig.client.get("/api/courier/session", headers=headers)
    assert after.status_code == 401 and after.json()["error"] == "session_expired"


def test_the_session_cookie_is_http_only(rig: Rig) -> None:
    answer = rig.client.post("/api/courier/login", json={"carrier": "ups", "pin": COURIER_CODE})

    cookie = answer.headers["set-cookie"]
    assert "courier_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert rig.client.get("/api/courier/session").status_code == 200  # the cookie alone


def test_wrong_courier_codes_lock_the_login(rig: Rig) -> None:
    lefts = []
    for _ in range(5):
        answer = rig.client.post("/api/courier/login", json={"carrier": "ups", "pin": "11112222"})
        lefts.append(answer.json().get("attempts_left"))
    locked = rig.client.post("/api/courier/login", json={"carrier": "ups", "pin": COURIER_CODE})

    assert lefts == [4, 3, 2, 1, 0]
    assert locked.status_code == 429 and locked.json()["error"] == "locked_out"
    # Courier codes have 8 digits: the login's pace is 60 s (the keypad's is 30 s).
    assert 30 < locked.json()["retry_after_s"] <= 60
    rig.clock.advance(seconds=61)
    assert (
        rig.client.post(
            "/api/courier/login", json={"carrier": "ups", "pin": COURIER_CODE}
        ).status_code
        == 200
    )


def test_an_expired_courier_code_does_not_log_in(rig: Rig) -> None:
    rig.clock.advance(days=1, seconds=1)

    answer = rig.client.post("/api/courier/login", json={"carrier": "ups", "pin": COURIER_CODE})

    assert answer.status_code == 401 and answer.json()["error"] == "invalid_credentials"


def test_an_unconfirmed_deposit_is_abandoned_and_its_door_inspected(rig: Rig) -> None:
    reservation_id = rig.add_reservation("1Z0001")
    opened = start(rig, rig.login(), "1Z0001")
    rig.clock.advance(minutes=16)

    rig.node.flows.housekeeping()

    assert deposit_row(rig, str(opened["deposit_id"])).status == DepositStatus.ABANDONED
    a01 = rig.compartment("A01")
    assert a01.occupancy == Occupancy.FREE and not a01.in_service
    assert reservation(rig, reservation_id).status == ReservationStatus.RESERVED


def test_carriers_with_codes_are_listed_for_the_login_screen(rig: Rig) -> None:
    rig.add_courier("fedex", OTHER_COURIER_CODE)

    assert rig.client.get("/api/courier/carriers").json() == {"carriers": ["fedex", "ups"]}
