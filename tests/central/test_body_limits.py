"""Request bodies: callers are checked before their bodies are read, none read past its limit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from central.app import create_app
from central.carriers.service import revoke_api_key
from central.config import CentralSettings
from locker_wire import signing
from locker_wire.schemas import MAX_EVENTS_PER_BATCH, EventBatch
from tests.central.conftest import World, make_carrier
from tests.central.nodes.support import NodeClient, enroll
from tests.central.ops.support import ADMIN, fast, make_operator, sign_in
from tests.clock import FakeClock

CARRIER_ROUTES = ["/v1/reservations", "/v1/reservations/R-1/extend", "/v1/webhooks"]
NODE_ROUTES = ["/v1/node/events", "/v1/node/heartbeat", "/v1/node/commands/C-1/ack"]
OPS_ROUTES = [
    "/ops/api/alerts",
    "/ops/api/alerts/1/acknowledge",
    "/ops/api/banks/NYC-1/compartments/A01/open",
    "/ops/api/reservations/R-1/extend",
]
# Bodies that would be refused for their form (400 or 422) were they read.
INVALID_BODIES = [b"{}", b"{bad", b"[]", b"", b"\xff\xfe", b'{"tracking_number": 7}']
JSON = {"Content-Type": "application/json"}
# A well-formed key that no carrier was ever given.
UNKNOWN_KEY = "lk_abcdefghijkl_" + "A" * 43
SMALL = {"max_body_bytes": 4096, "max_node_body_bytes": 8192}


class BodyReads:
    """The app, noting each part of a request body it asks the server for."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.parts = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def noted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.parts += 1
            return message

        await self.app(scope, noted, send)


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


@pytest.fixture
def reads(app: FastAPI) -> BodyReads:
    return BodyReads(app)


@pytest.fixture
def client(reads: BodyReads) -> Iterator[TestClient]:
    with TestClient(reads) as test_client:
        yield test_client


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


# Carrier API ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CARRIER_ROUTES)
def test_a_carrier_route_without_a_key_answers_401_before_reading_the_body(
    client: TestClient, reads: BodyReads, path: str
) -> None:
    for body in INVALID_BODIES:
        response = client.post(path, content=body, headers=JSON)
        assert error(response) == (401, "missing_api_key"), (body, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    assert reads.parts == 0


@pytest.mark.parametrize("path", CARRIER_ROUTES)
@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("Bearer not-a-key", "invalid_api_key"),
        ("Bearer lk_short_key", "invalid_api_key"),
        ("Basic dXNwczpzZWNyZXQ=", "missing_api_key"),
        ("Bearer", "missing_api_key"),
    ],
)
def test_a_header_that_cannot_hold_a_key_answers_401_before_reading_the_body(
    client: TestClient, reads: BodyReads, path: str, authorization: str, code: str
) -> None:
    for body in INVALID_BODIES:
        response = client.post(path, content=body, headers=JSON | {"Authorization": authorization})
        assert error(response) == (401, code), (body, response.text)
    assert reads.parts == 0


@pytest.mark.parametrize("path", CARRIER_ROUTES)
def test_an_unknown_or_revoked_key_answers_401_for_an_invalid_body(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock, path: str
) -> None:
    with app.state.sessions.begin() as session:
        revoke_api_key(session, world.keys["dhl"][3:15], clock())
    for key, code in ((UNKNOWN_KEY, "invalid_api_key"), (world.keys["dhl"], "api_key_revoked")):
        for body in INVALID_BODIES:
            headers = JSON | {"Authorization": f"Bearer {key}"}
            response = client.post(path, content=body, headers=headers)
            assert error(response) == (401, code), (body, response.text)


def test_a_valid_key_still_hears_what_is_wrong_with_the_body(
    client: TestClient, world: World
) -> None:
    headers = JSON | world.auth("acme")
    assert error(client.post("/v1/reservations", content=b"{bad", headers=headers)) == (
        400,
        "invalid_json",
    )
    assert error(client.post("/v1/reservations", content=b"{}", headers=headers)) == (
        422,
        "validation_error",
    )
    assert error(client.post("/v1/webhooks", content=b"{bad", headers=headers)) == (
        400,
        "invalid_json",
    )
    assert error(client.post("/v1/webhooks", content=b"{}", headers=headers)) == (
        422,
        "validation_error",
    )


def test_query_errors_are_401_without_a_key_too(client: TestClient) -> None:
    assert error(client.get("/v1/reservations?limit=0")) == (401, "missing_api_key")


# Node API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NODE_ROUTES)
def test_a_node_route_without_a_signature_answers_401_before_reading_the_body(
    client: TestClient, reads: BodyReads, path: str
) -> None:
    for body in [*INVALID_BODIES, b"x" * 200_000]:
        response = client.post(path, content=body, headers=JSON)
        assert error(response) == (401, "missing_signature"), (body[:20], response.text)
        malformed = {
            signing.HEADER_NODE: "N-1",
            signing.HEADER_TIMESTAMP: "soon",
            signing.HEADER_NONCE: "n",
            signing.HEADER_SIGNATURE: "s",
        }
        response = client.post(path, content=body, headers=JSON | malformed)
        assert response.status_code == 401, response.text
    assert reads.parts == 0


def test_a_large_body_from_an_unknown_node_is_refused_before_it_is_read(
    client: TestClient, reads: BodyReads, clock: FakeClock
) -> None:
    stranger = NodeClient(client, clock, "N-nobody", "NYC-1", signing.generate_private_key())
    response = stranger.request("POST", "/v1/node/events", body=b" " * 200_000)
    assert error(response) == (401, "unknown_node")
    assert reads.parts == 0


def test_a_signed_request_with_an_invalid_body_is_still_401_when_the_signature_is_wrong(
    client: TestClient, app: FastAPI, clock: FakeClock, world: World
) -> None:
    node = enroll(client, app.state.sessions, clock)
    response = node.request("POST", "/v1/node/events", body=b"{bad", sign_as=("POST", "/", b""))
    assert error(response) == (401, "invalid_signature")
    assert error(node.request("POST", "/v1/node/events", body=b"{bad")) == (400, "invalid_json")


# Operator API -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", OPS_ROUTES)
def test_an_ops_route_without_a_session_answers_401_before_reading_the_body(
    client: TestClient, reads: BodyReads, path: str
) -> None:
    for body in INVALID_BODIES:
        response = client.post(path, content=body, headers=JSON)
        assert error(response) == (401, "not_signed_in"), (body, response.text)
    assert reads.parts == 0


def test_an_ops_route_without_the_csrf_header_answers_403_before_reading_the_body(
    client: TestClient, reads: BodyReads, app: FastAPI, clock: FakeClock, world: World
) -> None:
    make_operator(app, clock, ADMIN, "admin")
    csrf = sign_in(client, ADMIN)
    before = reads.parts
    response = client.post("/ops/api/alerts", content=b"{bad", headers=JSON)
    assert error(response) == (403, "csrf_failed")
    assert reads.parts == before
    response = client.post(
        "/ops/api/alerts", content=b"{bad", headers=JSON | {"X-CSRF-Token": csrf}
    )
    assert error(response) == (400, "invalid_json")


def test_signing_in_still_reads_its_body(client: TestClient) -> None:
    assert error(client.post("/ops/api/session", content=b"{bad", headers=JSON)) == (
        400,
        "invalid_json",
    )


# Limits -----------------------------------------------------------------------------------------


@pytest.fixture
def small_app(settings: CentralSettings, clock: FakeClock) -> Iterator[FastAPI]:
    app = create_app(settings.model_copy(update=SMALL), clock=clock)
    yield app
    app.state.engine.dispose()


@pytest.fixture
def small_reads(small_app: FastAPI) -> BodyReads:
    return BodyReads(small_app)


@pytest.fixture
def small(small_reads: BodyReads) -> Iterator[TestClient]:
    with TestClient(small_reads) as test_client:
        yield test_client


def padded_reservation(size: int) -> bytes:
    body = json.dumps({"tracking_number": "ACME-0001", "bank_id": "NYC-1", "size": "S"}).encode()
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(
    small: TestClient, small_reads: BodyReads, small_app: FastAPI
) -> None:
    for path in ("/v1/reservations", "/v1/webhooks", "/ops/api/session", "/v1/banks"):
        response = small.post(path, content=b"x" * 4097, headers=JSON)
        assert response.status_code == 413, (path, response.text)
        assert response.json() == {
            "error": "payload_too_large",
            "detail": "the request body is over this route's limit of 4096 bytes",
        }
        assert response.headers["connection"] == "close"
    response = small.post("/v1/node/events", content=b"x" * 8193, headers=JSON)
    assert error(response) == (413, "payload_too_large")
    assert small_reads.parts == 0


def test_a_streamed_body_is_refused_with_413_at_the_limit(
    small: TestClient, small_app: FastAPI, clock: FakeClock, world: World
) -> None:
    with small_app.state.sessions.begin() as session:
        key = make_carrier(session, carrier_id="tnt", now=clock())
    headers = JSON | {"Authorization": f"Bearer {key}"}
    # No Content-Length: the body arrives chunked and is counted as it is read.
    response = small.post(
        "/v1/reservations", content=chunks(padded_reservation(5000)), headers=headers
    )
    assert error(response) == (413, "payload_too_large")
    assert "content-length" not in response.request.headers
    response = small.post("/v1/webhooks", content=chunks(b"{" + b" " * 5000), headers=headers)
    assert error(response) == (413, "payload_too_large")
    node = enroll(small, small_app.state.sessions, clock)
    body = json.dumps({"events": []}).encode() + b" " * 9000
    signed = signing.sign_request(
        node.key, node.node_id, "POST", "/v1/node/events", body, int(clock().timestamp())
    )
    response = small.post("/v1/node/events", content=chunks(body), headers=JSON | signed)
    assert error(response) == (413, "payload_too_large")


def test_bodies_up_to_the_limit_are_served(
    small: TestClient, small_app: FastAPI, clock: FakeClock, world: World
) -> None:
    with small_app.state.sessions.begin() as session:
        key = make_carrier(session, carrier_id="tnt", now=clock())
    headers = JSON | {"Authorization": f"Bearer {key}"}
    response = small.post("/v1/reservations", content=padded_reservation(4096), headers=headers)
    assert response.status_code == 201, response.text
    body = padded_reservation(4096).replace(b"0001", b"0002")
    response = small.post("/v1/reservations", content=chunks(body), headers=headers)
    assert response.status_code == 201, response.text
    node = enroll(small, small_app.state.sessions, clock)
    batch = json.dumps({"events": []}).encode()
    response = node.request("POST", "/v1/node/events", body=batch + b" " * (8192 - len(batch)))
    assert response.status_code == 200, response.text


def test_the_default_limits() -> None:
    defaults = CentralSettings()
    assert defaults.max_body_bytes == 1 << 20
    # The largest batch a node may send, every field at its longest, fits with room to spare.
    longest = {
        "id": str(uuid.uuid4()),
        "type": "t" * 64,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": {
            "reservation_id": "R" * 32,
            "compartment": "C" * 16,
            "sealed_pickup_code": "p" * 1000,
            "sealed_qr_payload": "q" * 2000,
            "command_id": "c" * 64,
        },
    }
    batch = {"events": [longest | {"id": str(uuid.uuid4())} for _ in range(MAX_EVENTS_PER_BATCH)]}
    EventBatch.model_validate(batch)
    assert 2 * len(json.dumps(batch).encode()) < defaults.max_node_body_bytes
