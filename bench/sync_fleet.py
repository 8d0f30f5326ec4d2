"""Fleet benchmark: N simulated nodes syncing against one central on PostgreSQL, N stepped up.

Central is a real `locker-central serve --workers 2` on a throw-away PostgreSQL database, with
its production settings (scheduler on, default pool). The banks, their compartments and the
nodes with their Ed25519 keys are bulk-inserted straight into the database (enrolling 10,000
nodes one by one would only time enrollment); every request after that is a real signed HTTP
request. Each node syncs once per 30 s heartbeat period, its start spread evenly over the
period: a heartbeat, then (one node in ten) a batch with one door event, then a feed pull
without courier codes; one after the other, as a node's sync pass does them. The feed's courier
code hashes (scrypt, about 30 ms of CPU each) are left out: central hashes each code once per
process and day and serves the same hash afterwards, so their cost is a burst after a restart
and a trickle after that, printed separately.

A step runs `warmup + window` seconds (shorter than the period, so no node syncs twice) and
counts the requests whose sync was due inside the window: offered and achieved requests/s,
p50/p99 latency (from sending the request to the full answer), errors. The generator runs in
several processes of asyncio + httpx with a connection pool; it reports how late it started
requests and how much CPU it used, and says so when it, not the server, was the limit.

    python bench/sync.py --fleet-only [--steps 1000,2000,5000,10000] [--window 20]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, insert

from bench.support import free_port, start_central, stop, throwaway_database
from central.allocation.sizing import DEFAULT_CLASS_DIMENSIONS
from central.banks.service import compartment_labels
from central.carriers.service import add_carrier
from central.db import make_engine, make_sessionmaker
from central.models import Bank, BankCapacity, Compartment, Node, SizeClass
from central.nodes.feed import SCRYPT_N, SCRYPT_P, SCRYPT_R
from locker_wire.signing import public_key_text, sign_request

PERIOD_S = 30.0
WARMUP_S = 5.0
EVENT_EVERY = 10  # one node in ten sends an event batch in its pass
P99_TARGET_MS = 200.0
COMPARTMENTS = {SizeClass.S: 4, SizeClass.M: 4, SizeClass.L: 2}
LABELS = [label for label, _ in compartment_labels(COMPARTMENTS)]
FEED_PATH = "/v1/node/feed?limit=200&courier_codes=false"
# The generator is the limit when a process of it uses this share of a core; starting requests
# this late says the machine is saturated.
LAG_LIMIT_MS = 50.0
CPU_LIMIT = 0.85


def node_key(n: int) -> Ed25519PrivateKey:
    """Node n's key, derived from n: every generator process can make it without being sent it."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"fleet-node-{n}".encode()).digest())


def node_id(n: int) -> str:
    return f"node_fleet{n:06d}"


def bank_id(n: int) -> str:
    return f"FLEET-{n:06d}"


def create_fleet(url: str, count: int) -> None:
    """Banks with compartments and capacity, and one enrolled node each, inserted in bulk."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    banks: list[dict[str, Any]] = []
    capacity: list[dict[str, Any]] = []
    compartments: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for n in range(count):
        bid = bank_id(n)
        banks.append(
            {
                "id": bid,
                "name": f"Fleet bank {n}",
                "address": f"{n} Fleet St",
                "lat": 40.0 + (n % 1000) / 1000,
                "lon": -74.0 + (n // 1000) / 100,
                "timezone": "America/New_York",
                "status": "active",
                "created_at": now,
            }
        )
        for size, dims in DEFAULT_CLASS_DIMENSIONS.items():
            total = COMPARTMENTS.get(size, 0)
            capacity.append(
                {
                    "bank_id": bid,
                    "size": size.value,
                    "length_mm": dims.length_mm,
                    "width_mm": dims.width_mm,
                    "height_mm": dims.height_mm,
                    "total": total,
                    "available": total,
                }
            )
        for label, size in compartment_labels(COMPARTMENTS):
            dims = DEFAULT_CLASS_DIMENSIONS[size]
            compartments.append(
                {
                    "bank_id": bid,
                    "label": label,
                    "size": size.value,
                    "length_mm": dims.length_mm,
                    "width_mm": dims.width_mm,
                    "height_mm": dims.height_mm,
                    "state": "free",
                }
            )
        nodes.append(
            {
                "id": node_id(n),
                "bank_id": bid,
                "public_key": public_key_text(node_key(n)),
                "version": "fleet-bench",
                "enrolled_at": now,
                "last_seen_at": now,
                "online": True,
            }
        )
    with engine.begin() as conn:
        for model, rows in (
            (Bank, banks),
            (BankCapacity, capacity),
            (Compartment, compartments),
            (Node, nodes),
        ):
            conn.execute(insert(cast(Table, model.__table__)), rows)
    with make_sessionmaker(engine).begin() as session:
        # The feed hashes today's and tomorrow's code for every carrier: one carrier here.
        add_carrier(session, "fleetpost", "Fleet Post", now)
    engine.dispose()


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str
    lag_s: float  # how late the generator started the request
    latency_s: float
    ok: bool
    in_window: bool


@dataclass(frozen=True, slots=True)
class Shard:
    port: int
    nodes: int  # the step's N
    first: int
    step: int  # this shard handles first, first + step, ...
    start_at: float  # time.time() of the step's start
    duration_s: float
    concurrency: int


def run_shard(shard: Shard) -> tuple[list[Sample], float]:
    """One generator process: its share of the nodes; the samples and the CPU seconds used."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    samples = asyncio.run(_drive(shard))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return samples, cpu


async def _drive(shard: Shard) -> list[Sample]:
    samples: list[Sample] = []
    limits = httpx.Limits(
        max_connections=shard.concurrency, max_keepalive_connections=shard.concurrency
    )
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{shard.port}", limits=limits, timeout=30
    ) as client:
        keys = {n: node_key(n) for n in range(shard.first, shard.nodes, shard.step)}
        tasks = []
        for n in range(shard.first, shard.nodes, shard.step):
            due = shard.start_at + n / shard.nodes * PERIOD_S
            if due - shard.start_at >= shard.duration_s:
                break
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            in_window = due - shard.start_at >= WARMUP_S
            tasks.append(
                asyncio.create_task(_sync_pass(client, n, keys[n], due, in_window, samples))
            )
        await asyncio.gather(*tasks)
    return samples


async def _sync_pass(
    client: httpx.AsyncClient,
    n: int,
    key: Ed25519PrivateKey,
    due: float,
    in_window: bool,
    samples: list[Sample],
) -> None:
    """A node's sync pass: heartbeat, maybe an event batch, then the feed."""
    beat = {
        "doors": dict.fromkeys(LABELS, "closed"),
        "boards": {"main": "ok"},
        "outbox_depth": 0,
        "version": "fleet-bench",
    }
    requests: list[tuple[str, str, str, bytes]] = [
        ("heartbeat", "POST", "/v1/node/heartbeat", json.dumps(beat).encode())
    ]
    if n % EVENT_EVERY == 0:
        event = {
            "id": str(uuid.uuid4()),
            "type": "door.left_open",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"compartment": LABELS[n % len(LABELS)], "detail": {"open_for_s": 75}},
        }
        requests.append(
            ("events", "POST", "/v1/node/events", json.dumps({"events": [event]}).encode())
        )
    requests.append(("feed", "GET", FEED_PATH, b""))
    started = time.time()
    lag = started - due
    for kind, method, path, body in requests:
        headers = sign_request(key, node_id(n), method, path, body, int(time.time()))
        headers["Content-Type"] = "application/json"
        began = time.perf_counter()
        try:
            response = await client.request(method, path, content=body, headers=headers)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        samples.append(Sample(kind, lag, time.perf_counter() - began, ok, in_window))
        lag = 0.0  # the pass's later requests go when the one before is answered


@dataclass(frozen=True, slots=True)
class StepResult:
    nodes: int
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    lag_p99_ms: float
    generator_cpu: float  # share of one core per generator process, the busiest one
    generator_limited: bool
    server_cpu_ms: float  # CPU of central's processes per request answered

    @property
    def sustained(self) -> bool:
        return self.errors == 0 and self.p99_ms < P99_TARGET_MS and not self.generator_limited


def _process_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def run_step(
    port: int, nodes: int, window_s: float, generators: int, server_pid: int
) -> StepResult:
    duration = WARMUP_S + window_s
    workers = [server_pid, *_children(server_pid)]
    cpu_before = _process_cpu_s(workers)
    start_at = time.time() + 2.0  # time for the processes to start and make their keys
    shards = [
        Shard(port, nodes, first, generators, start_at, duration, concurrency=64)
        for first in range(generators)
    ]
    with multiprocessing.get_context("fork").Pool(generators) as pool:
        outcomes = pool.map(run_shard, shards)
    server_cpu = _process_cpu_s(workers) - cpu_before
    samples = [s for shard_samples, _ in outcomes for s in shard_samples if s.in_window]
    answered = sum(len(shard_samples) for shard_samples, _ in outcomes)
    cpu = max(cpu for _, cpu in outcomes) / duration
    latencies = sorted(s.latency_s * 1000 for s in samples)
    lags = sorted(s.lag_s * 1000 for s in samples if s.kind == "heartbeat")
    syncs = sum(1 for s in samples if s.kind == "heartbeat")
    per_sync = len(samples) / syncs if syncs else 0.0
    # Offered: what the fleet's schedule asks for in the window, answered or not.
    offered = nodes / PERIOD_S * per_sync
    achieved = sum(1 for s in samples if s.ok) / window_s
    lag_p99 = _percentile(lags, 99)
    return StepResult(
        nodes=nodes,
        server_cpu_ms=server_cpu / answered * 1000 if answered else float("nan"),
        offered_rps=offered,
        achieved_rps=achieved,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        errors=sum(1 for s in samples if not s.ok),
        lag_p99_ms=lag_p99,
        generator_cpu=cpu,
        # Late starts alone can come from the machine being busy; a generator process using
        # most of a core cannot offer more.
        generator_limited=cpu > CPU_LIMIT,
    )


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def courier_code_cost() -> float:
    """Milliseconds of CPU to hash one courier code as the feed does."""
    started = time.perf_counter()
    for _ in range(3):
        hashlib.scrypt(b"12345678", salt=os.urandom(16), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return (time.perf_counter() - started) / 3 * 1000


def run_fleet(steps: list[int], *, window_s: float, generators: int) -> list[StepResult]:
    work = Path(tempfile.mkdtemp(prefix="locker-fleet-bench-"))
    results: list[StepResult] = []
    with throwaway_database("locker_bench_fleet") as url:
        started = time.perf_counter()
        create_fleet(url, max(steps))
        print(f"setup: {max(steps)} banks and nodes in {time.perf_counter() - started:.1f} s")
        port = free_port()
        server = start_central(url, port, work / "central", workers=2, scheduler=True)
        try:
            print(
                f"{'nodes':>7} {'offered/s':>10} {'achieved/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'errors':>7} {'gen lag p99':>12} {'gen cpu':>8} {'server cpu/req':>15}"
            )
            for nodes in steps:
                result = run_step(port, nodes, window_s, generators, server.pid)
                results.append(result)
                note = "  <- generator-limited" if result.generator_limited else ""
                if not note and result.lag_p99_ms > LAG_LIMIT_MS:
                    note = "  <- requests started late: the machine is saturated"
                print(
                    f"{result.nodes:>7} {result.offered_rps:>10.0f} {result.achieved_rps:>11.0f} "
                    f"{result.p50_ms:>8.1f} {result.p99_ms:>8.1f} {result.errors:>7} "
                    f"{result.lag_p99_ms:>10.1f}ms {result.generator_cpu:>7.0%} "
                    f"{result.server_cpu_ms:>12.1f} ms{note}",
                    flush=True,
                )
                if result.p99_ms > 5 * P99_TARGET_MS or result.errors > 0.05 * result.offered_rps:
                    break  # far past the limit: the bigger steps would only take longer
        finally:
            stop(server)
    passed = [r.nodes for r in results if r.sustained]
    best = max(passed) if passed else 0
    print(
        f"largest fleet with p99 < {P99_TARGET_MS:.0f} ms at a {PERIOD_S:.0f} s heartbeat: "
        f"{best} nodes" + ("" if passed else " (none of the steps)")
    )
    if any(r.generator_limited for r in results):
        print(
            "note: the load generator was the limit in the steps marked (a process of it used "
            f"over {CPU_LIMIT:.0%} of a core, on cores it shares with the server and "
            "PostgreSQL); those figures say nothing about the server alone"
        )
    cost = courier_code_cost()
    codes = 5000 * 4 * 2  # 5,000 banks, 4 carriers, today's and tomorrow's codes
    print(
        f"not in the load: courier code hashes, {cost:.0f} ms of CPU each, made once per web "
        f"worker and day: after a restart {codes} per worker for 5,000 banks and 4 carriers "
        f"({codes * cost / 1000:,.0f} CPU-seconds, spread over the nodes' 10-minute code pulls: "
        f"{codes * cost / 1000 / 600:.1f} CPU-seconds per second for those 10 minutes), then "
        f"one new code per carrier and bank a day ({codes / 2 * cost / 1000 / 86400:.3f} "
        "CPU-seconds per second)"
    )
    return results
