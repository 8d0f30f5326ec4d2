"""The soak's network as real processes: central on its database and enrolled nodes on simulated
boards, each restartable with the same command line after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from sqlalchemy import Engine

from bench.support import SECRET_KEY, free_port, throwaway_database
from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.carriers.service import add_carrier, create_api_key
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.nodes.enrollment import issue_enrollment_token
from locker_node.store.database import DATABASE_FILE

CARRIER = "soakpost"
TIMEZONE = "America/New_York"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
# Doors open 0.3 s after the unlock and the simulated courier or recipient closes them 1.5 s
# later: a deposit can be confirmed about two seconds after its door opened.
DOOR_DELAY_MS = 300
AUTO_CLOSE_MS = 1500
NODE_COMMAND = (sys.executable, "-m", "locker_node.cli")


class SoakSetupError(Exception):
    """The network could not be started; the message says what to look at."""


@dataclass
class Managed:
    """One long-running process of the network: started in its own process group, so that a
    SIGKILL, SIGSTOP or SIGCONT reaches all of it, and restarted with the same command line."""

    name: str
    command: list[str]
    log_path: Path
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    paused: bool = False
    down_on_purpose: bool = False  # killed by the chaos, to be restarted by it
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def pid(self) -> int | None:
        process = self.process
        return None if process is None or process.poll() is not None else process.pid

    def start(self, note: str = "started") -> None:
        with self.lock:
            self.incarnation += 1
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:
                stamp = datetime.now(UTC).isoformat(timespec="seconds")
                log.write(f"=== soak {stamp}: {self.name} #{self.incarnation} {note}\n".encode())
                log.flush()
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env={**os.environ, **self.env},
                    process_group=0,
                )
            self.paused = False
            self.down_on_purpose = False

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            process = self.process
            if process is None or process.poll() is not None:
                raise SoakSetupError(f"{self.name} exited while starting; see {self.log_path}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SoakSetupError(f"{self.name} did not answer {self.ready_url} in time")
            time.sleep(0.1)

    def signal_group(self, signum: signal.Signals) -> bool:
        """Send `signum` to the process group; False when the process is not running."""
        process = self.process
        if process is None or process.poll() is not None:
            return False
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        with self.lock:
            self.down_on_purpose = True
            if self.signal_group(signal.SIGKILL) and self.process is not None:
                self.process.wait(STOP_TIMEOUT_S)
            self.paused = False

    def pause(self) -> bool:
        with self.lock:
            self.paused = self.signal_group(signal.SIGSTOP)
            return self.paused

    def resume(self) -> None:
        with self.lock:
            self.signal_group(signal.SIGCONT)
            self.paused = False

    def exited_on_its_own(self) -> int | None:
        """The exit status of a process that ended without being killed or stopped by the
        soak; None while it runs (or is down on purpose)."""
        with self.lock:
            process = self.process
            if process is None or self.down_on_purpose:
                return None
            return process.poll()

    def ensure_running(self) -> bool:
        """Resume a paused process and restart a dead one; True when it had to be restarted."""
        with self.lock:
            if self.paused:
                self.resume()
            if self.pid is not None:
                return False
            self.start("restarted")
        self.wait_ready()
        return True

    def stop(self) -> int | None:
        """SIGCONT then SIGTERM, SIGKILL after STOP_TIMEOUT_S; the exit status."""
        with self.lock:
            process = self.process
            if process is None:
                return None
            self.down_on_purpose = True
            self.signal_group(signal.SIGCONT)
            self.signal_group(signal.SIGTERM)
            try:
                return process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                return process.wait(STOP_TIMEOUT_S)


@dataclass(frozen=True)
class Site:
    """One bank and its node."""

    bank_id: str
    folder: Path
    kiosk_port: int
    node: Managed

    @property
    def kiosk_url(self) -> str:
        return f"http://127.0.0.1:{self.kiosk_port}"

    @property
    def config(self) -> Path:
        return self.folder / "node.toml"

    @property
    def database(self) -> Path:
        return self.folder / "data" / DATABASE_FILE


@dataclass
class Network:
    database_url: str
    engine: Engine
    central: Managed
    central_url: str
    api_key: str
    sites: list[Site]

    @property
    def processes(self) -> list[Managed]:
        return [self.central, *(site.node for site in self.sites)]

    def managed(self, name: str) -> Managed:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def stop(self) -> dict[str, int | None]:
        """Nodes first, then central; each one's exit status."""
        return {process.name: process.stop() for process in reversed(self.processes)}


@contextmanager
def central_database(kind: str, work: Path) -> Iterator[str]:
    """A throw-away PostgreSQL database (LOCKER_BENCH_DATABASE_URL's server), or a SQLite file."""
    if kind == "postgres":
        with throwaway_database("soak") as url:
            yield url
        return
    url = f"sqlite:///{work / 'central.db'}"
    upgrade_database(url)
    yield url


def bank_ids(count: int) -> list[str]:
    return [f"SOAK-{n + 1}" for n in range(count)]


def seed_central(url: str, banks: list[str], spec: str) -> str:
    """The carrier with one API key, and the banks side by side in New York; the API key."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    try:
        with make_sessionmaker(engine).begin() as session:
            add_carrier(session, CARRIER, "Soak Post", now)
            key = create_api_key(session, CARRIER, now).key
            for n, bank_id in enumerate(banks):
                compartments = parse_compartment_spec(spec)
                place = (40.75 + n * 0.002, -73.99)
                bank = NewBank(
                    bank_id, f"Soak {n + 1}", f"{n + 1} Soak St", *place, compartments, TIMEZONE
                )
                add_bank(session, bank, now)
    finally:
        engine.dispose()
    return key


def central_process(url: str, work: Path, smtp_url: str) -> Managed:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LOCKER_DATABASE_URL": url,
        "LOCKER_SECRET_KEY": SECRET_KEY,
        "LOCKER_DATA_DIR": str(work / "central"),
        "LOCKER_SCHEDULER_ENABLED": "true",
        # The soak's receiver listens on plain http on 127.0.0.1, as the demo's does.
        "LOCKER_ALLOW_INSECURE_WEBHOOKS": "true",
        "LOCKER_SMTP_URL": smtp_url,
        "LOCKER_NOTIFY_FROM": "Soak notices <notices@soak.example>",
        "LOCKER_PUBLIC_URL": base,
        "LOCKER_MAP_TILE_URL": "",
    }
    # The access log is what shows a 5xx answered to a node (the soak sees its own answers).
    command = [sys.executable, "-m", "central.cli", "serve", "--port", str(port), "--access-log"]
    return Managed("central", command, work / "logs" / "central.log", f"{base}/healthz", env)


def register_webhook(central_url: str, api_key: str, url: str, secret: str) -> None:
    answer = httpx.post(
        f"{central_url}/v1/webhooks",
        json={"url": url, "secret": secret},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    if answer.status_code != 201:
        raise SoakSetupError(f"registering the webhook: {answer.status_code} {answer.text}")


def enroll_nodes(
    engine: Engine, central_url: str, banks: list[str], work: Path, sync_s: float
) -> list[Site]:
    """`locker-node provision` for each bank (in parallel: each is a process), then the
    installer's edits: kiosk port, doors that close themselves, sync interval."""
    sessions = make_sessionmaker(engine)
    pending: list[tuple[Site, subprocess.Popen[str]]] = []
    for bank_id in banks:
        with sessions.begin() as session:
            token = issue_enrollment_token(session, bank_id, datetime.now(UTC))
        folder = work / "nodes" / bank_id
        folder.mkdir(parents=True)
        port = free_port()
        log = work / "logs" / f"node-{bank_id}.log"
        command = [*NODE_COMMAND, "run", "--config", str(folder / "node.toml")]
        node = Managed(
            f"node-{bank_id}", command, log, f"http://127.0.0.1:{port}/api/status", cwd=folder
        )
        site = Site(bank_id, folder, port, node)
        provision = [
            *NODE_COMMAND, "provision", "--central", central_url, "--bank", bank_id,
            "--token", token, "--config", str(site.config),
        ]  # fmt: skip
        pending.append((site, subprocess.Popen(provision, text=True, **_captured())))
    for site, process in pending:
        output, _ = process.communicate(timeout=START_TIMEOUT_S)
        if process.returncode != 0:
            raise SoakSetupError(f"provisioning {site.bank_id} failed:\n{output}")
        configure_node(site, central_url, sync_s)
    return [site for site, _ in pending]


def _captured() -> dict[str, Any]:
    return {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}


def configure_node(site: Site, central_url: str, sync_s: float) -> None:
    config: dict[str, Any] = tomllib.loads(site.config.read_text())
    config["central_url"] = central_url
    config["kiosk"] = {**config.get("kiosk", {}), "port": site.kiosk_port}
    config["sync"] = {**config.get("sync", {}), "interval_s": sync_s}
    config["boards"] = [
        {**board, "door_delay_ms": DOOR_DELAY_MS, "auto_close_ms": AUTO_CLOSE_MS}
        if board.get("protocol") == "simulated"
        else board
        for board in config.get("boards", [])
    ]
    site.config.write_text(tomli_w.dumps(config))


def start_network(
    url: str,
    work: Path,
    *,
    nodes: int,
    compartments: str,
    smtp_url: str,
    webhook: tuple[str, str],
    sync_s: float,
    echo: Callable[[str], None],
) -> Network:
    """Seed central, start it, register the webhook, enroll and start the nodes."""
    banks = bank_ids(nodes)
    api_key = seed_central(url, banks, compartments)
    central = central_process(url, work, smtp_url)
    engine = make_engine(url)
    network = Network(url, engine, central, central.ready_url.removesuffix("/healthz"), api_key, [])
    central.start()
    central.wait_ready()
    echo(f"central up at {network.central_url} (log {central.log_path})")
    register_webhook(network.central_url, api_key, *webhook)
    network.sites = enroll_nodes(engine, network.central_url, banks, work, sync_s)
    for site in network.sites:
        site.node.start()
    for site in network.sites:
        site.node.wait_ready()
        echo(f"node {site.bank_id} up at {site.kiosk_url} (log {site.node.log_path})")
    return network
