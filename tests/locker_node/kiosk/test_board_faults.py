"""A bank on two boards, one of which stops answering: deposits go to the other board, the
silent board's doors wait for it without being taken out of service, and serve again after."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from locker_node.app import build_node
from locker_node.config import parse_config
from locker_node.domain.lifecycle import CodeStatus, ParcelStatus
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.hardware.simulator import Fault
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import DATABASE_FILE, transaction
from tests.clock import FakeClock
from tests.locker_node.kiosk.rig import Rig, node_config_data

# Four small doors on each board; the silent board's come first in the allocation order.
LAYOUT = [(f"A0{n}", "S", "left", n) for n in range(1, 5)] + [
    (f"B0{n}", "S", "right", n) for n in range(1, 5)
]


@dataclass
class Bank:
    rig: Rig  # its `board` is the left one
    left: SimulatedLockBoard
    right: SimulatedLockBoard


@pytest.fixture
def two_boards(tmp_path: Path, schema_template: Path) -> Iterator[Bank]:
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    shutil.copy(schema_template, data_dir / DATABASE_FILE)
    data = node_config_data(data_dir)
    data["boards"] = [
        {"name": name, "protocol": "simulated", "locks": 4, "door_delay_ms": 0}
        for name in ("left", "right")
    ]
    data["compartments"] = [
        {"label": label, "size": size, "board": board, "lock": lock}
        for label, size, board, lock in LAYOUT
    ]
    config = parse_config(data)
    left = SimulatedLockBoard(name="left", lock_count=4, door_delay_s=0.0)
    right = SimulatedLockBoard(name="right", lock_count=4, door_delay_s=0.0)
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    node = build_node(
        config, boards={"left": left, "right": right}, clock=clock, migrate_in_process=True
    )
    node.start()
    rig = Rig(config=config, board=left, node=node, clock=clock)
    rig.add_courier()
    try:
        yield Bank(rig, left, right)
    finally:
        rig.close()


def board_of(label: str) -> str:
    return next(board for name, _, board, _ in LAYOUT if name == label)


def lock_of(label: str) -> int:
    return next(lock for name, _, _, lock in LAYOUT if name == label)


def board_alerts(rig: Rig) -> list[outbox.OutboxEvent]:
    return rig.events("board.unreachable")


def deposit(rig: Rig, tracking: str, headers: dict[str, str]) -> dict[str, object]:
    rig.add_reservation(tracking)
    answer = rig.client.post(
        "/api/courier/deposit", json={"tracking_number": tracking}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    opened: dict[str, object] = answer.json()
    return opened


def confirm(bank: Bank, opened: dict[str, object], headers: dict[str, str]) -> str:
    rig = bank.rig
    label = str(opened["compartment"])
    board = bank.left if board_of(label) == "left" else bank.right
    board.close_door(lock_of(label))
    answer = rig.client.post(
        f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["parcel_id"])


def test_a_deposit_goes_to_the_board_that_answers(two_boards: Bank) -> None:
    rig = two_boards.rig
    headers = rig.login()
    rig.board.set_fault(Fault.NO_REPLY)

    opened = deposit(rig, "1Z0001", headers)

    assert board_of(str(opened["compartment"])) == "right", opened
    assert len(opened["moved_from"]) <= 1  # type: ignore[arg-type]
    for label, _, board, _ in LAYOUT:
        if board == "left":
            assert rig.compartment(label).in_service, label  # the board failed, not the doors
    [alert] = board_alerts(rig)
    assert alert.data["board"] == "left"

    rig.board.clear_faults()
    rig.node.doors.poll()  # what the door monitor does every interval

    again = deposit(rig, "1Z0002", headers)
    assert again["compartment"] == "A01" and again["moved_from"] == []
    assert len(board_alerts(rig)) == 1


def test_a_pickup_behind_a_silent_board_waits_with_its_code(two_boards: Bank) -> None:
    rig = two_boards.rig
    headers = rig.login()
    opened = deposit(rig, "1Z0001", headers)
    assert opened["compartment"] == "A01"
    parcel_id = confirm(two_boards, opened, headers)
    code = rig.secrets_for(parcel_id)["pickup_code"]
    rig.board.set_fault(Fault.NO_REPLY)
    rig.node.doors.poll()

    refused = rig.pickup(code)

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "door_fault"
    assert rig.board.fired(1) == 1  # only the deposit: no command sent into the silence
    assert rig.parcel(parcel_id).status == ParcelStatus.IN_LOCKER
    with transaction(rig.engine) as conn:
        row = repo.get_pickup_code(conn, parcel_id)
    assert row is not None and row.status == CodeStatus.ACTIVE
    assert rig.compartment("A01").in_service

    rig.board.clear_faults()
    rig.node.doors.poll()
    served = rig.pickup(code)
    assert served.status_code == 200 and served.json()["compartment"] == "A01"
    assert rig.parcel(parcel_id).status == ParcelStatus.PICKED_UP


def test_a_deposit_is_not_confirmed_on_what_a_silent_board_last_said(two_boards: Bank) -> None:
    rig = two_boards.rig
    headers = rig.login()
    opened = deposit(rig, "1Z0001", headers)
    assert opened["compartment"] == "A01"
    two_boards.left.close_door(1)
    rig.node.doors.poll()
    two_boards.left.set_fault(Fault.NO_REPLY)
    url = f"/api/courier/deposit/{opened['deposit_id']}/confirm"

    refused = rig.client.post(url, headers=headers)

    assert refused.status_code == 503 and refused.json()["error"] == "door_fault", refused.text
    assert rig.events("parcel.deposited") == []
    two_boards.left.clear_faults()
    confirmed = rig.client.post(url, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
