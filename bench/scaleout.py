"""Central on several hosts: reservations per second through HAProxy (TLS ended there) with 1, 2
and 3 hosts beside one host reached directly, and webhook deliveries per second with 1 and 3.

The hosts, the proxy and the network are tests/scaleout's harness (a network namespace per host
where this machine allows it); each host is `locker-central serve --workers 1`. Reservations use
bench/allocation.py's load generator (keep-alive clients sending requests written before the
clock starts, 100 banks), pointed at the proxy over TLS or at one host in plain HTTP; the
proxy's rotation is changed between steps through its runtime API. Webhooks: one endpoint per
receiver, each receiver in its own process (one answering at once, one after a delay); the
deliveries are made beforehand and held, then let go with 1 host running its scheduler, then 3;
the rate is the batch over the span from its first attempt to its last delivery.

    python bench/scaleout.py [--clients 32] [--seconds 5] [--webhooks 600] [--delay-ms 20]

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create a
throw-away database on.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import platform
import random
import shutil
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.allocation import BANKS, drive, percentile, prepare
from bench.support import SECRET_KEY, check, free_port, throwaway_database
from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.db import make_engine, make_sessionmaker
from tests.scaleout.harness import Cluster, app_name, install_audit, serve_receiver

WARM_UP_S = 1.0
RATE_PREPARED = 3_000  # requests written per second of each step; more are written if needed
# Units per second of each step in the banks: this machine has made up to 3,000 a second through
# a step, and a full bank's 409s would measure another path (they are counted, should it happen).
RATE_UNITS = 4_500
HOOKS_BANK = "HOOKS"
STEPS = 4  # direct, then the proxy with 1, 2 and 3 hosts
NOTE = (
    "All hosts share this machine's cores, so more hosts cannot add CPU here: these figures show\n"
    "the proxy's cost and that the hosts share the work, not scaling. On separate machines the\n"
    "web tier's throughput grows with hosts until PostgreSQL limits it: the row lock on a bank's\n"
    "capacity (a hot bank takes its reservations one at a time) or its write rate."
)


@contextmanager
def connections_to(address: str, tls: ssl.SSLContext | None) -> Iterator[None]:
    """allocation.drive opens plain connections to 127.0.0.1; within this block they go to
    `address`, over TLS when `tls` is given, so every figure comes from the same generator."""
    original = asyncio.open_connection

    def open_connection(_host: str, port: int, **options: Any) -> Any:
        return original(address, port, ssl=tls, **options)

    asyncio.open_connection = open_connection  # type: ignore[assignment]
    try:
        yield
    finally:
        asyncio.open_connection = original


def request_source(key: str, prepared: int, counter: Iterator[int]) -> Callable[[], bytes]:
    """Reservation requests, each with a tracking number of its own (`counter`, shared by
    every step: a number sent again would be answered 200 with the first reservation)."""

    def reservation() -> bytes:
        body = json.dumps(
            {
                "tracking_number": f"SCALE-{next(counter):08d}",
                "bank_id": f"B{random.randrange(BANKS):04d}",
                "size": "M",
            }
        ).encode()
        return (
            f"POST /v1/reservations HTTP/1.1\r\nHost: central\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    # Written before the clock starts, as allocation.py does: the generator shares the cores.
    written = iter([reservation() for _ in range(prepared)])
    requests = itertools.chain(written, iter(reservation, None))
    return lambda: next(requests)


def measure(
    target: tuple[str, int], tls: ssl.SSLContext | None, args: argparse.Namespace, key: str
) -> str:
    address, port = target
    source = request_source(key, int((WARM_UP_S + args.seconds) * RATE_PREPARED), args.counter)
    with connections_to(address, tls):
        asyncio.run(drive(port, args.clients, WARM_UP_S, source))
        latencies, statuses = asyncio.run(drive(port, args.clients, args.seconds, source))
    made = sum(1 for status in statuses if status == 201)
    full = sum(1 for status in statuses if status == 409)
    errors = sum(1 for status in statuses if status >= 500)
    return (
        f"{made / args.seconds:7.0f}/s  p50 {percentile(latencies, 0.5) * 1e3:5.1f} ms  "
        f"p99 {percentile(latencies, 0.99) * 1e3:6.1f} ms  5xx {errors}  409 {full}"
    )


def reservations(cluster: Cluster, key: str, args: argparse.Namespace) -> None:
    print(
        f"\nreservations ({args.clients} keep-alive clients, {args.seconds:.0f} s per step after "
        f"{WARM_UP_S:.0f} s of warm-up, {BANKS} banks, 1 web worker per host):"
    )
    first = cluster.hosts[0]
    direct = measure((first.address, first.port), None, args, key)
    print(f"  {first.name} directly, plain HTTP:  {direct}")
    for count in range(1, len(cluster.hosts) + 1):
        names = [host.name for host in cluster.hosts[:count]]
        cluster.proxy.set_rotation(names)
        before = cluster.proxy.answered()
        figures = measure(("127.0.0.1", cluster.proxy.port), cluster.tls.context(), args, key)
        after = cluster.proxy.answered()
        shares = "/".join(str(after[name] - before[name]) for name in names)
        print(
            f"  proxy (TLS) -> {count} host{'s' if count > 1 else ' '}:  {figures}  "
            f"(answered per host, warm-up included: {shares})"
        )
    cluster.proxy.set_rotation([host.name for host in cluster.hosts])


def consistency(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as conn:
        over, drift = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE c.total < a.n), count(*) FILTER "
                "(WHERE c.available <> c.total - a.n) FROM bank_capacity AS c JOIN (SELECT "
                "bank_id, size, count(*) AS n FROM reservations WHERE status IN ('reserved', "
                "'deposited') GROUP BY bank_id, size) AS a USING (bank_id, size)"
            )
        ).one()
    engine.dispose()
    return f"banks over capacity {over}, banks with free != total - active {drift}"


async def post_all(client: httpx.AsyncClient, key: str, bodies: list[dict[str, str]]) -> None:
    gate = asyncio.Semaphore(32)

    async def post(body: dict[str, str]) -> None:
        async with gate:
            answer = await client.post(
                "/v1/reservations", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            check(answer.status_code == 201, f"a reservation was refused: {answer.text}")

    await asyncio.gather(*(post(body) for body in bodies))


def add_hooks_bank(url: str, units: int) -> None:
    """A bank of its own for the reservations whose webhooks are measured."""
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        bank = NewBank(
            HOOKS_BANK, "Hooks", "1 Hook St", 40.6, -74.0, parse_compartment_spec(f"M:{units}")
        )
        add_bank(session, bank, datetime.now(UTC))
    engine.dispose()


def enqueue_webhooks(cluster: Cluster, key: str, receivers: list[str], count: int) -> list[str]:
    """Endpoints for the receivers, and `count` reservations whose deliveries are held (not due
    for a day) until a step lets them go; made while no host runs a scheduler."""
    auth = {"Authorization": f"Bearer {key}"}
    with cluster.client() as client:
        endpoints = []
        for url in receivers:
            body = {"url": url, "events": ["reservation.created"]}
            answer = client.post("/v1/webhooks", json=body, headers=auth)
            check(answer.status_code == 201, f"no webhook endpoint: {answer.text}")
            endpoints.append(str(answer.json()["id"]))
    bodies = [
        {"tracking_number": f"HOOK-{n:06d}", "bank_id": HOOKS_BANK, "size": "M"}
        for n in range(count)
    ]

    async def make() -> None:
        async with cluster.async_client(32) as client:
            await post_all(client, key, bodies)

    asyncio.run(make())
    with cluster.engine.begin() as conn:
        conn.execute(
            text("UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 day'")
        )
    return endpoints


def deliver(cluster: Cluster, endpoint: str, batch: int) -> str:
    """Let `batch` held deliveries of `endpoint` go; their rate once every one is delivered."""
    with cluster.engine.begin() as conn:
        ids = (
            conn.execute(
                text(
                    "SELECT id FROM webhook_deliveries "
                    "WHERE endpoint_id = :e AND status = 'pending' ORDER BY id LIMIT :n"
                ),
                {"e": endpoint, "n": batch},
            )
            .scalars()
            .all()
        )
        conn.execute(
            text("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = ANY(:ids)"),
            {"ids": list(ids)},
        )
    query = (
        "SELECT count(*) FILTER (WHERE d.status = 'pending'), extract(epoch FROM "
        "max(d.delivered_at) - min(a.attempted_at)) FROM webhook_deliveries AS d LEFT JOIN "
        "webhook_attempts AS a ON a.delivery_id = d.id WHERE d.id = ANY(:ids)"
    )
    deadline = time.monotonic() + 300
    while True:
        with cluster.engine.connect() as conn:
            pending, span = conn.execute(text(query), {"ids": list(ids)}).one()
        if pending == 0:
            break
        check(time.monotonic() < deadline, "webhooks still pending after 5 minutes")
        time.sleep(0.2)
    with cluster.engine.connect() as conn:
        senders = Counter(
            conn.execute(
                text(
                    "SELECT app FROM scaleout_audit WHERE what = 'webhook_attempt' "
                    "AND (row_data->>'delivery_id')::bigint = ANY(:ids)"
                ),
                {"ids": list(ids)},
            ).scalars()
        )
    shares = "/".join(
        str(senders[app_name(host)]) for host in cluster.hosts if senders[app_name(host)]
    )
    return f"{len(ids) / float(span):6.0f}/s (per host {shares})"


def webhooks(cluster: Cluster, key: str, args: argparse.Namespace) -> None:
    delays = [0.0, args.delay_ms / 1000]
    ports = [free_port() for _ in delays]
    context = multiprocessing.get_context("spawn")
    address = cluster.network.gateway
    receivers = [
        context.Process(target=serve_receiver, args=(address, port, delay), daemon=True)
        for port, delay in zip(ports, delays, strict=True)
    ]
    for receiver in receivers:
        receiver.start()
    try:
        urls = [f"http://{address}:{port}/hooks" for port in ports]
        endpoints = enqueue_webhooks(cluster, key, urls, 2 * args.webhooks)
        print(
            f"\nwebhook deliveries (one endpoint per receiver, {args.webhooks} per step, each "
            "receiver in its own process; the hosts' rounds start every 2 s):"
        )
        results: dict[int, list[str]] = {}
        for previous, count in ((0, 1), (1, len(cluster.hosts))):
            for host in cluster.hosts[previous:count]:
                cluster.restart(host, scheduler=True)  # the others serve on, with no jobs
            results[count] = [deliver(cluster, endpoint, args.webhooks) for endpoint in endpoints]
        for index, delay in enumerate(delays):
            what = "at once" if delay == 0 else f"after {args.delay_ms:.0f} ms"
            figures = "   ".join(
                f"{count} host{'s' if count > 1 else ''} {results[count][index]}"
                for count in results
            )
            print(f"  receiver answering {what:>12}:  {figures}")
        print(
            "  (a host whose round found a full batch of 200 goes on at once: a receiver that\n"
            "  answers at once is drained by the first host to look, before the others' next\n"
            "  round; a slow one keeps each host busy, and the others claim the rest)"
        )
    finally:
        for receiver in receivers:
            receiver.terminate()
            receiver.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--webhooks", type=int, default=600, help="deliveries per step")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="the slow receiver's delay")
    args = parser.parse_args()
    args.counter = itertools.count()  # tracking numbers, unique over the whole run

    print(
        f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(NOTE)
    with throwaway_database("locker_bench_scaleout") as url:
        install_audit(url)
        units = int(STEPS * (WARM_UP_S + args.seconds) * RATE_UNITS)
        key = prepare(url, units_per_bank=-(-units // BANKS))
        add_hooks_bank(url, 2 * args.webhooks)
        directory = Path("/tmp/locker-bench/scaleout")
        shutil.rmtree(directory, ignore_errors=True)  # the last run's logs and sockets
        with Cluster(directory, url, SECRET_KEY) as cluster:
            print(f"network: {cluster.network.kind} ({cluster.network.why})")
            cluster.start_all(scheduler=False)
            reservations(cluster, key, args)
            webhooks(cluster, key, args)
        print(f"\nafterwards: {consistency(url)}")


if __name__ == "__main__":
    main()
