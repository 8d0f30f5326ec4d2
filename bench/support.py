"""What the benchmarks share: a throw-away PostgreSQL database and a real central server.

LOCKER_BENCH_DATABASE_URL (default: the machine's PostgreSQL) names the server to create the
throw-away databases on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from central.db import upgrade_database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET_KEY = "bench-secret-key-" + "x" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database with the schema at head; dropped on the way out."""
    admin_url = os.environ.get("LOCKER_BENCH_DATABASE_URL", DEFAULT_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def start_central(
    url: str,
    port: int,
    data_dir: Path,
    *,
    workers: int = 1,
    scheduler: bool = False,
) -> subprocess.Popen[bytes]:
    """`locker-central serve` as deployed: its own process(es), settings from the environment."""
    env = os.environ | {
        "LOCKER_DATABASE_URL": url,
        "LOCKER_SECRET_KEY": SECRET_KEY,
        "LOCKER_DATA_DIR": str(data_dir),
        "LOCKER_SCHEDULER_ENABLED": "true" if scheduler else "false",
    }
    command = [sys.executable, "-m", "central.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    if not scheduler:
        command.append("--no-scheduler")
    server = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
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
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(5)


def check(condition: object, failure: str) -> None:
    """Stop the benchmark with `failure` when a precondition does not hold (figures measured
    on a broken run would mislead)."""
    if not condition:
        raise SystemExit(f"benchmark stopped: {failure}")
