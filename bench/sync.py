"""Outbox drain: events a node queued while central was down, delivered once central is back.

Starts a real central server (`locker-central serve`) on a throw-away PostgreSQL database,
provisions a node against it, stops central, queues events on the node, starts central again on
the same port and times the node's sync client draining its outbox over real HTTP, in batches,
signed, each event applied once. Prints the drain time and events/s, and checks that central
holds every event exactly once.

The events are door alerts (`door.left_open`): central applies each (one row, one alert). The
node's other cost for a deposit, re-sealing its pickup code and QR payload to central, is timed
separately and printed per event.

    python bench/sync.py [--events 10000]

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create a
throw-away database on.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.models import NodeEventRecord
from central.nodes.service import issue_enrollment_token
from locker_node.app import build_node
from locker_node.config import load_config
from locker_node.domain.lifecycle import EventType
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.keys import NodeKeys
from locker_node.sync.provision import provision
from locker_wire.sealing import seal, seal_context

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BANK = "BENCH-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_central(url: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "LOCKER_DATABASE_URL": url,
        "LOCKER_SECRET_KEY": "bench-secret-key-" + "x" * 40,
        "LOCKER_DATA_DIR": str(data_dir),
        "LOCKER_SCHEDULER_ENABLED": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "serve", "--port", str(port), "--no-scheduler"],
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
        time.sleep(0.05)


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(15)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()

    admin_url = os.environ.get("LOCKER_BENCH_DATABASE_URL", DEFAULT_URL)
    name = f"locker_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="locker-sync-bench-"))
    server = None
    try:
        upgrade_database(url)
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
                    compartments=parse_compartment_spec("S:20,M:20,L:8"),
                ),
                now,
            )
            token = issue_enrollment_token(session, BANK, now)

        port = free_port()
        central_url = f"http://127.0.0.1:{port}"
        server = start_central(url, port, work / "central")
        config_path = work / "node" / "node.toml"
        done = provision(
            central_url=central_url, bank_id=BANK, token=token, config_path=config_path
        )
        stop(server)
        server = None

        config = load_config(config_path)
        node = build_node(config, migrate_in_process=True)
        labels = [c.label for c in config.compartments]
        queued_at = datetime.now(UTC) - timedelta(hours=1)
        with transaction(node.engine) as conn:
            for n in range(args.events):
                repo.append_event(
                    conn,
                    EventType.DOOR_LEFT_OPEN,
                    {"compartment": labels[n % len(labels)], "open_for_s": 60.0 + n % 7},
                    bank_id=BANK,
                    now=queued_at + timedelta(milliseconds=n),
                )
        sync = node.sync
        assert sync is not None
        try:
            # Central down: the node keeps everything and says so.
            assert not sync.run_once()
            server = start_central(url, port, work / "central")
            started = time.perf_counter()
            delivered = sync.deliver_outbox()
            elapsed = time.perf_counter() - started
            with transaction(node.engine) as conn:
                left = repo.outbox_depth(conn)
        finally:
            sync.stop()
            node.engine.dispose()
            for board in node.boards.values():
                board.close()
        with sessions() as session:
            stored = session.scalar(
                select(func.count())
                .select_from(NodeEventRecord)
                .where(NodeEventRecord.node_id == done.node_id)
            )
        engine.dispose()
        per_deposit = reseal_rate(node.keys, done.enrollment.central_sealing_public_key, 2000)

        print(f"events queued while central was down: {args.events}")
        print(f"delivered: {delivered}, left in outbox: {left}, held by central: {stored}")
        print(f"drain time: {elapsed:.2f} s ({delivered / elapsed:,.0f} events/s)")
        print(f"batch size: {config.sync.batch_size}, requests: {-(-args.events // 500)}")
        print(f"re-sealing a deposit's code and QR for central: {per_deposit:.0f} us per event")
        if stored != args.events or left:
            raise SystemExit("FAILED: central does not hold every event exactly once")
    finally:
        if server is not None:
            stop(server)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
