"""Couriers take back parcels whose pickup deadline passed: listed, opened, recorded once."""

from __future__ import annotations

from locker_node.domain.lifecycle import Occupancy, ParcelStatus, ReservationStatus
from locker_node.hardware.simulator import Fault
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.locker_node.kiosk.rig import OTHER_COURIER_CODE, Rig


def expired_parcel(rig: Rig, headers: dict[str, str], tracking: str) -> dict[str, str]:
    rig.add_reservation(tracking)
    confirmed = rig.deposit(tracking, headers)
    return {"parcel_id": confirmed["parcel_id"], "compartment": confirmed["compartment"]}


def test_expired_parcels_are_listed_opened_and_returned(rig: Rig) -> None:
    headers = rig.login()
    parcel = expired_parcel(rig, headers, "1Z0001")
    rig.clock.advance(hours=73)
    rig.add_courier()  # today's courier code
    headers = rig.login()

    listed = rig.client.get("/api/courier/returns", headers=headers).json()["returns"]
    base = f"/api/courier/returns/{parcel['parcel_id']}"
    early = rig.client.post(f"{base}/confirm", headers=headers)
    opened = rig.client.post(f"{base}/open", headers=headers)
    still_open = rig.client.post(f"{base}/confirm", headers=headers)
    rig.close_door(parcel["compartment"])
    returned = rig.client.post(f"{base}/confirm", headers=headers)
    repeated = rig.client.post(f"{base}/confirm", headers=headers)

    assert [(r["parcel_id"], r["tracking_number"]) for r in listed] == [
        (parcel["parcel_id"], "1Z0001")
    ]
    assert early.status_code == 409 and early.json()["error"] == "door_not_opened"
    assert opened.status_code == 200 and opened.json()["door"] == "open"
    assert still_open.status_code == 409 and still_open.json()["error"] == "door_open"
    assert returned.status_code == 200 and returned.json()["status"] == "returned"
    assert repeated.status_code == 200
    assert rig.parcel(parcel["parcel_id"]).status == ParcelStatus.RETURNED
    assert rig.compartment(parcel["compartment"]).occupancy == Occupancy.FREE
    with transaction(rig.engine) as conn:
        stored = repo.get_reservation(conn, "res-1z0001")
    assert stored is not None and stored.status == ReservationStatus.RETURNED
    assert len(rig.events("parcel.returned")) == 1
    assert rig.client.get("/api/courier/returns", headers=headers).json()["returns"] == []


def test_parcels_still_within_their_deadline_are_not_returns(rig: Rig) -> None:
    headers = rig.login()
    parcel = expired_parcel(rig, headers, "1Z0001")

    listed = rig.client.get("/api/courier/returns", headers=headers).json()["returns"]
    opened = rig.client.post(f"/api/courier/returns/{parcel['parcel_id']}/open", headers=headers)

    assert listed == []
    assert opened.status_code == 409 and opened.json()["error"] == "not_returnable"
    assert rig.parcel(parcel["parcel_id"]).status == ParcelStatus.IN_LOCKER


def test_a_carrier_sees_only_its_own_returns(rig: Rig) -> None:
    parcel = expired_parcel(rig, rig.login(), "1Z0001")
    rig.clock.advance(hours=73)
    rig.add_courier("fedex", OTHER_COURIER_CODE)
    fedex = rig.login("fedex", OTHER_COURIER_CODE)

    listed = rig.client.get("/api/courier/returns", headers=fedex).json()["returns"]
    opened = rig.client.post(f"/api/courier/returns/{parcel['parcel_id']}/open", headers=fedex)

    assert listed == []
    assert opened.status_code == 404 and opened.json()["error"] == "unknown_parcel"
    assert not rig.door_is_open(parcel["compartment"])


def test_a_return_door_that_jams_is_a_door_fault(rig: Rig) -> None:
    parcel = expired_parcel(rig, rig.login(), "1Z0001")
    rig.clock.advance(hours=73)
    rig.add_courier()  # today's courier code
    headers = rig.login()
    rig.client.get("/api/courier/returns", headers=headers)
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of(parcel["compartment"]))

    answer = rig.client.post(f"/api/courier/returns/{parcel['parcel_id']}/open", headers=headers)

    assert answer.status_code == 503 and answer.json()["error"] == "door_fault"
    assert rig.parcel(parcel["parcel_id"]).status == ParcelStatus.EXPIRED
