"""Allocation throughput: reservations per second against a real server on PostgreSQL.

Starts `locker-central serve` on a fresh PostgreSQL database, drives it with concurrent keep-alive
clients for a fixed time, and prints reservations/s, p50/p99 latency, double-bookings (must be 0),
and the same server's throughput on a no-op endpoint (`/healthz`) in the same run, with the ratio.

Each request names one of 100 banks at random. The requests are written before the clock
starts, as the no-op's is, so that the load generator takes as little as it can of the cores the
server runs on: 8,000 per second of reservations (more are written on the clock should they run
out). The banks hold a unit for each of them, so what is measured is reservations made, not 409s
for full banks (their count is printed).

    python bench/allocation.py [--clients 32] [--seconds 10] [--workers 2]

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create a
throw-away database on.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import free_port, start_central, stop, throwaway_database
from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.carriers.service import add_carrier, create_api_key
from central.db import make_engine, make_sessionmaker

BANKS = 100
WARM_UP_S = 2.0
# Reservation requests written before the clock starts, per second of reservations; the banks
# get a unit for each, so that capacity never runs out during a run (a 409 names alternatives,
# which is another, costlier, path than the one measured here).
RATE_PREPARED = 8_000


def prepare(url: str, units_per_bank: int) -> str:
    now = datetime.now(UTC)
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        add_carrier(session, "acme", "ACME Parcel", now)
        key = create_api_key(session, "acme", now).key
        for n in range(BANKS):
            add_bank(
                session,
                NewBank(
                    bank_id=f"B{n:04d}",
                    name=f"Bank {n}",
                    address=f"{n} Main St",
                    lat=40.7 + n * 0.001,
                    lon=-74.0,
                    compartments=parse_compartment_spec(f"M:{units_per_bank}"),
                ),
                now,
            )
    engine.dispose()
    return key


async def drive(
    port: int, clients: int, seconds: float, make_request: object
) -> tuple[list[float], list[int]]:
    """`clients` keep-alive connections sending requests back to back for `seconds`."""
    latencies: list[float] = []
    statuses: list[int] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                request = make_request()  # type: ignore[operator]
                started = time.perf_counter()
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                statuses.append(int(status_line.split()[1]))
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, statuses


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with throwaway_database("locker_bench") as url:
        prepared = int((WARM_UP_S + args.seconds) * RATE_PREPARED)
        key = prepare(url, units_per_bank=-(-prepared // BANKS))
        port = free_port()
        server = start_central(url, port, Path("/tmp/locker-bench"), workers=args.workers)
        try:
            noop = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            counter = itertools.count()

            def reservation() -> bytes:
                body = json.dumps(
                    {
                        "tracking_number": f"BENCH-{next(counter):08d}",
                        "bank_id": f"B{random.randrange(BANKS):04d}",
                        "size": "M",
                    }
                ).encode()
                return (
                    f"POST /v1/reservations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body

            # The load generator shares the server's cores, so it writes its requests before
            # the clock starts, as the no-op's one request is: enough for both reservation
            # phases at well over the rates seen here, then more written as they are needed.
            written = [reservation() for _ in range(prepared)]
            reservations = itertools.chain(written, iter(reservation, None))

            def next_reservation() -> bytes:
                return next(reservations)

            # Warm-ups, not measured: the first reservations open every pooled connection, fill
            # the bank snapshots and compile the statements; steady state is what the figures
            # describe.
            asyncio.run(drive(port, args.clients, 1.0, lambda: noop))
            asyncio.run(drive(port, args.clients, WARM_UP_S, next_reservation))
            noop_lat, noop_status = asyncio.run(
                drive(port, args.clients, args.seconds, lambda: noop)
            )
            res_lat, res_status = asyncio.run(
                drive(port, args.clients, args.seconds, next_reservation)
            )
        finally:
            stop(server)

        engine = create_engine(url)
        with engine.connect() as conn:
            active: dict[str, int] = {
                bank: int(count)
                for bank, count in conn.execute(
                    text(
                        "SELECT bank_id, count(*) FROM reservations "
                        "WHERE status IN ('reserved', 'deposited') GROUP BY bank_id"
                    )
                )
            }
            capacity = conn.execute(
                text("SELECT bank_id, total, available FROM bank_capacity WHERE size = 'M'")
            ).all()
        engine.dispose()

    over = sum(max(0, active.get(bank, 0) - total) for bank, total, _ in capacity)
    mismatched = sum(1 for bank, total, free in capacity if free != total - active.get(bank, 0))
    created = sum(1 for s in res_status if s == 201)  # in the measured window
    full = sum(1 for s in res_status if s == 409)
    errors = sum(1 for s in res_status if s >= 500)
    res_rate = created / args.seconds
    noop_rate = len(noop_status) / args.seconds
    print(f"clients={args.clients} seconds={args.seconds} server workers={args.workers}")
    print(f"no-op /healthz:      {noop_rate:8.0f} req/s  p50 {percentile(noop_lat, .5)*1e3:6.1f} ms"
          f"  p99 {percentile(noop_lat, .99)*1e3:6.1f} ms")  # fmt: skip
    print(f"reservations:        {res_rate:8.0f} /s     p50 {percentile(res_lat, .5)*1e3:6.1f} ms"
          f"  p99 {percentile(res_lat, .99)*1e3:6.1f} ms")  # fmt: skip
    print(f"ratio reservations/no-op: {res_rate / noop_rate:.2f}")
    print(f"server errors (5xx): {errors}")
    drift = f"{mismatched} banks with free != total-active"
    print(f"double-bookings: {over} (units over capacity), {drift}")
    print(
        f"reservations in database: {sum(active.values())} (201s in the measured window: {created},"
        f" 409s: {full})"
    )


if __name__ == "__main__":
    main()
