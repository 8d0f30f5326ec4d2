"""Allocation throughput: reservations per second against a real server on PostgreSQL.

Starts `locker-central serve` on a fresh PostgreSQL database, drives it with concurrent keep-alive
clients for a fixed time, and prints reservations/s, p50/p99 latency, double-bookings (must be 0),
and the same server's throughput on a no-op endpoint (`/healthz`) in the same run, with the ratio.
With `--runs N` (default 5) it does that N times, each run on a database and server of its own,
and then prints the median and spread (min-max) of the ratio, reservations/s and p99, with the
double bookings and server errors of all runs.

Each request names one of 100 banks at random. The requests are written before the clock
starts, as the no-op's is, so that the load generator takes as little as it can of the cores the
server runs on: 8,000 per second of reservations (more are written on the clock should they run
out). The banks hold a unit for each of them, so what is measured is reservations made, not 409s
for full banks (their count is printed).

Besides the rates, each phase prints the CPU it cost per request, read from /proc: the server's
processes, this database's PostgreSQL backends, and the load generator. This machine is shared
and its speed varies between runs; CPU per request moves much less than the rates do.

    python bench/allocation.py [--clients 32] [--seconds 10] [--workers 2] [--runs 5]

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create a
throw-away database on.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


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


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime


def _process_tree(root: int) -> list[int]:
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _backends_of(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (their titles name it); none when /proc does
    not show them (another host, another user)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres:") and f" {database} ".encode() in title:
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU spent by the server's processes, the database's backends and this process."""

    def __init__(self, server_pid: int, database: str) -> None:
        self._server_pid = server_pid
        self._database = database

    def read(self) -> tuple[dict[int, float], dict[int, float], float]:
        server = {pid: _cpu_seconds(pid) for pid in _process_tree(self._server_pid)}
        database = {pid: _cpu_seconds(pid) for pid in _backends_of(self._database)}
        return server, database, time.process_time()

    def measure(self, phase: Callable[[], tuple[list[float], list[int]]]) -> Phase:
        """Run `phase` (a measured drive) and note what each side spent on it."""
        before = self.read()
        latencies, statuses = phase()
        after = self.read()
        spent = [
            sum(cpu - b.get(pid, 0.0) for pid, cpu in a.items())
            for a, b in ((after[0], before[0]), (after[1], before[1]))
        ]
        return Phase(latencies, statuses, spent[0], spent[1], after[2] - before[2])


@dataclass(frozen=True, slots=True)
class Phase:
    latencies: list[float]
    statuses: list[int]
    server_cpu_s: float
    database_cpu_s: float
    generator_cpu_s: float

    def per_request_ms(self, requests: int) -> str:
        n = max(requests, 1) / 1e3
        server, database = self.server_cpu_s / n, self.database_cpu_s / n
        return (
            f"server {server:.3f} ms, PostgreSQL {database:.3f} ms, "
            f"generator {self.generator_cpu_s / n:.3f} ms"
        )


@dataclass(frozen=True, slots=True)
class Run:
    """One run's figures."""

    noop_rate: float
    noop_p50_ms: float
    noop_p99_ms: float
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    over: int
    mismatched: int
    created: int
    full: int
    in_database: int

    @property
    def ratio(self) -> float:
        return self.rate / self.noop_rate


def run_once(args: argparse.Namespace) -> Run:
    """A database and a server of their own, warmed up, then the no-op and the reservations."""
    with throwaway_database("locker_bench") as url:
        prepared = int((WARM_UP_S + args.seconds) * RATE_PREPARED)
        key = prepare(url, units_per_bank=-(-prepared // BANKS))
        port = free_port()
        server = start_central(url, port, Path("/tmp/locker-bench"), workers=args.workers)
        meter = CpuMeter(server.pid, str(make_url(url).database))
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
            noop_phase = meter.measure(
                lambda: asyncio.run(drive(port, args.clients, args.seconds, lambda: noop))
            )
            res_phase = meter.measure(
                lambda: asyncio.run(drive(port, args.clients, args.seconds, next_reservation))
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

    res_status = res_phase.statuses
    run = Run(
        noop_rate=len(noop_phase.statuses) / args.seconds,
        noop_p50_ms=percentile(noop_phase.latencies, 0.5) * 1e3,
        noop_p99_ms=percentile(noop_phase.latencies, 0.99) * 1e3,
        rate=sum(1 for s in res_status if s == 201) / args.seconds,  # in the measured window
        p50_ms=percentile(res_phase.latencies, 0.5) * 1e3,
        p99_ms=percentile(res_phase.latencies, 0.99) * 1e3,
        errors=sum(1 for s in res_status if s >= 500),
        over=sum(max(0, active.get(bank, 0) - total) for bank, total, _ in capacity),
        mismatched=sum(1 for bank, total, free in capacity if free != total - active.get(bank, 0)),
        created=sum(1 for s in res_status if s == 201),
        full=sum(1 for s in res_status if s == 409),
        in_database=sum(active.values()),
    )
    print_run(run, noop_phase, res_phase)
    return run


def print_run(run: Run, noop: Phase, reservations: Phase) -> None:
    print(f"no-op /healthz:      {run.noop_rate:8.0f} req/s  p50 {run.noop_p50_ms:6.1f} ms"
          f"  p99 {run.noop_p99_ms:6.1f} ms")  # fmt: skip
    print(f"reservations:        {run.rate:8.0f} /s     p50 {run.p50_ms:6.1f} ms"
          f"  p99 {run.p99_ms:6.1f} ms")  # fmt: skip
    print(f"ratio reservations/no-op: {run.ratio:.2f}")
    print(f"CPU per no-op:       {noop.per_request_ms(len(noop.statuses))}")
    print(f"CPU per reservation: {reservations.per_request_ms(len(reservations.statuses))}")
    print(f"server errors (5xx): {run.errors}")
    drift = f"{run.mismatched} banks with free != total-active"
    print(f"double-bookings: {run.over} (units over capacity), {drift}")
    print(
        f"reservations in database: {run.in_database} (201s in the measured window: "
        f"{run.created}, 409s: {run.full})",
        flush=True,
    )


def spread(values: Iterable[float], form: str) -> str:
    """`median (min-max)` of the values, each written with `form`."""
    ordered = sorted(values)
    low, middle, high = (
        format(v, form) for v in (ordered[0], statistics.median(ordered), ordered[-1])
    )
    return f"median {middle} ({low}-{high})"


def print_summary(runs: list[Run]) -> None:
    print(f"\n{len(runs)} runs")
    print(f"ratio reservations/no-op: {spread((r.ratio for r in runs), '.2f')}")
    print(f"reservations/s:           {spread((r.rate for r in runs), ',.0f')}")
    print(f"reservations p99 ms:      {spread((r.p99_ms for r in runs), '.1f')}")
    print(f"reservations p50 ms:      {spread((r.p50_ms for r in runs), '.1f')}")
    print(f"no-op req/s:              {spread((r.noop_rate for r in runs), ',.0f')}")
    print(f"double bookings: {sum(r.over for r in runs)} (units over capacity), "
          f"{sum(r.mismatched for r in runs)} banks with free != total-active")  # fmt: skip
    print(f"server errors (5xx): {sum(r.errors for r in runs)}; 409s: {sum(r.full for r in runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="runs, each with its own server")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(f"clients={args.clients} seconds={args.seconds} server workers={args.workers}")
    runs = []
    for number in range(1, args.runs + 1):
        print(f"\nrun {number} of {args.runs}", flush=True)
        runs.append(run_once(args))
    print_summary(runs)


if __name__ == "__main__":
    main()
