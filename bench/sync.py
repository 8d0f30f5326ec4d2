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
picked up and one open alert per door and kind of trouble.

Fleet (`--fleet-only`, see `bench/sync_fleet.py`): N simulated nodes heartbeating, pulling their
feed and now and then sending a door event against one `locker-central serve --workers 2` on
PostgreSQL, stepping N up; prints per step the offered and achieved requests/s, p50/p99 latency
and errors, and the largest N whose p99 stays under 200 ms.

    python bench/sync.py                       # both
    python bench/sync.py --drain-only [--events 10000]
    python bench/sync.py --fleet-only [--steps 1000,2000,3000,5000] [--window 20]

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create
throw-away databases on; they are dropped at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, func, select, text

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
from central.models import Alert, NodeEventRecord, Reservation
from central.nodes.enrollment import issue_enrollment_token
from locker_node.app import build_node
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


def reserve_all(central_url: str, api_key: str, sizes: list[str]) -> list[str]:
    """One reservation per size given, through the carrier API, a few at a time."""

    def one(client: httpx.Client, n: int, size: str) -> str:
        response = client.post(
            "/v1/reservations",
            json={"tracking_number": f"BP{n:010d}", "bank_id": BANK, "size": size},
        )
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


def drain(events: int) -> None:
    parcel_count = max(1, events // EVENTS_PER_PARCEL)
    half = -(-parcel_count // 2)
    spec = f"S:{half},M:{half}"
    work = Path(tempfile.mkdtemp(prefix="locker-sync-bench-"))
    with throwaway_database("locker_bench_drain") as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        now = datetime.now(UTC)
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
        labels: dict[str, list[str]] = {"S": [], "M": []}
        for label, size_class in compartment_labels(parse_compartment_spec(spec)):
            labels[str(size_class)].append(label)
        sizes = ["S" if n % 2 == 0 else "M" for n in range(parcel_count)]

        port = free_port()
        central_url = f"http://127.0.0.1:{port}"
        server: subprocess.Popen[bytes] | None = start_central(url, port, work / "central")
        try:
            hook = httpx.post(
                f"{central_url}/v1/webhooks",
                json={"url": "https://carrier.example/hooks", "secret": "whsec-" + "b" * 32},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            check(hook.status_code == 201, hook.text)
            started = time.perf_counter()
            reservation_ids = reserve_all(central_url, api_key, sizes)
            print(
                f"setup: {parcel_count} reservations through the carrier API in "
                f"{time.perf_counter() - started:.1f} s"
            )
            config_path = work / "node" / "node.toml"
            done = provision(
                central_url=central_url, bank_id=BANK, token=token, config_path=config_path
            )
            config = load_config(config_path)
            node = build_node(config, migrate_in_process=True)
            sync = node.sync
            check(sync is not None, "the node has no sync")
            try:
                # The node learns the reservations while central is up, then central goes down.
                check(sync.run_once() and server is not None, "first sync pass failed")
                stop(server)
                server = None
                taken = {"S": 0, "M": 0}
                parcels = []
                for rid, size in zip(reservation_ids, sizes, strict=True):
                    parcels.append((rid, labels[size][taken[size]]))
                    taken[size] += 1
                queued, expected_alerts = queue_outage(
                    node.engine, node.keys, parcels, events, now - timedelta(hours=12)
                )
                # Central down: the node keeps everything and says so.
                check(not sync.run_once(), "central still answered")
                server = start_central(url, port, work / "central")
                in_requests = time_requests(sync)
                started = time.perf_counter()
                delivered = sync.deliver_outbox()
                elapsed = time.perf_counter() - started
                waited = in_requests[0]
                with transaction(node.engine) as conn:
                    left = outbox.outbox_depth(conn)
                # Everything again: central must take none of it a second time.
                with transaction(node.engine) as conn:
                    conn.execute(text("UPDATE outbox SET sent_at = NULL"))
                again = sync.deliver_outbox()
            finally:
                sync.stop()
                node.engine.dispose()
                for board in node.boards.values():
                    board.close()
        finally:
            if server is not None:
                stop(server)
        with sessions() as session:
            by_status = dict(
                session.execute(
                    select(NodeEventRecord.status, func.count())
                    .where(NodeEventRecord.node_id == done.node_id)
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
        engine.dispose()
    per_deposit = reseal_rate(node.keys, done.enrollment.central_sealing_public_key, 2000)
    stored = sum(by_status.values())
    batches = -(-queued // config.sync.batch_size)
    print(
        f"events queued while central was down: {queued} "
        f"({parcel_count} deposits, {parcel_count} pickups, {queued - 2 * parcel_count} alerts)"
    )
    print(f"delivered: {delivered}, left in outbox: {left}, held by central: {stored} {by_status}")
    print(
        f"parcels picked up at central: {picked}, open alerts: {alerts} "
        f"(one per door and kind of trouble: {expected_alerts})"
    )
    print(f"drain time: {elapsed:.2f} s ({delivered / elapsed:,.0f} events/s)")
    print(
        f"batch size: {config.sync.batch_size}, requests: {batches}, "
        f"waiting for central's answers: {waited:.2f} s of it"
    )
    print(f"all sent again: {again} answered, none applied twice")
    print(f"re-sealing a deposit's code and QR for central: {per_deposit:.0f} us per event")
    if (
        stored != queued
        or left
        or by_status.get("applied") != queued
        or picked != parcel_count
        or alerts != expected_alerts
    ):
        raise SystemExit("FAILED: central does not hold every event exactly once, applied")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--drain-only", action="store_true")
    only.add_argument("--fleet-only", action="store_true")
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
        drain(args.events)
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
