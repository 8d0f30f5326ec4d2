"""Accessible doors at the node: a recipient who needs one gets one, or the courier is told;
other parcels go elsewhere first; the door map marks them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from locker_node.app import build_node
from locker_node.config import parse_config
from locker_node.flows.feed import ReservationIn, apply_reservation
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.hardware.simulator import Fault
from locker_node.kiosk.endpoints import KioskUi, create_kiosk_app
from locker_node.store import repository as repo
from locker_node.store.database import DATABASE_FILE, transaction
from tests.clock import FakeClock
from tests.locker_node.kiosk.rig import Rig, node_config_data

# In the rig's layout (A01-A04 S, B01-B03 M, C01-C02 L, D01 XL): A04 and B03 are accessible.
ACCESSIBLE = ("A04", "B03")


def accessible_config(data_dir: Path, accessible: tuple[str, ...], **sections: Any) -> Any:
    data = node_config_data(data_dir, **sections)
    for compartment in data["compartments"]:
        if compartment["label"] in accessible:
            compartment["accessible"] = True
    return parse_config(data)


@pytest.fixture
def make_ada_rig(tmp_path: Path, schema_template: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(accessible: tuple[str, ...] = ACCESSIBLE, **sections: Any) -> Rig:
        data_dir = tmp_path / f"rig{len(made)}" / "node"
        data_dir.mkdir(parents=True)
        shutil.copy(schema_template, data_dir / DATABASE_FILE)
        config = accessible_config(data_dir, accessible, **sections)
        board = SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)
        clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        node = build_node(config, boards={"main": board}, clock=clock, migrate_in_process=True)
        rig = Rig(config=config, board=board, node=node, clock=clock)
        node.start()
        rig.add_courier()
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


@pytest.fixture
def ada(make_ada_rig: Callable[..., Rig]) -> Rig:
    return make_ada_rig()


def add(rig: Rig, tracking: str, *, size: str = "S", accessible: bool = False) -> str:
    """A reservation as central's feed brings it, with the recipient's need."""
    now = rig.clock()
    reservation_id = f"res-{tracking.lower()}"
    with transaction(rig.engine) as conn:
        apply_reservation(
            conn,
            ReservationIn(
                id=reservation_id,
                carrier_id="ups",
                tracking_number=tracking,
                size=size,
                reserved_until=now + timedelta(hours=24),
                accessible=accessible,
            ),
            now,
        )
    return reservation_id


def start(rig: Rig, headers: dict[str, str], tracking: str) -> Any:
    return rig.client.post(
        "/api/courier/deposit", json={"tracking_number": tracking}, headers=headers
    )


def test_the_store_keeps_which_compartments_are_accessible(ada: Rig) -> None:
    with transaction(ada.engine) as conn:
        flagged = [c.label for c in repo.list_compartments(conn) if c.accessible]
        free = {c.label: c.accessible for c in repo.free_candidates(conn)}
    assert flagged == list(ACCESSIBLE)
    assert free["A04"] is True and free["A01"] is False


def test_changing_the_flag_in_the_config_changes_the_store(ada: Rig) -> None:
    now = ada.clock()
    with transaction(ada.engine) as conn:
        specs = [
            repo.CompartmentSpec(c.label, c.size, c.board, c.lock, c.label == "A01")
            for c in ada.config.compartments
        ]
        repo.sync_compartments(conn, specs, now)
        flagged = [c.label for c in repo.list_compartments(conn) if c.accessible]
    assert flagged == ["A01"]


def test_an_accessible_reservation_gets_an_accessible_door(ada: Rig) -> None:
    add(ada, "1Z0001", accessible=True)
    opened = start(ada, ada.login(), "1Z0001")
    assert opened.status_code == 200, opened.text
    assert opened.json()["compartment"] == "A04"


def test_an_accessible_reservation_upsizes_to_an_accessible_door(ada: Rig) -> None:
    headers = ada.login()
    add(ada, "1Z0001", accessible=True)
    add(ada, "1Z0002", accessible=True)
    ada.deposit("1Z0001", headers)  # A04, the one accessible S door
    opened = start(ada, headers, "1Z0002")
    assert opened.status_code == 200, opened.text
    assert opened.json()["compartment"] == "B03"  # not A01: the recipient could not reach it


def test_with_no_accessible_door_free_the_courier_is_told(
    make_ada_rig: Callable[..., Rig],
) -> None:
    rig = make_ada_rig(deposit={"allow_upsize": False})
    headers = rig.login()
    add(rig, "1Z0001", accessible=True)
    add(rig, "1Z0002", accessible=True)
    rig.deposit("1Z0001", headers)
    before = rig.snapshot()["deposits"]

    refused = start(rig, headers, "1Z0002")

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "no_accessible_compartment"
    assert rig.snapshot()["deposits"] == before
    assert not rig.door_is_open("A01")


def test_other_parcels_take_every_other_door_first_and_an_accessible_one_last(
    make_ada_rig: Callable[..., Rig],
) -> None:
    rig = make_ada_rig(deposit={"allow_upsize": False})
    headers = rig.login()
    for n in range(1, 5):
        add(rig, f"1Z000{n}")
    doors = [rig.deposit(f"1Z000{n}", headers)["compartment"] for n in range(1, 5)]
    assert doors == ["A01", "A02", "A03", "A04"]


def test_with_upsizing_another_parcel_takes_a_larger_door_before_an_accessible_one(
    ada: Rig,
) -> None:
    headers = ada.login()
    for n in range(1, 5):
        add(ada, f"1Z000{n}")
    doors = [ada.deposit(f"1Z000{n}", headers)["compartment"] for n in range(1, 5)]
    assert doors == ["A01", "A02", "A03", "B01"]


def test_too_small_moves_an_accessible_parcel_to_a_larger_accessible_door(ada: Rig) -> None:
    headers = ada.login()
    add(ada, "1Z0001", accessible=True)
    opened = start(ada, headers, "1Z0001").json()
    assert opened["compartment"] == "A04"

    moved = ada.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/too-small", headers=headers
    )

    assert moved.status_code == 200, moved.text
    assert moved.json()["compartment"] == "B03"  # B01 is nearer in size, but out of reach


def test_a_jammed_accessible_door_moves_the_parcel_only_to_another_accessible_one(
    make_ada_rig: Callable[..., Rig],
) -> None:
    rig = make_ada_rig(accessible=("A04", "A03"), deposit={"allow_upsize": False})
    headers = rig.login()
    add(rig, "1Z0001", accessible=True)
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A03"))

    opened = start(rig, headers, "1Z0001")

    assert opened.status_code == 200, opened.text
    assert opened.json()["compartment"] == "A04"
    assert opened.json()["moved_from"] == ["A03"]


def test_the_door_map_marks_accessible_doors(ada: Rig) -> None:
    body = ada.client.get("/api/layout").json()
    flags = {d["label"]: d["accessible"] for c in body["columns"] for d in c["compartments"]}
    assert [label for label, flag in flags.items() if flag] == list(ACCESSIBLE)


def test_a_kiosk_told_of_no_accessible_doors_marks_none(ada: Rig) -> None:
    app = create_kiosk_app(ada.node.flows, KioskUi(bank_id=ada.config.bank_id))
    body = TestClient(app).get("/api/layout").json()
    assert not any(d["accessible"] for c in body["columns"] for d in c["compartments"])
