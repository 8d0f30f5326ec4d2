"""A whole node on a simulated board, in process, with helpers to seed it and look inside."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from locker_node.app import Node, build_node
from locker_node.config import NodeConfig, parse_config
from locker_node.domain.credentials import hash_courier_code
from locker_node.flows.feed import (
    CourierCredentialIn,
    ReservationIn,
    add_courier_credential,
    apply_reservation,
)
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import DATABASE_FILE, transaction
from locker_node.store.keys import NodeKeys
from locker_node.store.migrate import upgrade
from locker_node.store.schema import metadata
from tests.clock import FakeClock

COURIER_CODE = "24681357"


def cheap_hash(code: str) -> str:
    """A courier code hash with a tiny scrypt cost, to keep the suite fast; verification
    follows each hash's own parameters, so the node runs its field code path."""
    return hash_courier_code(code, n=16, r=1, p=1)


OTHER_COURIER_CODE = "13572468"

# label, size, lock: four small, three medium, two large, one extra large
LAYOUT: list[tuple[str, str, int]] = [
    ("A01", "S", 1),
    ("A02", "S", 2),
    ("A03", "S", 3),
    ("A04", "S", 4),
    ("B01", "M", 5),
    ("B02", "M", 6),
    ("B03", "M", 7),
    ("C01", "L", 8),
    ("C02", "L", 9),
    ("D01", "XL", 10),
]


def make_schema_template(directory: Path) -> Path:
    path = directory / DATABASE_FILE
    upgrade(path)
    return path


def node_config_data(
    data_dir: Path, *, layout: list[tuple[str, str, int]] = LAYOUT, **sections: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "bank_id": "TEST-1",
        "data_dir": str(data_dir),
        "boards": [{"name": "main", "protocol": "simulated", "locks": 16, "door_delay_ms": 0}],
        "compartments": [
            {"label": label, "size": size, "board": "main", "lock": lock}
            for label, size, lock in layout
        ],
        "doors": {"confirm_window_ms": 150, "confirm_poll_ms": 10, "monitor_interval_ms": 100},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


@dataclass
class Rig:
    config: NodeConfig
    board: SimulatedLockBoard
    node: Node
    clock: FakeClock
    _client: TestClient | None = field(default=None, init=False)

    @property
    def engine(self) -> Engine:
        return self.node.engine

    @property
    def keys(self) -> NodeKeys:
        return self.node.keys

    @property
    def client(self) -> TestClient:
        if self._client is None:
            self._client = TestClient(self.node.app, raise_server_exceptions=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.node.started:
            self.node.stop()

    def restart(self, *, start: bool = True) -> None:
        """Stop the node and build a new one on the same store, board and clock."""
        self.close()
        self.node = build_node(
            self.config, boards={"main": self.board}, clock=self.clock, migrate_in_process=True
        )
        if start:
            self.node.start()

    # Seeding, through the same functions the sync client will call

    def add_reservation(
        self,
        tracking: str,
        *,
        size: str = "S",
        carrier: str = "ups",
        reservation_id: str | None = None,
        hold: timedelta = timedelta(hours=24),
    ) -> str:
        reservation_id = reservation_id or f"res-{tracking.lower()}"
        now = self.clock()
        with transaction(self.engine) as conn:
            apply_reservation(
                conn,
                ReservationIn(
                    id=reservation_id,
                    carrier_id=carrier,
                    tracking_number=tracking,
                    size=size,
                    reserved_until=now + hold,
                ),
                now,
            )
        return reservation_id

    def add_courier(self, carrier: str = "ups", code: str = COURIER_CODE) -> None:
        now = self.clock()
        with transaction(self.engine) as conn:
            add_courier_credential(
                conn,
                CourierCredentialIn(
                    carrier_id=carrier,
                    code_hash=cheap_hash(code),
                    valid_from=now - timedelta(hours=1),
                    valid_until=now + timedelta(days=1),
                ),
                now,
            )

    # Driving the API

    def login(self, carrier: str = "ups", code: str = COURIER_CODE) -> dict[str, str]:
        answer = self.client.post("/api/courier/login", json={"carrier": carrier, "pin": code})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    def lock_of(self, label: str) -> int:
        return next(c.lock for c in self.config.compartments if c.label == label)

    def close_door(self, label: str) -> None:
        self.board.close_door(self.lock_of(label))

    def door_is_open(self, label: str) -> bool:
        return str(self.board.read_doors()[self.lock_of(label)]) == "open"

    def deposit(self, tracking: str, headers: dict[str, str]) -> dict[str, Any]:
        """Deposit and confirm (closing the door in between); the confirm answer."""
        answer = self.client.post(
            "/api/courier/deposit", json={"tracking_number": tracking}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        opened = answer.json()
        self.close_door(opened["compartment"])
        confirm = self.client.post(
            f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
        )
        assert confirm.status_code == 200, confirm.text
        result: dict[str, Any] = confirm.json()
        return result

    def pickup(self, code: str) -> Any:
        return self.client.post("/api/pickup", json={"code": code})

    # Looking inside

    def secrets_for(self, parcel_id: str) -> dict[str, str]:
        """The pickup code and QR payload from the sealed `parcel.deposited` event."""
        return sealed_secrets(self.engine, self.keys)[parcel_id]

    def events(self, event_type: str | None = None) -> list[outbox.OutboxEvent]:
        with transaction(self.engine) as conn:
            events = outbox.outbox_events(conn)
        return [e for e in events if event_type is None or e.type == event_type]

    def parcel(self, parcel_id: str) -> repo.Parcel:
        with transaction(self.engine) as conn:
            parcel = repo.get_parcel(conn, parcel_id)
        assert parcel is not None
        return parcel

    def compartment(self, label: str) -> repo.Compartment:
        with transaction(self.engine) as conn:
            compartment = repo.get_compartment(conn, label)
        assert compartment is not None
        return compartment

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return snapshot(self.engine)


def open_sealed(keys: NodeKeys, data: dict[str, Any]) -> dict[str, str]:
    """Test helper: the pickup code and QR payload sealed in a `parcel.deposited` event."""
    return {
        "pickup_code": keys.unseal(data["sealed_pickup_code"]),
        "qr_payload": keys.unseal(data["sealed_qr_payload"]),
    }


def sealed_secrets(engine: Engine, keys: NodeKeys) -> dict[str, dict[str, str]]:
    """Test helper: open every sealed `parcel.deposited` event; parcel id -> secrets."""
    with transaction(engine) as conn:
        events = outbox.outbox_events(conn)
    found = {}
    for event in events:
        if event.type == "parcel.deposited":
            found[event.data["parcel_id"]] = open_sealed(keys, event.data)
    return found


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to show that a refused request changed nothing."""
    with transaction(engine) as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(select(table))]
            for table in metadata.sorted_tables
        }


def build_rig(
    tmp_path: Path,
    template: Path,
    *,
    board: SimulatedLockBoard | None = None,
    clock: FakeClock | None = None,
    start: bool = True,
    **sections: Any,
) -> Rig:
    data_dir = tmp_path / "node"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / DATABASE_FILE).exists():
        shutil.copy(template, data_dir / DATABASE_FILE)
    config = parse_config(node_config_data(data_dir, **sections))
    board = board or SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)
    # Today's date: courier codes and reservations are made for the real day.
    clock = clock or FakeClock(datetime.now(UTC).replace(microsecond=0))
    node = build_node(config, boards={"main": board}, clock=clock, migrate_in_process=True)
    rig = Rig(config=config, board=board, node=node, clock=clock)
    if start:
        node.start()
    return rig


def rigs(tmp_path: Path, template: Path, **sections: Any) -> Iterator[Rig]:
    rig = build_rig(tmp_path, template, **sections)
    try:
        yield rig
    finally:
        rig.close()


def reservation_row(rig: Rig, reservation_id: str) -> repo.Reservation:
    with transaction(rig.engine) as conn:
        found = repo.get_reservation(conn, reservation_id)
    assert found is not None
    return found


def deposit_row(rig: Rig, deposit_id: str) -> repo.Deposit:
    with transaction(rig.engine) as conn:
        found = repo.get_deposit(conn, deposit_id)
    assert found is not None
    return found
