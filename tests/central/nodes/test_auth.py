"""Signed node requests: what central refuses, and with which code."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.context import Ctx
from central.errors import ApiError
from central.models import Node, NodeNonce
from central.nodes.endpoints import NodeWorkDep
from central.nodes.health import record_heartbeat
from central.scheduler import INTERVALS, Jobs
from locker_wire import signing
from locker_wire.schemas import Heartbeat
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll
from tests.clock import FakeClock

BEAT = {"doors": {"A01": "closed"}, "boards": {"main": "ok"}, "outbox_depth": 0, "version": "1"}


def node(client: TestClient, sessions: sessionmaker[Session], clock: FakeClock) -> NodeClient:
    return enroll(client, sessions, clock)


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def test_a_signed_request_is_accepted(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    response = node(client, sessions, clock).post("/v1/node/heartbeat", BEAT)
    assert response.status_code == 200, response.text
    assert response.json()["server_time"] == int(clock().timestamp())


def test_an_unsigned_request_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node(client, sessions, clock)
    assert error(client.post("/v1/node/heartbeat", json=BEAT)) == (401, "missing_signature")
    assert error(client.get("/v1/node/feed")) == (401, "missing_signature")


def test_tampered_body_path_or_method_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    n = node(client, sessions, clock)
    body = b'{"outbox_depth": 0, "version": "1"}'
    other = b'{"outbox_depth": 9, "version": "1"}'
    cases = [
        ("POST", "/v1/node/heartbeat", ("POST", "/v1/node/heartbeat", other)),
        ("POST", "/v1/node/heartbeat", ("POST", "/v1/node/events", body)),
        ("POST", "/v1/node/heartbeat", ("PUT", "/v1/node/heartbeat", body)),
        ("GET", "/v1/node/feed?limit=5", ("GET", "/v1/node/feed?limit=500", b"")),
    ]
    for method, path, signed_as in cases:
        sent = b"" if method == "GET" else body
        response = n.request(method, path, body=sent, sign_as=signed_as)
        assert error(response) == (401, "invalid_signature"), (method, path, signed_as)
    assert n.request("GET", "/v1/node/feed?limit=5&courier_codes=false").status_code == 200


def test_a_signature_by_another_key_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    n = node(client, sessions, clock)
    n.key = signing.generate_private_key()
    assert error(n.post("/v1/node/heartbeat", BEAT)) == (401, "invalid_signature")


def test_an_unknown_node_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    n = node(client, sessions, clock)
    n.node_id = "node_000000000000000000000000"
    assert error(n.post("/v1/node/heartbeat", BEAT)) == (401, "unknown_node")


def test_clock_skew_over_five_minutes_is_refused_with_server_time(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    n = node(client, sessions, clock)
    now = int(clock().timestamp())
    for skew in (-301, 301):
        response = n.request("POST", "/v1/node/heartbeat", BEAT, now=now + skew)
        assert error(response) == (401, "clock_skew")
        assert response.json()["server_time"] == now
    assert n.request("POST", "/v1/node/heartbeat", BEAT, now=now - 300).status_code == 200


def test_a_replayed_nonce_is_refused_even_after_a_refused_request(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    n = node(client, sessions, clock)
    nonce = "ab" * 16
    assert n.request("POST", "/v1/node/heartbeat", BEAT, nonce=nonce).status_code == 200
    clock.advance(seconds=5)
    replay = n.request("POST", "/v1/node/heartbeat", BEAT, nonce=nonce)
    assert error(replay) == (401, "replayed_nonce")
    # The work refused this one (no such command); the nonce still counts as used.
    missing = n.request("POST", "/v1/node/commands/nope/ack", {"outcome": "ok"}, nonce="cd" * 16)
    assert error(missing) == (404, "unknown_command")
    again = n.request("POST", "/v1/node/commands/nope/ack", {"outcome": "ok"}, nonce="cd" * 16)
    assert error(again) == (401, "replayed_nonce")


def test_the_same_nonce_from_two_nodes_is_two_requests(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    first = enroll(client, sessions, clock, "NYC-1")
    second = enroll(client, sessions, clock, "NYC-2")
    nonce = "ef" * 16
    assert first.request("POST", "/v1/node/heartbeat", BEAT, nonce=nonce).status_code == 200
    assert second.request("POST", "/v1/node/heartbeat", BEAT, nonce=nonce).status_code == 200


def test_nonces_are_purged_after_ten_minutes(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    n = node(client, sessions, clock)
    assert n.post("/v1/node/heartbeat", BEAT).status_code == 200
    clock.advance(minutes=6)
    assert n.post("/v1/node/heartbeat", BEAT).status_code == 200
    settings: CentralSettings = app.state.settings
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    jobs = Jobs(sessions, app.state.keys, clock, http, settings)
    assert "purge_node_nonces" in jobs.all() and "purge_node_nonces" in INTERVALS
    assert jobs.purge_node_nonces() == 0
    clock.advance(minutes=4, seconds=1)
    assert jobs.purge_node_nonces() == 1  # the first one, now older than ten minutes
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(NodeNonce)) == 1
    jobs.close()


def test_work_refused_after_writing_is_undone_but_its_nonce_stays_used(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    n = node(client, sessions, clock)

    async def write_then_refuse(work: NodeWorkDep) -> None:
        def run(ctx: Ctx, signed: Node, _body: bytes) -> None:
            record_heartbeat(ctx.session, signed, Heartbeat.model_validate(BEAT), ctx.now)
            raise ApiError(409, "refused_late", "refused after writing")

        await work.run(run)

    app.add_api_route("/v1/node/test-refusal", write_then_refuse, methods=["POST"])
    nonce = "fe" * 16
    refused = n.request("POST", "/v1/node/test-refusal", {}, nonce=nonce)
    assert error(refused) == (409, "refused_late")
    with sessions() as session:
        stored = session.get(Node, n.node_id)
        assert stored is not None and stored.health is None  # the heartbeat was undone
    again = n.request("POST", "/v1/node/test-refusal", {}, nonce=nonce)
    assert error(again) == (401, "replayed_nonce")


def test_a_signed_request_commits_once(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    n = node(client, sessions, clock)
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(app.state.engine, "commit", count)
    try:
        assert n.request("POST", "/v1/node/heartbeat", BEAT).status_code == 200
        assert n.get("/v1/node/feed?courier_codes=false").status_code == 200
    finally:
        event.remove(app.state.engine, "commit", count)
    assert len(commits) == 2


def test_a_key_seen_before_is_checked_again_against_the_nodes_row(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    n = node(client, sessions, clock)
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    assert n.post("/v1/node/heartbeat", BEAT).status_code == 200  # its key is seen now
    event.listen(app.state.engine, "before_cursor_execute", note)
    try:
        assert n.post("/v1/node/heartbeat", BEAT).status_code == 200
    finally:
        event.remove(app.state.engine, "before_cursor_execute", note)
    nonce_writes = [s for s in statements if "node_nonces" in s]
    if app.state.engine.dialect.name == "postgresql":
        # The row and the nonce in one statement, and no other read of the node.
        assert len(nonce_writes) == 1 and "WITH known" in nonce_writes[0]
        assert not [s for s in statements if s.lstrip().startswith("SELECT nodes.")]
    else:
        assert len(nonce_writes) == 1

    # The node enrolls again with a new key: the new key holds, the old one no longer does.
    old_key, new_key = n.key, signing.generate_private_key()
    with sessions.begin() as session:
        stored = session.get(Node, n.node_id)
        assert stored is not None
        stored.public_key = signing.public_key_text(new_key)
    assert error(n.post("/v1/node/heartbeat", BEAT)) == (401, "invalid_signature")
    n.key = new_key
    assert n.post("/v1/node/heartbeat", BEAT).status_code == 200
    replay = n.request("POST", "/v1/node/heartbeat", BEAT, nonce="12" * 16)
    assert replay.status_code == 200
    assert error(n.request("POST", "/v1/node/heartbeat", BEAT, nonce="12" * 16)) == (
        401,
        "replayed_nonce",
    )
    n.key = old_key
    assert error(n.post("/v1/node/heartbeat", BEAT)) == (401, "invalid_signature")

    # Revoked: refused at once, though its key was seen a moment ago.
    n.key = new_key
    assert n.post("/v1/node/heartbeat", BEAT).status_code == 200
    with sessions.begin() as session:
        stored = session.get(Node, n.node_id)
        assert stored is not None
        stored.revoked_at = clock()
    assert error(n.post("/v1/node/heartbeat", BEAT)) == (401, "unknown_node")
