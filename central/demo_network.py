"""The whole demo network as processes: central, then one enrolled node per demo bank."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from carrier_adapters.tracking_numbers import is_valid_for_carrier
from central.banks.service import NewBank
from central.clock import utcnow
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.demo import DEMO_BANKS, demo_recipient, prepare_demo, prepare_demo_operators
from central.demo_mail import DemoMail, MailReceiverError, start_demo_mail
from central.demo_processes import STOP_SIGNALS, DemoNetworkError, Processes, Stop, Stopping
from central.demo_receiver import (
    DemoReceiver,
    ReceiverError,
    newcomer_guide,
    register_webhook,
    start_receiver,
)
from central.models import Node, Reservation
from central.nodes.enrollment import issue_enrollment_token

# The node is run through its command line only: central never imports `locker_node`. These are
# the names of that command line's files, as `locker-node provision` writes them.
NODE_COMMAND = (sys.executable, "-m", "locker_node.cli")
NODE_CONFIG_FILE = "node.toml"
NODE_DATA_DIR = "data"
NODE_KEY_FILE = "node-identity.pem"
NODE_CENTRAL_FILE = "central.json"
# Doors as `locker-node demo` has them: they open after 0.3 s and the simulated courier or
# recipient closes them 4 s later, so a deposit or pickup on the kiosk completes by itself.
DOOR_DELAY_MS = 300
AUTO_CLOSE_MS = 4000
PARCEL_CARRIER = "usps"
PARCEL_SIZE = "S"
START_TIMEOUT_S = 60.0
POLL_S = 0.1
# Central delivers webhooks to https URLs on public addresses only; the demo's central alone
# may use plain HTTP, so that it can deliver to the demo's own receiver on 127.0.0.1.
DEMO_CENTRAL_ENV = {"LOCKER_ALLOW_INSECURE_WEBHOOKS": "true"}


@dataclass(frozen=True)
class NodeSite:
    """One demo bank's node: where it lives and what it serves."""

    bank: NewBank
    folder: Path
    kiosk_port: int
    log_path: Path

    @property
    def config(self) -> Path:
        return self.folder / NODE_CONFIG_FILE

    @property
    def data_dir(self) -> Path:
        return self.folder / NODE_DATA_DIR

    @property
    def kiosk_url(self) -> str:
        return f"http://127.0.0.1:{self.kiosk_port}/"

    def enrolled_node_id(self) -> str | None:
        """The node id this folder was enrolled as, if it has a config and a key."""
        if not (self.config.exists() and (self.data_dir / NODE_KEY_FILE).exists()):
            return None
        try:
            recorded = json.loads((self.data_dir / NODE_CENTRAL_FILE).read_bytes())
        except (OSError, ValueError):
            return None
        node_id = recorded.get("node_id") if isinstance(recorded, dict) else None
        return node_id if isinstance(node_id, str) and node_id else None


@dataclass(frozen=True)
class Network:
    central_url: str
    keys: dict[str, str]
    sites: list[NodeSite]
    courier_codes: dict[str, str]
    parcels: dict[str, list[str]]
    operators: dict[str, tuple[str, str]]
    receiver: DemoReceiver
    mail: DemoMail


def run_network(
    settings: CentralSettings,
    *,
    host: str,
    port: int,
    kiosk_port: int,
    parcels: int,
    echo: Callable[[str], None] = print,
) -> int:
    """Start central and the nodes, print how to use them, and run until SIGINT, SIGTERM or
    SIGHUP. Returns 0 when stopped on request, 1 when something failed to start or died."""
    processes = Processes()
    stopping = Stopping()
    previous = {signum: signal.signal(signum, stopping.handle) for signum in STOP_SIGNALS}
    status = 0
    try:
        network = _start(settings, processes, host, port, kiosk_port, parcels, echo)
        _print_network(settings, network, echo)
        while True:
            processes.check()
            time.sleep(0.5)
    except Stop:
        echo("stopping the demo network ...")
    except DemoNetworkError as exc:
        echo(f"error: {exc}")
        status = 1
    finally:
        stopping.begun = True
        processes.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    echo("demo network stopped")
    return status


def _start(
    settings: CentralSettings,
    processes: Processes,
    host: str,
    port: int,
    kiosk_port: int,
    parcels: int,
    echo: Callable[[str], None],
) -> Network:
    started_at = utcnow()
    data_dir = settings.data_dir
    sites = _sites(data_dir, kiosk_port)
    # Nodes and this process reach central on loopback when it listens on every address.
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared only
    # The webhook receiver takes the port after the kiosks'.
    receiver_port = kiosk_port + len(sites)
    _check_ports_free(
        [
            (local, port),
            *(("127.0.0.1", site.kiosk_port) for site in sites),
            ("127.0.0.1", receiver_port),
        ]
    )
    upgrade_database(settings.database_url)
    keys = prepare_demo(settings)
    operators = prepare_demo_operators(settings)
    central_url = f"http://{local}:{port}"
    try:
        mail = start_demo_mail(data_dir / "demo" / "mail", os.environ, central_url)
    except MailReceiverError as exc:
        raise DemoNetworkError(f"the demo's mail receiver: {exc}") from None
    processes.closers.append(mail.close)
    central = processes.start(
        "central",
        [sys.executable, "-m", "central.cli", "serve", "--host", host, "--port", str(port)],
        data_dir / "central.log",
        env={**DEMO_CENTRAL_ENV, **mail.central_env},
    )
    receiver = start_receiver(secrets.token_urlsafe(32), receiver_port, mail.mailbox)
    processes.closers.append(receiver.close)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        with httpx.Client(timeout=5) as http:
            _wait_for(
                processes,
                partial(_answers, http, f"{central_url}/healthz"),
                f"central to answer on {central_url} (log {central.log_path})",
            )
            auth = {"Authorization": f"Bearer {keys[PARCEL_CARRIER]}"}
            try:
                register_webhook(http, central_url, auth, receiver.webhook_url, receiver.log.secret)
            except ReceiverError as exc:
                raise DemoNetworkError(f"the demo's webhook receiver: {exc}") from None
            _enroll(sessions, sites, central_url, echo)
            _start_nodes(processes, http, sessions, sites, central_url, started_at)
            carrier = _Carrier(http, central_url, auth, sessions)
            codes = {site.bank.bank_id: carrier.courier_code(site.bank.bank_id) for site in sites}
            reserved = {
                site.bank.bank_id: carrier.reserve_parcels(index, site, parcels)
                for index, site in enumerate(sites)
            }
    finally:
        engine.dispose()
    return Network(central_url, keys, sites, codes, reserved, operators, receiver, mail)


def _sites(data_dir: Path, kiosk_port: int) -> list[NodeSite]:
    return [
        NodeSite(
            bank=bank,
            folder=data_dir / "nodes" / bank.bank_id,
            kiosk_port=kiosk_port + index,
            log_path=data_dir / f"node-{bank.bank_id}.log",
        )
        for index, bank in enumerate(DEMO_BANKS)
    ]


def _start_nodes(
    processes: Processes,
    http: httpx.Client,
    sessions: sessionmaker[Session],
    sites: list[NodeSite],
    central_url: str,
    started_at: datetime,
) -> None:
    """One `locker-node run` per enrolled site; back once every kiosk answers and every node
    has sent central its first heartbeat."""
    for site in sites:
        configure_node(site, central_url)
        processes.start(
            f"node {site.bank.bank_id}",
            [*NODE_COMMAND, "run", "--config", str(site.config.absolute())],
            site.log_path,
            cwd=site.folder,
        )
    for site in sites:
        _wait_for(
            processes,
            partial(_answers, http, f"{site.kiosk_url}api/status"),
            f"the kiosk of {site.bank.bank_id} (log {site.log_path})",
        )
    for site in sites:
        _wait_for(
            processes,
            partial(_online, sessions, site.bank.bank_id, started_at),
            f"{site.bank.bank_id}'s first heartbeat at central (log {site.log_path})",
        )


def _check_ports_free(addresses: list[tuple[str, int]]) -> None:
    """Fail before starting anything rather than leave half a network up."""
    for host, port in addresses:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as sock:
            # As uvicorn binds: a port still in TIME_WAIT from the last run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise DemoNetworkError(
                    f"port {port} is taken ({exc.strerror}): is another demo running? "
                    "Choose others with --port and --kiosk-port"
                ) from None


def _wait_for(processes: Processes, attempt: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not attempt():
        processes.check()
        if time.monotonic() > deadline:
            raise DemoNetworkError(f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def _answers(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _online(sessions: sessionmaker[Session], bank_id: str, since: datetime) -> bool:
    """Central has had a heartbeat from the bank's node since `since`."""
    with sessions() as session:
        node = session.scalars(
            select(Node).where(Node.bank_id == bank_id, Node.revoked_at.is_(None))
        ).first()
        return (
            node is not None
            and node.online
            and node.health is not None
            and node.last_seen_at >= since
        )


def _enroll(
    sessions: sessionmaker[Session],
    sites: list[NodeSite],
    central_url: str,
    echo: Callable[[str], None],
) -> None:
    """`locker-node provision` for each site not enrolled yet (in parallel: each is a process)."""
    pending: list[tuple[NodeSite, subprocess.Popen[str]]] = []
    try:
        for site in sites:
            if keeps_enrollment(sessions, site, echo):
                continue
            with sessions.begin() as session:
                token = issue_enrollment_token(session, site.bank.bank_id, utcnow())
            site.folder.mkdir(parents=True, exist_ok=True)
            command = [
                *NODE_COMMAND, "provision", "--central", central_url,
                "--bank", site.bank.bank_id, "--token", token, "--config", str(site.config),
            ]  # fmt: skip
            pending.append(
                (
                    site,
                    subprocess.Popen(  # noqa: S603 - our own command, no shell
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    ),
                )
            )
        for site, process in pending:
            output, _ = process.communicate(timeout=START_TIMEOUT_S)
            with site.log_path.open("a") as log:
                log.write(output)
            if process.returncode != 0:
                raise DemoNetworkError(f"enrolling {site.bank.bank_id} failed:\n{output.strip()}")
    finally:
        for _, process in pending:
            if process.poll() is None:
                process.kill()
                process.wait()


def keeps_enrollment(
    sessions: sessionmaker[Session], site: NodeSite, echo: Callable[[str], None]
) -> bool:
    """True when the folder holds an enrollment central still knows; a stale one (central's
    database was reset) is moved aside, never deleted, and the bank enrolled afresh."""
    node_id = site.enrolled_node_id()
    if node_id is None:
        if (site.data_dir / NODE_KEY_FILE).exists():
            _move_aside(site, echo)
        return False
    with sessions() as session:
        node = session.get(Node, node_id)
        if node is not None and node.revoked_at is None and node.bank_id == site.bank.bank_id:
            return True
    _move_aside(site, echo)
    return False


def _move_aside(site: NodeSite, echo: Callable[[str], None]) -> None:
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    target = site.folder.with_name(f"{site.folder.name}.replaced-{stamp}")
    shutil.move(site.folder, target)
    echo(f"note: {site.folder} was enrolled with a central that no longer knows it; now {target}")


def configure_node(site: NodeSite, central_url: str) -> None:
    """The edits an installer makes after provisioning: kiosk port, doors that close themselves,
    and the current central URL (the ports may differ from the last run)."""
    text = site.config.read_text()
    config: dict[str, Any] = tomllib.loads(text)
    wanted = dict(config)
    wanted["central_url"] = central_url
    wanted["kiosk"] = {**config.get("kiosk", {}), "port": site.kiosk_port}
    wanted["boards"] = [
        {**board, "door_delay_ms": DOOR_DELAY_MS, "auto_close_ms": AUTO_CLOSE_MS}
        if board.get("protocol") == "simulated"
        else board
        for board in config.get("boards", [])
    ]
    if wanted == config:
        return
    edited = _edit_config_text(text, central_url, site.kiosk_port)
    try:
        same = tomllib.loads(edited) == wanted
    except tomllib.TOMLDecodeError:
        same = False
    # Edited in place, the file keeps the layout and comments `provision` gave it; a file too
    # unusual for that is written out afresh instead.
    temporary = site.config.with_suffix(".toml.new")
    temporary.write_text(edited if same else tomli_w.dumps(wanted))
    os.replace(temporary, site.config)


_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_-]+)\s*\]\]?\s*(#.*)?$")
_SIMULATED = re.compile(r'^\s*protocol\s*=\s*"simulated"')


def _edit_config_text(text: str, central_url: str, kiosk_port: int) -> str:
    blocks: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        header = _TABLE_HEADER.match(line)
        if header:
            blocks.append((header.group(1), [line]))
        else:
            blocks[-1][1].append(line)
    _set_key(blocks[0][1], "central_url", json.dumps(central_url))
    for name, lines in blocks:
        if name == "boards" and any(_SIMULATED.match(line) for line in lines):
            _set_key(lines, "door_delay_ms", str(DOOR_DELAY_MS))
            _set_key(lines, "auto_close_ms", str(AUTO_CLOSE_MS))
        if name == "kiosk":
            _set_key(lines, "port", str(kiosk_port))
    if not any(name == "kiosk" for name, _ in blocks):
        blocks.append(("kiosk", ["", "[kiosk]", f"port = {kiosk_port}"]))
    return "\n".join(line for _, lines in blocks for line in lines) + "\n"


def _set_key(lines: list[str], key: str, literal: str) -> None:
    """Set `key = literal` in one table's lines: in place, else after the table's last key."""
    assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for index, line in enumerate(lines):
        if assignment.match(line):
            lines[index] = f"{key} = {literal}"
            return
    keys = [
        index
        for index, line in enumerate(lines)
        if "=" in line and not line.lstrip().startswith("#")
    ]
    lines.insert(keys[-1] + 1 if keys else len(lines), f"{key} = {literal}")


def demo_tracking_number(bank_index: int, parcel: int) -> str:
    """A valid USPS tracking number (USPS 20 format), the same for the same bank and parcel, so
    that running the demo again finds the reservations it made before instead of adding more."""
    stem = f"01900000001{bank_index + 1:04d}{parcel:04d}"
    for digit in "0123456789":
        if is_valid_for_carrier(PARCEL_CARRIER, stem + digit):
            return stem + digit
    raise AssertionError(f"no check digit makes {stem} a USPS tracking number")


@dataclass(frozen=True)
class _Carrier:
    """The demo's `usps`, using the carrier API as a carrier would."""

    http: httpx.Client
    central_url: str
    auth: dict[str, str]
    sessions: sessionmaker[Session]

    def courier_code(self, bank_id: str) -> str:
        answer = self.http.get(
            f"{self.central_url}/v1/banks/{bank_id}/courier-code", headers=self.auth
        )
        if answer.status_code != 200:
            raise DemoNetworkError(
                f"courier code for {bank_id}: {answer.status_code} {answer.text}"
            )
        return str(answer.json()["code"])

    def reserve_parcels(self, bank_index: int, site: NodeSite, count: int) -> list[str]:
        """Reserve with a recipient whose mail the demo receives; a repeat returns the same one."""
        numbers = []
        bank_id = site.bank.bank_id
        for parcel in range(1, count + 1):
            number = demo_tracking_number(bank_index, parcel)
            recipient = demo_recipient(bank_index, bank_id, parcel)
            answer = self.http.post(
                f"{self.central_url}/v1/reservations",
                json={
                    "tracking_number": number,
                    "bank_id": bank_id,
                    "size": PARCEL_SIZE,
                    "recipient": recipient,
                },
                headers=self.auth,
            )
            if answer.status_code not in (200, 201):
                raise DemoNetworkError(f"reserving {number}: {answer.status_code} {answer.text}")
            reservation = answer.json()
            if reservation["status"] != "reserved":
                continue
            if answer.status_code == 200 and not self._has_recipient(reservation["id"]):
                # Made by a demo from before reservations carried a recipient.
                self._set_recipient(reservation["id"], recipient)
            numbers.append(number)
        return numbers

    def _has_recipient(self, reservation_id: str) -> bool:
        with self.sessions() as session:
            reservation = session.get(Reservation, reservation_id)
            return reservation is None or reservation.recipient is not None

    def _set_recipient(self, reservation_id: str, recipient: dict[str, str]) -> None:
        answer = self.http.patch(
            f"{self.central_url}/v1/reservations/{reservation_id}",
            json={"recipient": recipient},
            headers=self.auth,
        )
        if answer.status_code != 200:
            raise DemoNetworkError(
                f"the recipient of {reservation_id}: {answer.status_code} {answer.text}"
            )


def _print_network(
    settings: CentralSettings, network: Network, echo: Callable[[str], None]
) -> None:
    base = network.central_url
    key = network.keys[PARCEL_CARRIER]
    logs = settings.data_dir
    echo("")
    echo(
        f"Locker network demo: central and {len(network.sites)} enrolled nodes on simulated boards"
    )
    echo(f"  state in {logs}/ (reset: stop, then rm -rf {logs}); logs in {logs}/*.log")
    echo("")
    echo(f"Central (log {logs / 'central.log'})")
    echo(f"  carrier API     {base}/v1")
    echo(f"  API docs        {base}/docs")
    echo(f"  dashboard       {base}/ops")
    for email, (role, password) in network.operators.items():
        echo(f"    {role:6} {email} / {password}")
    echo(
        f"  database        {make_url(settings.database_url).render_as_string(hide_password=True)}"
    )
    for carrier_id, carrier_key in network.keys.items():
        echo(f"  API key ({carrier_id:5}) {carrier_key}")
    echo("")
    echo(f"Kiosks (doors close themselves {AUTO_CLOSE_MS // 1000} s after opening)")
    for site in network.sites:
        bank_id = site.bank.bank_id
        echo(f"  {bank_id} {site.bank.name:14} {site.kiosk_url:24} (log {site.log_path})")
        echo(
            f"    courier: carrier {PARCEL_CARRIER}, code {network.courier_codes[bank_id]} (today)"
        )
        parcels = network.parcels[bank_id]
        if parcels:
            echo(f"    parcels to deposit (size {PARCEL_SIZE}): {', '.join(parcels)}")
    echo("")
    mail_lines = network.mail.summary(network.receiver.mail_url)
    for line in newcomer_guide(network.receiver, PARCEL_CARRIER, AUTO_CLOSE_MS // 1000, mail_lines):
        echo(line)
    echo("Courier codes are per carrier and bank and change daily; a carrier gets one with")
    echo(f"  curl -H 'Authorization: Bearer {key}' {base}/v1/banks/NYC-0001/courier-code")
    echo("Reserve a locker:")
    echo(f"  curl -X POST {base}/v1/reservations -H 'Authorization: Bearer {key}' \\")
    echo("    -H 'Content-Type: application/json' \\")
    sample = demo_tracking_number(len(network.sites), 1)
    echo(f"""    -d '{{"tracking_number": "{sample}", "bank_id": "NYC-0001", "size": "M"}}'""")
    echo("")
    echo("Ctrl-C stops everything.")
