"""Couriers collect their carrier's drop-offs; no other flow takes a drop-off for its own."""

from __future__ import annotations

from typing import Any

import pytest

from locker_node.domain.lifecycle import (
    CodeStatus,
    Occupancy,
    ParcelStatus,
    ReservationStatus,
)
from locker_node.flows.courier import Courier
from locker_node.flows.errors import Conflict, DoorFault, InvalidCode, NotFound
from locker_node.hardware.simulator import Fault
from locker_node.store import dropoffs as dropoff_store
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.locker_node.dropoffs import CODE, add_dropoff
from tests.locker_node.kiosk.rig import (
    COURIER_CODE,
    OTHER_COURIER_CODE,
    Rig,
)


def courier(rig: Rig, carrier: str = "ups", code: str = COURIER_CODE) -> Courier:
    rig.add_courier(carrier, code)
    flows = rig.node.flows
    return flows.authenticate(flows.login(carrier, code).token)


def dropped_off(rig: Rig, tracking: str = "RET0001", **options: Any) -> tuple[str, str]:
    """A drop-off in its compartment: (parcel id, compartment)."""
    flows = rig.node.flows
    add_dropoff(flows, tracking, **options)
    opened = flows.start_dropoff(options.get("code", CODE))
    rig.close_door(opened.compartment)
    done = flows.confirm_dropoff(opened.dropoff_id)
    return done.parcel_id, done.compartment


def test_the_carriers_courier_collects_a_drop_off(rig: Rig) -> None:
    flows = rig.node.flows
    parcel_id, label = dropped_off(rig)
    ups = courier(rig)

    listed = flows.list_dropoffs(ups)
    with pytest.raises(Conflict) as early:
        flows.confirm_collection(ups, parcel_id)
    opened = flows.open_collection(ups, parcel_id)
    with pytest.raises(Conflict) as still_open:
        flows.confirm_collection(ups, parcel_id)
    rig.close_door(label)
    collected = flows.confirm_collection(ups, parcel_id)
    repeated = flows.confirm_collection(ups, parcel_id)

    assert [(i.parcel_id, i.tracking_number, i.compartment) for i in listed] == [
        (parcel_id, "RET0001", label)
    ]
    assert early.value.code == "door_not_opened"
    assert (opened.compartment, opened.door) == (label, "open")
    assert still_open.value.code == "door_open"
    assert (collected.door, repeated.door) == ("closed", "closed")
    parcel = rig.parcel(parcel_id)
    assert parcel.status == ParcelStatus.COLLECTED and parcel.finished_at is not None
    assert rig.compartment(label).occupancy == Occupancy.FREE
    with transaction(rig.engine) as conn:
        reservation = repo.get_reservation(conn, parcel.reservation_id)
    assert reservation is not None and reservation.status == ReservationStatus.COLLECTED
    [event] = rig.events("dropoff.collected")
    assert event.data["parcel_id"] == parcel_id and event.data["compartment"] == label
    assert event.event().wire_data().model_dump() == {  # type: ignore[union-attr]
        "reservation_id": parcel.reservation_id,
        "compartment": label,
    }
    assert flows.list_dropoffs(ups) == []
    with pytest.raises(Conflict) as again:
        flows.open_collection(ups, parcel_id)
    assert again.value.code == "already_collected"


def test_a_courier_sees_only_its_own_carriers_drop_offs(rig: Rig) -> None:
    flows = rig.node.flows
    parcel_id, label = dropped_off(rig)
    fedex = courier(rig, "fedex", OTHER_COURIER_CODE)

    assert flows.list_dropoffs(fedex) == []
    with pytest.raises(NotFound):
        flows.open_collection(fedex, parcel_id)
    assert not rig.door_is_open(label)


def test_a_collection_door_that_jams_is_a_door_fault(rig: Rig) -> None:
    flows = rig.node.flows
    parcel_id, label = dropped_off(rig)
    ups = courier(rig)
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of(label))

    with pytest.raises(DoorFault):
        flows.open_collection(ups, parcel_id)

    assert rig.parcel(parcel_id).status == ParcelStatus.AWAITING_COLLECTION
    rig.board.clear_faults()
    assert flows.open_collection(ups, parcel_id).door == "open"  # out of service, still tried


def test_no_other_flow_takes_a_drop_off(rig: Rig) -> None:
    flows = rig.node.flows
    add_dropoff(flows, "RET0002", code="5550001112", qr="dropoff-qr-token-second")
    parcel_id, label = dropped_off(rig)
    ups = courier(rig)

    # A courier scanning a drop-off's tracking number hears what an unknown one gets.
    deposit = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "RET0002"}, headers=rig.login()
    )
    # Pickups and returns: a drop-off has no pickup code and never expires on the node.
    with pytest.raises(InvalidCode):
        flows.pickup_with_code(CODE)
    rig.clock.advance(days=30)
    expired = flows.expire_due()
    with pytest.raises(Conflict) as not_returnable:
        flows.open_return(ups, parcel_id)

    assert deposit.status_code == 404 and deposit.json()["error"] == "no_reservation"
    assert expired == 0 and flows.list_returns(ups) == []
    assert not_returnable.value.code == "not_returnable"
    assert rig.parcel(parcel_id).status == ParcelStatus.AWAITING_COLLECTION
    assert not rig.door_is_open(label)
    with transaction(rig.engine) as conn:
        assert repo.get_pickup_code(conn, parcel_id) is None
    assert [i.parcel_id for i in flows.list_dropoffs(courier(rig))] == [parcel_id]
    with transaction(rig.engine) as conn:
        untouched = dropoff_store.get_code(conn, "drop-ret0002")
    assert untouched is not None and untouched.status == CodeStatus.ACTIVE
