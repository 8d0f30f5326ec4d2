"""Node events: applied once each, in order, scoped to the node's bank, secrets never stored."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from central.models import (
    Alert,
    BankCapacity,
    Base,
    Compartment,
    NodeEventRecord,
    Reservation,
    ReservationEvent,
    WebhookDelivery,
)
from central.nodes import repository as nodes_repository
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll, reserve
from tests.clock import FakeClock

PICKUP_CODE = "73915824"
QR_PAYLOAD = "qr_Zx9fK2mQ7vLp4TnW8sYb3RcJ6hDg1eUa"


def event(
    kind: str, data: dict[str, Any], at: datetime, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": kind,
        "occurred_at": at.isoformat(),
        "data": data,
    }


def deposit(
    node: NodeClient,
    reservation_id: str,
    at: datetime,
    compartment: str = "A01",
    seal_for: str | None = None,
) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    sealed_id = seal_for or event_id
    return event(
        "parcel.deposited",
        {
            "reservation_id": reservation_id,
            "compartment": compartment,
            "sealed_pickup_code": node.sealed(sealed_id, "pickup_code", PICKUP_CODE),
            "sealed_qr_payload": node.sealed(sealed_id, "qr_payload", QR_PAYLOAD),
        },
        at,
        event_id,
    )


def send(node: NodeClient, *events: dict[str, Any]) -> list[tuple[str, str | None]]:
    response = node.post("/v1/node/events", {"events": list(events)})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [e["id"] for e in events]
    return [(r["status"], r["error"]) for r in results]


def status_of(sessions: sessionmaker[Session], rid: str) -> str:
    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        return reservation.status


def counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(ReservationEvent)) or 0,
            session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0,
            session.scalar(select(func.count()).select_from(NodeEventRecord)) or 0,
        )


def setup(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> NodeClient:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=world.auth("acme"),
    )
    assert hook.status_code == 201, hook.text
    return enroll(client, sessions, clock)


def every_stored_text(sessions: sessionmaker[Session]) -> str:
    """Every value of every column of every table, as text."""
    parts: list[str] = []
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                parts.extend(json.dumps(v, default=str) for v in row)
    return "\n".join(parts)


def test_a_deposit_sends_the_code_to_the_carrier_and_never_stores_it(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    database_url: str,
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D1")
    at = clock() - timedelta(minutes=3)  # reported a little late, as from the outbox
    assert send(node, deposit(node, rid, at, "A02")) == [("applied", None)]

    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.status == "deposited"
        assert reservation.compartment_label == "A02"
        assert reservation.deposited_at == at
        assert reservation.pickup_deadline == at + timedelta(hours=72)
        last = session.scalars(
            select(ReservationEvent).order_by(ReservationEvent.id.desc()).limit(1)
        ).one()
        assert (last.to_status, last.actor, last.actor_id) == ("deposited", "courier", node.node_id)
        compartment = session.scalars(
            select(Compartment).where(Compartment.bank_id == "NYC-1", Compartment.label == "A02")
        ).one()
        assert compartment.state == "occupied"
        delivery = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_type == "parcel.deposited")
        ).one()
        webhook = json.loads(app.state.keys.decrypt(delivery.body_sealed))
    assert webhook["type"] == "parcel.deposited"
    assert webhook["data"]["id"] == rid
    assert webhook["data"]["pickup_code"] == PICKUP_CODE
    assert webhook["data"]["qr_payload"] == QR_PAYLOAD
    assert webhook["data"]["compartment"] == "A02"

    stored = every_stored_text(sessions)
    assert PICKUP_CODE not in stored and QR_PAYLOAD not in stored
    assert "sealed_pickup_code" in stored  # the node event itself is kept, sealed
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                raw = file.read_bytes()
                assert PICKUP_CODE.encode() not in raw and QR_PAYLOAD.encode() not in raw


def test_resending_a_batch_changes_nothing(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D2")
    batch = [
        deposit(node, rid, clock()),
        event("parcel.picked_up", {"reservation_id": rid}, clock()),
    ]
    assert send(node, *batch) == [("applied", None), ("applied", None)]
    before = counts(sessions)
    clock.advance(seconds=30)
    assert send(node, *batch) == [("duplicate", None), ("duplicate", None)]
    assert counts(sessions) == before
    assert status_of(sessions, rid) == "picked_up"


def test_a_duplicate_in_the_middle_leaves_the_rest_applied_in_order(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    first, second = reserve(client, world, "ACME-D3"), reserve(client, world, "ACME-D4")
    seen = deposit(node, first, clock())
    assert send(node, seen) == [("applied", None)]
    # picked_up of `second` is valid only after its deposit just before it in the same batch.
    results = send(
        node,
        deposit(node, second, clock(), "A02"),
        seen,
        event("parcel.picked_up", {"reservation_id": second}, clock()),
        event("parcel.picked_up", {"reservation_id": first}, clock()),
    )
    assert results == [("applied", None), ("duplicate", None), ("applied", None), ("applied", None)]
    assert status_of(sessions, first) == status_of(sessions, second) == "picked_up"
    with sessions() as session:
        capacity = session.get(BankCapacity, ("NYC-1", "S"))
        assert capacity is not None and capacity.available == 2


def test_an_invalid_transition_is_rejected_once_and_the_batch_goes_on(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D5")
    early = event("parcel.picked_up", {"reservation_id": rid}, clock())
    results = send(node, early, deposit(node, rid, clock()))
    assert results == [("rejected", "invalid_transition"), ("applied", None)]
    # Resending the rejected event does not apply it now that it would be valid.
    assert send(node, early) == [("duplicate", None)]
    assert status_of(sessions, rid) == "deposited"


def test_another_banks_reservation_is_rejected(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    elsewhere = reserve(client, world, "ACME-D6", bank_id="NYC-2")
    results = send(
        node,
        deposit(node, elsewhere, clock()),
        event("parcel.picked_up", {"reservation_id": elsewhere}, clock()),
        event("parcel.returned", {"reservation_id": "rsv_nope"}, clock()),
    )
    assert results == [("rejected", "unknown_reservation")] * 3
    assert status_of(sessions, elsewhere) == "reserved"


def test_seals_made_for_another_event_or_bad_data_are_rejected_and_not_stored(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D7")
    replayed = deposit(node, rid, clock(), seal_for=str(uuid.uuid4()))
    clear = event(
        "parcel.deposited",
        {"reservation_id": rid, "compartment": "A01", "pickup_code": PICKUP_CODE},
        clock(),
    )
    results = send(
        node,
        replayed,
        clear,
        deposit(node, rid, clock(), compartment="Z99"),
        event("parcel.teleported", {}, clock()),
    )
    assert results == [
        ("rejected", "invalid_seal"),
        ("rejected", "invalid_event"),
        ("rejected", "unknown_compartment"),
        ("rejected", "unknown_event_type"),
    ]
    assert status_of(sessions, rid) == "reserved"
    assert PICKUP_CODE not in every_stored_text(sessions)


def test_a_return_after_the_pickup_deadline_expires_then_returns(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D8")
    assert send(node, deposit(node, rid, clock(), "A01")) == [("applied", None)]
    too_soon = event("parcel.returned", {"reservation_id": rid}, clock() + timedelta(hours=1))
    assert send(node, too_soon) == [("rejected", "invalid_transition")]
    clock.advance(hours=73)
    assert send(node, event("parcel.returned", {"reservation_id": rid}, clock())) == [
        ("applied", None)
    ]
    with sessions() as session:
        steps = session.scalars(
            select(ReservationEvent.to_status)
            .where(ReservationEvent.reservation_id == rid)
            .order_by(ReservationEvent.id)
        ).all()
        assert steps == ["reserved", "deposited", "expired", "returned"]
        compartment = session.scalars(
            select(Compartment).where(Compartment.bank_id == "NYC-1", Compartment.label == "A01")
        ).one()
        assert compartment.state == "free"


def test_door_events_raise_alerts(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    kinds = ["door.fault", "door.left_open", "door.forced_open", "compartment.out_of_service"]
    results = send(
        node, *(event(k, {"compartment": "A03", "detail": {"k": k}}, clock()) for k in kinds)
    )
    assert results == [("applied", None)] * 4
    with sessions() as session:
        alerts = session.scalars(select(Alert).order_by(Alert.id)).all()
        assert [a.type for a in alerts] == [
            "door_fault",
            "door_left_open",
            "door_forced_open",
            "compartment_out_of_service",
        ]
        assert all(
            a.bank_id == "NYC-1" and a.detail and a.detail["compartment"] == "A03" for a in alerts
        )
        compartment = session.scalars(
            select(Compartment).where(Compartment.bank_id == "NYC-1", Compartment.label == "A03")
        ).one()
        assert compartment.state == "out_of_service"


def test_a_batch_is_at_most_500_events(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    events = [event("door.fault", {"compartment": "A01"}, clock()) for _ in range(501)]
    response = node.post("/v1/node/events", {"events": events})
    assert (response.status_code, response.json()["error"]) == (422, "validation_error")
    assert counts(sessions)[2] == 0


def test_a_node_clock_ahead_does_not_move_the_pickup_deadline_out(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D9")
    assert send(node, deposit(node, rid, clock() + timedelta(days=2))) == [("applied", None)]
    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.deposited_at == clock()
        assert reservation.pickup_deadline == clock() + timedelta(hours=72)


def test_the_same_batch_sent_twice_at_once_is_applied_once(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D10")
    batch = [deposit(node, rid, clock())] + [
        event("door.left_open", {"compartment": "A02"}, clock()) for _ in range(20)
    ]
    start = threading.Barrier(2)

    def post() -> list[str]:
        start.wait()
        response = node.post("/v1/node/events", {"events": batch})
        assert response.status_code == 200, response.text
        return [r["status"] for r in response.json()["results"]]

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: post(), range(2)))
    for position in range(len(batch)):
        assert sorted(o[position] for o in outcomes) == ["applied", "duplicate"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(NodeEventRecord)) == 21
        assert session.scalar(select(func.count()).select_from(Alert)) == 1
        deliveries = session.scalars(select(WebhookDelivery.event_type)).all()
        assert deliveries.count("parcel.deposited") == 1


def test_batches_holding_the_same_events_in_opposite_orders_apply_each_once(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    # The same events at once in opposite orders: each applied by exactly one of the two. The
    # lock order that keeps this from deadlocking is pinned down by the test below.
    node = setup(client, world, sessions, clock)
    events = [event("door.left_open", {"compartment": "A02"}, clock()) for _ in range(200)]
    start = threading.Barrier(2)

    def post(batch: list[dict[str, Any]]) -> dict[str, str]:
        start.wait()
        response = node.post("/v1/node/events", {"events": batch})
        assert response.status_code == 200, response.text
        return {r["id"]: r["status"] for r in response.json()["results"]}

    with ThreadPoolExecutor(2) as pool:
        forward, backward = pool.map(post, [events, events[::-1]])
    for item in events:
        assert sorted([forward[item["id"]], backward[item["id"]]]) == ["applied", "duplicate"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(NodeEventRecord)) == 200
        assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_the_same_event_twice_in_one_batch_counts_once(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D11")
    twice = event("parcel.picked_up", {"reservation_id": rid}, clock())
    bad = event("door.fault", {"compartment": "Z99"}, clock())
    results = send(node, deposit(node, rid, clock()), twice, bad, twice, bad)
    assert results == [
        ("applied", None),
        ("applied", None),
        ("rejected", "unknown_compartment"),
        ("duplicate", None),
        ("duplicate", None),
    ]
    assert status_of(sessions, rid) == "picked_up"
    with sessions() as session:
        records = session.scalars(select(NodeEventRecord).order_by(NodeEventRecord.id)).all()
        assert len(records) == 3
        refused = [r for r in records if r.id == bad["id"]]
        assert [(r.status, r.error) for r in refused] == [("rejected", "unknown_compartment")]
        assert session.scalar(select(func.count()).select_from(Alert)) == 0


def test_a_batch_of_alerts_costs_the_same_statements_whatever_its_size(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = setup(client, world, sessions, clock)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    def cost(size: int) -> int:
        batch = [event("door.left_open", {"compartment": "A01"}, clock()) for _ in range(size)]
        statements.clear()
        sqlalchemy_event.listen(app.state.engine, "before_cursor_execute", count)
        try:
            assert send(node, *batch) == [("applied", None)] * size
        finally:
            sqlalchemy_event.remove(app.state.engine, "before_cursor_execute", count)
        return len(statements)

    cost(1)  # the node's first signed request: its key is not seen yet (`auth.SeenKeys`)
    small, large = cost(2), cost(300)
    assert large == small, statements
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(NodeEventRecord)) == 303
        # The same door left open again and again is one open alert, kept current.
        assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_a_compartment_state_set_early_in_a_batch_is_seen_later_in_it(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D12")
    results = send(
        node,
        deposit(node, rid, clock(), "A02"),
        # Frees A02 only if it knows the deposit above made it occupied.
        event("parcel.picked_up", {"reservation_id": rid}, clock()),
        event("compartment.out_of_service", {"compartment": "A04"}, clock()),
    )
    assert results == [("applied", None)] * 3
    with sessions() as session:
        rows = session.execute(
            select(Compartment.label, Compartment.state).where(
                Compartment.bank_id == "NYC-1", Compartment.label.in_(["A02", "A04"])
            )
        )
        states = dict(rows.all())
        assert states == {"A02": "free", "A04": "out_of_service"}


def test_a_claim_waits_in_id_order_so_crossed_claims_cannot_deadlock(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks on unique keys: SQLite has one writer at a time")
    node = setup(client, world, sessions, clock)
    low, high = sorted(str(uuid.uuid4()) for _ in range(2))

    def row(event_id: str) -> dict[str, Any]:
        return {
            "id": event_id,
            "node_id": node.node_id,
            "bank_id": node.bank_id,
            "type": "door.left_open",
            "occurred_at": clock(),
            "received_at": clock(),
            "status": "applied",
            "error": None,
            "data": {},
        }

    def waiting_for_a_lock() -> int:
        with sessions() as session:
            return (
                session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                or 0
            )

    def claim_crossed() -> set[str]:
        with sessions() as session, session.begin():
            return nodes_repository.claim_events(session, [row(high), row(low)])

    with sessions() as first, ThreadPoolExecutor(1) as pool:
        first.begin()
        assert nodes_repository.claim_events(first, [row(low)]) == {low}
        crossed = pool.submit(claim_crossed)
        deadline = time.monotonic() + 30
        while not waiting_for_a_lock():
            assert time.monotonic() < deadline, "the second claim never waited"
            time.sleep(0.01)
        # Had the second claim taken `high` before waiting for `low`, this would deadlock.
        assert nodes_repository.claim_events(first, [row(high)]) == {high}
        first.commit()
        assert crossed.result(timeout=30) == set()


def capacity_and_state(sessions: sessionmaker[Session], label: str) -> tuple[tuple[int, int], str]:
    with sessions() as session:
        compartment = session.scalars(
            select(Compartment).where(Compartment.bank_id == "NYC-1", Compartment.label == label)
        ).one()
        capacity = session.get(BankCapacity, ("NYC-1", compartment.size))
        assert capacity is not None
        return (capacity.total, capacity.available), compartment.state


def test_out_of_service_takes_its_unit_from_allocation_and_back_in_service_returns_it(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    (total, free), _ = capacity_and_state(sessions, "A04")

    send(node, event("compartment.out_of_service", {"compartment": "A04"}, clock()))
    assert capacity_and_state(sessions, "A04") == ((total - 1, free - 1), "out_of_service")
    # Reported again (a second fault) it is still one unit out, not two.
    send(node, event("door.fault", {"compartment": "A04"}, clock()))
    send(node, event("compartment.out_of_service", {"compartment": "A04"}, clock()))
    assert capacity_and_state(sessions, "A04") == ((total - 1, free - 1), "out_of_service")

    send(node, event("compartment.in_service", {"compartment": "A04"}, clock()))
    assert capacity_and_state(sessions, "A04") == ((total, free), "free")
    send(node, event("compartment.in_service", {"compartment": "A04"}, clock()))
    assert capacity_and_state(sessions, "A04") == ((total, free), "free")


def test_a_compartment_holding_a_parcel_comes_back_occupied(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    rid = reserve(client, world, "ACME-D13")
    send(node, deposit(node, rid, clock(), "A02"))
    (total, free), state = capacity_and_state(sessions, "A02")
    assert state == "occupied"

    send(node, event("compartment.out_of_service", {"compartment": "A02"}, clock()))
    assert capacity_and_state(sessions, "A02") == ((total - 1, free - 1), "out_of_service")
    send(node, event("compartment.in_service", {"compartment": "A02"}, clock()))
    assert capacity_and_state(sessions, "A02") == ((total, free), "occupied")


def test_a_door_in_trouble_again_refreshes_its_open_alert(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    left_open = [
        event("door.left_open", {"compartment": "A03", "detail": {"n": n}}, clock())
        for n in range(3)
    ]
    send(node, *left_open[:2])
    send(node, left_open[2], event("door.left_open", {"compartment": "A05"}, clock()))
    with sessions() as session:
        alerts = session.scalars(select(Alert).order_by(Alert.id)).all()
        assert [(a.subject, a.detail and a.detail["detail"]) for a in alerts] == [
            ("A03", {"n": 2}),
            ("A05", None),
        ]


def test_back_in_service_resolves_the_out_of_service_alert(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    node = setup(client, world, sessions, clock)
    send(node, event("compartment.out_of_service", {"compartment": "A04"}, clock()))
    send(node, event("compartment.in_service", {"compartment": "A04"}, clock()))
    # In one batch: out, back, and out again leaves one open alert.
    send(
        node,
        event("compartment.out_of_service", {"compartment": "A05"}, clock()),
        event("compartment.in_service", {"compartment": "A05"}, clock()),
        event("compartment.out_of_service", {"compartment": "A05"}, clock()),
    )
    with sessions() as session:
        alerts = session.scalars(select(Alert).order_by(Alert.id)).all()
        assert [(a.subject, a.resolved_at is not None) for a in alerts] == [
            ("A04", True),
            ("A05", False),
        ]
