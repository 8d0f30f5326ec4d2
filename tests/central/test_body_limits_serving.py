"""The real `locker-central serve`: large bodies are refused without central taking them in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from central.carriers.service import add_carrier, create_api_key
from central.db import make_engine, make_sessionmaker, upgrade_database
from tests.central.conftest import TEST_SECRET
from tests.central.server import free_port
from tests.central.test_serving import answers, until
from tests.clock import FakeClock

MIB = 1 << 20
BODY = b"0" * (20 * MIB)
JSON = {"Content-Type": "application/json"}


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> int:
    """Start the process's peak resident memory (VmHWM) afresh; its resident memory now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory_kib(pid, "VmRSS")


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[int, str, str]]:
    """One web worker (the `serve` process itself), its URL, and a carrier's API key."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        add_carrier(session, "acme", None, FakeClock()())
        key = create_api_key(session, "acme", FakeClock()()).key
    engine.dispose()
    port = free_port()
    env = os.environ | {
        "LOCKER_DATABASE_URL": url,
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "central.cli", "serve", "--port", str(port), "--workers", "1",
               "--no-scheduler"]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: answers(base), "central to answer")
        yield process.pid, base, key
    finally:
        process.terminate()
        process.wait(timeout=40)


def post(base: str, path: str, headers: dict[str, str], *, chunked: bool = False) -> httpx.Response:
    # A generator body has no Content-Length: httpx sends it chunked.
    content = (BODY[i : i + MIB] for i in range(0, len(BODY), MIB)) if chunked else BODY
    return httpx.post(f"{base}{path}", content=content, headers=JSON | headers, timeout=60)


def test_20_mb_bodies_are_refused_and_central_memory_does_not_grow(
    central: tuple[int, str, str],
) -> None:
    pid, base, key = central
    with_key = {"Authorization": f"Bearer {key}"}
    before = reset_peak(pid)
    # Three at once to each route without credentials, as the report sent them, and with a key.
    requests = [
        *[("/v1/reservations", {}, False)] * 3,
        *[("/v1/node/events", {}, False)] * 3,
        ("/v1/reservations", with_key, False),
        ("/v1/webhooks", with_key, False),
    ]
    with ThreadPoolExecutor(len(requests)) as pool:
        answers_ = list(pool.map(lambda r: post(base, r[0], r[1], chunked=r[2]), requests))
    for (path, _, _), response in zip(requests, answers_, strict=True):
        assert response.status_code == 413, (path, response.text)
        assert response.json()["error"] == "payload_too_large"
    # Without a Content-Length: refused before a byte is read without credentials, and at the
    # limit while reading with them.
    response = post(base, "/v1/reservations", {}, chunked=True)
    assert (response.status_code, response.json()["error"]) == (401, "missing_api_key")
    response = post(base, "/v1/node/events", {}, chunked=True)
    assert (response.status_code, response.json()["error"]) == (401, "missing_signature")
    response = post(base, "/v1/reservations", with_key, chunked=True)
    assert (response.status_code, response.json()["error"]) == (413, "payload_too_large")
    grown_mib = (memory_kib(pid, "VmHWM") - before) / 1024
    assert grown_mib < 50, f"central's peak memory grew by {grown_mib:.0f} MiB"
    assert httpx.get(f"{base}/healthz").status_code == 200
