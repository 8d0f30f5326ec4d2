"""Builds a locker node from its config and runs it: the one place objects are made and wired."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlalchemy import Engine

from locker_node.boards import build_boards
from locker_node.config import NodeConfig
from locker_node.domain.crashpoints import NO_CRASHES, CrashPoints
from locker_node.domain.doors import CompartmentWiring, DoorController, DoorMonitor
from locker_node.flows import bank_settings
from locker_node.flows.door_events import DoorEventRecorder
from locker_node.flows.facade import LockerFlows
from locker_node.flows.ports import FlowPolicy, Ports
from locker_node.hardware.board import LockBoard
from locker_node.kiosk.endpoints import KioskUi, create_kiosk_app
from locker_node.metrics_route import install_metrics
from locker_node.store import repository as repo
from locker_node.store.database import database_path, ensure_schema, make_engine, transaction
from locker_node.store.journal import SqliteCommandJournal
from locker_node.store.keys import NodeKeys
from locker_node.systemd import NodeHealth, WatchdogFeeder

if TYPE_CHECKING:
    import httpx

    from locker_node.health.probes import HealthProbes
    from locker_node.sync.link import HttpCentralLink
    from locker_node.sync.service import SyncService
    from locker_node.update.updater import Updater

logger = logging.getLogger(__name__)

CRASH_ENV = "LOCKER_NODE_CRASH_AT"
HOUSEKEEPING_INTERVAL_S = 30.0


def system_clock() -> datetime:
    return datetime.now(UTC)


def crash_points_from_env(environ: Mapping[str, str] | None = None) -> CrashPoints:
    """`LOCKER_NODE_CRASH_AT=<point>[#n]` makes the node SIGKILL itself there (crash tests)."""
    spec = (os.environ if environ is None else environ).get(CRASH_ENV)
    if not spec:
        return NO_CRASHES
    logger.warning("crash point armed: %s", spec)
    return CrashPoints(spec, kill=lambda: os.kill(os.getpid(), signal.SIGKILL))


def flow_policy(config: NodeConfig) -> FlowPolicy:
    return FlowPolicy(
        bank_id=config.bank_id,
        kiosk_id=config.kiosk.kiosk_id,
        code_digits=config.pickup.code_digits,
        pickup_hold=timedelta(hours=config.pickup.hold_hours),
        keypad=config.pickup.keypad.policy(),
        login=config.courier.login.policy(),
        session_idle=timedelta(seconds=config.courier.session_idle_s),
        allow_upsize=config.deposit.allow_upsize,
        allow_walk_up=config.deposit.allow_walk_up,
        deposit_timeout=timedelta(seconds=config.deposit.confirm_timeout_s),
        remote_open_limit=config.sync.remote_open_limit,
        remote_open_window=timedelta(seconds=config.sync.remote_open_window_s),
        mass_open_limit=config.sync.mass_open_limit,
        mass_open_window=timedelta(seconds=config.sync.mass_open_window_s),
    )


class Housekeeper:
    """Runs the housekeeping flow every `interval_s` from a background thread."""

    def __init__(self, flows: LockerFlows, *, interval_s: float) -> None:
        self._flows = flows
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join(30)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self._flows.housekeeping()
            except Exception:
                # A failed pass is retried on the next tick; stopping would leave codes alive
                # past their deadline.
                logger.exception("housekeeping failed")


@dataclass
class Node:
    """Every long-lived object of a running node, wired together."""

    config: NodeConfig
    engine: Engine
    keys: NodeKeys
    boards: dict[str, LockBoard]
    doors: DoorController
    journal: SqliteCommandJournal
    flows: LockerFlows
    app: FastAPI
    monitor: DoorMonitor
    housekeeper: Housekeeper
    owns_boards: bool = True
    sync: SyncService | None = None
    central_link: HttpCentralLink | None = None  # the flows' (`ports.central`), closed here
    health: HealthProbes | None = None  # read by the heartbeats; its UPS inputs closed here
    pin_factory: Any = None  # the GPIO factory the node opened (UPS and boards), closed here
    started: bool = field(default=False, init=False)

    def start(self) -> None:
        """Read every door, settle what a crash left open, then start watching."""
        states = self.doors.start()
        unread = sorted(label for label, state in states.items() if state is None)
        if unread:
            logger.warning("doors not readable at start: %s", ", ".join(unread))
        settled = self.flows.recover()
        if settled:
            logger.warning("settled %d door operations left open by the last run", settled)
        self.flows.housekeeping()
        self.monitor.start()
        self.housekeeper.start()
        if self.sync is not None:
            self.sync.start()
        self.started = True

    def stop(self) -> None:
        if self.sync is not None:
            self.sync.stop()
        if self.central_link is not None:
            self.central_link.close()
        self.housekeeper.stop()
        self.monitor.stop()
        if self.owns_boards:
            for board in self.boards.values():
                board.close()
        if self.health is not None:
            self.health.close()
        if self.pin_factory is not None:
            self.pin_factory.close()
        self.engine.dispose()
        self.started = False

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def kiosk_ui(config: NodeConfig) -> KioskUi:
    """What the kiosk's pages show of the node's config: the bank, texts, code length, and the
    compartments' sizes for the drawing of the bank after a door opens."""
    return KioskUi(
        bank_id=config.bank_id,
        idle_timeout_s=config.kiosk.idle_timeout_s,
        language=config.kiosk.language,
        code_digits=config.pickup.code_digits,
        compartment_sizes={c.label: c.size for c in config.compartments},
        accessible_doors=frozenset(c.label for c in config.compartments if c.accessible),
    )


def build_node(
    config: NodeConfig,
    *,
    boards: Mapping[str, LockBoard] | None = None,
    clock: Callable[[], datetime] = system_clock,
    crash: CrashPoints = NO_CRASHES,
    migrate_in_process: bool = False,
    housekeeping_interval_s: float = HOUSEKEEPING_INTERVAL_S,
    central_transport: httpx.BaseTransport | None = None,
    pin_factory: Any = None,
) -> Node:
    """Config -> keys and store (schema upgraded) -> boards -> door controller -> kiosk app.

    `boards` replaces the configured ones (tests pass simulated boards they control); the node
    closes only boards it built itself.
    """
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = NodeKeys.load_or_create(data_dir)
    path = database_path(data_dir)
    ensure_schema(path, in_process=migrate_in_process)
    engine = make_engine(path)
    try:
        now = clock()
        with transaction(engine) as conn:
            repo.sync_compartments(
                conn,
                [
                    repo.CompartmentSpec(c.label, c.size, c.board, c.lock, c.accessible)
                    for c in config.compartments
                ],
                now,
            )
            out_of_service = repo.out_of_service_labels(conn)
        owns_boards = boards is None
        built, health, gpio = build_hardware(config, boards, pin_factory)
    except BaseException:
        engine.dispose()
        raise
    configured = {c.label for c in config.compartments}
    journal = SqliteCommandJournal(engine, clock=clock, crash=crash)
    doors = DoorController(
        built,
        [CompartmentWiring(c.label, c.board, c.lock) for c in config.compartments],
        journal=journal,
        events=DoorEventRecorder(engine, bank_id=config.bank_id),
        confirm_window_s=config.doors.confirm_window_ms / 1000,
        confirm_poll_s=config.doors.confirm_poll_ms / 1000,
        attempts=config.doors.attempts,
        left_open_after_s=config.doors.left_open_alert_s,
        out_of_service=[label for label in out_of_service if label in configured],
    )
    ports = Ports(engine, doors, journal, keys, flow_policy(config), clock=clock, crash=crash)
    # Central's bank settings, once received, over the configuration's (`flows.bank_settings`).
    bank_settings.load(ports)
    flows = LockerFlows(ports)
    app = create_kiosk_app(
        flows,
        kiosk_ui(config),
    )
    install_metrics(app, engine, doors, config.bank_id)
    sync, link = connect_central(config, flows, central_transport, health)
    return Node(
        config=config,
        engine=engine,
        keys=keys,
        boards=built,
        doors=doors,
        journal=journal,
        flows=flows,
        app=app,
        monitor=DoorMonitor(doors, interval_s=config.doors.monitor_interval_ms / 1000),
        housekeeper=Housekeeper(flows, interval_s=housekeeping_interval_s),
        owns_boards=owns_boards,
        sync=sync,
        central_link=link,
        health=health,
        pin_factory=gpio,
    )


def build_hardware(
    config: NodeConfig, boards: Mapping[str, LockBoard] | None, pin_factory: Any
) -> tuple[dict[str, LockBoard], HealthProbes | None, Any]:
    """The boards (`boards` when given), the health probes of a node that has central to
    report to, and the GPIO pin factory the node opened for them (None: none or not its own).

    A UPS on the GPIO header shares one factory with the GPIO lock boards; `pin_factory`
    (tests pass gpiozero's `MockFactory`) replaces it.
    """
    from locker_node.boards import open_pin_factory

    ups = config.health.ups if config.central_url is not None else None
    opened = open_pin_factory(ups.pin_factory) if pin_factory is None and ups else None
    gpio = pin_factory if opened is None else opened
    health = None
    try:
        if config.central_url is not None:
            # Imported only here: gpiozero and the wire's schemas stay out of a node that has
            # no central to report its health to.
            from locker_node.health.probes import build_health_probes

            health = build_health_probes(config.health, data_dir=config.data_dir, pin_factory=gpio)
        built = build_boards(config.boards, pin_factory=gpio) if boards is None else dict(boards)
    except BaseException:
        if health is not None:
            health.close()
        if opened is not None:
            opened.close()
        raise
    return built, health, opened


def connect_central(
    config: NodeConfig,
    flows: LockerFlows,
    transport: httpx.BaseTransport | None = None,
    health: HealthProbes | None = None,
) -> tuple[SyncService | None, HttpCentralLink | None]:
    """For a node with a central_url and an enrollment: the sync loop, and the flows' link to
    central (`ports.central`) for what they ask while someone waits. Neither without."""
    if config.central_url is None:
        return None, None
    sync = build_sync(config, flows, transport, health)
    if sync is None:
        return None, None
    link = build_central_link(config, flows, transport)
    flows.ports.central = link
    return sync, link


def build_central_link(
    config: NodeConfig,
    flows: LockerFlows,
    transport: httpx.BaseTransport | None = None,
) -> HttpCentralLink:
    """The flows' link to central: the node's signed client, on timeouts a courier can wait
    out (never longer than the sync loop's)."""
    from locker_node.sync.identity import load_identity
    from locker_node.sync.link import LINK_TIMEOUT_S, HttpCentralLink

    if config.central_url is None:
        raise ValueError("a node without central_url has no link to central")
    clock = flows.ports.clock
    return HttpCentralLink(
        config.central_url,
        load_identity(config.data_dir),
        transport=transport,
        clock=lambda: clock().timestamp(),
        timeout_s=min(LINK_TIMEOUT_S, config.sync.timeout_s),
        ca_bundle=config.ca_bundle,
    )


def build_sync(
    config: NodeConfig,
    flows: LockerFlows,
    transport: httpx.BaseTransport | None = None,
    health: HealthProbes | None = None,
) -> SyncService | None:
    """The sync loop, or None (logged) for a node that has a central_url but no enrollment."""
    # Imported here: a node without central never loads httpx or the wire's crypto.
    from locker_node.sync.client import CentralClient
    from locker_node.sync.identity import IdentityError, load_identity
    from locker_node.sync.service import SyncService

    if config.central_url is None:
        raise ValueError("a node without central_url has no sync")
    clock = flows.ports.clock
    try:
        identity = load_identity(config.data_dir)
    except IdentityError as exc:
        logger.error("no sync with central: %s", exc)
        return None
    client = CentralClient(
        config.central_url,
        identity,
        transport=transport,
        clock=lambda: clock().timestamp(),
        timeout_s=config.sync.timeout_s,
        ca_bundle=config.ca_bundle,
    )
    return SyncService(
        flows,
        client,
        identity,
        config.sync,
        data_dir=config.data_dir,
        board_of={c.label: c.board for c in config.compartments},
        version=_version(),
        health=health,
        updater=build_updater(config),
    )


def build_updater(config: NodeConfig) -> Updater | None:
    """The node's updater when `[update]` is enabled (see `locker_node.update`), else None."""
    if not config.update.enabled:
        return None
    from locker_node.update.state import SUPERVISED_ENV
    from locker_node.update.updater import Updater, kiosk_answers

    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.kiosk.host, config.kiosk.host)  # noqa: S104
    url = f"http://{f'[{host}]' if ':' in host else host}:{config.kiosk.port}/api/status"
    return Updater(
        config.update,
        _version(),
        supervised=os.environ.get(SUPERVISED_ENV) == "1",
        kiosk_check=lambda: kiosk_answers(url),
        request_exit=lambda: os.kill(os.getpid(), signal.SIGTERM),
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("locker-network")
    except PackageNotFoundError:
        return "0"


def run_node(config: NodeConfig) -> None:
    """Kiosk, door monitor and housekeeping in one process until SIGINT or SIGTERM.

    With a `central_url` and an enrollment, sync runs beside them; when central cannot be
    reached the node serves pickups and deposits for everything it already knows.
    """
    node = build_node(config, crash=crash_points_from_env())
    try:
        _serve(node, config)
    finally:
        updater = node.sync.updater if node.sync is not None else None
        if updater is not None and updater.switched:
            from locker_node.update.state import EXIT_SWITCHED

            # Overrides the SystemExit(0) of the SIGTERM that stopped the kiosk: the supervisor
            # starts the new version at once.
            raise SystemExit(EXIT_SWITCHED)


def _serve(node: Node, config: NodeConfig) -> None:
    import uvicorn

    with node:
        # Bound here rather than by uvicorn so that the log line below comes only once the
        # doors have been read and the port is really listening.
        # IPPROTO_TCP spelt out: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it every answer written in two parts waits out a 40 ms delayed ACK.
        family = socket.AF_INET6 if ":" in config.kiosk.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.kiosk.host, config.kiosk.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        # Under systemd (Type=notify) the watchdog is fed only while the kiosk's event loop
        # beats (uvicorn's callback_notify, about once a second) and the doors answer.
        health = NodeHealth(node.doors)
        # asyncio and h11 rather than uvloop and httptools: a kiosk has one client, and the
        # pure-Python stack keeps several megabytes out of a node that runs for months.
        server = uvicorn.Server(
            uvicorn.Config(
                node.app,
                loop="asyncio",
                http="h11",
                ws="none",
                lifespan="off",
                log_level="info",
                access_log=False,
                server_header=False,
                callback_notify=health.kiosk_beat,
                timeout_notify=0,
            )
        )
        host, port = sock.getsockname()[:2]
        logger.info("kiosk listening on http://%s:%d (bank %s)", host, port, config.bank_id)
        if node.sync is not None:
            logger.info("syncing with %s every %s s", config.central_url, config.sync.interval_s)
        # uvicorn stops gracefully on SIGTERM and then raises the signal again for the handler
        # it found: this one turns it into a normal exit through `with node`, which releases
        # the boards and closes the store.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            with WatchdogFeeder(health, status=f"kiosk on http://{host}:{port}"):
                server.run(sockets=[sock])
        finally:
            signal.signal(signal.SIGTERM, previous)
            sock.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)
