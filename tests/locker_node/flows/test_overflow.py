"""The overflow flow: nearby banks asked of central, and a parcel's reservation moved there and
forgotten here; central played by a fake link, the rest a whole node on a simulated board."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from locker_node.domain.lifecycle import DepositStatus, Occupancy, ReservationStatus
from locker_node.flows.courier import Courier
from locker_node.flows.errors import (
    BadInput,
    CentralUnreachable,
    Conflict,
    FlowError,
    NotFound,
)
from locker_node.flows.facade import LockerFlows
from locker_node.flows.ports import NearbyBank, Redirected
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.locker_node.kiosk.rig import Rig, build_rig, make_schema_template

NYC_2 = NearbyBank("NYC-2", "Bank NYC-2", "2 Second Ave", 1.6, 3)


class FakeLink:
    """Central as the flows see it: answers, refusals, or nobody there."""

    def __init__(self, banks: list[NearbyBank] | None = None) -> None:
        self.banks = [NYC_2] if banks is None else banks
        self.down = False
        self.refusal: FlowError | None = None
        self.asked: list[tuple[str, ...]] = []

    def nearby(self, size: str, accessible: bool) -> list[NearbyBank]:
        self.asked.append(("nearby", size, str(accessible)))
        if self.down:
            raise CentralUnreachable("central did not answer")
        return self.banks

    def redirect(self, reservation_id: str, bank_id: str, size: str | None) -> Redirected:
        self.asked.append(("redirect", reservation_id, bank_id, str(size)))
        if self.down:
            raise CentralUnreachable("central did not answer")
        if self.refusal is not None:
            raise self.refusal
        bank = next(b for b in self.banks if b.bank_id == bank_id)
        return Redirected(reservation_id, bank.bank_id, bank.name, bank.address, size or "S")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    template = make_schema_template(tmp_path / "template")
    rig = build_rig(tmp_path / "rig", template)
    rig.add_courier()
    rig.add_courier("dhl")
    yield rig
    rig.close()


@pytest.fixture
def link(rig: Rig) -> FakeLink:
    fake = FakeLink()
    rig.node.flows.ports.central = fake
    return fake


def courier_of(rig: Rig, carrier: str = "ups") -> Courier:
    token = rig.login(carrier)["Authorization"].removeprefix("Bearer ")
    return rig.node.flows.authenticate(token)


def flows(rig: Rig) -> LockerFlows:
    return rig.node.flows


def reservation(rig: Rig, reservation_id: str) -> repo.Reservation:
    with transaction(rig.engine) as conn:
        found = repo.get_reservation(conn, reservation_id)
    assert found is not None
    return found


def audit_actions(rig: Rig) -> list[str]:
    with transaction(rig.engine) as conn:
        return [entry.action for entry in outbox.audit_entries(conn)]


def test_nearby_banks_asks_central_for_the_parcels_class(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0001", size="M")
    who = courier_of(rig)

    found = flows(rig).nearby_banks(who, "1z 0001")
    larger = flows(rig).nearby_banks(who, "1Z0001", size="L")

    assert found == [NYC_2] and larger == [NYC_2]
    assert link.asked == [("nearby", "M", "False"), ("nearby", "L", "False")]


def test_only_a_waiting_reservation_of_the_couriers_carrier_is_offered(
    rig: Rig, link: FakeLink
) -> None:
    rig.add_reservation("1Z0002", size="M")
    who = courier_of(rig)

    with pytest.raises(NotFound) as unknown:
        flows(rig).nearby_banks(who, "1Z9999")
    with pytest.raises(NotFound):
        flows(rig).nearby_banks(courier_of(rig, "dhl"), "1Z0002")
    with pytest.raises(BadInput) as smaller:
        flows(rig).nearby_banks(who, "1Z0002", size="S")
    with pytest.raises(BadInput):
        flows(rig).nearby_banks(who, "1Z0002", size="XXL")
    with pytest.raises(BadInput):
        flows(rig).nearby_banks(who, "#")

    assert unknown.value.code == "no_reservation"
    assert smaller.value.code == "size_too_small"
    assert link.asked == []


def test_a_deposited_or_expired_reservation_stays(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0003")
    rig.deposit("1Z0003", rig.login())
    rig.add_reservation("1Z0004", hold=timedelta(minutes=1))
    rig.clock.advance(minutes=2)  # past its hold
    who = courier_of(rig)

    with pytest.raises(Conflict) as deposited:
        flows(rig).redirect(who, "1Z0003", "NYC-2")
    with pytest.raises(Conflict) as expired:
        flows(rig).nearby_banks(who, "1Z0004")

    assert (deposited.value.code, deposited.value.extra["status"]) == (
        "not_redirectable",
        "deposited",
    )
    assert expired.value.code == "reservation_expired"
    assert link.asked == []


def test_a_redirect_moves_it_at_central_and_forgets_it_here(rig: Rig, link: FakeLink) -> None:
    rid = rig.add_reservation("1Z0005", size="S")
    who = courier_of(rig)
    events_before = rig.events()

    moved = flows(rig).redirect(who, "1Z0005", "NYC-2")

    assert moved == Redirected(rid, "NYC-2", "Bank NYC-2", "2 Second Ave", "S")
    assert link.asked == [("redirect", rid, "NYC-2", "S")]
    assert reservation(rig, rid).status == ReservationStatus.CANCELLED
    assert audit_actions(rig)[-1] == "redirected"
    assert rig.events() == events_before  # central knows already: nothing to send it
    # The parcel is no longer this bank's to take.
    refused = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": "1Z0005"}, headers=rig.login()
    )
    assert refused.json()["error"] == "reservation_cancelled"


def test_a_too_small_deposit_is_cancelled_and_its_door_freed_once_shut(
    rig: Rig, link: FakeLink
) -> None:
    rid = rig.add_reservation("1Z0006", size="XL")
    who = courier_of(rig)
    view = flows(rig).start_deposit(who, "1Z0006")
    assert (view.compartment, view.door) == ("D01", "open")

    with pytest.raises(Conflict) as still_open:
        flows(rig).redirect(who, "1Z0006", "NYC-2")
    assert (still_open.value.code, still_open.value.extra["compartment"]) == ("door_open", "D01")
    assert link.asked == []
    rig.close_door("D01")
    flows(rig).redirect(who, "1Z0006", "NYC-2")

    assert rig.compartment("D01").occupancy == Occupancy.FREE
    with transaction(rig.engine) as conn:
        deposit = repo.get_deposit(conn, view.deposit_id)
    assert deposit is not None and deposit.status == DepositStatus.CANCELLED
    assert reservation(rig, rid).status == ReservationStatus.CANCELLED
    assert audit_actions(rig)[-2:] == ["deposit_cancelled", "redirected"]


def test_central_unreachable_changes_nothing_and_says_so(rig: Rig, link: FakeLink) -> None:
    rid = rig.add_reservation("1Z0007", size="XL")
    who = courier_of(rig)
    flows(rig).start_deposit(who, "1Z0007")
    rig.close_door("D01")
    rig.node.doors.poll()  # the door's closing is on record before the snapshot
    link.down = True
    before = rig.snapshot()

    with pytest.raises(CentralUnreachable) as listing:
        flows(rig).nearby_banks(who, "1Z0007")
    with pytest.raises(CentralUnreachable) as moving:
        flows(rig).redirect(who, "1Z0007", "NYC-2")

    assert listing.value.code == moving.value.code == "central_unreachable"
    assert rig.snapshot() == before
    assert reservation(rig, rid).status == ReservationStatus.RESERVED
    assert rig.compartment("D01").occupancy == Occupancy.BOUND


def test_a_node_without_central_cannot_move_a_parcel(rig: Rig) -> None:
    rig.add_reservation("1Z0008")
    assert flows(rig).ports.central is None

    with pytest.raises(CentralUnreachable):
        flows(rig).nearby_banks(courier_of(rig), "1Z0008")


def test_centrals_refusal_comes_back_and_changes_nothing(rig: Rig, link: FakeLink) -> None:
    rid = rig.add_reservation("1Z0009")
    who = courier_of(rig)
    link.refusal = Conflict("no free S locker at that bank", code="no_capacity")
    before = rig.snapshot()

    with pytest.raises(Conflict) as refused:
        flows(rig).redirect(who, "1Z0009", "NYC-2")

    assert refused.value.code == "no_capacity"
    assert link.asked == [("redirect", rid, "NYC-2", "S")]
    assert rig.snapshot() == before


def test_the_target_must_be_another_bank(rig: Rig, link: FakeLink) -> None:
    rig.add_reservation("1Z0010")
    who = courier_of(rig)

    with pytest.raises(BadInput) as same:
        flows(rig).redirect(who, "1Z0010", "TEST-1")
    with pytest.raises(BadInput):
        flows(rig).redirect(who, "1Z0010", "not a bank!")

    assert same.value.code == "same_bank"
    assert link.asked == []
