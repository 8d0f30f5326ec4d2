"""The node API's overflow calls: nearby banks with room, and moving one of the node's bank's
reservations there, each signed like every other node request."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from central.models import BankCapacity, NodeCommand, Reservation, ReservationEvent
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll, reserve
from tests.clock import FakeClock


def nearby(node: NodeClient, query: str = "size=S") -> Any:
    return node.get(f"/v1/node/nearby?{query}")


def redirect(node: NodeClient, rid: str, body: dict[str, Any]) -> Any:
    return node.post(f"/v1/node/reservations/{rid}/redirect", body)


def free(sessions: sessionmaker[Session], bank_id: str, size: str) -> int:
    with sessions() as session:
        row = session.get(BankCapacity, (bank_id, size))
        assert row is not None
        return row.available


def test_nearby_lists_the_other_banks_with_room_nearest_first(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)

    answer = nearby(node)

    assert answer.status_code == 200, answer.text
    # BOS-1 is 300 km away; NYC-1 is the node's own bank.
    assert answer.json() == {
        "banks": [
            {
                "id": "NYC-2",
                "name": "Bank NYC-2",
                "address": "NYC-2 Street",
                "distance_km": answer.json()["banks"][0]["distance_km"],
                "free": 2,
            }
        ]
    }
    assert 1.5 < answer.json()["banks"][0]["distance_km"] < 1.8


def test_nearby_counts_only_free_units_of_the_class(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    reserve(client, world, "ACME-N1", bank_id="NYC-2")
    reserve(client, world, "ACME-N2", bank_id="NYC-2")

    assert nearby(node).json() == {"banks": []}
    assert [b["id"] for b in nearby(node, "size=M&limit=1").json()["banks"]] == ["NYC-2"]


def test_nearby_with_accessible_counts_only_accessible_units(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    assert nearby(node, "size=M&accessible=true").json() == {"banks": []}
    with sessions.begin() as session:
        session.execute(
            update(BankCapacity)
            .where(BankCapacity.bank_id == "NYC-2", BankCapacity.size == "M")
            .values(accessible_total=1, accessible_available=1)
        )

    [bank] = nearby(node, "size=M&accessible=true").json()["banks"]

    assert (bank["id"], bank["free"]) == ("NYC-2", 1)


def test_nearby_is_for_signed_requests_with_good_parameters(
    client: TestClient, sessions: sessionmaker[Session], clock: FakeClock, world: World
) -> None:
    node = enroll(client, sessions, clock)

    unsigned = client.get("/v1/node/nearby?size=S")
    forged = node.request(
        "GET", "/v1/node/nearby?size=S", sign_as=("GET", "/v1/node/nearby?size=XL", b"")
    )
    bad_size = nearby(node, "size=XXL")
    too_many = nearby(node, "size=S&limit=500")

    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "missing_signature")
    assert (forged.status_code, forged.json()["error"]) == (401, "invalid_signature")
    assert bad_size.status_code == 422
    assert too_many.status_code == 422


def test_a_node_moves_a_reservation_of_its_bank(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    rid = reserve(client, world, "ACME-R1")

    answer = redirect(node, rid, {"bank_id": "NYC-2"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("reservation_id", "bank_id", "name", "address", "size")} == {
        "reservation_id": rid,
        "bank_id": "NYC-2",
        "name": "Bank NYC-2",
        "address": "NYC-2 Street",
        "size": "S",
    }
    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None and (row.bank_id, row.status) == ("NYC-2", "reserved")
        entry = session.scalars(
            select(ReservationEvent).where(ReservationEvent.type == "redirected")
        ).one()
        assert (entry.actor, entry.actor_id) == ("courier", node.node_id)
        assert entry.data == {"from_bank": "NYC-1", "to_bank": "NYC-2", "by": "courier"}
        # The node that asked forgets the reservation itself: no command is sent to it.
        assert session.scalar(select(func.count()).select_from(NodeCommand)) == 0
    assert (free(sessions, "NYC-1", "S"), free(sessions, "NYC-2", "S")) == (2, 1)


def test_asking_again_after_a_move_answers_the_same(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    rid = reserve(client, world, "ACME-R2")
    first = redirect(node, rid, {"bank_id": "NYC-2"})

    again = redirect(node, rid, {"bank_id": "NYC-2"})
    elsewhere = redirect(node, rid, {"bank_id": "BOS-1"})

    assert again.status_code == 200
    assert again.json() == first.json()
    assert elsewhere.status_code == 404  # no longer this bank's to move
    with sessions() as session:
        moves = session.scalars(
            select(ReservationEvent).where(ReservationEvent.type == "redirected")
        ).all()
        assert len(moves) == 1
    assert free(sessions, "NYC-2", "S") == 1


def test_a_larger_class_can_be_asked_for_never_a_smaller_one(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    rid = reserve(client, world, "ACME-R3", size="M")

    smaller = redirect(node, rid, {"bank_id": "NYC-2", "size": "S"})
    larger = redirect(node, rid, {"bank_id": "NYC-2", "size": "L"})

    assert (smaller.status_code, smaller.json()["error"]) == (422, "size_too_small")
    assert larger.status_code == 200, larger.text
    assert larger.json()["size"] == "L"
    assert (free(sessions, "NYC-1", "M"), free(sessions, "NYC-2", "L")) == (2, 0)
    with sessions() as session:
        entry = session.scalars(
            select(ReservationEvent).where(ReservationEvent.type == "redirected")
        ).one()
        assert entry.data is not None
        assert (entry.data["from_size"], entry.data["to_size"]) == ("M", "L")


def test_a_node_moves_only_its_own_banks_reservations(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    elsewhere = reserve(client, world, "ACME-R4", bank_id="NYC-2")
    mine = reserve(client, world, "ACME-R5")

    other_bank = redirect(node, elsewhere, {"bank_id": "BOS-1"})
    unknown = redirect(node, "rsv_unknown", {"bank_id": "NYC-2"})
    same = redirect(node, mine, {"bank_id": "NYC-1"})
    no_bank = redirect(node, mine, {})
    unsigned = client.post(f"/v1/node/reservations/{mine}/redirect", json={"bank_id": "NYC-2"})

    assert other_bank.status_code == 404
    assert unknown.status_code == 404
    assert (same.status_code, same.json()["error"]) == (422, "same_bank")
    assert (no_bank.status_code, no_bank.json()["error"]) == (422, "validation_error")
    assert unsigned.status_code == 401
    assert free(sessions, "NYC-2", "S") == 1  # only the reservation made there holds a unit


def test_a_full_target_refuses_the_node_with_alternatives(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = enroll(client, sessions, clock)
    reserve(client, world, "ACME-F1", bank_id="NYC-2", size="L")
    rid = reserve(client, world, "ACME-R6", size="L")

    answer = redirect(node, rid, {"bank_id": "NYC-2"})

    assert answer.status_code == 409
    assert answer.json()["error"] == "no_capacity"
    assert "alternatives" in answer.json()
    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None and row.bank_id == "NYC-1"
