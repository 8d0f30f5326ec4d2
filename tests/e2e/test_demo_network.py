"""`locker-central demo --with-nodes` (what `make run` starts): real processes, twice."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from carrier_adapters.tracking_numbers import is_valid_for_carrier
from central.banks.service import NewBank
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.demo import (
    DEMO_BANKS,
    DEMO_CARRIERS,
    DEMO_OPERATORS,
    demo_recipient,
    prepare_demo,
)
from central.demo_network import (
    AUTO_CLOSE_MS,
    DOOR_DELAY_MS,
    NodeSite,
    configure_node,
    demo_tracking_number,
    keeps_enrollment,
)
from central.demo_receiver import EventLog
from central.models import Compartment, Node, Reservation, ReservationEvent
from central.webhooks import signing

T = TypeVar("T")
TIMEOUT_S = 60.0


def eventually(attempt: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = attempt()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (the kiosks take one each, in a row)."""
    for _ in range(50):
        base = random.randint(20_000, 60_000)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports")


def children_of(pid: int) -> dict[int, str]:
    """Live processes whose parent is `pid`, with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent) == pid:
            found[int(entry.name)] = command
    return found


@contextmanager
def demo_network(
    folder: Path, port: int, kiosk_port: int, output: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The orchestrator with the embedded defaults (state under `folder/var`), stopped as a
    terminal's Ctrl-C would."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOCKER_")}
    command = [
        sys.executable, "-m", "central.cli", "demo", "--with-nodes",
        "--port", str(port), "--kiosk-port", str(kiosk_port), "--parcels", "1",
    ]  # fmt: skip
    with output.open("wb") as sink:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=sink, stderr=sink)
    try:
        yield process
    finally:
        children = children_of(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in children:  # only when the orchestrator failed to stop them
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def heartbeats_since(
    sessions: sessionmaker[Session], database: Path, since: datetime
) -> dict[str, str] | None:
    """Bank id -> node id once central has had a heartbeat from every demo bank's node."""
    if not database.exists():
        return None
    try:
        with sessions() as session:
            nodes = session.scalars(select(Node).where(Node.revoked_at.is_(None))).all()
    except SQLAlchemyError:  # the schema is still being made
        return None
    online = {
        node.bank_id: node.id
        for node in nodes
        if node.online and node.health is not None and node.last_seen_at >= since
    }
    return online if set(online) == {bank.bank_id for bank in DEMO_BANKS} else None


def run_once(folder: Path, port: int, kiosk_port: int) -> tuple[dict[str, str], str]:
    """One `make run`: until every node is online at central, then Ctrl-C; nothing left over."""
    database = folder / "var" / "central.db"
    engine = make_engine(f"sqlite:///{database}")
    sessions = make_sessionmaker(engine)
    since = datetime.now(UTC)
    log = folder / "demo-output.txt"
    try:
        with demo_network(folder, port, kiosk_port, log) as process:

            def running() -> None:
                if process.poll() is not None:
                    pytest.fail(f"the demo exited:\n{log.read_text()}")

            def printed() -> str | None:
                running()
                text = log.read_text()
                return text if "Ctrl-C stops everything" in text else None

            def online() -> dict[str, str] | None:
                running()
                return heartbeats_since(sessions, database, since)

            nodes = eventually(online, "a heartbeat from every node")
            output = eventually(printed, "the demo's summary")
            with httpx.Client(timeout=5) as http:
                for index in range(len(DEMO_BANKS)):
                    status = http.get(f"http://127.0.0.1:{kiosk_port + index}/api/status")
                    assert status.status_code == 200, status.text
                # The printed dashboard credentials sign in.
                for email, role in DEMO_OPERATORS.items():
                    printed_line = re.search(rf"{role} +{re.escape(email)} / (\S+)", output)
                    assert printed_line is not None, output
                    signed_in = http.post(
                        f"http://127.0.0.1:{port}/ops/api/session",
                        json={"email": email, "password": printed_line.group(1)},
                    )
                    assert signed_in.status_code == 200, signed_in.text
                    assert signed_in.json()["operator"]["role"] == role
            children = children_of(process.pid)
            process.send_signal(signal.SIGINT)
            assert process.wait(30) == 0, log.read_text()
        with sessions() as session:
            layouts = {
                bank.bank_id: [
                    (c.label, c.size)
                    for c in session.scalars(
                        select(Compartment)
                        .where(Compartment.bank_id == bank.bank_id)
                        .order_by(Compartment.label)
                    )
                ]
                for bank in DEMO_BANKS
            }
            enrolled = session.scalars(select(Node.bank_id)).all()
    finally:
        engine.dispose()

    assert sorted(command.split()[3] for command in children.values()) == [
        "run", "run", "run", "serve",
    ], children  # fmt: skip
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert left == [], f"still running after Ctrl-C: {[children[pid] for pid in left]}"
    assert sorted(enrolled) == sorted(bank.bank_id for bank in DEMO_BANKS)  # one node each
    for bank in DEMO_BANKS:
        with (folder / "var" / "nodes" / bank.bank_id / "node.toml").open("rb") as handle:
            config = tomllib.load(handle)
        assert [(c["label"], c["size"]) for c in config["compartments"]] == layouts[bank.bank_id]
    return nodes, output


@pytest.mark.slow
def test_make_run_starts_enrolled_nodes_and_reuses_them_the_second_time(tmp_path: Path) -> None:
    port, kiosk_port = free_ports(1), free_ports(len(DEMO_BANKS) + 1)  # kiosks, then receiver

    first, output = run_once(tmp_path, port, kiosk_port)

    for carrier_id in DEMO_CARRIERS:
        assert f"API key ({carrier_id:5}) lk_" in output
    assert f"http://127.0.0.1:{port}/ops" in output
    assert "/v1/banks/NYC-0001/courier-code" in output
    for index, bank in enumerate(DEMO_BANKS):
        assert f"{bank.bank_id} {bank.name}" in output
        assert f"http://127.0.0.1:{kiosk_port + index}/" in output
        assert demo_tracking_number(index, 1) in output
    assert demo_recipients(tmp_path) == {
        demo_tracking_number(index, 1): (demo_recipient(index, bank.bank_id, 1), 0)
        for index, bank in enumerate(DEMO_BANKS)
    }
    # As a demo from before reservations carried a recipient left them.
    forget_recipients(tmp_path)

    second, _ = run_once(tmp_path, port, kiosk_port)

    assert second == first  # the same enrollments, not new ones
    assert demo_recipients(tmp_path) == {  # the same reservations, given their recipient once
        demo_tracking_number(index, 1): (demo_recipient(index, bank.bank_id, 1), 1)
        for index, bank in enumerate(DEMO_BANKS)
    }


def demo_recipients(folder: Path) -> dict[str, tuple[dict[str, str] | None, int]]:
    """Tracking number -> (recipient, times it was updated) of each demo reservation."""
    engine = make_engine(f"sqlite:///{folder / 'var' / 'central.db'}")
    try:
        with make_sessionmaker(engine)() as session:
            reservations = session.scalars(select(Reservation)).all()
            return {
                reservation.tracking_number: (
                    reservation.recipient,
                    len(
                        session.scalars(
                            select(ReservationEvent).where(
                                ReservationEvent.reservation_id == reservation.id,
                                ReservationEvent.type == "recipient_updated",
                            )
                        ).all()
                    ),
                )
                for reservation in reservations
            }
    finally:
        engine.dispose()


def forget_recipients(folder: Path) -> None:
    engine = make_engine(f"sqlite:///{folder / 'var' / 'central.db'}")
    try:
        with make_sessionmaker(engine).begin() as session:
            session.execute(update(Reservation).values(recipient=None))
    finally:
        engine.dispose()


def site(tmp_path: Path, port: int = 8081) -> NodeSite:
    bank: NewBank = DEMO_BANKS[0]
    return NodeSite(bank, tmp_path, port, tmp_path / "node.log")


PROVISIONED = """\
bank_id = "NYC-0001"
central_url = "http://127.0.0.1:8000"
data_dir = "data"

# A simulated board sized to the bank: replace it with the real [[boards]] wiring.
[[boards]]
name = "main"
protocol = "simulated"
locks = 2

[[compartments]]
label = "A01"
size = "S"
board = "main"
lock = 1

[[compartments]]
label = "A02"
size = "M"
board = "main"
lock = 2
"""


def test_the_node_config_gets_the_kiosk_port_and_self_closing_doors_in_place(
    tmp_path: Path,
) -> None:
    node = site(tmp_path, 8082)
    node.config.write_text(PROVISIONED)

    configure_node(node, "http://127.0.0.1:9000")
    text = node.config.read_text()
    configure_node(node, "http://127.0.0.1:9000")

    assert node.config.read_text() == text
    assert "# A simulated board sized to the bank" in text
    config = tomllib.loads(text)
    assert config["central_url"] == "http://127.0.0.1:9000"
    assert config["kiosk"] == {"port": 8082}
    assert config["boards"] == [
        {
            "name": "main",
            "protocol": "simulated",
            "locks": 2,
            "door_delay_ms": DOOR_DELAY_MS,
            "auto_close_ms": AUTO_CLOSE_MS,
        }
    ]
    assert [c["label"] for c in config["compartments"]] == ["A01", "A02"]


def test_a_changed_kiosk_port_replaces_the_old_one(tmp_path: Path) -> None:
    node = site(tmp_path, 8085)
    node.config.write_text(PROVISIONED + '\n[kiosk]\nport = 8081\nlanguage = "es"\n')

    configure_node(node, "http://127.0.0.1:8000")

    config = tomllib.loads(node.config.read_text())
    assert config["kiosk"] == {"port": 8085, "language": "es"}


def test_a_config_laid_out_otherwise_is_rewritten_whole(tmp_path: Path) -> None:
    node = site(tmp_path)
    node.config.write_text(
        'compartments = [\n  { label = "A01", size = "S", board = "main", lock = 1 },\n]\n'
        'bank_id = "NYC-0001"\ndata_dir = "data"\n'
        'boards = [{ name = "main", protocol = "simulated", locks = 1 }]\n'
    )

    configure_node(node, "http://127.0.0.1:8000")

    config = tomllib.loads(node.config.read_text())
    assert config["boards"][0]["auto_close_ms"] == AUTO_CLOSE_MS
    assert config["kiosk"] == {"port": 8081}
    assert config["compartments"] == [{"label": "A01", "size": "S", "board": "main", "lock": 1}]


def test_demo_tracking_numbers_are_valid_usps_numbers_one_per_bank_and_parcel() -> None:
    numbers = {demo_tracking_number(bank, parcel) for bank in range(4) for parcel in range(1, 4)}

    assert len(numbers) == 12
    assert all(is_valid_for_carrier("usps", number) for number in numbers)


def enrolled_folder(tmp_path: Path, node_id: str) -> NodeSite:
    node = site(tmp_path / "nodes" / DEMO_BANKS[0].bank_id)
    node.data_dir.mkdir(parents=True)
    node.config.write_text(PROVISIONED)
    (node.data_dir / "node-identity.pem").write_text("key")
    (node.data_dir / "central.json").write_text(json.dumps({"node_id": node_id}))
    return node


def test_an_enrollment_central_knows_is_kept_and_a_stale_one_moved_aside(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    prepare_demo(CentralSettings(database_url=url, data_dir=tmp_path))
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add(
            Node(
                id="node_known", bank_id=DEMO_BANKS[0].bank_id, public_key="k",
                enrolled_at=now, last_seen_at=now,
            )
        )  # fmt: skip
    notes: list[str] = []
    try:
        known = enrolled_folder(tmp_path / "a", "node_known")
        stale = enrolled_folder(tmp_path / "b", "node_forgotten")

        assert keeps_enrollment(sessions, known, notes.append)
        assert not keeps_enrollment(sessions, stale, notes.append)
    finally:
        engine.dispose()

    assert known.config.exists()
    assert not stale.folder.exists()
    [moved] = (tmp_path / "b" / "nodes").glob(f"{DEMO_BANKS[0].bank_id}.replaced-*")
    assert (moved / "data" / "node-identity.pem").read_text() == "key"
    assert len(notes) == 1


def summary_of(process: subprocess.Popen[bytes], log: Path) -> str:
    def printed() -> str | None:
        if process.poll() is not None:
            pytest.fail(f"the demo exited:\n{log.read_text()}")
        text = log.read_text()
        return text if "Ctrl-C stops everything" in text else None

    return eventually(printed, "the demo's summary")


def printed(pattern: str, output: str) -> str:
    found = re.search(pattern, output)
    assert found is not None, output
    return found.group(1)


def courier_login(http: httpx.Client, kiosk: str, courier_code: str) -> dict[str, str]:
    # The node takes the courier codes from its first feed, maybe a moment after the summary;
    # a few spaced tries stay clear of the lockout after five wrong ones.
    for _ in range(4):
        login = http.post(
            f"{kiosk}/api/courier/login", json={"carrier": "usps", "pin": courier_code}
        )
        if login.status_code == 200:
            break
        time.sleep(2.5)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def deposit_at_kiosk(
    http: httpx.Client, kiosk: str, courier: dict[str, str], tracking: str
) -> dict[str, str]:
    def opened() -> dict[str, str] | None:
        answer = http.post(
            f"{kiosk}/api/courier/deposit", json={"tracking_number": tracking}, headers=courier
        )
        return answer.json() if answer.status_code == 200 else None

    deposit = eventually(opened, "the reservation to reach the node")

    def confirmed() -> bool | None:
        answer = http.post(
            f"{kiosk}/api/courier/deposit/{deposit['deposit_id']}/confirm", headers=courier
        )
        return answer.status_code == 200 or None  # the door closes itself

    eventually(confirmed, "the deposit to be confirmed")
    return deposit


def mail_to(http: httpx.Client, receiver: str, address: str) -> str:
    """The id of the first message to `address` the demo's inbox lists."""

    def listed() -> str | None:
        inbox = http.get(f"{receiver}/mail")
        assert inbox.status_code == 200, inbox.text
        found = re.search(rf"<td>{re.escape(address)}</td><td><a href='/mail/([^']+)'>", inbox.text)
        return found.group(1) if found else None

    return eventually(listed, f"mail to {address} in the demo's inbox")


@pytest.mark.slow
def test_a_newcomer_deposits_a_demo_parcel_reads_the_pickup_code_in_the_mail_and_picks_it_up(
    tmp_path: Path,
) -> None:
    port, kiosk_port = free_ports(1), free_ports(len(DEMO_BANKS) + 1)
    log = tmp_path / "demo-output.txt"
    with demo_network(tmp_path, port, kiosk_port, log) as process:
        output = summary_of(process, log)
        receiver = f"http://127.0.0.1:{kiosk_port + len(DEMO_BANKS)}"
        assert f"{receiver}/ " in output
        assert f"  recipient mail  {receiver}/mail " in output
        assert f"(saved in {Path('var', 'demo', 'mail')}/)" in output
        assert "LOCKER_ALLOW_INSECURE_WEBHOOKS=true" in output
        assert "Try it: deposit a listed parcel with the courier code" in output
        courier_code = printed(r"courier: carrier usps, code (\d+)", output)  # NYC-0001's
        kiosk = f"http://127.0.0.1:{kiosk_port}"
        tracking = demo_tracking_number(0, 1)  # NYC-0001's demo parcel, as printed
        assert f"parcels to deposit (size S): {tracking}" in output
        recipient = demo_recipient(0, "NYC-0001", 1)
        assert recipient["language"] == "en"
        with httpx.Client(timeout=5) as http:
            courier = courier_login(http, kiosk, courier_code)
            deposit = deposit_at_kiosk(http, kiosk, courier, tracking)

            message_id = mail_to(http, receiver, recipient["email"])
            page = http.get(f"{receiver}/mail/{message_id}")
            assert page.status_code == 200
            code = printed(r"(?m)^Pickup code: (\d+)$", page.text)
            saved = tmp_path / "var" / "demo" / "mail" / f"{message_id}.eml"
            message = BytesParser(policy=policy.default).parsebytes(
                saved.read_bytes().replace(b"\r\n", b"\n")
            )
            assert isinstance(message, EmailMessage)
            text = message.get_body(("plain",))
            assert text is not None
            assert printed(r"(?m)^Pickup code: (\d+)$", text.get_content()) == code
            assert tracking in text.get_content()
            assert f"http://127.0.0.1:{port}/p/" in text.get_content()  # central's own page
            assert message["From"] == "Locker network demo <notices@demo.localhost>"
            assert message["To"] == recipient["email"]

            # The carrier heard the same code through its webhook.
            def webhook_code() -> str | None:
                events = http.get(f"{receiver}/events").json()
                found = [
                    event["pickup_code"]
                    for event in events
                    if event["type"] == "parcel.deposited" and event["tracking_number"] == tracking
                ]
                return found[0] if found else None

            assert eventually(webhook_code, "the parcel.deposited webhook") == code
            page = http.get(f"{receiver}/")
            assert page.status_code == 200
            assert code in page.text and tracking in page.text

            picked_up = http.post(f"{kiosk}/api/pickup", json={"code": code})
            assert picked_up.status_code == 200, picked_up.text
            assert picked_up.json()["compartment"] == deposit["compartment"]
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{receiver}/", timeout=1)  # the receiver stopped with the demo
    smtp_port = int(printed(r"SMTP receiver, smtp://127\.0\.0\.1:(\d+)", output))
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", smtp_port))  # and so did the SMTP receiver


def delivery(event_id: str, tracking: str) -> bytes:
    data = {
        "tracking_number": tracking,
        "bank": {"id": "NYC-0001"},
        "compartment": "A01",
        "status": "deposited",
        "pickup_code": "12345678",
        "qr_payload": "qr",
    }
    return json.dumps({"id": event_id, "type": "parcel.deposited", "data": data}).encode()


def test_the_demo_receiver_keeps_signed_deliveries_once_and_refuses_the_rest() -> None:
    log = EventLog("s" * 32)
    now = int(time.time())
    body = delivery("evt_1", "9400100000000000000001")

    assert log.accept(body, signing.sign("s" * 32, body, now))
    assert log.accept(body, signing.sign("s" * 32, body, now))  # a retry: kept once
    assert not log.accept(body, signing.sign("other secret 1234", body, now))
    assert not log.accept(body, signing.sign("s" * 32, body, now - 3600))  # too old
    assert not log.accept(body, None)
    assert not log.accept(b"{not json", signing.sign("s" * 32, b"{not json", now))

    [event] = log.events()
    assert (event.tracking_number, event.bank_id, event.compartment, event.pickup_code) == (
        "9400100000000000000001",
        "NYC-0001",
        "A01",
        "12345678",
    )
