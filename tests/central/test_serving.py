"""`locker-central serve --workers N`: balanced worker processes that are replaced when they die."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from central.db import upgrade_database
from central.serving import balanced_workers_supported
from tests.central.conftest import TEST_SECRET
from tests.central.server import free_port

pytestmark = pytest.mark.skipif(
    not balanced_workers_supported(), reason="SO_REUSEPORT balancing is Linux only"
)


def children_of(pid: int) -> set[int]:
    """The web workers the supervisor at `pid` started (not multiprocessing's resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the parent pid is the second field after it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
            found.add(int(entry.name))
    return found


def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"} | {
        "LOCKER_DATABASE_URL": url,
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "central.cli", "serve", "--port", str(port), "--workers", "2",
               "--no-scheduler"]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: answers(base) and len(children_of(process.pid)) == 2, "two workers")
        yield process, base
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=40)


def test_a_worker_that_dies_is_replaced(server: tuple[subprocess.Popen[bytes], str]) -> None:
    process, base = server
    before = children_of(process.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    until(lambda: len(children_of(process.pid) - {victim}) == 2, "a replacement worker")
    assert victim not in children_of(process.pid)
    until(lambda: answers(base), "the server to answer")


def test_sigterm_stops_every_worker(server: tuple[subprocess.Popen[bytes], str]) -> None:
    process, base = server
    workers = children_of(process.pid)

    process.terminate()

    assert process.wait(timeout=40) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not answers(base)


def test_a_taken_port_fails_at_once(tmp_path: Path) -> None:
    env = os.environ | {
        "LOCKER_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(tmp_path),
    }
    # A socket without SO_REUSEPORT holds the port: the supervisor must refuse, not spawn workers.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "central.cli", "serve", "--port", port, "--workers", "2",
             "--no-scheduler"],
            env=env, capture_output=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert b"Address already in use" in result.stderr


def test_workers_start_with_two_malloc_arenas(
    server: tuple[subprocess.Popen[bytes], str],
) -> None:
    """The supervisor limits its own malloc arenas and hands the limit to the workers it starts,
    in whose environment glibc reads it at start-up."""
    process, _ = server
    for pid in children_of(process.pid):
        assert b"MALLOC_ARENA_MAX=2" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
