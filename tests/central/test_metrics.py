"""Central's /metrics: requests by route template and status, network gauges from the database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from central.analytics.tasks import AnalyticsJobs, MixpanelSender
from central.app import create_app
from central.config import CentralSettings
from central.metrics import MULTIPROC_ENV, prepare_multiprocess_dir
from central.models import Alert
from tests.central.conftest import TEST_SECRET, World
from tests.central.nodes.support import enroll
from tests.clock import FakeClock

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
REQUESTS = "locker_http_request_duration_seconds_count"


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient, **headers: str) -> Samples:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    key = (REQUESTS, (("method", method), ("route", route), ("status", str(status))))
    return samples.get(key, 0.0)


def test_requests_are_counted_by_route_template_and_status(
    client: TestClient, world: World
) -> None:
    auth = world.auth("acme")
    body = {"tracking_number": "ACME-M1", "bank_id": "NYC-1", "size": "S"}
    rid = client.post("/v1/reservations", json=body, headers=auth).json()["id"]
    assert client.post("/v1/reservations", json=body, headers=auth).status_code == 200
    assert client.get(f"/v1/reservations/{rid}", headers=auth).status_code == 200
    assert client.get("/v1/reservations/rsv_nope", headers=auth).status_code == 404
    assert client.get("/v1/banks/NYC-1").status_code == 401
    assert client.get("/no/such/path/123").status_code == 404

    samples = scrape(client)

    assert requests(samples, "POST", "/v1/reservations", 201) == 1
    assert requests(samples, "POST", "/v1/reservations", 200) == 1
    assert requests(samples, "GET", "/v1/reservations/{reservation_id}", 200) == 1
    assert requests(samples, "GET", "/v1/reservations/{reservation_id}", 404) == 1
    assert requests(samples, "GET", "/v1/banks/{bank_id}", 401) == 1
    assert requests(samples, "GET", "unmatched", 404) == 1
    routes = {dict(labels)["route"] for name, labels in samples if name == REQUESTS}
    assert not any(rid in route or "NYC-1" in route for route in routes)  # templates only
    bucket = (
        "locker_http_request_duration_seconds_bucket",
        (("le", "+Inf"), ("method", "POST"), ("route", "/v1/reservations"), ("status", "201")),
    )
    assert samples[bucket] == 1


def test_network_gauges_are_read_from_the_database(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    auth = world.auth("acme")
    client.post("/v1/webhooks", json={"url": "http://carrier.test/h"}, headers=auth)
    body = {"tracking_number": "ACME-G1", "bank_id": "NYC-1", "size": "S"}
    assert client.post("/v1/reservations", json=body, headers=auth).status_code == 201
    sessions = app.state.sessions
    enroll(client, sessions, clock)
    with sessions.begin() as session:
        session.add(Alert(bank_id="NYC-2", type="door_forced_open", created_at=clock()))
        session.add(
            Alert(bank_id="NYC-2", type="door_forced_open", created_at=clock(), resolved_at=clock())
        )
    clock.advance(minutes=3)
    jobs = AnalyticsJobs(
        sessions, app.state.keys, clock, MixpanelSender("t", events_url="http://127.0.0.1:9/")
    )
    jobs.fill()

    samples = scrape(client)

    # Three banks with S:2, M:2, L:1 each; one S unit held.
    assert samples[("locker_capacity_units", (("kind", "total"), ("size", "S")))] == 6
    assert samples[("locker_capacity_units", (("kind", "available"), ("size", "S")))] == 5
    assert samples[("locker_capacity_units", (("kind", "held"), ("size", "S")))] == 1
    assert samples[("locker_capacity_units", (("kind", "total"), ("size", "L")))] == 3
    assert samples[("locker_compartments", (("size", "M"), ("state", "free")))] == 6
    assert samples[("locker_open_alerts", (("type", "door_forced_open"),))] == 1
    assert samples[("locker_nodes", (("state", "online"),))] == 1
    assert samples[("locker_nodes", (("state", "offline"),))] == 0
    assert samples[("locker_webhook_outbox_depth", ())] == 1
    assert samples[("locker_analytics_outbox_depth", ())] == 1
    per_bank = [labels for _, labels in samples if any(k == "bank" for k, _ in labels)]
    assert per_bank == []  # network-wide only: 5,000 banks must not mean 5,000 series


def test_metrics_stay_out_of_the_carrier_api_schema(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_metrics_token_is_required_when_configured(
    settings: CentralSettings, clock: FakeClock
) -> None:
    guarded = settings.model_copy(update={"metrics_token": SecretStr("m3trics-token-0123")})
    app = create_app(guarded, clock=clock)
    try:
        with TestClient(app) as client:
            refused = client.get("/metrics")
            wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
            samples = scrape(client, Authorization="Bearer m3trics-token-0123")
    finally:
        app.state.engine.dispose()
    assert refused.status_code == wrong.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert requests(samples, "GET", "/metrics", 401) == 2


# Several workers ------------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys
    from fastapi.testclient import TestClient
    from central.app import app_from_environment

    app = app_from_environment()
    with TestClient(app) as client:
        for _ in range(int(sys.argv[1])):
            assert client.get("/v1/banks/NYC-1").status_code == 401
        if sys.argv[2] == "scrape":
            print(client.get("/metrics").text)
    app.state.engine.dispose()
    """
)


@pytest.fixture
def shared_environment(sqlite_template: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    database = tmp_path / "central.db"
    shutil.copy(sqlite_template, database)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    yield os.environ | {
        "LOCKER_DATABASE_URL": f"sqlite:///{database}",
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(tmp_path / "var"),
        "LOCKER_SCHEDULER_ENABLED": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }


def run_python(environment: dict[str, str], script: str, *args: str) -> str:
    """What a fresh interpreter running `script` printed; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timedelta(minutes=1).total_seconds(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_any_worker_reports_the_requests_of_all_workers(
    shared_environment: dict[str, str],
) -> None:
    def worker(count: int, then: str) -> str:
        return run_python(shared_environment, WORKER, str(count), then)

    worker(3, "exit")
    worker(4, "exit")
    samples = parse(worker(2, "scrape"))

    assert requests(samples, "GET", "/v1/banks/{bank_id}", 401) == 9
    assert samples[("locker_analytics_outbox_depth", ())] == 0  # the gauges, once


def test_the_multiprocess_directory_starts_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "")  # restored after the test
    stale = tmp_path / "prometheus" / "histogram_4242.db"
    stale.parent.mkdir()
    stale.write_bytes(b"counts of a previous run")

    path = prepare_multiprocess_dir(tmp_path)

    assert path == tmp_path / "prometheus" and list(path.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(path)


def test_a_serving_worker_freezes_what_start_up_built(shared_environment: dict[str, str]) -> None:
    """The app built for serving is out of the cyclic collector's sight (see
    `serving.freeze_startup_heap`): full collections walk only what serving allocates."""
    script = (
        "import gc\n"
        "from central.app import app_from_environment\n"
        "before = gc.get_freeze_count()\n"
        "app = app_from_environment()\n"
        "print(before, gc.get_freeze_count())\n"
        "app.state.engine.dispose()\n"
    )
    before, after = map(int, run_python(shared_environment, script).split())
    assert before == 0 and after > 10_000  # the modules, the app, its routes and schemas
