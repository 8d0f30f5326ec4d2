"""Node sync benchmarks: an outbox drained after an outage, and a fleet of nodes on one central.

Drain (`--drain-only`): starts a real central server (`locker-central serve`) on a throw-away
PostgreSQL database, creates reservations through the carrier API (one carrier with a webhook,
so every transition also queues a signed webhook delivery), provisions a node, lets it pull them,
stops central and queues on the node a day's worth of traffic: each reservation deposited and
later picked up (deposits carry the node-sealed pickup code and QR payload, re-sealed to central
on the way out) and three door alerts per parcel (`door.left_open`, `door.forced_open`), 10,000
events in all by default. Then it starts central again on the same port and times the node's own
sync client draining its outbox over real HTTP, in signed batches. It prints the drain time and
events/s and checks that central holds every event exactly once, applied, with every parcel
picked up, one open alert per door and kind of trouble, and one webhook delivery per deposit and
per pickup. Before the drain, in the same run, the same node sends as many empty batches as the
drain will take requests (signed, through its own client): the baseline, what a request costs
without events, which the drain's time per request is compared with, so the figures read the
same on any machine. Central's CPU time and that of its PostgreSQL backends are read from /proc
for both.

Every reservation has a recipient with an email address (`--phone`: and a phone number), so each
deposit and each pickup of the drain also writes its recipient notices at central ("ready",
"collected"; one row per channel, sent later by the scheduler, which is off here); the bench
prints how many notice rows the drain wrote and checks there is one per fact and channel.
`--no-recipients` makes the reservations without one, as before notices: no notice rows.

Fleet (`--fleet-only`, see `bench/sync_fleet.py`): N simulated nodes heartbeating, pulling their
feed and now and then sending a door event against one `locker-central serve --workers 2` on
PostgreSQL, stepping N up; prints per step the offered and achieved requests/s, p50/p99 latency
and errors, and the largest N whose p99 stays under 200 ms.

    python bench/sync.py                       # both
    python bench/sync.py --drain-only [--events 10000] [--no-recipients | --phone]
    python bench/sync.py --fleet-only [--steps 1000,2000,3000,5000] [--window 20]

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create
throw-away databases on; they are dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import check, free_port, start_central, stop, throwaway_database
from central.banks.service import (
    NewBank,
    add_bank,
    compartment_labels,
    parse_compartment_spec,
)
from central.carriers.service import add_carrier, create_api_key
from central.db import make_engine, make_sessionmaker
from central.models import Alert, NodeEventRecord, Notice, Reservation, WebhookDelivery
from central.nodes.enrollment import issue_enrollment_token
from locker_node.app import Node, build_node
from locker_node.config import load_config
from locker_node.store import outbox
from locker_node.store.database import transaction
from locker_node.store.keys import NodeKeys
from locker_node.sync.provision import provision
from locker_node.sync.service import SyncService
from locker_wire import events as node_events
from locker_wire.schemas import EventBatchResult
from locker_wire.sealing import seal, seal_context

BANK = "BENCH-1"
CARRIER = "benchpost"
# Events per parcel in the drain: a deposit, a pickup and three door alerts.
EVENTS_PER_PARCEL = 5
# A parcel is picked up this many deposits after its own, so batches mix both.
PICKUP_LAG = 40


def reseal_rate(keys: NodeKeys, sealing_key_text: str, count: int) -> float:
    """Microseconds per deposit event to open the node's seals and seal both fields again."""
    from locker_wire.sealing import load_sealing_public_key

    public = load_sealing_public_key(sealing_key_text)
    code, qr = keys.seal("12345678"), keys.seal("q" * 43)
    started = time.perf_counter()
    for _ in range(count):
        event_id = str(uuid.uuid4())
        seal(public, keys.unseal(code).encode(), seal_context(event_id, "pickup_code"))
        seal(public, keys.unseal(qr).encode(), seal_context(event_id, "qr_payload"))
    return (time.perf_counter() - started) / count * 1e6


def recipient_for(n: int, channels: tuple[str, ...]) -> dict[str, str] | None:
    """Reservation n's recipient, reachable on `channels` ("email", "sms"); None for none."""
    if not channels:
        return None
    recipient = {"name": f"Recipient {n}"}
    if "email" in channels:
        recipient["email"] = f"parcel{n:06d}@recipients.bench.example"
    if "sms" in channels:
        recipient["phone"] = f"+1 212 555 {n % 10_000:04d}"
    return recipient


def reserve_all(
    central_url: str, api_key: str, sizes: list[str], channels: tuple[str, ...]
) -> list[str]:
    """One reservation per size given, through the carrier API, a few at a time."""

    def one(client: httpx.Client, n: int, size: str) -> str:
        body: dict[str, Any] = {"tracking_number": f"BP{n:010d}", "bank_id": BANK, "size": size}
        recipient = recipient_for(n, channels)
        if recipient is not None:
            body["recipient"] = recipient
        response = client.post("/v1/reservations", json=body)
        if response.status_code != 201:
            raise SystemExit(f"reservation refused: {response.status_code} {response.text}")
        rid: str = response.json()["id"]
        return rid

    headers = {"Authorization": f"Bearer {api_key}"}
    with (
        httpx.Client(base_url=central_url, headers=headers, timeout=30) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        return list(pool.map(lambda args: one(client, *args), enumerate(sizes)))


def time_requests(sync: SyncService) -> list[float]:
    """Seconds the node spends waiting for `POST /v1/node/events` answers (a running total)."""
    spent = [0.0]
    client = sync._client  # the node's own client, timed from outside
    post = client.post_events

    def timed(events: list[dict[str, Any]]) -> EventBatchResult:
        started = time.perf_counter()
        try:
            return post(events)
        finally:
            spent[0] += time.perf_counter() - started

    client.post_events = timed  # type: ignore[method-assign]
    return spent


def queue_outage(
    node_engine: Engine,
    keys: NodeKeys,
    parcels: list[tuple[str, str]],
    events: int,
    start: datetime,
) -> tuple[int, int]:
    """Queue the outage's events on the node, in the order they happened.

    Returns how many, and how many alerts central should hold for them: one per door and kind
    of trouble (a door left open again refreshes its open alert).
    """
    rng_labels = [label for _, label in parcels]
    queued = 0
    at = start
    troubles: set[tuple[str, str]] = set()

    def append(conn: Connection, event: node_events.NodeEventModel) -> None:
        nonlocal queued, at
        at += timedelta(seconds=2)
        outbox.record(conn, event, at=at, bank_id=BANK)
        queued += 1
        if isinstance(event, node_events.DoorLeftOpen | node_events.DoorForcedOpen):
            troubles.add((event.event_type, event.compartment))

    def parcel(reservation_id: str, label: str) -> dict[str, str]:
        return {
            "reservation_id": reservation_id,
            "parcel_id": reservation_id,
            "carrier_id": CARRIER,
            "tracking_number": reservation_id,
            "compartment": label,
        }

    def picked_up(conn: Connection, reservation_id: str, label: str) -> None:
        append(
            conn,
            node_events.ParcelPickedUp(
                **parcel(reservation_id, label), picked_up_at=at, via="code"
            ),
        )

    def left_open(label: str, open_for_s: float) -> node_events.DoorLeftOpen:
        return node_events.DoorLeftOpen(compartment=label, open_for_s=open_for_s)

    with transaction(node_engine) as conn:
        for n, (reservation_id, label) in enumerate(parcels):
            deposited = node_events.ParcelDeposited(
                **parcel(reservation_id, label),
                walk_up=False,
                reserved_size="S",
                compartment_size="S",
                deposited_at=at,
                pickup_deadline=at + timedelta(hours=72),
                sealed_pickup_code=keys.seal(f"{n:08d}"),
                sealed_qr_payload=keys.seal(uuid.uuid4().hex + uuid.uuid4().hex[:11]),
            )
            append(conn, deposited)
            append(conn, left_open(label, 75.0))
            append(conn, node_events.DoorForcedOpen(compartment=label))
            append(conn, left_open(rng_labels[(n * 7) % len(rng_labels)], 61.0))
            if n >= PICKUP_LAG:
                picked_up(conn, *parcels[n - PICKUP_LAG])
        for reservation_id, label in parcels[max(0, len(parcels) - PICKUP_LAG) :]:
            picked_up(conn, reservation_id, label)
        # Rounding: top up with door alerts so exactly `events` are queued.
        while queued < events:
            append(conn, left_open(rng_labels[queued % len(rng_labels)], 90.0))
    return queued, len(troubles)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time these processes have used so far (gone ones count 0)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Spent:
    """Wall time and CPU time (central's process, its database backends) of a stretch."""

    wall_s: float
    central_cpu_s: float
    database_cpu_s: float


class Central:
    """`locker-central serve` on one port, stopped for the outage and started again after it."""

    def __init__(self, database_url: str, port: int, data_dir: Path) -> None:
        self.database_url = database_url
        self.port = port
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_central(self.database_url, self.port, self.data_dir)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def backends(self) -> list[int]:
        """The pids of the PostgreSQL backends serving central (on this machine)."""
        engine = make_engine(self.database_url, pool_size=1)
        try:
            with engine.connect() as conn:
                pids = conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalars()
                return [int(pid) for pid in pids]
        finally:
            engine.dispose()

    def measure(self, work: Callable[[], object]) -> Spent:
        """Run `work()` and say what it took: wall time, and the CPU time of central's process
        and of its database backends (a backend opened meanwhile counts from its start)."""
        if self.process is None:
            raise RuntimeError("central is not running")
        server = self.process.pid
        central_before = cpu_seconds([server])
        database_before = {pid: cpu_seconds([pid]) for pid in self.backends()}
        started = time.perf_counter()
        work()
        wall = time.perf_counter() - started
        central = cpu_seconds([server]) - central_before
        database = sum(
            cpu_seconds([pid]) - database_before.get(pid, 0.0) for pid in self.backends()
        )
        return Spent(wall, central, database)


@dataclass(frozen=True, slots=True)
class Plan:
    sizes: list[str]  # one reservation per entry, of that size
    labels: dict[str, list[str]]  # the bank's compartments by size
    events: int
    channels: tuple[str, ...]  # how the recipients can be reached; () for no recipient
    outage_start: datetime


@dataclass(frozen=True, slots=True)
class Outage:
    """What the node saw: what it queued while central was down, and the drain after."""

    queued: int
    expected_alerts: int
    delivered: int
    left: int
    again: int
    elapsed_s: float
    waited_s: float
    drain: Spent
    baseline: Spent  # as many empty batches as the drain took requests
    requests: int


@dataclass(frozen=True, slots=True)
class Drained:
    node_id: str
    keys: NodeKeys
    sealing_key: str
    batch_size: int
    outage: Outage


@dataclass(frozen=True, slots=True)
class Held:
    """What central holds after the drain."""

    by_status: dict[str, int]
    picked: int
    alerts: int
    notices: dict[tuple[str, str], int]  # (kind, channel) -> rows
    webhooks: dict[str, int]  # event type -> delivery rows (one endpoint)


def create_network(sessions: sessionmaker[Session], spec: str, now: datetime) -> tuple[str, str]:
    """The bank and the carrier; the carrier's API key and the bank's enrollment token."""
    with sessions.begin() as session:
        add_bank(
            session,
            NewBank(
                bank_id=BANK,
                name="Bench bank",
                address="1 Bench St",
                lat=40.75,
                lon=-73.99,
                compartments=parse_compartment_spec(spec),
            ),
            now,
        )
        add_carrier(session, CARRIER, "Bench Post", now)
        api_key = create_api_key(session, CARRIER, now).key
        token = issue_enrollment_token(session, BANK, now)
    return api_key, token


def assign_compartments(
    reservation_ids: list[str], sizes: list[str], labels: dict[str, list[str]]
) -> list[tuple[str, str]]:
    taken = {"S": 0, "M": 0}
    parcels = []
    for rid, size in zip(reservation_ids, sizes, strict=True):
        parcels.append((rid, labels[size][taken[size]]))
        taken[size] += 1
    return parcels


def run_drain(central: Central, api_key: str, token: str, plan: Plan, work: Path) -> Drained:
    """Reservations made, a node provisioned that pulls them, then the outage and the drain."""
    hook = httpx.post(
        f"{central.url}/v1/webhooks",
        json={"url": "https://carrier.example/hooks", "secret": "whsec-" + "b" * 32},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    check(hook.status_code == 201, hook.text)
    started = time.perf_counter()
    reservation_ids = reserve_all(central.url, api_key, plan.sizes, plan.channels)
    print(
        f"setup: {len(plan.sizes)} reservations through the carrier API in "
        f"{time.perf_counter() - started:.1f} s"
    )
    config_path = work / "node" / "node.toml"
    done = provision(central_url=central.url, bank_id=BANK, token=token, config_path=config_path)
    config = load_config(config_path)
    node = build_node(config, migrate_in_process=True)
    sync = node.sync
    if sync is None:
        raise SystemExit("benchmark stopped: the node has no sync")
    try:
        parcels = assign_compartments(reservation_ids, plan.sizes, plan.labels)
        outage = drain_after_outage(node, sync, central, parcels, plan)
    finally:
        sync.stop()
        node.engine.dispose()
        for board in node.boards.values():
            board.close()
    return Drained(
        done.node_id,
        node.keys,
        done.enrollment.central_sealing_public_key,
        config.sync.batch_size,
        outage,
    )


def drain_after_outage(
    node: Node, sync: SyncService, central: Central, parcels: list[tuple[str, str]], plan: Plan
) -> Outage:
    # The node learns the reservations while central is up, then central goes down.
    check(sync.run_once(), "first sync pass failed")
    central.stop()
    queued, expected_alerts = queue_outage(
        node.engine, node.keys, parcels, plan.events, plan.outage_start
    )
    # Central down: the node keeps everything and says so.
    check(not sync.run_once(), "central still answered")
    central.start()
    requests = -(-queued // node.config.sync.batch_size)
    # The baseline: what as many requests cost without events, signed by the same client.
    client = sync._client

    def empty_batches() -> None:
        for _ in range(requests):
            check(client.post_events([]).results == [], "an empty batch had results")

    baseline = central.measure(empty_batches)
    in_requests = time_requests(sync)
    outcome: list[int] = []
    spent = central.measure(lambda: outcome.append(sync.deliver_outbox()))
    delivered, elapsed = outcome[0], spent.wall_s
    waited = in_requests[0]
    with transaction(node.engine) as conn:
        left = outbox.outbox_depth(conn)
    # Everything again: central must take none of it a second time.
    with transaction(node.engine) as conn:
        conn.execute(text("UPDATE outbox SET sent_at = NULL"))
    again = sync.deliver_outbox()
    return Outage(
        queued, expected_alerts, delivered, left, again, elapsed, waited, spent, baseline, requests
    )


def count_held(sessions: sessionmaker[Session], node_id: str) -> Held:
    with sessions() as session:
        by_status = dict(
            session.execute(
                select(NodeEventRecord.status, func.count())
                .where(NodeEventRecord.node_id == node_id)
                .group_by(NodeEventRecord.status)
            ).all()
        )
        picked = session.scalar(
            select(func.count())
            .select_from(Reservation)
            .where(Reservation.bank_id == BANK, Reservation.status == "picked_up")
        )
        alerts = session.scalar(
            select(func.count()).select_from(Alert).where(Alert.bank_id == BANK)
        )
        notices = session.execute(
            select(Notice.kind, Notice.channel, func.count())
            .where(Notice.bank_id == BANK)
            .group_by(Notice.kind, Notice.channel)
        ).all()
        webhooks = session.execute(
            select(WebhookDelivery.event_type, func.count()).group_by(WebhookDelivery.event_type)
        ).all()
    return Held(
        by_status={str(status): int(n) for status, n in by_status.items()},
        picked=picked or 0,
        alerts=alerts or 0,
        notices={(str(kind), str(channel)): int(n) for kind, channel, n in notices},
        webhooks={str(kind): int(n) for kind, n in webhooks},
    )


def describe_notices(channels: tuple[str, ...], notices: dict[tuple[str, str], int]) -> str:
    rows = sum(notices.values())
    if not channels:
        return (
            "notices not subscribed (--no-recipients): no recipient on the reservations; "
            f"the drain wrote {rows:,} notice rows"
        )
    how = " and phone" if "sms" in channels else ""
    order = {"ready": 0, "collected": 1}  # as a parcel's life goes
    rows_in_order = sorted(notices.items(), key=lambda i: (i[0][1], order.get(i[0][0], 2), i[0]))
    parts = ", ".join(f"{n:,} {kind} by {channel}" for (kind, channel), n in rows_in_order)
    return (
        f"notices subscribed: a recipient email{how} on every reservation; the drain wrote "
        f"{rows:,} notice rows ({parts or 'none'})"
    )


def drain(events: int, channels: tuple[str, ...]) -> None:
    parcel_count = max(1, events // EVENTS_PER_PARCEL)
    half = -(-parcel_count // 2)
    spec = f"S:{half},M:{half}"
    labels: dict[str, list[str]] = {"S": [], "M": []}
    for label, size_class in compartment_labels(parse_compartment_spec(spec)):
        labels[str(size_class)].append(label)
    sizes = ["S" if n % 2 == 0 else "M" for n in range(parcel_count)]
    work = Path(tempfile.mkdtemp(prefix="locker-sync-bench-"))
    try:
        with throwaway_database("locker_bench_drain") as url:
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            now = datetime.now(UTC)
            api_key, token = create_network(sessions, spec, now)
            plan = Plan(sizes, labels, events, channels, now - timedelta(hours=12))
            central = Central(url, free_port(), work / "central")
            try:
                central.start()
                drained = run_drain(central, api_key, token, plan, work)
            finally:
                central.stop()
            held = count_held(sessions, drained.node_id)
            engine.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(drained, held, parcel_count, channels)


def report(drained: Drained, held: Held, parcel_count: int, channels: tuple[str, ...]) -> None:
    per_deposit = reseal_rate(drained.keys, drained.sealing_key, 2000)
    outage = drained.outage
    queued, by_status = outage.queued, held.by_status
    stored = sum(by_status.values())
    batches = -(-queued // drained.batch_size)
    print(
        f"events queued while central was down: {queued} "
        f"({parcel_count} deposits, {parcel_count} pickups, {queued - 2 * parcel_count} alerts)"
    )
    print(
        f"delivered: {outage.delivered}, left in outbox: {outage.left}, "
        f"held by central: {stored} {by_status}"
    )
    print(
        f"parcels picked up at central: {held.picked}, open alerts: {held.alerts} "
        f"(one per door and kind of trouble: {outage.expected_alerts})"
    )
    print(describe_notices(channels, held.notices))
    print(describe_webhooks(held.webhooks))
    print(
        f"drain time: {outage.elapsed_s:.2f} s "
        f"({outage.delivered / outage.elapsed_s:,.0f} events/s)"
    )
    print(
        f"batch size: {drained.batch_size}, requests: {batches}, "
        f"waiting for central's answers: {outage.waited_s:.2f} s of it"
    )
    print(compare_with_baseline(outage))
    print(f"all sent again: {outage.again} answered, none applied twice")
    print(f"re-sealing a deposit's code and QR for central: {per_deposit:.0f} us per event")
    if (
        stored != queued
        or outage.left
        or by_status.get("applied") != queued
        or held.picked != parcel_count
        or held.alerts != outage.expected_alerts
    ):
        raise SystemExit("FAILED: central does not hold every event exactly once, applied")
    # A ready notice per deposit and a collected one per pickup, on each channel, written once.
    expected = 2 * parcel_count * len(channels)
    if sum(held.notices.values()) != expected:
        raise SystemExit(f"FAILED: the drain should have written {expected} notice rows")
    # One webhook delivery per deposit and per pickup (one endpoint), written once.
    for kind in ("parcel.deposited", "parcel.picked_up"):
        if held.webhooks.get(kind) != parcel_count:
            raise SystemExit(f"FAILED: the drain should have written {parcel_count} {kind}")


def describe_webhooks(webhooks: dict[str, int]) -> str:
    parts = ", ".join(f"{n:,} {kind}" for kind, n in sorted(webhooks.items()))
    return f"webhook deliveries (one endpoint): {parts or 'none'}"


def compare_with_baseline(outage: Outage) -> str:
    """The drain's requests against as many empty ones, in wall time and central's CPU."""
    base, drain, requests = outage.baseline, outage.drain, outage.requests
    per_empty = base.wall_s / requests
    per_batch = drain.wall_s / requests
    return (
        f"baseline: {requests} empty batches in {base.wall_s:.2f} s "
        f"({per_empty * 1000:.0f} ms a request; central CPU {base.central_cpu_s:.2f} s, "
        f"PostgreSQL {base.database_cpu_s:.2f} s); drain: {drain.wall_s:.2f} s, "
        f"{per_batch * 1000:.0f} ms per request of up to {outage.queued // requests} events, "
        f"{per_batch / per_empty:.0f}x the empty request (central CPU {drain.central_cpu_s:.2f} s, "
        f"{drain.central_cpu_s / outage.delivered * 1e6:.0f} us an event; "
        f"PostgreSQL {drain.database_cpu_s:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--drain-only", action="store_true")
    only.add_argument("--fleet-only", action="store_true")
    recipients = parser.add_mutually_exclusive_group()
    recipients.add_argument(
        "--no-recipients",
        action="store_true",
        help="drain: reservations without a recipient, so no notices (the shape before notices)",
    )
    recipients.add_argument(
        "--phone", action="store_true", help="drain: recipients have a phone too (SMS notices)"
    )
    parser.add_argument(
        "--steps",
        default="1000,2000,3000,4000,5000,7500,10000",
        help="fleet sizes to try, comma-separated",
    )
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per step")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    args = parser.parse_args()
    if not args.fleet_only:
        print("== outbox drain ==")
        channels = () if args.no_recipients else ("email", "sms") if args.phone else ("email",)
        drain(args.events, channels)
    if not args.drain_only:
        from bench.sync_fleet import run_fleet

        print("== fleet ==")
        run_fleet(
            [int(step) for step in args.steps.split(",")],
            window_s=args.window,
            generators=args.generators,
        )


if __name__ == "__main__":
    main()
