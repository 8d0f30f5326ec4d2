"""Kiosk pickup latency and idle memory of a real `locker-node run` on a simulated board.

Starts the node with 60 compartments on a simulated board whose doors open at once (door
delay 0), deposits a parcel in every compartment through the kiosk API, then times each
`POST /api/pickup` from the request to the answer that the door was seen open, over several
rounds, and prints p50/p99. The node's resident memory (VmRSS) is read when idle after start and
again when idle after all that traffic.

Baseline, measured in the same run against the same node: as many `GET /api/status` (the kiosk's
own poll: the node's state, no door) as pickups, interleaved with them, so the pickup figures can
be read against what any request to this node costs on this machine.

    python bench/kiosk.py [--rounds 5]

Targets: pickup p99 < 20 ms, RSS < 80 MB idle after start and after the traffic.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import check  # noqa: E402
from locker_node.domain.credentials import hash_courier_code  # noqa: E402
from locker_node.flows.feed import (  # noqa: E402
    CourierCredentialIn,
    ReservationIn,
    add_courier_credential,
    apply_reservation,
)
from locker_node.store import outbox  # noqa: E402
from locker_node.store.database import (  # noqa: E402
    database_path,
    ensure_schema,
    make_engine,
    transaction,
)
from locker_node.store.keys import NodeKeys  # noqa: E402

COMPARTMENTS = 60
SIZES = ["S"] * 30 + ["M"] * 20 + ["L"] * 8 + ["XL"] * 2
COURIER_CODE = "24681357"
P99_TARGET_MS = 20
RSS_TARGET_MB = 80


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(directory: Path, port: int) -> Path:
    lines = [
        'bank_id = "BENCH-1"',
        'data_dir = "data"',
        "[kiosk]",
        f"port = {port}",
        "[[boards]]",
        'name = "main"',
        'protocol = "simulated"',
        f"locks = {COMPARTMENTS}",
        "door_delay_ms = 0",
        "auto_close_ms = 30",  # the simulated person closes each door 30 ms after it opens
    ]
    for index, size in enumerate(SIZES):
        lines += [
            "[[compartments]]",
            f'label = "{chr(ord("A") + index // 10)}{index % 10 + 1:02d}"',
            f'size = "{size}"',
            'board = "main"',
            f"lock = {index + 1}",
        ]
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def seed(data_dir: Path, rounds: int) -> list[list[str]]:
    """Reservations for every compartment in every round, and a courier code; tracking numbers
    per round."""
    path = database_path(data_dir)
    ensure_schema(path, in_process=True)
    engine = make_engine(path)
    now = datetime.now(UTC)
    plan: list[list[str]] = []
    with transaction(engine) as conn:
        for round_number in range(rounds):
            numbers = []
            for index, size in enumerate(SIZES):
                tracking = f"BENCH{round_number:02d}{index:03d}"
                apply_reservation(
                    conn,
                    ReservationIn(
                        id=f"bench-{round_number}-{index}",
                        carrier_id="bench",
                        tracking_number=tracking,
                        size=size,
                        reserved_until=now + timedelta(hours=6),
                    ),
                    now,
                )
                numbers.append(tracking)
            plan.append(numbers)
        add_courier_credential(
            conn,
            CourierCredentialIn(
                carrier_id="bench",
                code_hash=hash_courier_code(COURIER_CODE),
                valid_from=now - timedelta(minutes=1),
                valid_until=now + timedelta(hours=6),
            ),
            now,
        )
    engine.dispose()
    return plan


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_ready(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the node exited during start")
        try:
            if client.get("/api/status").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the node did not start")


def settle(seconds: float) -> None:
    """Idle means idle: let the door monitor and the allocator reach their steady state."""
    time.sleep(seconds)


def deposit_all(client: httpx.Client, token: str, tracking_numbers: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for tracking in tracking_numbers:
        answer = client.post(
            "/api/courier/deposit", json={"tracking_number": tracking}, headers=headers
        )
        answer.raise_for_status()
        deposit_id = answer.json()["deposit_id"]
        deadline = time.monotonic() + 5
        while True:
            confirm = client.post(f"/api/courier/deposit/{deposit_id}/confirm", headers=headers)
            if confirm.status_code == 200:
                break
            if confirm.json().get("error") != "door_open" or time.monotonic() > deadline:
                raise RuntimeError(f"confirm failed: {confirm.text}")
            time.sleep(0.01)


def issued_codes(data_dir: Path, keys: NodeKeys, after_seq: int) -> tuple[list[str], int]:
    engine = make_engine(database_path(data_dir))
    try:
        with transaction(engine) as conn:
            events = outbox.outbox_events(conn, after_seq=after_seq)
    finally:
        engine.dispose()
    codes = [
        keys.unseal(event.data["sealed_pickup_code"])
        for event in events
        if event.type == "parcel.deposited"
    ]
    return codes, max((event.seq for event in events), default=after_seq)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="pickups of every compartment")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as scratch:
        directory = Path(scratch)
        port = free_port()
        config = write_config(directory, port)
        data_dir = directory / "data"
        plan = seed(data_dir, args.rounds)
        keys = NodeKeys.load_or_create(data_dir)
        log = (directory / "node.log").open("wb")
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "locker-node"), "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        latencies: list[float] = []
        baseline: list[float] = []
        try:
            # TCP_NODELAY as Chromium sets it: otherwise a POST written as headers then body
            # waits out the server's delayed ACK (40 ms) and the figure measures Nagle.
            transport = httpx.HTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=10, transport=transport
            ) as client:
                wait_ready(client, process)
                settle(3)
                idle_start = rss_mb(process.pid)
                login = client.post(
                    "/api/courier/login", json={"carrier": "bench", "pin": COURIER_CODE}
                )
                login.raise_for_status()
                token = login.json()["token"]
                seq = 0
                for tracking_numbers in plan:
                    deposit_all(client, token, tracking_numbers)
                    codes, seq = issued_codes(data_dir, keys, seq)
                    check(len(codes) == COMPARTMENTS, f"{len(codes)} codes issued")
                    for code in codes:
                        started = time.perf_counter()
                        answer = client.post("/api/pickup", json={"code": code})
                        elapsed = time.perf_counter() - started
                        if answer.status_code != 200 or answer.json()["door"] != "open":
                            raise RuntimeError(f"pickup failed: {answer.text}")
                        latencies.append(elapsed * 1000)
                        baseline.append(time_status(client))
                    settle(0.2)  # every door auto-closes before the next round's deposits
                settle(3)
                idle_after = rss_mb(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()

    p50, p99, top = percentiles(latencies)
    base50, base99, base_top = percentiles(baseline)
    print(f"baseline GET /api/status, {len(baseline)} requests interleaved with the pickups:")
    print(f"  p50 {base50:.1f} ms   p99 {base99:.1f} ms   max {base_top:.1f} ms")
    print(f"pickup POST /api/pickup -> door open, {len(latencies)} pickups, door delay 0:")
    target = f"(target p99 < {P99_TARGET_MS})"
    print(f"  p50 {p50:.1f} ms   p99 {p99:.1f} ms   max {top:.1f} ms   {target}")
    print(f"  {p50 / base50:.1f}x the baseline at p50, {p99 / base99:.1f}x at p99")
    print(f"node RSS, {COMPARTMENTS} compartments, idle after start:   {idle_start:.1f} MB")
    print(f"node RSS, idle after {len(latencies)} deposits and pickups: {idle_after:.1f} MB")
    print(f"  (target < {RSS_TARGET_MB} MB)")
    return 0 if p99 < P99_TARGET_MS and max(idle_start, idle_after) < RSS_TARGET_MB else 1


def time_status(client: httpx.Client) -> float:
    """Milliseconds for the kiosk's status poll: the baseline a pickup is read against."""
    started = time.perf_counter()
    answer = client.get("/api/status")
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed * 1000


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 and the maximum, in the unit given."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    return statistics.median(ordered), p99, ordered[-1]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
