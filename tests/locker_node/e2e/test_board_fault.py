"""A real node on two simulated Kerong CU16 boards, each a `locker-node simulate-board` process on
its own pseudo-terminal. One board stops answering: a courier's deposit lands on the other board,
the silent board's doors are not taken out of service, the board raises one alert, and once it
answers again its doors serve again with nobody touching the node.
"""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import Engine

from locker_node.flows.feed import (
    CourierCredentialIn,
    ReservationIn,
    add_courier_credential,
    apply_reservation,
)
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import DATABASE_FILE, make_engine, transaction
from locker_node.store.migrate import upgrade
from tests.locker_node.e2e.nodes import LOCKER_NODE, NodeProcess, free_port, node_process
from tests.locker_node.kiosk.rig import COURIER_CODE, cheap_hash

# Four small doors on each board; the board that goes silent holds the first ones in line.
LAYOUT = [(f"A0{n}", "S", "left", n) for n in range(1, 5)] + [
    (f"B0{n}", "S", "right", n) for n in range(1, 5)
]
PARCELS = ("SILENT01", "SILENT02")


@dataclass
class BoardProcess:
    """`locker-node simulate-board --pty`: its pty path and its control channel on stdin."""

    process: subprocess.Popen[bytes]
    path: str

    def control(self, line: str, timeout_s: float = 5.0) -> list[str]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()
        answer: list[str] = []
        while not answer or answer[-1] != "ok":
            answer.append(read_line(self.process.stdout, timeout_s))
            assert not answer[-1].startswith("error"), answer
        return answer


def read_line(stream: IO[bytes] | None, timeout_s: float) -> str:
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise AssertionError(f"the board simulator said nothing in {timeout_s} s")
    return stream.readline().decode().strip()


@contextmanager
def board_process() -> Iterator[BoardProcess]:
    command = ["simulate-board", "--protocol", "kerong-cu16", "--pty", "--door-delay-ms", "0"]
    process = subprocess.Popen(
        [LOCKER_NODE, *command, "--locks", "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    try:
        yield BoardProcess(process, read_line(process.stdout, 20.0))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def write_config(directory: Path, *, port: int, paths: dict[str, str]) -> Path:
    lines = [
        'bank_id = "SILENT-1"',
        'data_dir = "data"',
        "[kiosk]",
        f"port = {port}",
        "[doors]",
        "confirm_window_ms = 300",
        "confirm_poll_ms = 10",
        "monitor_interval_ms = 200",
    ]
    for name, path in paths.items():
        lines += [
            "[[boards]]",
            f'name = "{name}"',
            'protocol = "kerong-cu16"',
            f'port = "{path}"',
            "locks = 4",
            "reply_timeout_ms = 200",
        ]
    for label, size, board, lock in LAYOUT:
        lines += [
            "[[compartments]]",
            f'label = "{label}"',
            f'size = "{size}"',
            f'board = "{board}"',
            f"lock = {lock}",
        ]
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def seed(engine: Engine) -> None:
    now = datetime.now(UTC)
    with transaction(engine) as conn:
        for tracking in PARCELS:
            apply_reservation(
                conn,
                ReservationIn(
                    id=f"res-{tracking.lower()}",
                    carrier_id="ups",
                    tracking_number=tracking,
                    size="S",
                    reserved_until=now + timedelta(hours=2),
                ),
                now,
            )
        add_courier_credential(
            conn,
            CourierCredentialIn(
                "ups", cheap_hash(COURIER_CODE), now - timedelta(hours=1), now + timedelta(hours=2)
            ),
            now,
        )


@dataclass
class Bench:
    node: NodeProcess
    boards: dict[str, BoardProcess]
    engine: Engine
    client: httpx.Client
    headers: dict[str, str]

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(f"{self.node.base_url}{path}", headers=self.headers, **kwargs)

    def audit_actions(self) -> list[str]:
        with transaction(self.engine) as conn:
            return [entry.action for entry in outbox.audit_entries(conn)]

    def board_alerts(self) -> list[outbox.OutboxEvent]:
        with transaction(self.engine) as conn:
            return [e for e in outbox.outbox_events(conn) if e.type == "board.unreachable"]

    def compartment(self, label: str) -> repo.Compartment:
        with transaction(self.engine) as conn:
            compartment = repo.get_compartment(conn, label)
        assert compartment is not None
        return compartment

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} in {timeout_s} s:\n{self.node.log_text()}")
            time.sleep(0.05)

    def deposit(self, tracking: str) -> dict[str, Any]:
        """Start a deposit, shut the door that opened, confirm; the start's answer."""
        opened = self.post("/api/courier/deposit", json={"tracking_number": tracking})
        assert opened.status_code == 200, f"{opened.text}\n{self.node.log_text()}"
        body: dict[str, Any] = opened.json()
        board, lock = next((b, n) for label, _, b, n in LAYOUT if label == body["compartment"])
        self.boards[board].control(f"close {lock}")
        confirmed = self.post(f"/api/courier/deposit/{body['deposit_id']}/confirm")
        assert confirmed.status_code == 200, f"{confirmed.text}\n{self.node.log_text()}"
        return body


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with ExitStack() as stack:
        boards = {name: stack.enter_context(board_process()) for name in ("left", "right")}
        port = free_port()
        config = write_config(tmp_path, port=port, paths={n: b.path for n, b in boards.items()})
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        upgrade(data_dir / DATABASE_FILE)
        engine = make_engine(data_dir / DATABASE_FILE)
        stack.callback(engine.dispose)
        seed(engine)
        client = stack.enter_context(httpx.Client(timeout=30))
        node = stack.enter_context(node_process(config, port=port))
        node.wait_ready(client)
        login = client.post(
            f"{node.base_url}/api/courier/login", json={"carrier": "ups", "pin": COURIER_CODE}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        yield Bench(node, boards, engine, client, headers)


def test_a_silent_board_is_one_board_fault_and_serves_again_when_it_answers(
    bench: Bench,
) -> None:
    bench.boards["left"].control("fault no-reply")

    first = bench.deposit(PARCELS[0])

    assert first["compartment"].startswith("B"), first  # a door on the board that answers
    bench.wait_for(lambda: "board_unreachable" in bench.audit_actions(), "board alert")
    for label, _, board, _ in LAYOUT:
        if board == "left":
            assert bench.compartment(label).in_service, label

    bench.boards["left"].control("clear")
    bench.wait_for(lambda: "board_recovered" in bench.audit_actions(), "board recovery")

    second = bench.deposit(PARCELS[1])

    assert second["compartment"] == "A01" and second["moved_from"] == [], second
    [alert] = bench.board_alerts()
    assert alert.data["board"] == "left"
    assert "out_of_service" not in bench.audit_actions()
