"""Recipient notices: emails per second from one central process, and a deposit's wait for its own.

Both parts run on a real central database (a SQLite file by default; `--database-url` names a
PostgreSQL server to make a throw-away database on, dropped at the end) and send to a real SMTP
receiver on 127.0.0.1, `bench/smtp_sink.py`, in a process of its own (so receiving shares no GIL
with sending). It stamps each message's arrival and notes its Message-ID and whom it is for: the
recipient's address carries the parcel's tracking number.

Throughput: M reservations with a recipient email, made through the carrier API of a real
`locker-central serve` (scheduler off), and M `parcel.deposited` events sent to it in signed node
batches fill the outbox with M "ready" notices. Then, in this process, central's own
`NoticeDispatcher` with the `SmtpMailer` that `build_channels` makes sends them, round after
round, until the outbox is empty: notices/s at the default concurrency, and again with one sender
thread on the same rows put back.

Latency: `locker-central serve` with its scheduler on and LOCKER_SMTP_URL pointing at the
receiver; deposits go to it in signed batches at a steady rate. Latency is a message's arrival at
the receiver minus the moment central acknowledged the batch that carried its deposit: p50, p99
and max. The scheduler's `deliver_notices` job runs every 2 s, so a notice first waits 0-2 s
(1 s on average) for its tick.

    python bench/notify.py                          # both, on SQLite
    python bench/notify.py --throughput-only [--notices 1000] [--concurrency 4] [--no-serial]
    python bench/notify.py --latency-only [--rate 20] [--seconds 20] [--batch 1]
    python bench/notify.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from unittest import mock

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from pydantic import SecretStr
from sqlalchemy import Engine, Table, delete, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.smtp_sink import Arrival, RunningSink, clock, running_sink
from bench.support import SECRET_KEY, check, free_port, start_central, stop, throwaway_database
from central.banks.service import NewBank, add_bank, compartment_labels, parse_compartment_spec
from central.carriers.service import add_carrier, create_api_key
from central.clock import utcnow
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.keys import ServiceKeys
from central.models import Notice
from central.nodes.enrollment import enroll, issue_enrollment_token
from central.notices.channels import build_channels
from central.notices.tasks import NoticeDispatcher
from central.scheduler import INTERVALS
from locker_wire.schemas import EnrollmentRequest
from locker_wire.sealing import load_sealing_public_key, seal, seal_context
from locker_wire.signing import public_key_text, sign_request

BANK = "NOTIFY-1"
CARRIER = "notifypost"
NOTIFY_FROM = "Bench notices <notices@bench.example>"
RECIPIENTS = "recipients.bench.example"
EVENTS_PATH = "/v1/node/events"
FILL_BATCH = 100  # deposit events per signed batch while filling the outbox
TICK_S = INTERVALS["deliver_notices"]
DEFAULT_CONCURRENCY: int = inspect.signature(NoticeDispatcher).parameters["concurrency"].default
NOTICES = cast(Table, Notice.__table__)


def tracking_number(part: str, n: int) -> str:
    return f"NB{part}{n:07d}"


def recipient_email(tracking: str) -> str:
    return f"{tracking.lower()}@{RECIPIENTS}"


# Central: its database, the network in it, the server ------------------------------------------


@contextmanager
def central_database(work: Path, server_url: str | None) -> Iterator[str]:
    """A SQLite file in `work`, or a throw-away database on the PostgreSQL server given."""
    if server_url is None:
        url = f"sqlite:///{work / 'central.db'}"
        upgrade_database(url)
        yield url
        return
    check(make_url(server_url).get_backend_name() == "postgresql", "--database-url: PostgreSQL")
    # bench.support makes its throw-away databases on the server this variable names.
    with (
        mock.patch.dict(os.environ, {"LOCKER_BENCH_DATABASE_URL": server_url}),
        throwaway_database("locker_bench_notify") as url,
    ):
        yield url


def describe_database(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                version = conn.execute(text("SELECT sqlite_version()")).scalar()
                return f"SQLite {version}, a file"
            version = conn.execute(text("SHOW server_version")).scalar()
            where = make_url(url)
            return f"PostgreSQL {version} on {where.host}:{where.port}, a throw-away database"
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class BenchNode:
    """The bank's node as central knows it: its id and key, and central's key to seal to."""

    node_id: str
    key: Ed25519PrivateKey
    sealing: X25519PublicKey

    def deposited(self, reservation_id: str, compartment: str) -> dict[str, Any]:
        """A `parcel.deposited` event as a node sends it, its code and QR payload sealed."""
        event_id = str(uuid.uuid4())
        code = f"{random.randrange(10**8):08d}"
        qr = uuid.uuid4().hex + uuid.uuid4().hex[:11]
        return {
            "id": event_id,
            "type": "parcel.deposited",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {
                "reservation_id": reservation_id,
                "compartment": compartment,
                "sealed_pickup_code": seal(
                    self.sealing, code.encode(), seal_context(event_id, "pickup_code")
                ),
                "sealed_qr_payload": seal(
                    self.sealing, qr.encode(), seal_context(event_id, "qr_payload")
                ),
            },
        }

    def post_events(self, client: httpx.Client, events: list[dict[str, Any]]) -> None:
        """One signed batch; every event in it must be applied."""
        body = json.dumps({"events": events}).encode()
        headers = sign_request(self.key, self.node_id, "POST", EVENTS_PATH, body, int(time.time()))
        headers["Content-Type"] = "application/json"
        response = client.post(EVENTS_PATH, content=body, headers=headers)
        check(response.status_code == 200, f"events: {response.status_code} {response.text}")
        statuses = {result["status"] for result in response.json()["results"]}
        check(statuses == {"applied"}, f"events not applied: {response.text[:500]}")


@dataclass(frozen=True, slots=True)
class Network:
    api_key: str
    labels: list[str]
    node: BenchNode


def create_network(url: str, compartments: int) -> Network:
    """One bank of S compartments, one carrier with an API key, and the bank's node enrolled
    (through central's own enrollment, with a key made here)."""
    layout = parse_compartment_spec(f"S:{compartments}")
    keys = ServiceKeys(SECRET_KEY.encode())
    node_key = Ed25519PrivateKey.generate()
    now = utcnow()
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        bank = NewBank(
            bank_id=BANK,
            name="Bench bank",
            address="1 Bench St",
            lat=40.75,
            lon=-73.99,
            compartments=layout,
        )
        add_bank(session, bank, now)
        add_carrier(session, CARRIER, "Notify Post", now)
        api_key = create_api_key(session, CARRIER, now).key
        request = EnrollmentRequest(
            token=issue_enrollment_token(session, BANK, now),
            public_key=public_key_text(node_key),
            bank_id=BANK,
            node_version="notify-bench",
        )
        enrolled = enroll(session, keys, request, now)
    engine.dispose()
    sealing = load_sealing_public_key(enrolled.central_sealing_public_key)
    labels = [label for label, _ in compartment_labels(layout)]
    return Network(api_key, labels, BenchNode(enrolled.node_id, node_key, sealing))


@contextmanager
def running_central(url: str, work: Path, *, smtp_port: int | None = None) -> Iterator[str]:
    """`locker-central serve`; given the receiver's port, with its scheduler on, sending to it."""
    env: dict[str, str] = {}
    if smtp_port is not None:
        env = {
            "LOCKER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "LOCKER_NOTIFY_FROM": NOTIFY_FROM,
        }
    port = free_port()
    with mock.patch.dict(os.environ, env):  # start_central passes its environment on
        process = start_central(url, port, work / "central", scheduler=smtp_port is not None)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def reserve_all(client: httpx.Client, api_key: str, trackings: Sequence[str]) -> list[str]:
    """One S reservation per tracking number, each with a recipient email, a few at a time."""
    headers = {"Authorization": f"Bearer {api_key}"}

    def one(tracking: str) -> str:
        body = {
            "tracking_number": tracking,
            "bank_id": BANK,
            "size": "S",
            "recipient": {"name": "Bench Recipient", "email": recipient_email(tracking)},
        }
        response = client.post("/v1/reservations", json=body, headers=headers)
        check(response.status_code == 201, f"reservation: {response.status_code} {response.text}")
        reservation_id: str = response.json()["id"]
        return reservation_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, trackings))


# Throughput ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drain:
    concurrency: int
    batch_size: int
    tried: int
    rounds: int
    elapsed_s: float
    cpu_s: float  # this process, all its threads
    sink_cpu_s: float
    received: int


def fill_outbox(url: str, work: Path, network: Network, count: int) -> None:
    """`count` reservations with a recipient, deposited: `count` ready notices pending."""
    trackings = [tracking_number("A", n) for n in range(count)]
    labels = network.labels[:count]
    with (
        running_central(url, work) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        started = time.perf_counter()
        ids = reserve_all(client, network.api_key, trackings)
        reserved = time.perf_counter() - started
        started = time.perf_counter()
        for at in range(0, count, FILL_BATCH):
            chunk = zip(ids[at : at + FILL_BATCH], labels[at : at + FILL_BATCH], strict=True)
            network.node.post_events(client, [network.node.deposited(*pair) for pair in chunk])
        deposited = time.perf_counter() - started
    print(
        f"setup: {count:,} reservations with a recipient email through the carrier API in "
        f"{reserved:.1f} s, {count:,} parcel.deposited events in {-(-count // FILL_BATCH)} "
        f"signed batches in {deposited:.1f} s"
    )


def drain_outbox(sessions: sessionmaker[Session], sink: RunningSink, concurrency: int) -> Drain:
    """Central's dispatcher, built as the scheduler's is, run until nothing is due."""
    settings = CentralSettings(
        smtp_url=SecretStr(f"smtp://127.0.0.1:{sink.port}"), notify_from=NOTIFY_FROM
    )
    received_before, sink_cpu = len(sink.arrivals()), sink.cpu_s()
    with httpx.Client() as http:
        dispatcher = NoticeDispatcher(
            sessions,
            ServiceKeys(SECRET_KEY.encode()),
            utcnow,
            build_channels(settings, http),
            public_url=settings.public_url,
            retry_for=timedelta(hours=settings.notice_retry_hours),
            first_retry=timedelta(seconds=settings.notice_first_retry_s),
            concurrency=concurrency,
        )
        tried = rounds = 0
        cpu_before = time.process_time()
        started = finished = time.perf_counter()
        try:
            while (count := dispatcher.run_once()) > 0:
                tried += count
                rounds += 1
                finished = time.perf_counter()
        finally:
            dispatcher.close()
    return Drain(
        concurrency=concurrency,
        batch_size=dispatcher.batch_size,
        tried=tried,
        rounds=rounds,
        elapsed_s=finished - started,
        cpu_s=time.process_time() - cpu_before,
        sink_cpu_s=sink.cpu_s() - sink_cpu,
        received=len(sink.arrivals()) - received_before,
    )


def notice_statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(NOTICES.c.status, func.count()).group_by(NOTICES.c.status))
        return {str(status): int(n) for status, n in rows}


def run_throughput(
    url: str, work: Path, network: Network, sink: RunningSink, args: argparse.Namespace
) -> None:
    print("== throughput: one central process sending the outbox ==")
    fill_outbox(url, work, network, args.notices)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        statuses = notice_statuses(engine)
        check(statuses == {"pending": args.notices}, f"outbox before sending: {statuses}")
        with engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(select(NOTICES)).mappings()]
        runs = [args.concurrency]
        if args.serial and args.concurrency != 1:
            runs.append(1)
        for n, concurrency in enumerate(runs):
            if n > 0:
                with engine.begin() as conn:  # the same notices, pending again
                    conn.execute(delete(NOTICES))
                    conn.execute(insert(NOTICES), rows)
            drain = drain_outbox(sessions, sink, concurrency)
            statuses = notice_statuses(engine)
            check(statuses == {"sent": args.notices}, f"outbox after sending: {statuses}")
            check(drain.received == args.notices, f"{drain.received} emails received")
            print_drain(drain)
    finally:
        engine.dispose()


def print_drain(drain: Drain) -> None:
    default = " (default)" if drain.concurrency == DEFAULT_CONCURRENCY else ""
    print(
        f"concurrency {drain.concurrency}{default}: {drain.tried:,} notices sent in "
        f"{drain.elapsed_s:.2f} s, {drain.tried / drain.elapsed_s:,.0f} notices/s "
        f"({drain.rounds} rounds of up to {drain.batch_size}); CPU per notice: "
        f"sender {drain.cpu_s / drain.tried * 1000:.2f} ms, "
        f"receiver {drain.sink_cpu_s / drain.tried * 1000:.2f} ms; received {drain.received:,}"
    )


# Latency ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paced:
    acked: dict[str, float]  # tracking number -> when its batch was acknowledged
    answers_s: list[float]  # each batch's request, sent to answered
    elapsed_s: float
    late_s: float  # the latest a batch went after its time


def send_paced(
    client: httpx.Client,
    node: BenchNode,
    parcels: list[tuple[str, str, str]],
    rate: float,
    batch: int,
) -> Paced:
    """(tracking, reservation id, compartment) deposited in batches, one every batch/rate s."""
    acked: dict[str, float] = {}
    answers: list[float] = []
    late = 0.0
    began = clock()
    for k, at in enumerate(range(0, len(parcels), batch)):
        chunk = parcels[at : at + batch]
        events = [node.deposited(rid, label) for _, rid, label in chunk]
        wait = began + k * batch / rate - clock()
        if wait > 0:
            time.sleep(wait)
        late = max(late, -wait)
        sent = clock()
        node.post_events(client, events)
        answered = clock()
        answers.append(answered - sent)
        acked.update((tracking, answered) for tracking, _, _ in chunk)
    return Paced(acked, answers, clock() - began, late)


def await_arrivals(sink: RunningSink, skip: int, count: int, timeout_s: float) -> list[Arrival]:
    deadline = clock() + timeout_s
    while len(arrivals := sink.arrivals()[skip:]) < count and clock() < deadline:
        time.sleep(0.1)
    return arrivals


def run_latency(
    url: str, work: Path, network: Network, sink: RunningSink, args: argparse.Namespace
) -> None:
    print("== latency: deposit acknowledged by central -> email at the receiver ==")
    count = latency_count(args)
    trackings = [tracking_number("B", n) for n in range(count)]
    labels = network.labels[args.notices : args.notices + count]  # after the throughput's
    with (
        running_central(url, work, smtp_port=sink.port) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        started = time.perf_counter()
        ids = reserve_all(client, network.api_key, trackings)
        print(
            f"setup: {count:,} reservations with a recipient email through the carrier API in "
            f"{time.perf_counter() - started:.1f} s; central's scheduler on"
        )
        skip = len(sink.arrivals())
        parcels = list(zip(trackings, ids, labels, strict=True))
        paced = send_paced(client, network.node, parcels, args.rate, args.batch)
        arrivals = await_arrivals(sink, skip, count, timeout_s=5 * TICK_S + 10)
    print_latency(paced, arrivals, count, args)


def print_latency(
    paced: Paced, arrivals: list[Arrival], count: int, args: argparse.Namespace
) -> None:
    first: dict[str, Arrival] = {}
    for arrival in arrivals:  # the address is the tracking number's
        first.setdefault(arrival.recipient.partition("@")[0].upper(), arrival)
    latencies = sorted(a.at - paced.acked[t] for t, a in first.items() if t in paced.acked)
    answers = sorted(paced.answers_s)
    print(
        f"sent: {count:,} deposits in {len(answers):,} signed batches of {args.batch} over "
        f"{paced.elapsed_s:.1f} s ({count / paced.elapsed_s:.1f}/s, asked {args.rate:g}/s; "
        f"the latest batch went {paced.late_s * 1000:.0f} ms after its time); central "
        f"acknowledged a batch in p50 {percentile(answers, 50) * 1000:.1f} ms, "
        f"p99 {percentile(answers, 99) * 1000:.1f} ms"
    )
    print(
        f"received: {len(latencies):,} of {count:,} emails"
        f" ({len(arrivals) - len(first)} more than once)"
    )
    if latencies:
        print(
            f"latency, batch acknowledged -> email received: p50 {percentile(latencies, 50):.2f} s"
            f", p99 {percentile(latencies, 99):.2f} s, max {latencies[-1]:.2f} s "
            f"(mean {sum(latencies) / len(latencies):.2f} s, min {latencies[0]:.2f} s)"
        )
    print(
        f"note: central sends notices from its scheduler's deliver_notices job, every {TICK_S} s: "
        f"a deposit's notice first waits 0-{TICK_S} s for the next tick ({TICK_S / 2:g} s on "
        "average), which sets the floor of these figures; the rest is claiming, rendering and SMTP"
    )
    if len(latencies) != count:
        raise SystemExit(f"FAILED: {count - len(latencies)} emails did not arrive")


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest rank: the smallest value at or above `pct` percent of `ordered` (sorted)."""
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def latency_count(args: argparse.Namespace) -> int:
    return 0 if args.throughput_only else max(1, round(args.rate * args.seconds))


def print_header(args: argparse.Namespace, database: str) -> None:
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()} "
        f"({platform.platform()}); database: {database}"
    )
    parts = []
    if not args.latency_only:
        serial = " and 1" if args.serial and args.concurrency != 1 else ""
        parts.append(
            f"throughput {args.notices:,} notices, dispatcher batch 100, "
            f"concurrency {args.concurrency}{serial}"
        )
    if not args.throughput_only:
        parts.append(
            f"latency {args.rate:g} deposits/s for {args.seconds:g} s in batches of "
            f"{args.batch}, deliver_notices tick {TICK_S} s"
        )
    print("parameters: " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--throughput-only", action="store_true")
    only.add_argument("--latency-only", action="store_true")
    parser.add_argument("--notices", type=int, default=1000, help="notices in the outbox")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument(
        "--no-serial", dest="serial", action="store_false", help="skip the concurrency 1 run"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="deposits per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of deposits")
    parser.add_argument("--batch", type=int, default=1, help="deposits per signed batch")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to make a throw-away database on (default: a SQLite file)",
    )
    args = parser.parse_args()
    if args.notices < 1 or args.concurrency < 1 or args.batch < 1 or args.rate <= 0:
        parser.error("--notices, --concurrency, --batch and --rate must be positive")
    work = Path(tempfile.mkdtemp(prefix="locker-notify-bench-"))
    try:
        with central_database(work, args.database_url) as url, running_sink(work) as sink:
            print_header(args, describe_database(url))
            network = create_network(url, args.notices + latency_count(args))
            if not args.latency_only:
                run_throughput(url, work, network, sink, args)
            if not args.throughput_only:
                run_latency(url, work, network, sink, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
