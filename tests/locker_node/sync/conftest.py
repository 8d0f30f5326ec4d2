"""Fixtures for sync tests: central's real app (its own fixtures) and a node enrolled with it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from locker_node.app import Node, build_node
from locker_node.config import NodeConfig, load_config
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.store import outbox, repository
from locker_node.store.database import transaction
from locker_node.sync.provision import provision
from locker_node.sync.service import SyncService
from tests.central import conftest as central
from tests.central.conftest import World
from tests.central.nodes.support import issue_token
from tests.clock import FakeClock

# Central's own fixtures: a migrated database per test (SQLite; PostgreSQL when configured),
# its app on a fake clock, carriers and banks.
sqlite_template = central.sqlite_template
postgres_url = central.postgres_url
database_url = central.database_url
clock = central.clock
settings = central.settings
app = central.app
sessions = central.sessions
client = central.client
world = central.world


class CentralTransport(httpx.BaseTransport):
    """Hands the node's (already signed) requests to central's app; `down` plays an outage."""

    def __init__(self, client: TestClient) -> None:
        self._client = client
        self.down = False
        self.fail_after: int | None = None  # requests to let through before going down
        self.lose_answers = 0  # event batches central applies but whose answer is lost
        self.batches: list[list[str]] = []  # event ids of every batch central received
        self.answers: list[tuple[str, str, int]] = []  # (method, path, status) of each answer
        self.strip_etag = False  # play a central of an earlier version: no conditional feed
        self.refuse_acks = False  # command acks answered 503

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.fail_after is not None:
            if self.fail_after <= 0:
                self.down = True
            self.fail_after -= 1
        if self.down:
            raise httpx.ConnectError("central is down", request=request)
        if self.refuse_acks and request.url.path.endswith("/ack"):
            return httpx.Response(503, content=b"{}")
        events = request.url.path.endswith("/events")
        if events:
            self.batches.append([e["id"] for e in json.loads(request.content)["events"]])
        answer: Any = self._client.request(
            request.method,
            request.url.raw_path.decode("ascii"),
            content=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        )
        if events and self.lose_answers > 0:
            self.lose_answers -= 1
            raise httpx.ReadError("connection reset", request=request)
        headers = {"Content-Type": answer.headers.get("content-type", "application/json")}
        if "etag" in answer.headers and not self.strip_etag:
            headers["ETag"] = answer.headers["etag"]
        self.answers.append((request.method, request.url.path, answer.status_code))
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


def courier_code(app: FastAPI, carrier: str = "acme") -> str:
    """Today's courier code at NYC-1: the fake clock's 15:00 UTC is the same day in New York."""
    code: str = app.state.keys.courier_code(carrier, "NYC-1", date(2026, 3, 2))
    return code


@dataclass
class SyncedNode:
    node: Node
    sync: SyncService
    board: SimulatedLockBoard
    config: NodeConfig
    transport: CentralTransport
    node_id: str
    kiosk: TestClient

    def lock_of(self, label: str) -> int:
        return next(c.lock for c in self.config.compartments if c.label == label)

    def door_is_open(self, label: str) -> bool:
        return str(self.board.read_doors()[self.lock_of(label)]) == "open"

    def login(self, carrier: str, code: str) -> dict[str, str]:
        answer = self.kiosk.post("/api/courier/login", json={"carrier": carrier, "pin": code})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    def deposit(self, tracking: str, headers: dict[str, str]) -> dict[str, Any]:
        answer = self.kiosk.post(
            "/api/courier/deposit", json={"tracking_number": tracking}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        opened = answer.json()
        self.board.close_door(self.lock_of(opened["compartment"]))
        confirm = self.kiosk.post(
            f"/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
        )
        assert confirm.status_code == 200, confirm.text
        result: dict[str, Any] = confirm.json()
        return result

    def pickup(self, code: str) -> dict[str, Any]:
        answer = self.kiosk.post("/api/pickup", json={"code": code})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        self.board.close_door(self.lock_of(result["compartment"]))
        return result

    def outbox(self) -> list[outbox.OutboxEvent]:
        with transaction(self.node.engine) as conn:
            return outbox.outbox_events(conn)

    def has_reservation(self, reservation_id: str) -> bool:
        with transaction(self.node.engine) as conn:
            return repository.get_reservation(conn, reservation_id) is not None


@pytest.fixture
def make_node(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    world: World,
    tmp_path: Path,
) -> Iterator[Callable[..., SyncedNode]]:
    made: list[SyncedNode] = []

    def make(*, deposit: dict[str, Any] | None = None, **sync_settings: Any) -> SyncedNode:
        """A node enrolled with central; `deposit` and `sync_settings` override its config."""
        transport = CentralTransport(client)
        config_path = tmp_path / f"node{len(made)}" / "node.toml"
        done = provision(
            central_url="http://central",
            bank_id="NYC-1",
            token=issue_token(sessions, clock),
            config_path=config_path,
            transport=transport,
        )
        loaded = load_config(config_path)
        config = loaded.model_copy(
            update={
                "doors": loaded.doors.model_copy(
                    update={"confirm_window_ms": 150, "confirm_poll_ms": 10}
                ),
                "sync": loaded.sync.model_copy(update=sync_settings),
                "deposit": loaded.deposit.model_copy(update=deposit or {}),
            }
        )
        board = SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)
        node = build_node(
            config,
            boards={"main": board},
            clock=clock,
            migrate_in_process=True,
            central_transport=transport,
        )
        # Driven pass by pass from the tests instead of by the thread.
        service, node.sync = node.sync, None
        assert service is not None
        node.start()
        synced = SyncedNode(
            node=node,
            sync=service,
            board=board,
            config=config,
            transport=transport,
            node_id=done.node_id,
            kiosk=TestClient(node.app, raise_server_exceptions=True),
        )
        made.append(synced)
        return synced

    yield make
    for synced in made:
        synced.kiosk.close()
        synced.sync.stop()
        synced.node.stop()
