"""Parcel groups on the node: parcels for one recipient open with one code, every door at once;
a courier may put one in with its group-mate; expiry, returns and reissues keep a code working
for the parcels still waiting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from locker_node.domain.lifecycle import CodeStatus, Occupancy, ParcelStatus, Purpose
from locker_node.flows import commands
from locker_node.flows.feed import ReservationIn, apply_reservation
from locker_node.hardware.simulator import Fault
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.schema import door_operations
from tests.locker_node.kiosk.rig import Rig

GROUP = "grp_0123456789abcdef01234567"
OTHER_GROUP = "grp_76543210fedcba9876543210"


def reserve(
    rig: Rig,
    tracking: str,
    *,
    size: str = "S",
    group: str | None = GROUP,
    accessible: bool = False,
) -> str:
    """A reservation from central's feed, with its group id."""
    now = rig.clock()
    rid = f"res-{tracking.lower()}"
    with transaction(rig.engine) as conn:
        apply_reservation(
            conn,
            ReservationIn(
                id=rid,
                carrier_id="ups",
                tracking_number=tracking,
                size=size,
                reserved_until=now + timedelta(hours=24),
                group_id=group,
                accessible=accessible,
            ),
            now,
        )
    return rid


def start(rig: Rig, headers: dict[str, str], tracking: str, **body: Any) -> Any:
    return rig.client.post(
        "/api/courier/deposit", json={"tracking_number": tracking, **body}, headers=headers
    )


def confirm(rig: Rig, headers: dict[str, str], opened: dict[str, Any]) -> dict[str, Any]:
    rig.close_door(opened["compartment"])
    answer = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
    )
    assert answer.status_code == 200, answer.text
    confirmed: dict[str, Any] = answer.json()
    return confirmed


def deposited(rig: Rig, headers: dict[str, str], tracking: str, *, size: str = "S") -> str:
    """A parcel of the group in a compartment of its own; its parcel id."""
    reserve(rig, tracking, size=size)
    opened = start(rig, headers, tracking)
    assert opened.status_code == 200, opened.text
    return str(confirm(rig, headers, opened.json())["parcel_id"])


def later(rig: Rig, hours: int) -> dict[str, str]:
    """`hours` on, with the day's courier code and a new session: the courier's headers."""
    rig.clock.advance(hours=hours)
    rig.add_courier()
    return rig.login()


def deposit_event(rig: Rig, parcel_id: str) -> dict[str, Any]:
    [data] = [e.data for e in rig.events("parcel.deposited") if e.data["parcel_id"] == parcel_id]
    return data


def secrets(rig: Rig, parcel_id: str, event_type: str = "parcel.deposited") -> tuple[str, str]:
    """The code and QR payload a parcel's event sealed (the last such event)."""
    data = [e.data for e in rig.events(event_type) if e.data["parcel_id"] == parcel_id][-1]
    return rig.keys.unseal(data["sealed_pickup_code"]), rig.keys.unseal(data["sealed_qr_payload"])


def code_row(rig: Rig, parcel_id: str) -> repo.PickupCode:
    with transaction(rig.engine) as conn:
        row = repo.get_pickup_code(conn, parcel_id)
    assert row is not None
    return row


def picked_up(rig: Rig) -> list[str]:
    return [e.data["parcel_id"] for e in rig.events("parcel.picked_up")]


def pickup_openings(rig: Rig) -> int:
    with transaction(rig.engine) as conn:
        count = conn.execute(
            select(func.count()).where(door_operations.c.purpose == Purpose.PICKUP)
        ).scalar_one()
    return int(count)


def test_three_parcels_one_code_one_pickup_opens_three_doors(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002", size="M")
    third = deposited(rig, headers, "1Z0003")
    code, _ = secrets(rig, first)

    # The later two joined the first one's code: no code of their own, none sent.
    for joined in (second, third):
        data = deposit_event(rig, joined)
        assert data["shares_code_with"] == "res-1z0001"
        assert data["sealed_pickup_code"] == "" and data["sealed_qr_payload"] == ""
        row = code_row(rig, joined)
        assert (row.joins, row.code_hash, row.qr_hash) == (first, None, None)
    assert deposit_event(rig, first)["shares_code_with"] is None
    assert code_row(rig, first).expires_at == rig.parcel(third).pickup_deadline

    answer = rig.pickup(code)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "compartment": "A01",
        "door": "open",
        "compartments": ["A01", "A02", "B01"],
        "failed": [],
    }
    assert all(rig.door_is_open(label) for label in ("A01", "A02", "B01"))
    assert sorted(picked_up(rig)) == sorted([first, second, third])
    for parcel_id in (first, second, third):
        assert rig.parcel(parcel_id).status == ParcelStatus.PICKED_UP
        assert code_row(rig, parcel_id).status == CodeStatus.USED
        assert rig.compartment(rig.parcel(parcel_id).compartment).occupancy == Occupancy.FREE
    again = rig.pickup(code)
    assert again.status_code == 409 and again.json()["error"] == "already_collected"


def test_the_qr_payload_opens_the_whole_group(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002")
    _, token = secrets(rig, first)

    answer = rig.client.post("/api/pickup/qr", json={"token": token})

    assert answer.status_code == 200, answer.text
    assert answer.json()["compartments"] == ["A01", "A02"]
    assert sorted(picked_up(rig)) == sorted([first, second])


def test_another_group_and_no_group_get_codes_of_their_own(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    reserve(rig, "1Z0002", group=OTHER_GROUP)
    other = confirm(rig, headers, start(rig, headers, "1Z0002").json())["parcel_id"]
    reserve(rig, "1Z0003", group=None)
    alone = confirm(rig, headers, start(rig, headers, "1Z0003").json())["parcel_id"]

    codes = {secrets(rig, parcel)[0] for parcel in (first, other, alone)}

    assert len(codes) == 3
    for parcel in (other, alone):
        assert code_row(rig, parcel).joins is None
        assert rig.pickup(secrets(rig, parcel)[0]).json()["compartments"] == [
            rig.parcel(parcel).compartment
        ]


def test_a_door_that_fails_keeps_its_parcel_and_the_code_works_for_it(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002", size="M")
    third = deposited(rig, headers, "1Z0003")
    code, _ = secrets(rig, first)
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A01"))

    answer = rig.pickup(code)

    assert answer.status_code == 200, answer.text
    assert answer.json()["compartments"] == ["A02", "B01"]
    assert answer.json()["failed"] == ["A01"]
    assert sorted(picked_up(rig)) == sorted([second, third])
    assert rig.parcel(first).status == ParcelStatus.IN_LOCKER
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED
    assert code_row(rig, first).status == CodeStatus.ACTIVE

    rig.board.clear_faults(lock=rig.lock_of("A01"))
    again = rig.pickup(code)
    assert again.status_code == 200 and again.json()["compartments"] == ["A01"]
    assert rig.parcel(first).status == ParcelStatus.PICKED_UP


def test_when_the_holders_door_fails_the_code_passes_to_it_from_a_joiner(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002")
    code, _ = secrets(rig, first)
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A02"))

    assert rig.pickup(code).json()["failed"] == ["A02"]

    # The holder left; the parcel still waiting holds the code now.
    assert code_row(rig, first).status == CodeStatus.USED
    row = code_row(rig, second)
    assert (row.status, row.joins) == (CodeStatus.ACTIVE, None) and row.code_hash is not None
    rig.board.clear_faults(lock=rig.lock_of("A02"))
    assert rig.pickup(code).json()["compartments"] == ["A02"]


def test_a_courier_puts_a_parcel_in_with_its_group_mate(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    reserve(rig, "1Z0002")
    code, _ = secrets(rig, first)

    offered = start(rig, headers, "1Z0002")
    assert offered.status_code == 200, offered.text
    assert offered.json()["compartment"] == "A02"
    assert offered.json()["shared_doors"] == ["A01"]

    shared = start(rig, headers, "1Z0002", compartment="a01")

    assert shared.status_code == 200, shared.text
    body = shared.json()
    assert (body["compartment"], body["door"], body["moved_from"]) == ("A01", "open", ["A02"])
    assert body["deposit_id"] == offered.json()["deposit_id"]
    assert body["shared_doors"] == []
    assert rig.door_is_open("A01")
    assert rig.compartment("A02").occupancy == Occupancy.FREE
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED
    second = confirm(rig, headers, body)["parcel_id"]
    assert rig.parcel(second).compartment == "A01"
    assert deposit_event(rig, second)["shares_code_with"] == "res-1z0001"
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED

    answer = rig.pickup(code)

    assert answer.json()["compartments"] == ["A01"]
    assert pickup_openings(rig) == 1  # one door, opened once, for both parcels
    assert sorted(picked_up(rig)) == sorted([first, second])
    assert rig.compartment("A01").occupancy == Occupancy.FREE


def test_only_a_group_mates_door_of_a_fitting_class_is_shared(rig: Rig) -> None:
    headers = rig.login()
    deposited(rig, headers, "1Z0001")  # in A01, small
    reserve(rig, "1Z0002", size="M")
    reserve(rig, "1Z0003", group=None)
    reserve(rig, "1Z0004", accessible=True)

    larger = start(rig, headers, "1Z0002")
    assert larger.json()["shared_doors"] == []
    too_small = start(rig, headers, "1Z0002", compartment="A01")
    no_group = start(rig, headers, "1Z0003", compartment="A01")
    not_a_mate = start(rig, headers, "1Z0002", compartment="B03")
    unknown = start(rig, headers, "1Z0002", compartment="Z99")
    with_size = start(rig, headers, "1Z0002", compartment="A01", size="S")
    too_long = start(rig, headers, "1Z0002", compartment="A" * 17)
    # A recipient who asked for an accessible compartment: A01 is not one.
    not_accessible = start(rig, headers, "1Z0004", compartment="A01")

    for refused in (too_small, no_group, not_a_mate, not_accessible):
        assert refused.status_code == 409 and refused.json()["error"] == "not_shareable"
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_compartment"
    assert with_size.status_code == 422 and with_size.json()["error"] == "bad_input"
    assert too_long.status_code == 422 and too_long.json()["error"] == "bad_input"
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED


def test_a_shared_deposit_cancelled_leaves_the_group_mate_and_its_compartment(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    reserve(rig, "1Z0002")
    code, _ = secrets(rig, first)
    shared = start(rig, headers, "1Z0002", compartment="A01").json()
    cancel = f"/api/courier/deposit/{shared['deposit_id']}/cancel"

    removing = rig.client.post(cancel, headers=headers)
    rig.close_door("A01")
    cancelled = rig.client.post(cancel, headers=headers)

    assert removing.json()["status"] == "removing"
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED
    assert rig.parcel(first).status == ParcelStatus.IN_LOCKER
    assert rig.pickup(code).json()["compartments"] == ["A01"]
    assert rig.compartment("A01").occupancy == Occupancy.FREE


def test_a_shared_door_that_does_not_open_ends_the_deposit(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    reserve(rig, "1Z0002")
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A01"))

    answer = start(rig, headers, "1Z0002", compartment="A01")

    assert answer.status_code == 503 and answer.json()["error"] == "door_fault"
    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED
    assert rig.parcel(first).status == ParcelStatus.IN_LOCKER
    # Scanned again, the parcel gets a compartment of its own.
    again = start(rig, headers, "1Z0002")
    assert again.status_code == 200 and again.json()["compartment"] == "A02"


def test_a_joiner_keeps_a_working_code_when_the_holder_expires_and_goes_back(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    code, _ = secrets(rig, first)
    headers = later(rig, 24)
    second = deposited(rig, headers, "1Z0002")
    headers = later(rig, 49)  # past the first one's deadline, within the second one's

    rig.node.flows.housekeeping()

    assert rig.parcel(first).status == ParcelStatus.EXPIRED
    assert code_row(rig, first).status == CodeStatus.EXPIRED
    row = code_row(rig, second)
    assert (row.status, row.joins) == (CodeStatus.ACTIVE, None) and row.code_hash is not None
    assert row.expires_at == rig.parcel(second).pickup_deadline
    # The courier takes the first one back; its compartment is free, the second one's is not.
    base = f"/api/courier/returns/{first}"
    assert rig.client.post(f"{base}/open", headers=headers).status_code == 200
    rig.close_door("A01")
    assert rig.client.post(f"{base}/confirm", headers=headers).status_code == 200
    assert rig.compartment("A01").occupancy == Occupancy.FREE

    answer = rig.pickup(code)

    assert answer.status_code == 200 and answer.json()["compartments"] == ["A02"]
    assert picked_up(rig) == [second]


def test_before_the_expiry_runs_the_code_opens_only_the_parcels_within_their_deadline(
    rig: Rig,
) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    code, _ = secrets(rig, first)
    headers = later(rig, 24)
    second = deposited(rig, headers, "1Z0002")
    rig.clock.advance(hours=49)

    answer = rig.pickup(code)

    assert answer.status_code == 200 and answer.json()["compartments"] == ["A02"]
    assert picked_up(rig) == [second]
    assert rig.parcel(first).status == ParcelStatus.IN_LOCKER  # for the expiry, then a return


def test_returning_the_holder_from_a_shared_compartment_leaves_it_occupied(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    code, _ = secrets(rig, first)
    headers = later(rig, 24)
    reserve(rig, "1Z0002")
    second = confirm(rig, headers, start(rig, headers, "1Z0002", compartment="A01").json())
    headers = later(rig, 49)

    [listed] = rig.client.get("/api/courier/returns", headers=headers).json()["returns"]
    base = f"/api/courier/returns/{first}"
    assert listed["parcel_id"] == first
    assert rig.client.post(f"{base}/open", headers=headers).status_code == 200
    rig.close_door("A01")
    assert rig.client.post(f"{base}/confirm", headers=headers).status_code == 200

    assert rig.compartment("A01").occupancy == Occupancy.OCCUPIED
    assert rig.pickup(code).json()["compartments"] == ["A01"]
    assert picked_up(rig) == [second["parcel_id"]]
    assert rig.compartment("A01").occupancy == Occupancy.FREE


def run_command(rig: Rig, name: str, *args: Any) -> Any:
    ports = rig.node.flows.ports
    with transaction(rig.engine) as conn:
        if name == "reissue":
            return commands.reissue_pickup_code(conn, ports, *args, rig.clock())
        if name == "extend":
            return commands.extend_pickup(conn, *args, rig.clock())
        return commands.invalidate_pickup_code(conn, *args, rig.clock())


def test_reissuing_the_holders_code_gives_it_a_code_of_its_own(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002")
    old, _ = secrets(rig, first)

    assert run_command(rig, "reissue", "res-1z0001") is not None

    new, _ = secrets(rig, first, "parcel.code_reissued")
    assert new != old
    assert code_row(rig, second).joins is None  # the old code passed to the joiner
    assert rig.pickup(old).json()["compartments"] == ["A02"]
    assert rig.pickup(new).json()["compartments"] == ["A01"]
    assert sorted(picked_up(rig)) == [*sorted([first, second])]


def test_reissuing_a_joiners_code_takes_it_out_of_the_shared_one(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002")
    old, _ = secrets(rig, first)

    run_command(rig, "reissue", "res-1z0002")

    new, _ = secrets(rig, second, "parcel.code_reissued")
    assert code_row(rig, second).joins is None and code_row(rig, second).code_hash is not None
    assert code_row(rig, first).expires_at == rig.parcel(first).pickup_deadline
    assert rig.pickup(old).json()["compartments"] == ["A01"]
    assert rig.pickup(new).json()["compartments"] == ["A02"]


def test_invalidating_one_parcels_code_leaves_the_others_their_code(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002")
    third = deposited(rig, headers, "1Z0003")
    code, _ = secrets(rig, first)

    assert run_command(rig, "invalidate", "res-1z0003") is True
    assert run_command(rig, "invalidate", "res-1z0001") is True

    assert code_row(rig, third).status == CodeStatus.REVOKED
    assert code_row(rig, first).status == CodeStatus.REVOKED
    assert rig.pickup(code).json()["compartments"] == ["A02"]
    assert picked_up(rig) == [second]
    assert rig.parcel(first).status == ParcelStatus.IN_LOCKER


def test_extending_a_joiner_keeps_the_shared_code_alive_with_it(rig: Rig) -> None:
    headers = rig.login()
    first = deposited(rig, headers, "1Z0001")
    second = deposited(rig, headers, "1Z0002")
    code, _ = secrets(rig, first)

    assert run_command(rig, "extend", "res-1z0002", 48) is True

    extended = rig.parcel(second).pickup_deadline
    assert code_row(rig, first).expires_at == extended
    rig.clock.advance(hours=100)  # past the holder's deadline, within the extended one
    assert rig.pickup(code).json()["compartments"] == ["A02"]
