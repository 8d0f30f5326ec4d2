"""Run the real central server in a subprocess for tests that need real HTTP and processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.central.conftest import TEST_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_central(database_url: str, data_dir: Path, *, workers: int = 1) -> Iterator[str]:
    """Start `uvicorn` on the app factory, wait until it answers, yield its base URL, stop it."""
    port = free_port()
    env = os.environ | {
        "LOCKER_DATABASE_URL": database_url,
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(data_dir),
        "LOCKER_SCHEDULER_ENABLED": "false",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "central.app:app_from_environment",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("central did not start")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
