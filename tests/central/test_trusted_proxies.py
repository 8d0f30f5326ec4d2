"""`X-Forwarded-For` is believed only from the proxies in `LOCKER_TRUSTED_PROXIES`: the setting,
its way to every uvicorn that serves central, and the real `locker-central serve` seen through
the operator sign-in throttle."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import ValidationError
from typer.testing import CliRunner

import central.demo
from central import cli
from central.clock import utcnow
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.metrics import MULTIPROC_ENV
from central.ops.accounts import Passwords, add_operator
from central.serving import balanced_workers_supported, forwarded_options, run_worker
from tests.central.conftest import TEST_SECRET
from tests.central.ops.support import ADMIN, FAST_ARGON2, PASSWORD
from tests.central.server import free_port

runner = CliRunner()

# The setting -------------------------------------------------------------------------------------


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKER_DATABASE_URL", f"sqlite:///{tmp_path / 'central.db'}")
    monkeypatch.setenv("LOCKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LOCKER_SCHEDULER_ENABLED", "false")
    monkeypatch.delenv("LOCKER_TRUSTED_PROXIES", raising=False)
    # Set as an operator might have: it must not widen the trust.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")


def test_no_proxy_is_trusted_by_default(environment: None) -> None:
    assert CentralSettings().trusted_proxies == ()


def test_proxies_are_a_comma_separated_list_of_addresses_and_networks(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKER_TRUSTED_PROXIES", " 10.0.0.7, 192.168.0.0/16,,::1 , fd00::/8")

    assert CentralSettings().trusted_proxies == ("10.0.0.7", "192.168.0.0/16", "::1", "fd00::/8")


@pytest.mark.parametrize("entry", ["10.0.0.7/8", "proxy.internal", "*", "10.0.0.300"])
def test_an_entry_that_is_no_address_or_network_is_refused(
    environment: None, monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    # uvicorn would keep it as a name that matches no client (or, for "*", trust everyone).
    monkeypatch.setenv("LOCKER_TRUSTED_PROXIES", f"10.0.0.1,{entry}")

    with pytest.raises(ValidationError, match="trusted_proxies") as raised:
        CentralSettings()
    assert entry in str(raised.value)


def test_serve_stops_at_a_bad_entry_naming_the_variable(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKER_TRUSTED_PROXIES", "10.0.0.7/8")
    monkeypatch.setattr(uvicorn, "run", _never)

    result = runner.invoke(cli.app, ["serve", "--no-scheduler"])

    assert result.exit_code == 1
    assert "LOCKER_TRUSTED_PROXIES: 10.0.0.7/8 has host bits set" in result.output


# Its way to uvicorn -------------------------------------------------------------------------------


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("uvicorn must not start")


def test_without_proxies_uvicorn_reads_no_forwarded_header(environment: None) -> None:
    config = uvicorn.Config(_asgi_app, **forwarded_options(()))
    config.load()

    assert config.proxy_headers is False
    assert config.forwarded_allow_ips == []  # not FORWARDED_ALLOW_IPS
    assert config.loaded_app.__class__.__name__ != "ProxyHeadersMiddleware"


def test_named_proxies_are_uvicorn_s_only_trusted_hosts(environment: None) -> None:
    config = uvicorn.Config(_asgi_app, **forwarded_options(("10.0.0.7", "fd00::/8")))

    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == ["10.0.0.7", "fd00::/8"]


async def _asgi_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("not served")


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of each uvicorn.run, which does not serve."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    # Not the app nor the frozen heap of a real start: only what uvicorn is given matters here.
    monkeypatch.setattr(cli, "create_app", lambda settings: _asgi_app)
    monkeypatch.setattr(cli, "freeze_startup_heap", lambda: None)
    return calls


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [("", []), ("10.0.0.7, 10.1.0.0/16", ["10.0.0.7", "10.1.0.0/16"])],
    ids=["none", "named"],
)
@pytest.mark.parametrize(
    "command",
    [["serve"], ["serve", "--workers", "2"], ["demo"]],
    ids=["serve", "serve-uvicorn-workers", "demo"],
)
def test_every_way_of_serving_passes_the_proxies_to_uvicorn(
    environment: None,
    monkeypatch: pytest.MonkeyPatch,
    runs: list[dict[str, Any]],
    tmp_path: Path,
    command: list[str],
    trusted: str,
    expected: list[str],
) -> None:
    monkeypatch.setenv("LOCKER_TRUSTED_PROXIES", trusted)
    # --workers 2 where SO_REUSEPORT does not balance: uvicorn's own workers.
    monkeypatch.setattr(cli, "balanced_workers_supported", lambda: False)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "prometheus"))
    monkeypatch.setattr(cli, "upgrade_database", lambda url: None)
    monkeypatch.setattr(central.demo, "prepare_demo", lambda settings: {"usps": "lk_demo"})
    monkeypatch.setattr(central.demo, "prepare_demo_operators", lambda settings: {})

    result = runner.invoke(cli.app, command)

    assert result.exit_code == 0, result.output
    assert len(runs) == 1
    assert runs[0]["proxy_headers"] is bool(expected)
    assert runs[0]["forwarded_allow_ips"] == expected


def test_each_balanced_worker_passes_the_proxies_to_uvicorn(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[uvicorn.Config] = []

    class Server:
        def __init__(self, config: uvicorn.Config) -> None:
            configs.append(config)

        def run(self, sockets: list[object]) -> None:
            for sock in sockets:
                sock.close()  # type: ignore[attr-defined]

    monkeypatch.setattr(uvicorn, "Server", Server)

    run_worker("127.0.0.1", free_port(), False, ("10.0.0.7",))

    assert configs[0].proxy_headers is True
    assert configs[0].forwarded_allow_ips == ["10.0.0.7"]


# The real server ----------------------------------------------------------------------------------

WRONG = "not the password at all"
# One more attempt than the throttle allows, and then some.
ATTEMPTS = 8
# Both serving paths: one process, and the supervisor's SO_REUSEPORT workers where there are any.
WORKERS = [1, 2] if balanced_workers_supported() else [1]


@contextmanager
def serving(tmp_path: Path, workers: int, **env: str) -> Iterator[str]:
    """`locker-central serve` on a new database with one admin operator; yields its base URL."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    passwords = Passwords.from_settings(CentralSettings(database_url=url, **FAST_ARGON2))
    with make_sessionmaker(engine).begin() as session:
        add_operator(session, passwords, ADMIN, "admin", PASSWORD, utcnow())
    engine.dispose()
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in ("LOCKER_TRUSTED_PROXIES", "FORWARDED_ALLOW_IPS")
    }
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "serve", "--port", str(port),
         "--workers", str(workers), "--no-scheduler"],
        env=inherited
        | {
            "LOCKER_DATABASE_URL": url,
            "LOCKER_SECRET_KEY": TEST_SECRET,
            "LOCKER_DATA_DIR": str(tmp_path),
            **{f"LOCKER_{key.upper()}": str(value) for key, value in FAST_ARGON2.items()},
            **env,
        },
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("central did not start")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=40)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def sign_in(base: str, password: str, forwarded_for: str | None = None) -> int:
    """The status of one sign-in as admin, optionally claiming to come from `forwarded_for`."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = httpx.post(
        f"{base}/ops/api/session",
        json={"email": ADMIN, "password": password},
        headers=headers,
        timeout=10,
    )
    return response.status_code


@pytest.mark.slow
@pytest.mark.parametrize("workers", WORKERS)
def test_by_default_a_forwarded_address_does_not_escape_the_throttle(
    tmp_path: Path, workers: int
) -> None:
    # uvicorn's own variable must not widen the trust either: only LOCKER_TRUSTED_PROXIES does.
    with serving(tmp_path, workers, FORWARDED_ALLOW_IPS="*") as base:
        statuses = [sign_in(base, WRONG, f"10.0.0.{n}") for n in range(1, ATTEMPTS + 1)]
        after_lockout = sign_in(base, PASSWORD, "10.0.0.200")

    # Every attempt counted against 127.0.0.1, the real peer: the sixth and later are refused.
    assert statuses == [401] * 5 + [429] * (ATTEMPTS - 5)
    assert after_lockout == 429


@pytest.mark.slow
@pytest.mark.parametrize("workers", WORKERS)
def test_a_named_proxy_s_forwarded_address_is_the_client(tmp_path: Path, workers: int) -> None:
    with serving(tmp_path, workers, LOCKER_TRUSTED_PROXIES="192.0.2.1, 127.0.0.0/8") as base:
        one_each = [sign_in(base, WRONG, f"10.0.0.{n}") for n in range(1, ATTEMPTS + 1)]
        from_one = [sign_in(base, WRONG, "10.0.1.1") for _ in range(ATTEMPTS)]
        locked_out = sign_in(base, PASSWORD, "10.0.1.1")
        # The client address is the last one the named proxies did not add.
        through_two = sign_in(base, PASSWORD, "10.0.1.1, 127.0.0.5")
        elsewhere = sign_in(base, PASSWORD, "10.0.0.200")
        direct = sign_in(base, PASSWORD)

    # The throttle counts per forwarded address: eight addresses, one failure each, none refused;
    # one address, eight failures, refused from the sixth on, the right password included.
    assert one_each == [401] * ATTEMPTS
    assert from_one == [401] * 5 + [429] * (ATTEMPTS - 5)
    assert locked_out == 429
    assert through_two == 429
    assert elsewhere == 200
    assert direct == 200
