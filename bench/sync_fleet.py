"""Fleet benchmark: N simulated nodes syncing against one central on PostgreSQL, N stepped up.

Central is a real `locker-central serve --workers 2` on a throw-away PostgreSQL database, with
its production settings (scheduler on, default pool). The banks, their compartments, one
reservation each and the nodes with their Ed25519 keys are bulk-inserted straight into the
database (enrolling 10,000 nodes one by one would only time enrollment), and so are the
courier code hashes the scheduled job would have made by then; every request after that is a
real signed HTTP request (`bench.fleet_load`).

The nodes follow the node's defaults (`bench.fleet_load`): each node, once per 30 s period and
spread evenly over it, sends a heartbeat carrying the tag of the feed answer it holds, and pulls
its feed at once when the answer says a pull would bring news; one node in ten sends an event
batch with one door event and one in twenty makes its regular pull, with its courier codes
(every 600 s; conditional: a 304 when nothing changed).
Meanwhile reservations change at the model's rate (`changes_per_bank_day`, 300: about 100
parcels a bank a day, each reserved, deposited and picked up), so some banks' nodes are told
of news and pull a full answer. Every node pulls its feed once before the first step, as a
running node has.

Each N runs twice in the same run: a heartbeat-only fleet (the baseline), then the full model.
A step runs `warmup + window` seconds (shorter than the period, so no node syncs twice) and
counts the requests made inside the window: offered and achieved requests/s, p50/p99 latency
(from sending the request to the full answer), errors, the share of feed pulls answered 304,
and the CPU of central's processes, of its PostgreSQL backends (from /proc) and of the load
generator, apart, per request and in cores: what the server alone needs, and whether 10,000
nodes fit 2 cores, whatever else runs on the machine.

Last, what a restart costs in courier code hashes: some banks' nodes pull their codes with none
stored (each hashed with scrypt and stored, as after the upgrade), then central is restarted
and they pull them again (read from the table, hashed by no one).

    python bench/sync.py --fleet-only [--steps 2500,5000,7500,10000] [--window 20]
    python bench/sync_fleet.py [--steps ...] [--changes-per-bank-day 300] [--restart-banks 200]
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, insert, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu_meter import PostgresBackends, descendants, process_cpu_s
from bench.fleet_load import (
    COMPARTMENTS,
    PERIOD_S,
    LoadGenerator,
    Sample,
    Step,
    node_id,
    node_key,
)
from bench.support import SECRET_KEY, free_port, start_central, stop, throwaway_database
from central.allocation.sizing import DEFAULT_CLASS_DIMENSIONS
from central.banks.service import compartment_labels
from central.carriers.service import add_carrier
from central.db import make_engine, make_sessionmaker
from central.keys import ServiceKeys
from central.models import (
    Bank,
    BankCapacity,
    Compartment,
    Node,
    Reservation,
    StoredCourierCode,
)
from central.nodes import courier_codes
from locker_wire.signing import public_key_text

WARMUP_S = 5.0
P99_TARGET_MS = 200.0
CARRIER = "fleetpost"
DEFAULT_STEPS = [2500, 5000, 7500, 10000]
CHANGES_PER_BANK_DAY = 300.0
RESTART_BANKS = 200
# The generator is the limit when a process of it uses this share of a core; starting requests
# this late says the machine is saturated.
LAG_LIMIT_MS = 50.0
CPU_LIMIT = 0.85


def bank_id(n: int) -> str:
    return f"FLEET-{n:06d}"


def reservation_id(n: int) -> str:
    return f"rsv_fleet{n:06d}"


def _bank_rows(n: int, now: datetime) -> dict[str, list[dict[str, Any]]]:
    bid = bank_id(n)
    rows: dict[str, list[dict[str, Any]]] = {"capacity": [], "compartments": []}
    rows["banks"] = [
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
    ]
    for size, dims in DEFAULT_CLASS_DIMENSIONS.items():
        total = COMPARTMENTS.get(size, 0)
        held = 1 if size.value == "S" else 0  # the bank's one reservation
        rows["capacity"].append(
            {"bank_id": bid, "size": size.value, "length_mm": dims.length_mm,
             "width_mm": dims.width_mm, "height_mm": dims.height_mm, "total": total,
             "available": total - held}
        )  # fmt: skip
    for label, size in compartment_labels(COMPARTMENTS):
        dims = DEFAULT_CLASS_DIMENSIONS[size]
        rows["compartments"].append(
            {"bank_id": bid, "label": label, "size": size.value, "length_mm": dims.length_mm,
             "width_mm": dims.width_mm, "height_mm": dims.height_mm, "state": "free"}
        )  # fmt: skip
    rows["nodes"] = [
        {"id": node_id(n), "bank_id": bid, "public_key": public_key_text(node_key(n)),
         "version": "fleet-bench", "enrolled_at": now, "last_seen_at": now, "online": True}
    ]  # fmt: skip
    rows["reservations"] = [
        {"id": reservation_id(n), "carrier_id": CARRIER, "tracking_number": f"FLEET{n:08d}",
         "bank_id": bid, "size": "S", "status": "reserved",
         "reserved_until": now + timedelta(days=3), "created_at": now, "updated_at": now}
    ]  # fmt: skip
    return rows


def _code_rows(n: int, key_id: str, now: datetime) -> list[dict[str, Any]]:
    """Stand-ins for the hashes the scheduled job would have stored by now: the bench's nodes
    check no codes, and hashing them for real would take minutes before the first step."""
    return [
        {"bank_id": bank_id(n), "carrier_id": CARRIER, "valid_from": start, "valid_until": end,
         "key_id": key_id, "code_hash": secrets.token_hex(32), "salt": secrets.token_hex(16),
         "n": courier_codes.SCRYPT_N, "r": courier_codes.SCRYPT_R, "p": courier_codes.SCRYPT_P,
         "created_at": now}
        for start, end in courier_codes.code_days("America/New_York", now)
    ]  # fmt: skip


def create_fleet(url: str, count: int) -> None:
    """Banks with compartments, capacity, a reservation and courier code hashes, and one
    enrolled node each, inserted in bulk."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    key_id = courier_codes.key_id(ServiceKeys(SECRET_KEY.encode()))
    with make_sessionmaker(engine).begin() as session:
        add_carrier(session, CARRIER, "Fleet Post", now - timedelta(minutes=10))
    tables = {
        "banks": Bank,
        "capacity": BankCapacity,
        "compartments": Compartment,
        "nodes": Node,
        "reservations": Reservation,
    }
    for start in range(0, count, 2000):
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
        codes: list[dict[str, Any]] = []
        for n in range(start, min(count, start + 2000)):
            for name, made in _bank_rows(n, now - timedelta(minutes=10)).items():
                rows[name] += made
            codes += _code_rows(n, key_id, now)
        with engine.begin() as conn:
            for name, model in tables.items():
                conn.execute(insert(cast(Table, model.__table__)), rows[name])
            conn.execute(insert(cast(Table, StoredCourierCode.__table__)), codes)
    engine.dispose()


class Changer:
    """Changes reservations at `per_s` a second, one statement a second, on random banks among
    the first `nodes` (what carriers and other nodes would do, without their requests)."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = make_engine(url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.changed = 0

    def start(self, nodes: int, per_s: float) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(nodes, per_s), daemon=True)
        self._thread.start()

    def _run(self, nodes: int, per_s: float) -> None:
        table = cast(Table, Reservation.__table__)
        touch = (
            update(table)
            .where(table.c.id.in_(bindparam("ids", expanding=True)))
            .values(updated_at=bindparam("at"))
        )
        owed = 0.0
        while not self._stop.wait(1.0):
            owed += per_s
            picks = {reservation_id(random.randrange(nodes)) for _ in range(int(owed))}
            owed -= int(owed)
            if picks:
                with self._engine.begin() as conn:
                    conn.execute(touch, {"ids": sorted(picks), "at": datetime.now(UTC)})
                self.changed += len(picks)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self._engine.dispose()


def keep_all_alive(url: str) -> None:
    """Every node seen now: the nodes beyond a step's N are not part of it, and must not be
    taken offline by the scheduler (with an alert each) in the middle of it."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(update(cast(Table, Node.__table__)).values(last_seen_at=datetime.now(UTC)))
    engine.dispose()


# Steps --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepResult:
    nodes: int
    heartbeat_only: bool
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    lag_p99_ms: float
    feed_304_share: float  # of the feed pulls in the window
    central_cpu_s: float  # the step's CPU seconds, by whom
    postgres_cpu_s: float
    generator_cpu_s: float
    generator_busiest: float  # share of one core of the busiest generator process
    answered: int  # requests answered in the whole step
    duration_s: float
    failures: str = ""  # what the failed requests got, counted

    def per_request_ms(self, cpu_s: float) -> float:
        return cpu_s / self.answered * 1000 if self.answered else float("nan")

    def cores(self, cpu_s: float) -> float:
        return cpu_s / self.duration_s

    @property
    def generator_limited(self) -> bool:
        return self.generator_busiest > CPU_LIMIT

    @property
    def sustained(self) -> bool:
        return self.errors == 0 and self.p99_ms < P99_TARGET_MS and not self.generator_limited


@dataclass
class Fleet:
    """The server and what the steps need around it."""

    url: str
    port: int
    server: subprocess.Popen[bytes]
    load: LoadGenerator
    backends: PostgresBackends
    changer: Changer
    changes_per_bank_day: float

    @property
    def server_pid(self) -> int:
        return self.server.pid


def run_step(fleet: Fleet, nodes: int, window_s: float, *, heartbeat_only: bool) -> StepResult:
    duration = WARMUP_S + window_s
    keep_all_alive(fleet.url)
    central = descendants(fleet.server_pid)
    fleet.backends.start()
    before = (process_cpu_s(central), time.process_time())
    step = Step(nodes, time.time() + 1.0, duration, WARMUP_S, heartbeat_only)
    if not heartbeat_only:
        fleet.changer.start(nodes, nodes * fleet.changes_per_bank_day / 86_400)
    try:
        outcomes = fleet.load.run(step)
    finally:
        fleet.changer.stop()
        postgres_cpu = fleet.backends.stop()
    samples = [s for outcome in outcomes for s in outcome.samples]
    return _result(
        step,
        samples,
        central_cpu=process_cpu_s(descendants(fleet.server_pid)) - before[0],
        postgres_cpu=postgres_cpu,
        # The changer's statements run in this process: load generation too.
        generator_cpu=sum(o.cpu_s for o in outcomes) + time.process_time() - before[1],
        busiest=max(o.cpu_s for o in outcomes) / duration,
    )


def _result(
    step: Step,
    samples: list[Sample],
    *,
    central_cpu: float,
    postgres_cpu: float,
    generator_cpu: float,
    busiest: float,
) -> StepResult:
    window = [s for s in samples if s.in_window]
    latencies = sorted(s.latency_s * 1000 for s in window)
    lags = sorted(s.lag_s * 1000 for s in window)
    feeds = [s for s in window if s.kind in ("feed", "feed304")]
    window_s = step.duration_s - step.warmup_s
    return StepResult(
        nodes=step.nodes,
        heartbeat_only=step.heartbeat_only,
        # Every request the nodes made in the window: the schedule's, and the pulls their
        # heartbeats' answers asked for.
        offered_rps=len(window) / window_s,
        achieved_rps=sum(1 for s in window if s.ok) / window_s,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        errors=sum(1 for s in window if not s.ok),
        failures=", ".join(
            f"{kind} x{count}"
            for kind, count in Counter(f"{s.kind} {s.failure}" for s in window if not s.ok).items()
        ),
        lag_p99_ms=_percentile(lags, 99),
        feed_304_share=sum(1 for s in feeds if s.kind == "feed304") / len(feeds) if feeds else 0,
        central_cpu_s=central_cpu,
        postgres_cpu_s=postgres_cpu,
        generator_cpu_s=generator_cpu,
        generator_busiest=busiest,
        answered=sum(1 for s in samples if s.ok),
        duration_s=step.duration_s,
    )


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


HEADER = (
    f"{'nodes':>6} {'fleet':<10} {'offered/s':>9} {'achieved/s':>10} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'errors':>6} {'lag p99':>8} {'304s':>5} | {'CPU ms/request':^26} | "
    f"{'cores':^22}\n{'':>80}| {'central':>8} {'postgres':>8} {'gen':>6} | "
    f"{'central+pg':>10} {'gen':>5}"
)


def describe(result: StepResult) -> str:
    note = ""
    if result.generator_limited:
        note = "  <- generator-limited"
    elif result.lag_p99_ms > LAG_LIMIT_MS:
        note = "  <- requests started late: the machine is saturated"
    if result.failures:
        note += f"  (failed: {result.failures})"
    server = result.central_cpu_s + result.postgres_cpu_s
    share = "" if result.heartbeat_only else f"{result.feed_304_share:.0%}"
    return (
        f"{result.nodes:>6} {'heartbeat' if result.heartbeat_only else 'full':<10} "
        f"{result.offered_rps:>9.0f} {result.achieved_rps:>10.0f} {result.p50_ms:>7.1f} "
        f"{result.p99_ms:>7.1f} {result.errors:>6} {result.lag_p99_ms:>6.1f}ms {share:>5} | "
        f"{result.per_request_ms(result.central_cpu_s):>8.2f} "
        f"{result.per_request_ms(result.postgres_cpu_s):>8.2f} "
        f"{result.per_request_ms(result.generator_cpu_s):>6.2f} | "
        f"{result.cores(server):>10.2f} {result.cores(result.generator_cpu_s):>5.2f}{note}"
    )


def compare(baseline: StepResult, full: StepResult) -> str:
    def server(r: StepResult) -> float:
        return r.central_cpu_s + r.postgres_cpu_s

    def per_node_period(r: StepResult) -> float:
        """Server CPU ms per node and 30 s period."""
        return 1000 * r.cores(server(r)) * PERIOD_S / r.nodes

    return (
        f"{'':>6} full/heartbeat: x{full.answered / max(1, baseline.answered):.2f} requests, "
        f"x{server(full) / max(1e-9, server(baseline)):.2f} server CPU; per node and period "
        f"{per_node_period(baseline):.2f} ms of server CPU heartbeat-only, "
        f"{per_node_period(full):.2f} ms in full"
    )


# Courier codes after a restart --------------------------------------------------------------------


def restart_cost(fleet: Fleet, url: str, work: Path, banks: int) -> tuple[float, float]:
    """Central CPU seconds for `banks` nodes pulling their courier codes with none stored (each
    hashed and stored), then again after a restart of central (read back); and the server."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM courier_code_hashes WHERE bank_id = ANY(:banks)"),
            {"banks": [bank_id(n) for n in range(banks)]},
        )
    engine.dispose()
    first = _code_pulls(fleet, banks)
    stop(fleet.server)
    fleet.server = start_central(url, fleet.port, work / "central", workers=2, scheduler=True)
    # A few ordinary pulls first: a restarted worker's first requests cost it more, codes or no
    # codes, and that is not what is measured here.
    warm = Step(min(banks, 50), time.time(), 0, 0, False, concurrency=8, prime=True)
    fleet.load.run(warm)
    return first, _code_pulls(fleet, banks)


def _code_pulls(fleet: Fleet, banks: int) -> float:
    central = descendants(fleet.server_pid)
    before = process_cpu_s(central)
    step = Step(banks, time.time(), 0, 0, False, concurrency=8, prime=True, codes=True)
    samples = [s for outcome in fleet.load.run(step) for s in outcome.samples]
    if not all(s.ok for s in samples):
        raise SystemExit("benchmark stopped: a courier code pull failed")
    return process_cpu_s(central) - before


# The run ------------------------------------------------------------------------------------------


def run_fleet(
    steps: list[int],
    *,
    window_s: float,
    generators: int,
    changes_per_bank_day: float = CHANGES_PER_BANK_DAY,
    restart_banks: int = RESTART_BANKS,
) -> list[StepResult]:
    work = Path(tempfile.mkdtemp(prefix="locker-fleet-bench-"))
    results: list[StepResult] = []
    total = max(steps)
    with throwaway_database("locker_bench_fleet") as url:
        started = time.perf_counter()
        create_fleet(url, total)
        print(f"setup: {total} banks and nodes in {time.perf_counter() - started:.1f} s")
        port = free_port()
        server = start_central(url, port, work / "central", workers=2, scheduler=True)
        fleet = Fleet(
            url, port, server, LoadGenerator(port, total, generators), PostgresBackends(url),
            Changer(url), changes_per_bank_day,
        )  # fmt: skip
        try:
            _prime(fleet, total)
            print(HEADER)
            for nodes in steps:
                baseline = run_step(fleet, nodes, window_s, heartbeat_only=True)
                print(describe(baseline), flush=True)
                full = run_step(fleet, nodes, window_s, heartbeat_only=False)
                print(describe(full), flush=True)
                print(compare(baseline, full), flush=True)
                results.append(full)
                if full.p99_ms > 5 * P99_TARGET_MS or full.errors > 0.05 * full.offered_rps:
                    break  # far past the limit: the bigger steps would only take longer
            if restart_banks:
                banks = min(restart_banks, total)
                print_restart_cost(*restart_cost(fleet, url, work, banks), banks)
        finally:
            fleet.load.close()
            fleet.changer.close()
            fleet.backends.close()
            stop(fleet.server)
    summarise(results)
    return results


def _prime(fleet: Fleet, total: int) -> None:
    """Every node pulls its feed once (a running node has a cursor and its answer's tag)."""
    started = time.perf_counter()
    step = Step(total, time.time(), 0, 0, False, concurrency=32, prime=True)
    samples = [s for outcome in fleet.load.run(step) for s in outcome.samples]
    failed = sum(1 for s in samples if not s.ok)
    if failed:
        raise SystemExit(f"benchmark stopped: {failed} of the first feed pulls failed")
    print(f"first feed pull of every node in {time.perf_counter() - started:.1f} s")


def print_restart_cost(cold_s: float, warm_s: float, banks: int) -> None:
    """What a restart costs in courier code hashes, here and for a city fleet."""
    hashes = banks * courier_codes.DAYS_SENT
    per_hash = cold_s / hashes * 1000
    print(
        f"courier codes, {banks} banks, 1 carrier: the first pull hashed and stored "
        f"{hashes} codes in {cold_s:.1f} s of central CPU ({per_hash:.0f} ms each); after a "
        f"restart of central the same pulls took {warm_s:.2f} s ({warm_s / banks * 1000:.1f} "
        "ms a pull), hashing none"
    )
    codes = 10_000 * 4 * courier_codes.DAYS_SENT
    print(
        f"at 10,000 banks and 4 carriers: a restart cost each web worker {codes:,} hashes "
        f"({codes * per_hash / 1000:,.0f} CPU-seconds) when the hashes lived in its memory; "
        f"now it costs {10_000 * warm_s / banks:,.0f} CPU-seconds for all the code pulls "
        "together, and the job makes each new day's hashes once, spread over the day "
        f"({codes // 2 * per_hash / 1000 / 86_400:.3f} cores)"
    )


def summarise(results: list[StepResult]) -> None:
    passed = [r.nodes for r in results if r.sustained]
    best = max(passed) if passed else 0
    print(
        f"largest fleet with p99 < {P99_TARGET_MS:.0f} ms at a {PERIOD_S:.0f} s period: "
        f"{best} nodes" + ("" if passed else " (none of the steps)")
    )
    for result in results:
        server = result.cores(result.central_cpu_s + result.postgres_cpu_s)
        per_node = server / result.nodes
        print(
            f"  {result.nodes} nodes: central and PostgreSQL used {server:.2f} cores, the load "
            f"generator {result.cores(result.generator_cpu_s):.2f}; at that rate 2 cores carry "
            f"{2 / per_node:,.0f} nodes with nothing else on them"
        )
    if any(r.generator_limited for r in results):
        print(
            "note: the load generator was the limit in the steps marked (a process of it used "
            f"over {CPU_LIMIT:.0%} of a core, on cores it shares with the server and "
            "PostgreSQL); those figures say nothing about the server alone"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", default=",".join(str(n) for n in DEFAULT_STEPS))
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per step")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument("--changes-per-bank-day", type=float, default=CHANGES_PER_BANK_DAY)
    parser.add_argument(
        "--restart-banks", type=int, default=RESTART_BANKS, help="0: skip the restart cost"
    )
    args = parser.parse_args()
    run_fleet(
        [int(step) for step in args.steps.split(",")],
        window_s=args.window,
        generators=args.generators,
        changes_per_bank_day=args.changes_per_bank_day,
        restart_banks=args.restart_banks,
    )


if __name__ == "__main__":
    main()
