"""Carrier API keys: a request without a valid, unrevoked key is refused with a 401 and a code."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.carriers.service import revoke_api_key
from tests.central.conftest import World
from tests.central.reservations.test_api import reserve
from tests.clock import FakeClock


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer nonsense", "invalid_api_key"),
        ("Bearer lk_aaaaaaaaaaaa_" + "A" * 43, "invalid_api_key"),
        ("Basic dXNlcjpwYXNz", "missing_api_key"),
    ],
)
def test_missing_or_wrong_key_is_401(
    client: TestClient, world: World, header: str | None, code: str
) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/v1/banks", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == code
    # the create route reads the header itself: the same answers
    body = {"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "S"}
    response = client.post("/v1/reservations", json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == code
    assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_401(
    client: TestClient, world: World, sessions: Any, clock: FakeClock
) -> None:
    prefix = world.keys["acme"].split("_")[1]
    with sessions.begin() as session:
        revoke_api_key(session, prefix, clock())
    response = reserve(client, world)
    assert response.status_code == 401
    assert response.json()["error"] == "api_key_revoked"
