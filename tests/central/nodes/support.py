"""Helpers for the node API tests: an enrolled node that signs its requests like a real one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.nodes.enrollment import issue_enrollment_token
from locker_wire import signing
from locker_wire.sealing import load_sealing_public_key, seal, seal_context
from tests.central.conftest import World
from tests.clock import FakeClock

LAYOUT = [
    {"label": "A01", "size": "S"},
    {"label": "A02", "size": "S"},
    {"label": "A03", "size": "M"},
    {"label": "A04", "size": "M"},
    {"label": "A05", "size": "L"},
]


def issue_token(sessions: sessionmaker[Session], clock: FakeClock, bank_id: str = "NYC-1") -> str:
    with sessions.begin() as session:
        return issue_enrollment_token(session, bank_id, clock())


@dataclass
class NodeClient:
    """A node as central sees it: an id, a key, and requests signed at the (fake) time."""

    client: TestClient
    clock: FakeClock
    node_id: str
    bank_id: str
    key: Ed25519PrivateKey
    enrollment: dict[str, Any] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        body: bytes | None = None,
        sign_as: tuple[str, str, bytes] | None = None,
        now: int | None = None,
        nonce: str | None = None,
    ) -> Any:
        """Send a signed request; `sign_as` signs another (method, path, body) than is sent.

        Returns the test client's response (typed loosely: it comes from httpx2, not httpx).
        """
        if body is None:
            body = b"" if payload is None else json.dumps(payload).encode()
        signed_method, signed_path, signed_body = sign_as or (method, path, body)
        headers = signing.sign_request(
            self.key,
            self.node_id,
            signed_method,
            signed_path,
            signed_body,
            int(self.clock().timestamp()) if now is None else now,
            nonce,
        )
        headers["Content-Type"] = "application/json"
        return self.client.request(method, path, content=body, headers=headers)

    def post(self, path: str, payload: Any) -> Any:
        return self.request("POST", path, payload)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def sealed(self, event_id: str, field_name: str, value: str) -> str:
        public = load_sealing_public_key(self.enrollment["central_sealing_public_key"])
        return seal(public, value.encode(), seal_context(event_id, field_name))


def enroll(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    bank_id: str = "NYC-1",
    compartments: list[dict[str, str]] | None = None,
) -> NodeClient:
    key = signing.generate_private_key()
    response = client.post(
        "/v1/node/enroll",
        json={
            "token": issue_token(sessions, clock, bank_id),
            "public_key": signing.public_key_text(key),
            "node_version": "1.0.0",
            "compartments": LAYOUT if compartments is None else compartments,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return NodeClient(client, clock, body["node_id"], bank_id, key, body)


def reserve(
    client: TestClient, world: World, number: str, bank_id: str = "NYC-1", size: str = "S"
) -> str:
    response = client.post(
        "/v1/reservations",
        json={"tracking_number": number, "bank_id": bank_id, "size": size},
        headers=world.auth("acme"),
    )
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def app_sessions(app: FastAPI) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.state.sessions
    return factory
