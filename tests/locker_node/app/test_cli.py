"""`locker-node seed-demo` and `locker-node run`, as an installer would type them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from locker_node import cli
from locker_node.cli import app
from locker_node.store import couriers
from locker_node.store import repository as repo
from locker_node.store.database import database_path, make_engine, transaction
from tests.locker_node.e2e.nodes import free_port, node_process

CONFIG = """
bank_id = "DEMO-1"
data_dir = "data"

[kiosk]
port = {port}

[[boards]]
name = "main"
protocol = "simulated"
locks = 4
door_delay_ms = 0

[[compartments]]
label = "A01"
size = "S"
board = "main"
lock = 1
"""


def write(tmp_path: Path, port: int = 8080) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG.format(port=port))
    return path


def test_seed_demo_stores_reservations_and_only_a_hash_of_the_courier_code(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        app, ["seed-demo", "--config", str(write(tmp_path)), "--parcels", "2"]
    )

    assert result.exit_code == 0, result.output
    code = re.search(r"courier code \(valid 24 h, shown once\): (\d{8})", result.output)
    assert code is not None
    engine = make_engine(database_path(tmp_path / "data"))
    with transaction(engine) as conn:
        hashes = couriers.valid_credential_hashes(conn, "demo", repo_now())
        tracking = re.findall(r"reservation: (DEMO\w+)", result.output)
        found = [repo.find_reservation(conn, "demo", number) for number in tracking]
    engine.dispose()
    assert len(tracking) == 2 and all(found)
    assert len(hashes) == 1 and hashes[0].startswith("$scrypt$")
    assert code.group(1) not in database_path(tmp_path / "data").read_bytes().decode("latin-1")


def test_a_bad_config_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.toml"
    path.write_text('bank_id = "B1"\ndata_dir = "data"\n[kiosk]\nprot = 1\n')
    limited: list[int] = []
    monkeypatch.setattr(cli, "limit_malloc_arenas", lambda: limited.append(1) or True)

    result = CliRunner().invoke(app, ["run", "--config", str(path)])

    assert result.exit_code == 2
    assert "kiosk.prot" in result.output
    assert limited == [1]  # malloc's arenas are limited first, before any thread starts


def test_run_serves_the_kiosk_on_its_own_without_central(tmp_path: Path) -> None:
    port = free_port()
    config = write(tmp_path, port)
    with node_process(config, port=port) as node, httpx.Client() as client:
        node.wait_ready(client)
        status = client.get(f"{node.base_url}/api/status").json()
        page = client.get(f"{node.base_url}/")
    assert status["bank_id"] == "DEMO-1" and page.status_code == 200
    assert node.process.returncode == 0  # stopped cleanly by SIGTERM
    assert "kiosk listening on http://127.0.0.1" in node.log_text()
    assert (tmp_path / "data" / "node.db").exists()  # schema made on first start


def repo_now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_the_console_script_is_installed() -> None:
    result = subprocess.run(
        [str(Path(__import__("sys").executable).parent / "locker-node"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "seed-demo" in result.stdout and "run" in result.stdout


def test_a_running_node_logs_its_own_lines_but_not_every_http_request() -> None:
    # The logging `locker-node run` sets up, in a fresh interpreter, then one sync-like request.
    script = (
        "import logging, httpx\n"
        "from locker_node.cli import configure_logging\n"
        "configure_logging()\n"
        "client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))\n"
        "client.post('http://central.test/v1/node/events', json={'events': []})\n"
        "logging.getLogger('locker_node.sync.service').info('central reachable again')\n"
        "logging.getLogger('httpx').warning('a library warning still shows')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    assert "central reachable again" in run.stderr
    assert "a library warning still shows" in run.stderr
    assert "HTTP Request" not in run.stderr and "/v1/node/events" not in run.stderr


UNUSED_CHECK = """
import sys
from locker_node.cli import UNUSED_MODULES, leave_out_unused_modules
leave_out_unused_modules()
from fastapi.testclient import TestClient
from locker_node.kiosk.endpoints import KioskUi, create_kiosk_app
app = create_kiosk_app(None, KioskUi(bank_id="NYC-1"))
with TestClient(app) as client:
    page = client.get("/")
    bad = client.post("/api/pickup", json={"code": 5})
import httpx
import pytest
central = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204)))
synced = central.post("http://central.test/v1/node/heartbeat", json={}).status_code
loaded = [name for name in UNUSED_MODULES if sys.modules.get(name) is not None]
print(page.status_code, bad.status_code, bad.json()["error"], synced, loaded, "rich" in sys.modules)
"""


def test_the_kiosk_serves_without_the_modules_a_node_leaves_out() -> None:
    """`locker-node run` refuses the optional modules a kiosk never uses; its web stack, routes
    with query parameters and validated bodies included, and its HTTP client to central work
    without them (httpx without its command-line client leaves rich out)."""
    done = subprocess.run(
        [sys.executable, "-c", UNUSED_CHECK], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "422", "bad_input", "204", "[]", "False"]


STANDALONE_CHECK = """
import sys
from locker_node.app import build_hardware
from locker_node.config import load_config
boards, health, gpio = build_hardware(load_config(sys.argv[1]), None, None)
print(health is None, "gpiozero" in sys.modules, "locker_wire.schemas" in sys.modules)
"""


def test_a_node_without_central_loads_no_health_probes(tmp_path: Path) -> None:
    """Health goes out with heartbeats: a node with no central to send them to builds no probes
    and keeps gpiozero and the wire's schemas out of its memory (the kiosk's 80 MB budget)."""
    done = subprocess.run(
        [sys.executable, "-c", STANDALONE_CHECK, str(write(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False"]


METRICS_CHECK = """
import sys
from fastapi.testclient import TestClient
from locker_node.app import build_node
from locker_node.cli import leave_out_unused_modules
from locker_node.config import load_config
leave_out_unused_modules()
import uvicorn.supervisors
node = build_node(load_config(sys.argv[1]), migrate_in_process=True)
before = "prometheus_client" in sys.modules
with TestClient(node.app) as client:
    scraped = client.get("/metrics")
    again = client.get("/metrics")
print(before, "prometheus_client" in sys.modules, scraped.status_code, again.status_code)
reloader = str(uvicorn.supervisors.ChangeReload)
print("locker_node_doors{state=" in scraped.text, "watchfiles" in reloader)
"""


def test_a_node_loads_prometheus_client_at_the_first_scrape(tmp_path: Path) -> None:
    """A node nobody scrapes keeps prometheus_client (and its HTTP and WSGI servers) out of its
    memory; the first `GET /metrics` loads it and answers as before. Without watchfiles, which
    the node refuses, uvicorn falls back to its own reloader."""
    done = subprocess.run(
        [sys.executable, "-c", METRICS_CHECK, str(write(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "200", "200", "True", "False"]
