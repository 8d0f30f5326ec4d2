"""Shared pieces of the end-to-end tests: a real central server, a provisioned node, a carrier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.carriers.service import add_carrier, create_api_key
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.keys import ServiceKeys
from central.models import NodeEventRecord
from central.nodes.enrollment import issue_enrollment_token
from central.webhooks.tasks import WebhookDispatcher
from locker_node.store import couriers
from locker_node.store.database import database_path, transaction
from locker_node.store.database import make_engine as make_node_engine
from tests.central.conftest import TEST_SECRET
from tests.locker_node.e2e.nodes import LOCKER_NODE, NodeProcess, free_port

T = TypeVar("T")
BANK = "E2E-1"
TIMEOUT_S = 20.0


def eventually(attempt: Callable[[], T | None], what: str) -> T:
    """Retry until `attempt` gives a value, with a deadline: never a sleep standing in for it."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = attempt()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def central_server(url: str, port: int, data_dir: Path) -> Iterator[str]:
    env = os.environ | {
        "LOCKER_DATABASE_URL": url,
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(data_dir),
        "LOCKER_SCHEDULER_ENABLED": "false",
        "LOCKER_ALLOW_INSECURE_WEBHOOKS": "true",
    }
    # No map tiles unless a test's environment names a tile server: a browser on the dashboard's
    # overview would fetch them from the internet (OpenStreetMap's, the default).
    env.setdefault("LOCKER_MAP_TILE_URL", "")
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "central.app:app_from_environment",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool | None:
            if process.poll() is not None:
                raise AssertionError("central exited while starting")
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200 or None
            except httpx.TransportError:
                return None

        eventually(up, "central to answer")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


class Carrier:
    """The carrier: its API key, and a webhook receiver that records what central sends."""

    def __init__(self, key: str) -> None:
        self.headers = {"Authorization": f"Bearer {key}"}
        self.received: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(json.loads(request.content))
        return httpx.Response(200)

    def parcel_events(self) -> list[str]:
        return [str(b["type"]) for b in self.received if str(b["type"]).startswith("parcel.")]


@dataclass
class World:
    url: str
    port: int
    tmp: Path
    sessions: sessionmaker[Session]
    keys: ServiceKeys
    carrier: Carrier

    def server(self) -> Any:
        return central_server(self.url, self.port, self.tmp / "central")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dispatch(self) -> None:
        with httpx.Client(transport=httpx.MockTransport(self.carrier)) as http:
            WebhookDispatcher(self.sessions, self.keys, http, lambda: datetime.now(UTC)).run_once()

    def courier_code(self) -> str:
        today = datetime.now(ZoneInfo("America/New_York")).date()
        return self.keys.courier_code("acme", BANK, today)

    def node_events(self) -> list[tuple[str, str]]:
        with self.sessions() as session:
            rows = session.scalars(select(NodeEventRecord)).all()
            return sorted((row.type, row.status) for row in rows)


def e2e_bank(bank_id: str = BANK, spec: str = "S:2,M:2", **fields: Any) -> NewBank:
    """A bank in New York's time zone near the others of these tests."""
    values: dict[str, Any] = {
        "name": "E2E bank",
        "address": "1 Test St",
        "lat": 40.75,
        "lon": -73.99,
        "timezone": "America/New_York",
    }
    values.update(fields)
    return NewBank(bank_id=bank_id, compartments=parse_compartment_spec(spec), **values)


@contextmanager
def create_world(tmp_path: Path, banks: Sequence[NewBank] = ()) -> Iterator[World]:
    """A migrated SQLite central with carrier `acme` (one API key) and `banks` (by default bank
    BANK with S:2, M:2)."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    with make_sessionmaker(engine).begin() as session:
        add_carrier(session, "acme", None, now)
        key = create_api_key(session, "acme", now).key
        for bank in banks or [e2e_bank()]:
            add_bank(session, bank, now)
    yield World(
        url=url,
        port=free_port(),
        tmp=tmp_path,
        sessions=make_sessionmaker(engine),
        keys=ServiceKeys(TEST_SECRET.encode()),
        carrier=Carrier(key),
    )
    engine.dispose()


def provision_node(world: World, bank: str = BANK) -> tuple[Path, int]:
    """`locker-node provision`, then the installer's edits: kiosk port, fast doors and sync.
    The first bank's node lives in <tmp>/node, any other's in <tmp>/node-<bank>."""
    with world.sessions.begin() as session:
        token = issue_enrollment_token(session, bank, datetime.now(UTC))
    config = world.tmp / ("node" if bank == BANK else f"node-{bank}") / "node.toml"
    done = subprocess.run(
        [LOCKER_NODE, "provision", "--central", world.base, "--bank", bank, "--token", token,
         "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    port = free_port()
    text = config.read_text().replace(
        'protocol = "simulated"\n',
        'protocol = "simulated"\ndoor_delay_ms = 0\nauto_close_ms = 200\n',
    )
    text += (
        f"\n[kiosk]\nport = {port}\n"
        "\n[doors]\nconfirm_window_ms = 300\nconfirm_poll_ms = 10\nmonitor_interval_ms = 50\n"
        "\n[sync]\ninterval_s = 0.1\n"
    )
    config.write_text(text)
    return config, port


def wait_for_courier_codes(node: NodeProcess, carrier: str = "acme") -> None:
    """Until the node holds the day's courier codes: a login tried before them is a wrong
    code, and five of those lock the keypad out for longer than any test waits."""
    engine = make_node_engine(database_path(node.log_path.parent / "data"))
    try:

        def has_codes() -> bool | None:
            with transaction(engine) as conn:
                known = couriers.carriers_with_credentials(conn, datetime.now(UTC))
            return carrier in known or None

        eventually(has_codes, "the courier codes on the node")
    finally:
        engine.dispose()


def deposit(node: NodeProcess, kiosk: httpx.Client, world: World, tracking: str) -> None:
    wait_for_courier_codes(node)

    def login() -> str | None:
        answer = kiosk.post(
            f"{node.base_url}/api/courier/login",
            json={"carrier": "acme", "pin": world.courier_code()},
        )
        return answer.json()["token"] if answer.status_code == 200 else None

    headers = {"Authorization": f"Bearer {eventually(login, 'the courier codes')}"}

    def start() -> dict[str, Any] | None:
        answer = kiosk.post(
            f"{node.base_url}/api/courier/deposit",
            json={"tracking_number": tracking},
            headers=headers,
        )
        return answer.json() if answer.status_code == 200 else None

    opened = eventually(start, "the reservation to reach the node")

    def confirm() -> bool | None:
        answer = kiosk.post(
            f"{node.base_url}/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
        )
        return answer.status_code == 200 or None  # the door closes itself a moment later

    eventually(confirm, "the deposit to be confirmed")


def reserve(world: World, tracking: str) -> str:
    answer = httpx.post(
        f"{world.base}/v1/reservations",
        json={"tracking_number": tracking, "bank_id": BANK, "size": "S"},
        headers=world.carrier.headers,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])
