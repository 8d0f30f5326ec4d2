"""sd_notify and the watchdog: real datagram sockets as systemd's, a real node process."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from locker_node.app import build_node
from locker_node.config import parse_config
from locker_node.hardware.board import DoorState
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.systemd import NodeHealth, WatchdogFeeder, notify, watchdog_interval
from tests.locker_node.e2e.nodes import LOCKER_NODE, free_port
from tests.locker_node.kiosk.rig import node_config_data
from tests.locker_node.support import wait_until

RECEIVE_TIMEOUT_S = 30.0


class Systemd:
    """The receiving end of `$NOTIFY_SOCKET`, as the service manager holds it."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    @property
    def environ(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def receive(self, timeout_s: float = RECEIVE_TIMEOUT_S) -> str:
        self.sock.settimeout(timeout_s)
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Every datagram already delivered, without waiting."""
        self.sock.setblocking(False)
        messages = []
        try:
            while True:
                messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    # A short directory of its own: a socket path must fit in 108 bytes, and tmp_path may not.
    directory = tempfile.mkdtemp(prefix="notify-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        yield Systemd(sock, path)
    finally:
        sock.close()
        shutil.rmtree(directory)


def test_notify_sends_the_state_to_the_socket(systemd: Systemd) -> None:
    assert notify("READY=1\nSTATUS=serving", systemd.environ)

    assert systemd.receive() == "READY=1\nSTATUS=serving"


def test_an_abstract_socket_is_written_with_an_at_sign() -> None:
    name = f"locker-node-test-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(RECEIVE_TIMEOUT_S)

        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_a_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": ""})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"})
    # Named but nobody listening (systemd gone): a warning, not a crash.
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_the_watchdog_interval_comes_from_systemd_for_this_process_only(
    environ: Mapping[str, str], expected: float | None
) -> None:
    assert watchdog_interval(environ) == expected


class ScriptedHealth:
    """Answers the feeder's checks from a script (then `after`), counting the calls."""

    def __init__(self, script: list[bool], *, after: bool = False) -> None:
        self.script = list(script)
        self.after = after
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self.calls += 1
            return self.script.pop(0) if self.script else self.after


def feeder(systemd: Systemd, health: Callable[[], bool], watchdog_usec: int) -> WatchdogFeeder:
    environ = {**systemd.environ, "WATCHDOG_USEC": str(watchdog_usec)}
    return WatchdogFeeder(health, environ=environ, status="kiosk on test", poll_s=0.005)


def test_ready_waits_for_health_and_pings_stop_while_unhealthy(systemd: Systemd) -> None:
    # Checks: two before ready, ready, one healthy ping, two unhealthy, one healthy, then
    # unhealthy for good. Every ping is sent before the next check, so after the ninth check
    # everything the feeder will ever send before STOPPING is in the socket.
    health = ScriptedHealth([False, False, True, True, False, False, True], after=False)
    with feeder(systemd, health, watchdog_usec=20_000):
        wait_until(lambda: health.calls >= 9, timeout_s=RECEIVE_TIMEOUT_S, what="nine checks")

    assert systemd.pending() == [
        "READY=1\nSTATUS=kiosk on test",
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_a_check_that_raises_counts_as_unhealthy(systemd: Systemd) -> None:
    calls = 0

    def broken() -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("the check itself is broken")

    with feeder(systemd, broken, watchdog_usec=20_000):
        wait_until(lambda: calls >= 3, timeout_s=RECEIVE_TIMEOUT_S, what="three checks")

    assert systemd.pending() == ["STOPPING=1"]


def test_a_hung_check_stops_the_pings_and_does_not_hold_up_the_shutdown(
    systemd: Systemd,
) -> None:
    entered, release = threading.Event(), threading.Event()
    calls = 0

    def hangs_on_the_second_check() -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            entered.set()
            release.wait(RECEIVE_TIMEOUT_S)
        return True

    running = feeder(systemd, hangs_on_the_second_check, watchdog_usec=20_000)
    running.start()
    assert entered.wait(RECEIVE_TIMEOUT_S)
    running.stop(timeout_s=0.05)
    release.set()

    assert systemd.pending() == ["READY=1\nSTATUS=kiosk on test", "STOPPING=1"]


def test_without_a_watchdog_only_ready_and_stopping_are_sent(systemd: Systemd) -> None:
    health = ScriptedHealth([], after=True)
    running = WatchdogFeeder(health, environ=systemd.environ, poll_s=0.005)
    with running:
        assert systemd.receive() == "READY=1"
    assert running.interval_s is None
    assert systemd.pending() == ["STOPPING=1"]
    assert health.calls == 1


def test_without_notify_socket_the_feeder_never_runs() -> None:
    health = ScriptedHealth([], after=True)
    running = WatchdogFeeder(health, environ={"WATCHDOG_USEC": "20000"})
    with running:
        assert not running.active
    assert health.calls == 0


class HangingBoard(SimulatedLockBoard):
    """A simulated board whose door reads can be made to hang, as a wedged bus driver would."""

    def __init__(self) -> None:
        super().__init__(name="main", lock_count=16, door_delay_s=0.0)
        self.hang = threading.Event()
        self.hanging = threading.Event()
        self.release = threading.Event()

    def read_doors(self) -> Mapping[int, DoorState]:
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait(RECEIVE_TIMEOUT_S)
        return super().read_doors()


def test_node_health_needs_a_beating_kiosk_loop_and_a_door_monitor_that_is_not_stuck(
    tmp_path: Path,
) -> None:
    board = HangingBoard()
    config = parse_config(node_config_data(tmp_path / "node"))
    now = [100.0]
    node = build_node(config, boards={"main": board}, migrate_in_process=True)
    health = NodeHealth(node.doors, clock=lambda: now[0], stale_after_s=10.0)
    with node:
        assert not health(), "no kiosk beat yet"
        asyncio.run(health.kiosk_beat())
        assert health()
        now[0] += 10.5
        assert not health(), "the kiosk loop stopped beating"
        asyncio.run(health.kiosk_beat())
        assert health()

        board.hang.set()
        assert board.hanging.wait(RECEIVE_TIMEOUT_S), "the monitor reads the board"
        answers: list[bool] = []
        checking = threading.Thread(target=lambda: answers.append(health()), daemon=True)
        checking.start()
        checking.join(0.3)
        # Bounded only one way: a check that returned would be a bug whatever the timing.
        assert checking.is_alive() and not answers, "the check waits behind the hung poll"
        board.hang.clear()
        board.release.set()
        checking.join(RECEIVE_TIMEOUT_S)
        assert answers == [True]

        node.monitor.stop()
        assert not health(), "no door monitor thread"


def test_a_real_node_is_ready_only_once_serving_then_fed_and_stopping_on_sigterm(
    systemd: Systemd, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        "\n".join(
            [
                'bank_id = "WATCHDOG-1"',
                'data_dir = "data"',
                "[kiosk]",
                f"port = {port}",
                "[[boards]]",
                'name = "main"',
                'protocol = "simulated"',
                "locks = 2",
                "[[compartments]]",
                'label = "A01"',
                'size = "S"',
                'board = "main"',
                "lock = 1",
            ]
        )
        + "\n"
    )
    env = {**os.environ, **systemd.environ, "WATCHDOG_USEC": "400000"}
    env.pop("LOCKER_NODE_CRASH_AT", None)
    log_path = tmp_path / "node.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [LOCKER_NODE, "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
        try:
            ready = systemd.receive(timeout_s=60.0)
            assert ready == f"READY=1\nSTATUS=kiosk on http://127.0.0.1:{port}", ready
            # Ready means serving: the kiosk answers at once, no retry.
            assert httpx.get(f"http://127.0.0.1:{port}/api/status").status_code == 200
            assert systemd.receive() == "WATCHDOG=1"
            assert systemd.receive() == "WATCHDOG=1"
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    messages = systemd.pending()
    assert messages[-1] == "STOPPING=1", log_path.read_text()
    assert set(messages[:-1]) <= {"WATCHDOG=1"}
