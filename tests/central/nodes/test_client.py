"""A node's real httpx client, signing with the wire module, against central's app."""

from __future__ import annotations

import anyio
import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from locker_wire import signing
from locker_wire.auth import NodeRequestSigner
from locker_wire.schemas import EnrollmentResponse, FeedResponse, HeartbeatResult
from tests.central.conftest import World
from tests.central.nodes.support import LAYOUT, issue_token, reserve
from tests.clock import FakeClock


def test_enroll_then_signed_calls_through_httpx(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    rid = reserve(client, world, "ACME-H1")
    token = issue_token(sessions, clock)
    key = signing.generate_private_key()

    async def conversation() -> tuple[FeedResponse, FeedResponse, HeartbeatResult]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://central") as plain:
            answer = await plain.post(
                "/v1/node/enroll",
                json={
                    "token": token,
                    "public_key": signing.public_key_text(key),
                    "compartments": LAYOUT,
                },
            )
            assert answer.status_code == 200, answer.text
            enrolled = EnrollmentResponse.model_validate_json(answer.content)
        signer = NodeRequestSigner(key, enrolled.node_id, clock=lambda: clock().timestamp())
        async with httpx.AsyncClient(
            transport=transport, base_url="http://central", auth=signer
        ) as node:
            first = await node.get("/v1/node/feed", params={"limit": 1, "courier_codes": False})
            assert first.status_code == 200, first.text
            page = FeedResponse.model_validate_json(first.content)
            # The cursor is base64url: it must survive the query string unchanged.
            second = await node.get(
                "/v1/node/feed", params={"cursor": page.cursor, "courier_codes": "false"}
            )
            assert second.status_code == 200, second.text
            beat = await node.post("/v1/node/heartbeat", json={"outbox_depth": 0, "version": "1"})
            assert beat.status_code == 200, beat.text
        return (
            page,
            FeedResponse.model_validate_json(second.content),
            HeartbeatResult.model_validate_json(beat.content),
        )

    first, second, beat = anyio.run(conversation)
    assert [r.id for r in first.reservations] == [rid] and first.more
    assert second.reservations == [] and not second.more
    assert beat.online and beat.server_time == int(clock().timestamp())
