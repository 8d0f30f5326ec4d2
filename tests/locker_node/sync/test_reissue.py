"""Central's `invalidate_code` with `reissue`: the old code dies, a new one opens, sealed out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.models import ReservationEvent
from central.nodes import reissue
from central.nodes.seals import sealing_key
from locker_node.domain.codes import KeyedHasher, issue_pickup_code
from locker_node.domain.lifecycle import CodeStatus, EventType
from locker_node.flows import commands
from locker_node.flows.errors import Refused
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import DATABASE_FILE, transaction
from locker_wire.schemas import Command
from locker_wire.sealing import open_sealed, seal_context
from tests.central.conftest import World
from tests.central.nodes.support import reserve
from tests.clock import FakeClock
from tests.locker_node.sync.conftest import SyncedNode, courier_code
from tests.locker_node.sync.test_commands import central_status, command
from tests.locker_node.sync.test_delivery import CarrierReceiver, dispatch, subscribe


@dataclass
class Scene:
    """Central with its carrier world, and a node synced to it."""

    app: FastAPI
    client: TestClient
    world: World
    clock: FakeClock
    sessions: sessionmaker[Session]
    node: SyncedNode

    def deposited(self, tracking: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        """A parcel in a compartment: (reservation id, the kiosk's answer, code and QR in clear)."""
        node = self.node
        rid = reserve(self.client, self.world, tracking)
        assert node.sync.run_once()
        answer = node.deposit(tracking, node.login("acme", courier_code(self.app)))
        [event] = [
            e
            for e in node.outbox()
            if e.type == EventType.PARCEL_DEPOSITED and e.data["reservation_id"] == rid
        ]
        return rid, answer, clear_secrets(node, event)

    def invalidate(self, rid: str, *, reissue: bool) -> Command:
        """Central's `invalidate_code` for the reservation, pulled by the node."""
        payload: dict[str, Any] = {"reissue": True, "reason": "x"} if reissue else {}
        issued = command(
            self.app, self.sessions, self.clock, "invalidate_code", reservation_id=rid, **payload
        )
        assert self.node.sync.pull_feed() == 1
        return issued


@pytest.fixture
def scene(
    make_node: Callable[..., SyncedNode],
    app: FastAPI,
    client: TestClient,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> Scene:
    return Scene(app, client, world, clock, sessions, make_node())


def clear_secrets(node: SyncedNode, event: outbox.OutboxEvent) -> dict[str, str]:
    return {
        field: node.node.keys.unseal(event.data[f"sealed_{field}"])
        for field in ("pickup_code", "qr_payload")
    }


def reissued_events(node: SyncedNode) -> list[outbox.OutboxEvent]:
    return [e for e in node.outbox() if e.type == EventType.PARCEL_CODE_REISSUED]


def pickup(node: SyncedNode, code: str) -> Any:
    return node.kiosk.post("/api/pickup", json={"code": code})


def pickup_qr(node: SyncedNode, token: str) -> Any:
    return node.kiosk.post("/api/pickup/qr", json={"token": token})


def stored_bytes(node: SyncedNode) -> bytes:
    data_dir = node.config.data_dir
    files = [data_dir / name for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal")]
    return b"".join(path.read_bytes() for path in files if path.exists())


def test_reissue_kills_the_old_code_and_the_new_one_opens(scene: Scene) -> None:
    node = scene.node
    rid, answer, old = scene.deposited("ACME-RE1")

    issued = scene.invalidate(rid, reissue=True)

    assert central_status(scene.sessions, issued.id)[0] == "acknowledged"
    [event] = reissued_events(node)
    new = clear_secrets(node, event)
    assert new["pickup_code"] != old["pickup_code"] and new["qr_payload"] != old["qr_payload"]
    assert len(new["pickup_code"]) == node.config.pickup.code_digits
    assert event.data["reservation_id"] == rid
    assert event.data["compartment"] == answer["compartment"]
    assert event.data["command_id"] == issued.id
    with transaction(node.node.engine) as conn:
        parcel = repo.get_parcel(conn, answer["parcel_id"])
        live = repo.get_pickup_code(conn, answer["parcel_id"])
    assert parcel is not None and live is not None
    assert live.status == CodeStatus.ACTIVE and live.expires_at == parcel.pickup_deadline

    refused = pickup(node, old["pickup_code"])
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_code"
    assert pickup_qr(node, old["qr_payload"]).status_code == 401
    assert not node.door_is_open(answer["compartment"])

    # `pickup` asserts the 200 and then closes the door the recipient opened.
    assert node.pickup(new["pickup_code"])["compartment"] == answer["compartment"]
    # Single use, as any pickup code: typed again, it says the parcel is collected.
    again = pickup(node, new["pickup_code"])
    assert again.status_code == 409 and again.json()["error"] == "already_collected"


def test_the_reissued_qr_payload_opens_the_same_compartment(scene: Scene) -> None:
    node = scene.node
    rid, answer, _ = scene.deposited("ACME-RE2")
    scene.invalidate(rid, reissue=True)
    [event] = reissued_events(node)

    opened = pickup_qr(node, clear_secrets(node, event)["qr_payload"])

    assert opened.status_code == 200, opened.text
    assert opened.json()["compartment"] == answer["compartment"]


def test_the_event_goes_out_sealed_to_central_and_no_code_is_kept_in_clear(scene: Scene) -> None:
    node = scene.node
    rid, _, old = scene.deposited("ACME-RE3")
    scene.invalidate(rid, reissue=True)
    [event] = reissued_events(node)
    new = clear_secrets(node, event)

    wire = node.sync.wire_event(event)

    assert wire is not None
    assert wire["type"] == "parcel.code_reissued" and wire["id"] == event.event_id
    assert set(wire["data"]) == {
        "reservation_id",
        "compartment",
        "sealed_pickup_code",
        "sealed_qr_payload",
        "command_id",
    }
    key = sealing_key(scene.app.state.keys)
    for field in ("pickup_code", "qr_payload"):
        sealed = wire["data"][f"sealed_{field}"]
        assert sealed != event.data[f"sealed_{field}"]  # the node's own seal never leaves it
        opened = open_sealed(key, sealed, seal_context(event.event_id, field))
        assert opened.decode() == new[field]
    reissue.CodeReissuedData.model_validate(wire["data"])  # what central's handler accepts

    at_rest = stored_bytes(node)
    outbox = "\n".join(e.payload for e in node.outbox())
    assert len(at_rest) > 10_000
    for secret in (*new.values(), *old.values()):
        assert secret.encode() not in at_rest
        assert secret not in outbox


def test_without_reissue_the_code_only_dies(scene: Scene) -> None:
    node = scene.node
    rid, answer, old = scene.deposited("ACME-RE4")

    plain = scene.invalidate(rid, reissue=False)

    assert central_status(scene.sessions, plain.id)[0] == "acknowledged"
    assert reissued_events(node) == []
    assert pickup(node, old["pickup_code"]).status_code == 401
    with transaction(node.node.engine) as conn:
        code = repo.get_pickup_code(conn, answer["parcel_id"])
    assert code is not None and code.status == CodeStatus.REVOKED

    # A code killed before can still be replaced: the recipient gets a way to collect again.
    again = scene.invalidate(rid, reissue=True)
    assert central_status(scene.sessions, again.id)[0] == "acknowledged"
    [event] = reissued_events(node)
    assert (
        node.pickup(clear_secrets(node, event)["pickup_code"])["compartment"]
        == (answer["compartment"])
    )


def test_reissue_without_a_parcel_in_a_compartment_fails_and_changes_nothing(
    scene: Scene,
) -> None:
    node = scene.node
    waiting = reserve(scene.client, scene.world, "ACME-RE5")
    rid, _, old = scene.deposited("ACME-RE6")
    assert node.pickup(old["pickup_code"])

    for reservation_id in (waiting, rid):
        issued = scene.invalidate(reservation_id, reissue=True)
        status, result = central_status(scene.sessions, issued.id)
        assert status == "failed" and "no parcel" in result["detail"]
    assert reissued_events(node) == []


def test_reissue_at_the_pickup_deadline_is_refused_and_keeps_the_code(scene: Scene) -> None:
    node = scene.node
    rid, answer, old = scene.deposited("ACME-RE7")
    with transaction(node.node.engine) as conn:
        parcel = repo.get_parcel(conn, answer["parcel_id"])
    assert parcel is not None

    # A code that would expire as it is issued helps nobody: extend the deadline first.
    with (
        pytest.raises(Refused, match="deadline"),
        transaction(node.node.engine) as conn,
    ):
        commands.reissue_pickup_code(conn, node.node.flows.ports, rid, parcel.pickup_deadline)

    assert reissued_events(node) == []
    assert node.pickup(old["pickup_code"])["compartment"] == answer["compartment"]


def test_through_central_the_carrier_gets_the_new_code(scene: Scene) -> None:
    subscribe(scene.client, scene.world)
    node = scene.node
    rid, _, _ = scene.deposited("ACME-RE8")
    issued = scene.invalidate(rid, reissue=True)
    [event] = reissued_events(node)
    new = clear_secrets(node, event)

    assert node.sync.run_once()

    assert [e.sent_at is not None for e in node.outbox()] == [True] * len(node.outbox())
    with scene.sessions() as session:
        entry = session.scalars(
            select(ReservationEvent).where(
                ReservationEvent.reservation_id == rid, ReservationEvent.type == "code_reissued"
            )
        ).one()
    assert (entry.actor, entry.data) == (
        "operator",
        {
            "node_event_id": event.event_id,
            "compartment": event.data["compartment"],
            "command_id": issued.id,
        },
    )
    receiver = CarrierReceiver()
    dispatch(scene.app, scene.clock, receiver)
    [hook] = receiver.of_type("parcel.code_reissued")
    data = hook["data"]
    assert isinstance(data, dict)
    assert (data["id"], data["status"]) == (rid, "deposited")
    assert data["pickup_code"] == new["pickup_code"]
    assert data["qr_payload"] == new["qr_payload"]
    assert node.pickup(new["pickup_code"])


def test_issue_pickup_code_draws_again_while_the_hash_is_taken() -> None:
    hasher, qr_hasher = KeyedHasher(b"k" * 32), KeyedHasher(b"q" * 32)
    asked: list[str] = []

    def in_use(digest: str) -> bool:
        asked.append(digest)
        return len(asked) < 3

    issued = issue_pickup_code(hasher, qr_hasher, digits=10, in_use=in_use)

    assert len(asked) == 3 and asked[-1] == issued.code_hash
    assert len(issued.code) == 10 and issued.code.isdigit()
    assert issued.code_hash == hasher.digest(issued.code)
    assert issued.qr_hash == qr_hasher.digest(issued.qr_token)
