"""Senders drop parcels off with a code or a QR: a door of the right size opens, the parcel is in
once the door reads closed, and all of it works on a node that has no central to ask."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from locker_node.domain import dropoffs as dropoff_codes
from locker_node.domain.crashpoints import CrashPoints
from locker_node.domain.lifecycle import (
    CodeStatus,
    DepositStatus,
    Occupancy,
    ParcelStatus,
    ReservationStatus,
)
from locker_node.flows.errors import (
    BadInput,
    Conflict,
    DoorFault,
    InvalidCode,
    InvalidQr,
    LockedOut,
    NotFound,
)
from locker_node.flows.facade import LockerFlows
from locker_node.hardware.simulator import Fault
from locker_node.store import dropoffs as store
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.locker_node.dropoffs import CODE, OTHER_SALT, QR, add_dropoff
from tests.locker_node.kiosk.rig import LAYOUT, Rig, deposit_row
from tests.locker_node.kiosk.rig import reservation_row as reservation

WRONG = "1111111111"


def flows_of(rig: Rig) -> LockerFlows:
    return rig.node.flows


def code_row(rig: Rig, reservation_id: str) -> store.DropoffCode:
    with transaction(rig.engine) as conn:
        found = store.get_code(conn, reservation_id)
    assert found is not None
    return found


def test_a_code_opens_a_door_of_its_size_and_the_closed_door_confirms_it(rig: Rig) -> None:
    flows = flows_of(rig)
    assert rig.config.central_url is None and rig.node.sync is None  # no central to ask
    reservation_id = add_dropoff(flows, "RET0001", size="M")

    opened = flows.start_dropoff(CODE)
    with pytest.raises(Conflict) as still_open:
        flows.confirm_dropoff(opened.dropoff_id)
    rig.close_door(opened.compartment)
    done = flows.confirm_dropoff(opened.dropoff_id)
    again = flows.confirm_dropoff(opened.dropoff_id)

    assert (opened.compartment, opened.door, opened.moved_from) == ("B01", "open", [])
    assert still_open.value.code == "door_open"
    assert (done.dropoff_id, done.compartment) == (opened.dropoff_id, "B01")
    assert again == done
    parcel = rig.parcel(done.parcel_id)
    assert parcel.status == ParcelStatus.AWAITING_COLLECTION
    assert parcel.pickup_deadline == reservation(rig, reservation_id).reserved_until
    assert (parcel.tracking_number, parcel.carrier_id) == ("RET0001", "ups")
    assert reservation(rig, reservation_id).status == ReservationStatus.DEPOSITED
    assert rig.compartment("B01").occupancy == Occupancy.OCCUPIED
    assert deposit_row(rig, opened.dropoff_id).session_id is None
    row = code_row(rig, reservation_id)
    assert row.status == CodeStatus.USED and row.finished_at is not None
    [event] = rig.events("dropoff.deposited")
    assert event.data == {
        "reservation_id": reservation_id,
        "parcel_id": done.parcel_id,
        "carrier_id": "ups",
        "tracking_number": "RET0001",
        "compartment": "B01",
        "via": "code",
        "deposited_at": event.data["deposited_at"],
    }
    # The code typed again: told so, and no strike against the keypad.
    with pytest.raises(Conflict) as used:
        flows.start_dropoff(CODE)
    assert used.value.code == "already_dropped_off"
    assert flows.keypad_status().locked is False and rig.events("kiosk.code_failed") == []


def test_the_qr_opens_the_door_too(rig: Rig) -> None:
    flows = flows_of(rig)
    add_dropoff(flows, "RET0001")

    opened = flows.start_dropoff_qr(f"  {QR}\n")
    rig.close_door(opened.compartment)
    flows.confirm_dropoff(opened.dropoff_id)

    [event] = rig.events("dropoff.deposited")
    assert event.data["via"] == "qr"
    with pytest.raises(Conflict, match="already been dropped off"):
        flows.start_dropoff_qr(QR)
    with pytest.raises(Conflict, match="already been dropped off"):
        flows.start_dropoff(CODE)  # one drop-off, one code and one QR: both used
    with pytest.raises(InvalidQr):
        flows.start_dropoff_qr("dropoff-qr-token-9999999999")
    with pytest.raises(BadInput):
        flows.start_dropoff_qr("short")


def test_wrong_codes_count_against_the_pickup_keypad(rig: Rig) -> None:
    flows = flows_of(rig)
    add_dropoff(flows, "RET0001")
    with pytest.raises(BadInput):
        flows.start_dropoff("12345")  # not a code at all: no strike

    with pytest.raises(InvalidCode) as first:
        flows.pickup_with_code(WRONG)
    with pytest.raises(InvalidCode) as second:
        flows.start_dropoff(WRONG)
    for _ in range(2):
        with pytest.raises(InvalidCode):
            flows.start_dropoff(WRONG)
    with pytest.raises(InvalidCode) as locking:
        flows.pickup_with_code(WRONG)
    with pytest.raises(LockedOut) as locked:
        flows.start_dropoff(CODE)  # the right code, refused unchecked while the keypad waits

    assert first.value.extra["attempts_left"] == 4
    assert second.value.extra["attempts_left"] == 3
    assert locking.value.extra["retry_after_s"] == 30
    assert 0 < locked.value.extra["retry_after_s"] <= 30
    assert len(rig.events("kiosk.code_failed")) == 5
    rig.clock.advance(seconds=31)
    opened = flows.start_dropoff(CODE)
    assert opened.door == "open"


def test_a_code_is_hashed_once_per_salt_never_once_per_drop_off(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    flows = flows_of(rig)
    for n in range(5):
        add_dropoff(flows, f"RET000{n}", code=f"100000000{n}", qr=f"dropoff-qr-token-{n:010d}")
    # A bank whose salt changed: drop-offs under the old salt still wait.
    add_dropoff(flows, "RET0009", code="2000000009", qr="dropoff-qr-token-x9", salt=OTHER_SALT)
    hashed: list[str] = []
    real = dropoff_codes.hash_code

    def counting(code: str, params: dropoff_codes.ScryptParams) -> str:
        hashed.append(params.prefix)
        return real(code, params)

    monkeypatch.setattr(dropoff_codes, "hash_code", counting)

    opened = flows.start_dropoff("2000000009")

    assert len(hashed) == 2 and len(set(hashed)) == 2
    with transaction(rig.engine) as conn:
        deposit = repo.get_deposit(conn, opened.dropoff_id)
    assert deposit is not None and deposit.reservation_id == "drop-ret0009"


def test_a_door_that_does_not_open_moves_the_drop_off_and_then_gives_up(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    flows = flows_of(rig)
    reservation_id = add_dropoff(flows, "RET0001")
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A01"))

    moved = flows.start_dropoff(CODE)

    assert (moved.compartment, moved.moved_from) == ("A02", ["A01"])
    assert rig.compartment("A01").in_service is False
    assert rig.compartment("A01").occupancy == Occupancy.FREE
    flows.cancel_dropoff(moved.dropoff_id)  # opened: the door stays open to take it out
    rig.close_door("A02")
    flows.cancel_dropoff(moved.dropoff_id)

    for label in ("A02", "A03", "A04", "B01"):
        rig.board.set_fault(Fault.JAM, lock=rig.lock_of(label))
    with pytest.raises(DoorFault) as fault:
        flows.start_dropoff(CODE)

    assert fault.value.extra["moved_from"] == ["A02", "A03", "A04", "B01"]
    assert code_row(rig, reservation_id).status == CodeStatus.ACTIVE  # the code stays valid
    assert reservation(rig, reservation_id).status == ReservationStatus.RESERVED
    assert all(rig.compartment(label).occupancy == Occupancy.FREE for label in ("A02", "B01"))
    rig.board.clear_faults()
    again = flows.start_dropoff(CODE)
    assert again.compartment == "B02" and rig.door_is_open("B02")


def test_a_full_class_takes_the_next_larger_only_where_allowed(
    make_rig: Callable[..., Rig],
) -> None:
    upsizing, strict = make_rig(), make_rig(deposit={"allow_upsize": False})
    for rig in (upsizing, strict):
        for label in ("A01", "A02", "A03", "A04"):
            rig.node.flows.ports.doors.mark_out_of_service(label, "test: no small doors")
        add_dropoff(rig.node.flows, "RET0001")

    opened = upsizing.node.flows.start_dropoff(CODE)
    with pytest.raises(Conflict) as full:
        strict.node.flows.start_dropoff(CODE)

    assert opened.compartment == "B01"
    assert full.value.code == "no_capacity"


def test_the_sender_may_change_their_mind_and_keep_the_code(rig: Rig) -> None:
    flows = flows_of(rig)
    reservation_id = add_dropoff(flows, "RET0001")
    opened = flows.start_dropoff(CODE)

    removing = flows.cancel_dropoff(opened.dropoff_id)
    with pytest.raises(Conflict) as still_open:
        flows.cancel_dropoff(opened.dropoff_id)
    rig.close_door(opened.compartment)
    cancelled = flows.cancel_dropoff(opened.dropoff_id)

    assert (removing.status, removing.door) == ("removing", "open")
    assert still_open.value.code == "door_open"
    assert (cancelled.status, cancelled.door) == ("cancelled", "closed")
    assert rig.compartment(opened.compartment).occupancy == Occupancy.FREE
    assert code_row(rig, reservation_id).status == CodeStatus.ACTIVE
    assert rig.events("dropoff.deposited") == []
    with pytest.raises(Conflict) as closed:
        flows.confirm_dropoff(opened.dropoff_id)
    assert closed.value.code == "dropoff_closed"

    # Back later: the code opens a door again, and a closed door that was opened reopens for
    # the parcel to come out when the sender cancels then.
    second = flows.start_dropoff(CODE)
    rig.close_door(second.compartment)
    reopened = flows.cancel_dropoff(second.dropoff_id)
    assert reopened.door == "open" and rig.door_is_open(second.compartment)


def test_the_code_typed_again_reopens_the_door_it_is_bound_to(rig: Rig) -> None:
    flows = flows_of(rig)
    add_dropoff(flows, "RET0001")

    first = flows.start_dropoff(CODE)
    rig.close_door(first.compartment)
    second = flows.start_dropoff(CODE)

    assert (second.dropoff_id, second.compartment) == (first.dropoff_id, first.compartment)
    assert rig.door_is_open(first.compartment)
    assert deposit_row(rig, first.dropoff_id).status == DepositStatus.OPEN


def test_a_drop_off_past_its_time_opens_nothing(rig: Rig) -> None:
    flows = flows_of(rig)
    add_dropoff(flows, "RET0001")
    rig.clock.advance(hours=25)

    with pytest.raises(Conflict) as late:
        flows.start_dropoff(CODE)

    assert late.value.code == "dropoff_expired"
    assert rig.events("kiosk.code_failed") == []
    assert not any(rig.door_is_open(label) for label, _, _ in LAYOUT)


def test_drop_off_ids_are_checked(rig: Rig) -> None:
    flows = flows_of(rig)
    add_dropoff(flows, "RET0001")
    rig.add_reservation("1Z0001")
    courier_deposit = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0001"}, headers=rig_login(rig)
    ).json()

    with pytest.raises(BadInput):
        flows.confirm_dropoff("not-an-id")
    with pytest.raises(NotFound):
        flows.confirm_dropoff("0" * 32)
    with pytest.raises(NotFound):  # a courier's deposit is not a drop-off
        flows.cancel_dropoff(courier_deposit["deposit_id"])


def test_a_used_code_is_forgotten_a_day_later(rig: Rig) -> None:
    flows = flows_of(rig)
    reservation_id = add_dropoff(flows, "RET0001")
    opened = flows.start_dropoff(CODE)
    rig.close_door(opened.compartment)
    flows.confirm_dropoff(opened.dropoff_id)

    rig.clock.advance(days=1, seconds=1)
    flows.housekeeping()

    row = code_row(rig, reservation_id)
    assert (row.status, row.code_hash, row.qr_hash) == (CodeStatus.USED, None, None)
    with pytest.raises(InvalidCode):
        flows.start_dropoff(CODE)


def rig_login(rig: Rig) -> dict[str, str]:
    rig.add_courier()
    return rig.login()


class Died(Exception):
    """The node dying at a crash point, as far as the flow in progress can tell."""


def die() -> None:
    raise Died


def test_a_drop_off_whose_door_never_fired_is_settled_on_restart(rig: Rig) -> None:
    flows = flows_of(rig)
    reservation_id = add_dropoff(flows, "RET0001")
    flows.ports.crash = CrashPoints("dropoff.claimed", kill=die)
    with pytest.raises(Died):
        flows.start_dropoff(CODE)
    flows.ports.crash = CrashPoints()
    [bound] = [c for c in flows_compartments(rig) if c.occupancy == Occupancy.BOUND]

    settled = flows.recover()

    assert settled == 1
    assert rig.compartment(bound.label).occupancy == Occupancy.FREE
    assert code_row(rig, reservation_id).status == CodeStatus.ACTIVE
    assert flows.start_dropoff(CODE).door == "open"


def flows_compartments(rig: Rig) -> list[repo.Compartment]:
    with transaction(rig.engine) as conn:
        return repo.list_compartments(conn)


def test_a_drop_off_whose_door_was_open_never_moves(rig: Rig) -> None:
    flows = flows_of(rig)
    add_dropoff(flows, "RET0001")
    first = flows.start_dropoff(CODE)
    rig.close_door(first.compartment)  # the parcel may be inside now
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of(first.compartment))

    with pytest.raises(DoorFault) as fault:
        flows.start_dropoff(CODE)

    assert fault.value.extra["moved_from"] == [first.compartment]
    assert deposit_row(rig, first.dropoff_id).compartment == first.compartment
    assert deposit_row(rig, first.dropoff_id).status == DepositStatus.OPEN
    assert rig.compartment(first.compartment).occupancy == Occupancy.BOUND
    # It can still be confirmed where it is.
    assert flows.confirm_dropoff(first.dropoff_id).compartment == first.compartment
