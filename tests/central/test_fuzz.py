"""Schema-driven fuzzing of every operation in /openapi.json: whatever a client sends, no 5xx."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.schemas import OpenApiSchema

from central.app import create_app
from central.config import CentralSettings
from tests.central.conftest import TEST_SECRET, make_bank, make_carrier
from tests.clock import FakeClock

KEY: dict[str, str] = {}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


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
    documented = {
        (method.upper(), path)
        for path, item in api_schema.raw_schema["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert {(op.method.upper(), op.path) for op in operations} == documented
    # The node routes answer 401 to these unsigned requests, after their bodies were read.
    auth = {"Authorization": f"Bearer {KEY['acme']}"}

    for operation in operations:
        bodies_sent = fuzz(operation, auth)
        # A body schema that schemathesis cannot follow (a broken $ref) makes it send none.
        if operation.definition.raw.get("requestBody", {}).get("required"):
            assert any(bodies_sent), (operation.method, operation.path, "no body was generated")


def fuzz(operation: Any, headers: dict[str, str]) -> list[bool]:
    """Call the operation with generated inputs; answers whether each call had a body."""
    bodies_sent: list[bool] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same inputs every run: a CI failure reproduces locally
        database=None,
    )
    def check(case: Any) -> None:
        bodies_sent.append(case.body is not NOT_SET)
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert isinstance(body.get("error"), str) and body["error"], body
            assert isinstance(body.get("detail"), str), body

    check()
    return bodies_sent
