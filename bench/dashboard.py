"""Dashboard overview: server time of `GET /ops/api/overview` (and the `/ops` page) for 2,000 banks.

Creates a throw-away PostgreSQL database with 2,000 banks (45 compartments each, reservations in
every state, nodes with heartbeats, open and resolved alerts, a day of occupancy samples every five
minutes), starts a real central server (`locker-central serve`), signs in through
`POST /ops/api/session` as a viewer made with the accounts code, and times the requests one after
the other over a keep-alive connection on localhost (so the time is the server's plus a loopback
transfer). Also times the overview function directly, without HTTP, in one transaction per call.

    python bench/dashboard.py [--banks 2000] [--requests 20] [--workers 1]

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create a
throw-away database on; it is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import SECRET_KEY, free_port, start_central, stop, throwaway_database
from central.carriers.service import add_carrier
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker
from central.ops.accounts import Passwords, add_operator
from central.ops.insight import service

EMAIL = "bench@ops.test"
PASSWORD = "bench password for the dashboard"  # noqa: S105 - a throw-away database's operator
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "Europe/London", "Europe/Berlin")  # fmt: skip
# 45 compartments per bank: C001-C020 S, C021-C035 M, C036-C043 L, C044-C045 XL.
CLASSES = (("S", 1, 20), ("M", 21, 35), ("L", 36, 43), ("XL", 44, 45))


def reservation_template() -> list[tuple[str, str, str, str | None]]:
    """(suffix, size, status, compartment) of each bank's reservations: 65 in every state."""
    rows: list[tuple[str, str, str, str | None]] = []
    for size, first, last in CLASSES:
        span = last - first + 1
        in_locker = span * 2 // 5  # 40 % of each class holds a parcel
        for i in range(in_locker):
            status = "expired" if i == in_locker - 1 else "deposited"
            rows.append((f"{size}o{i}", size, status, f"C{first + i:03d}"))
        for i in range(max(1, span // 5)):
            rows.append((f"{size}r{i}", size, "reserved", None))
    for i in range(20):
        rows.append((f"p{i}", "M", "picked_up", "C030"))
    for i in range(3):
        rows.append((f"c{i}", "S", "cancelled", None))
        rows.append((f"x{i}", "S", "expired", None))
        rows.append((f"t{i}", "L", "returned", "C043"))
    return rows


def populate(engine: Engine, banks: int) -> None:
    now = datetime.now(UTC)
    with make_sessionmaker(engine).begin() as session:
        add_carrier(session, "acme", "ACME Parcel", now)
    template = reservation_template()
    values = ", ".join(
        "('{}', '{}', '{}', {})".format(k, size, status, f"'{label}'" if label else "NULL")
        for k, size, status, label in template
    )
    zones = ", ".join(f"'{z}'" for z in ZONES)
    size_case = " ".join(f"WHEN i <= {last} THEN '{size}'" for size, _, last in CLASSES)
    # Built from this file's constants only (S608 is about untrusted input).
    statements = [
        f"""INSERT INTO banks (id, name, address, lat, lon, timezone, status, hold_hours,
            pickup_hours, reminder_hours, max_extension_hours, max_weight_g, allow_upsize,
            created_at)
        SELECT 'B' || lpad(n::text, 4, '0'), 'Bank ' || n, n || ' Main St, City ' || (n % 97),
            30 + (n % 200) * 0.1, -120 + (n / 200) * 5.0, (ARRAY[{zones}])[1 + n % {len(ZONES)}],
            'active', 72, 72, 24, 72, 25000, false, now() - interval '30 days'
        FROM generate_series(0, {banks - 1}) AS n""",  # noqa: S608
        f"""INSERT INTO compartments (bank_id, label, size, length_mm, width_mm, height_mm, state)
        SELECT b.id, 'C' || lpad(i::text, 3, '0'), CASE {size_case} END, 640, 380, 190, 'free'
        FROM banks b CROSS JOIN generate_series(1, 45) AS i""",  # noqa: S608
        f"""INSERT INTO reservations (id, carrier_id, tracking_number, bank_id, size, status,
            compartment_label, reserved_until, pickup_deadline, deposited_at, closed_at,
            created_at, updated_at)
        SELECT b.id || '-' || t.k, 'acme', 'TN' || b.id || t.k, b.id, t.size, t.status, t.label,
            now() + interval '2 days',
            CASE WHEN t.label IS NOT NULL THEN now() + interval '1 day' END,
            CASE WHEN t.label IS NOT NULL THEN now() - interval '20 hours' END,
            CASE WHEN t.status IN ('picked_up', 'cancelled', 'returned')
                 OR (t.status = 'expired' AND t.label IS NULL) THEN now() - interval '2 hours' END,
            now() - interval '1 day', now() - interval '1 hour'
        FROM banks b CROSS JOIN (VALUES {values}) AS t(k, size, status, label)""",  # noqa: S608
        """UPDATE compartments c SET state = 'occupied' FROM reservations r
        WHERE r.bank_id = c.bank_id AND r.compartment_label = c.label
          AND r.status IN ('deposited', 'expired')""",
        """UPDATE compartments SET state = 'out_of_service'
        WHERE label = 'C045' AND right(bank_id, 1) = '7'""",
        """INSERT INTO bank_capacity (bank_id, size, length_mm, width_mm, height_mm, total,
            available)
        SELECT c.bank_id, c.size, 640, 380, 190, count(*), count(*) - coalesce(max(h.n), 0)
        FROM compartments c LEFT JOIN (
            SELECT bank_id, size, count(*) AS n FROM reservations
            WHERE status = 'reserved' OR (status IN ('deposited', 'expired')
                                          AND compartment_label IS NOT NULL)
            GROUP BY bank_id, size) h ON h.bank_id = c.bank_id AND h.size = c.size
        GROUP BY c.bank_id, c.size""",
        """INSERT INTO nodes (id, bank_id, public_key, version, enrolled_at, last_seen_at,
            online, health)
        SELECT 'node_' || b.id, b.id, 'bench', '1.0.0', now() - interval '30 days',
            now() - interval '10 seconds', right(b.id, 2) <> '13',
            json_build_object('doors', json_build_object('C001', 'closed', 'C002', 'open'),
                              'boards', json_build_object('main', 'ok'), 'outbox_depth', 0)
        FROM banks b""",
        """INSERT INTO alerts (bank_id, type, detail, created_at, resolved_at)
        SELECT b.id, t.type, json_build_object('compartment', 'C002'), now() - interval '1 hour',
            CASE WHEN t.resolved THEN now() END
        FROM banks b CROSS JOIN (VALUES ('door_left_open', false), ('door_fault', true))
            AS t(type, resolved)
        WHERE right(b.id, 1) IN ('1', '4', '8')""",
        """INSERT INTO occupancy_samples (bank_id, taken_at, size, total, free, reserved,
            occupied, out_of_service)
        SELECT c.bank_id, ts, c.size, c.total, c.available,
            c.total / 5, (c.total * 2) / 5, 0
        FROM bank_capacity c CROSS JOIN generate_series(
            date_trunc('minute', now()) - interval '1 day', date_trunc('minute', now()),
            interval '5 minutes') AS ts""",
        "ANALYZE",
    ]
    with engine.connect() as conn:
        for statement in statements:
            if statement == "ANALYZE":
                conn.commit()
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(statement))
            else:
                conn.execute(text(statement))
        conn.commit()
        counts = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            for table in ("banks", "compartments", "reservations", "alerts", "occupancy_samples")
        }
    print("data:", ", ".join(f"{n:,} {table}" for table, n in counts.items()))


def make_operator(engine: Engine, settings: CentralSettings) -> None:
    with make_sessionmaker(engine).begin() as session:
        passwords = Passwords.from_settings(settings)
        add_operator(session, passwords, EMAIL, "viewer", PASSWORD, datetime.now(UTC))


def summary(label: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    print(
        f"{label}: p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
        f" over {len(ms)} runs"
    )


def time_calls(call: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def time_directly(engine: Engine, runs: int) -> None:
    sessions = make_sessionmaker(engine)
    size = 0

    def overview() -> None:
        nonlocal size
        with sessions() as session, session.begin():
            body = service.overview(session, datetime.now(UTC))
        size = len(json.dumps(body))

    summary("overview function (no HTTP, with JSON encoding)", time_calls(overview, runs))
    print(f"  response body: {size / 1e6:.2f} MB")


def time_over_http(port: int, runs: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        login = client.post("/ops/api/session", json={"email": EMAIL, "password": PASSWORD})
        if login.status_code != 200:
            raise SystemExit(f"sign-in failed: {login.status_code} {login.text}")

        def get(path: str) -> Callable[[], object]:
            def call() -> None:
                response = client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code} {response.text[:200]}")

            return call

        summary("GET /ops/api/overview", time_calls(get("/ops/api/overview"), runs))
        filtered = "/ops/api/overview?q=City%2042&sort=occupancy&order=desc"
        summary("GET /ops/api/overview?q=...&sort=occupancy", time_calls(get(filtered), runs))
        page = client.get("/ops")
        if page.status_code == 200 and "text/html" in page.headers.get("content-type", ""):
            summary("GET /ops (page shell)", time_calls(get("/ops"), runs))
        else:
            print(f"GET /ops: skipped (answered {page.status_code}, not the overview page)")
        summary("GET /ops/api/banks/B0042", time_calls(get("/ops/api/banks/B0042"), runs))
        # The charts page's network-wide series, over every bank's samples of the last day.
        for chart in ("occupancy?hours=24", "throughput?hours=48", "dwell?days=30", "faults"):
            path = f"/ops/api/charts/{chart}"
            summary(f"GET {path} (network)", time_calls(get(path), max(3, runs // 4)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banks", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with throwaway_database("locker_bench") as url:
        engine = make_engine(url)
        server = None
        try:
            started = time.perf_counter()
            populate(engine, args.banks)
            print(f"  populated in {time.perf_counter() - started:.1f} s")
            with tempfile.TemporaryDirectory(prefix="locker-bench-") as data_dir:
                settings = CentralSettings(
                    database_url=url,
                    secret_key=SECRET_KEY,
                    data_dir=data_dir,
                )
                make_operator(engine, settings)
                time_directly(engine, args.requests)
                port = free_port()
                server = start_central(url, port, Path(data_dir), workers=args.workers)
                time_over_http(port, args.requests)
        finally:
            if server is not None:
                stop(server)
            engine.dispose()


if __name__ == "__main__":
    main()
