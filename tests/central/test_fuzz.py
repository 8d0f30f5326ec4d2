"""Schema-driven fuzzing of the whole carrier API: whatever a carrier sends, no 5xx."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from central.app import create_app
from central.config import CentralSettings
from tests.central.conftest import TEST_SECRET, make_bank, make_carrier
from tests.clock import FakeClock

KEY: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[OpenApiSchema]:
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copy(sqlite_template, folder / "central.db")
    app = create_app(
        CentralSettings(
            database_url=f"sqlite:///{folder / 'central.db'}",
            data_dir=folder,
            secret_key=TEST_SECRET,  # type: ignore[arg-type]
            allow_insecure_webhooks=True,
            scheduler_enabled=False,
        ),
        clock=FakeClock(),
    )
    with app.state.sessions.begin() as session:
        KEY["acme"] = make_carrier(session, carrier_id="acme", now=FakeClock()())
        make_bank(session, bank_id="NYC-1", now=FakeClock()())
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.engine.dispose()


def test_no_input_makes_the_api_fail(api_schema: OpenApiSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12  # every endpoint of the carrier API is fuzzed
    auth = {"Authorization": f"Bearer {KEY['acme']}"}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same inputs every run: a CI failure reproduces locally
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(headers=auth)
            assert response.status_code < 500, (case.method, case.path, response.text)
            if response.status_code >= 400:
                body = response.json()
                assert isinstance(body.get("error"), str) and body["error"], body
                assert isinstance(body.get("detail"), str), body

        check()
