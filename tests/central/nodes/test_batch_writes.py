"""A node's event batch written set-based: a fixed number of statements whatever its size, the
same rows and webhook bodies as moves written one at a time, nothing applied twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.banks.service import compartment_labels, parse_compartment_spec
from central.context import Ctx
from central.models import (
    Actor,
    BankCapacity,
    Compartment,
    Notice,
    Reservation,
    ReservationEvent,
    ReservationStatus,
    WebhookDelivery,
)
from central.nodes import repository as nodes_repository
from central.nodes.batch import BatchNotices
from central.nodes.batch_writes import BatchWrites
from central.reservations.transitions import plan_transition
from tests.central.conftest import World, make_bank
from tests.central.nodes.support import NodeClient, enroll
from tests.central.nodes.test_events import deposit, event, send
from tests.central.nodes.test_walkup import walk_up, walk_up_id
from tests.clock import FakeClock

BANK = "BIG-1"
SPEC = "S:30"


def subscribe(client: TestClient, world: World) -> None:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=world.auth("acme"),
    )
    assert hook.status_code == 201, hook.text


def big_bank(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> tuple[NodeClient, list[str]]:
    """A bank of 30 small compartments with its node enrolled; its labels."""
    with sessions.begin() as session:
        make_bank(session, bank_id=BANK, now=clock(), compartments=SPEC)
    labels = compartment_labels(parse_compartment_spec(SPEC))
    layout = [{"label": label, "size": str(size)} for label, size in labels]
    subscribe(client, world)
    return enroll(client, sessions, clock, BANK, layout), [label for label, _ in labels]


def reserve_for(
    client: TestClient, world: World, number: str, email: str, bank_id: str = BANK
) -> str:
    response = client.post(
        "/v1/reservations",
        json={
            "tracking_number": number,
            "bank_id": bank_id,
            "size": "S",
            "recipient": {"name": "R", "email": email},
        },
        headers=world.auth("acme"),
    )
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def picked_up(rid: str, at: Any) -> dict[str, Any]:
    return event("parcel.picked_up", {"reservation_id": rid}, at)


def deliveries_by_type(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(
            select(WebhookDelivery.event_type, func.count()).group_by(WebhookDelivery.event_type)
        )
        return {str(kind): int(n) for kind, n in rows}


@pytest.fixture
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements central runs while the test looks (an executemany counts once)."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(str(args[2]))

    sqlalchemy_event.listen(app.state.engine, "before_cursor_execute", count)
    yield seen
    sqlalchemy_event.remove(app.state.engine, "before_cursor_execute", count)


def test_a_batch_of_deposits_pickups_and_alerts_costs_the_same_statements_whatever_its_size(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    statements: list[str],
) -> None:
    node, labels = big_bank(client, world, sessions, clock)
    used = iter(labels)

    def cost(size: int) -> int:
        # Parcels deposited in an earlier batch, picked up in this one; parcels deposited in
        # this one, the first of them picked up in it too; a door alert per parcel.
        earlier = [
            (reserve_for(client, world, f"E{size}-{n}", f"e{size}.{n}@example.com"), next(used))
            for n in range(size)
        ]
        fresh = [
            (reserve_for(client, world, f"F{size}-{n}", f"f{size}.{n}@example.com"), next(used))
            for n in range(size)
        ]
        assert (
            send(node, *(deposit(node, rid, clock(), label) for rid, label in earlier))
            == [("applied", None)] * size
        )
        batch: list[dict[str, Any]] = []
        for (old, _), (new, label) in zip(earlier, fresh, strict=True):
            batch += [
                deposit(node, new, clock(), label),
                picked_up(old, clock()),
                event("door.left_open", {"compartment": label}, clock()),
            ]
        batch.append(picked_up(fresh[0][0], clock()))
        statements.clear()
        assert send(node, *batch) == [("applied", None)] * len(batch)
        return len(statements)

    small = cost(3)
    small_statements = list(statements)
    large = cost(10)
    assert large == small, (small_statements, statements)
    # 2 * 3 + 2 * 10 deposits, 3 + 1 + 10 + 1 pickups: one webhook each, written once.
    assert deliveries_by_type(sessions) == {
        "reservation.created": 26,
        "parcel.deposited": 26,
        "parcel.picked_up": 15,
    }
    with sessions() as session:
        picked = session.scalar(
            select(func.count())
            .select_from(Reservation)
            .where(Reservation.bank_id == BANK, Reservation.status == "picked_up")
        )
        assert picked == 15
        notices = session.execute(
            select(Notice.kind, func.count()).where(Notice.bank_id == BANK).group_by(Notice.kind)
        )
        assert dict(notices.all()) == {"ready": 26, "collected": 15}
        capacity = session.get(BankCapacity, (BANK, "S"))
        assert capacity is not None and capacity.available == 30 - 26 + 15


def opened(app: FastAPI, sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        return [
            {"type": row.event_type, **json.loads(app.state.keys.decrypt(row.body_sealed))}
            for row in rows
        ]


def normalised(value: Any, names: dict[str, str]) -> Any:
    """The value with each run's own names (ids, tracking numbers, groups) as placeholders."""
    if isinstance(value, dict):
        return {key: normalised(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [normalised(item, names) for item in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def test_the_batch_writes_what_moves_written_one_at_a_time_write(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same story told twice at the same (fake) times, at two banks: once as the batch
    writes it, once with every move written at once by `transitions.transition` (the path
    before batching). The webhook bodies, histories and notices are the same, names aside."""
    subscribe(client, world)
    at_once = {"on": False}
    holds = BatchWrites.holds
    monkeypatch.setattr(BatchWrites, "holds", lambda self, r: not at_once["on"] and holds(self, r))
    runs = {"batched": "NYC-1", "at_once": "NYC-2"}
    nodes = {run: enroll(client, sessions, clock, bank) for run, bank in runs.items()}
    names: dict[str, dict[str, str]] = {run: {bank: "BANK"} for run, bank in runs.items()}
    parcels: dict[str, list[str]] = {run: [] for run in runs}
    for n, (email, size) in enumerate([("x", "S"), ("x", "M"), ("y", "S"), ("z", "M")]):
        for run, bank in runs.items():
            number = f"ACME-{run[0].upper()}{n}"
            rid = client.post(
                "/v1/reservations",
                json={
                    "tracking_number": number,
                    "bank_id": bank,
                    "size": size,
                    "recipient": {"name": "R", "email": f"{email}.{run}@example.com"},
                },
                headers=world.auth("acme"),
            ).json()["id"]
            parcels[run].append(rid)
            names[run] |= {rid: f"R{n}", number: f"T{n}"}
        clock.advance(minutes=1)  # a group lists its reservations oldest first

    def step(build: Any) -> None:
        for run in runs:
            at_once["on"] = run == "at_once"
            node, (r0, r1, r2, r3) = nodes[run], parcels[run]
            events = build(node, r0, r1, r2, r3)
            for n, item in enumerate(events):
                names[run][item["id"]] = f"E{len(names[run])}-{n}"
            send(node, *events)

    joined = {"sealed_pickup_code": "", "sealed_qr_payload": ""}
    step(
        lambda node, r0, r1, r2, r3: [
            deposit(node, r0, clock(), "A01"),
            # Joins r0's code, which this batch deposited (the batch's copy of r0 is read), and
            # its compartment: A01 is free when the last of them has left it.
            event(
                "parcel.deposited",
                {"reservation_id": r1, "compartment": "A01", "shares_code_with": r0, **joined},
                clock(),
            ),
            deposit(node, r2, clock(), "A02"),
            picked_up(r2, clock()),
            picked_up(r2, clock()),  # refused: picked up already
            event("door.left_open", {"compartment": "A02"}, clock()),
            deposit(node, r3, clock(), "A04"),
            event("compartment.out_of_service", {"compartment": "A04"}, clock()),
        ]
    )
    clock.advance(hours=80)
    step(
        lambda node, r0, r1, r2, r3: [
            picked_up(r0, clock()),
            event("compartment.out_of_service", {"compartment": "A01"}, clock()),
            event("compartment.in_service", {"compartment": "A01"}, clock()),  # r1 still in
            event("parcel.returned", {"reservation_id": r1}, clock()),  # expired, then returned
            event("compartment.in_service", {"compartment": "A04"}, clock()),  # r3 still in
        ]
    )

    bodies: dict[str, list[Any]] = {run: [] for run in runs}
    for body in opened(app, sessions):
        run = "batched" if body["data"]["bank"]["id"] == runs["batched"] else "at_once"
        group = body["data"]["group"]
        if group["id"] not in names[run]:
            names[run][group["id"]] = f"G{sum(v.startswith('G') for v in names[run].values())}"
        del body["id"], body["data"]["bank"]
        bodies[run].append(normalised(body, names[run]))
    assert [b["type"] for b in bodies["batched"]] == [
        *["reservation.created"] * 4,
        *["parcel.deposited", "parcel.deposited", "parcel.deposited", "parcel.picked_up"],
        "parcel.deposited",
        *["parcel.picked_up", "parcel.expired", "parcel.returned"],
    ]
    assert bodies["batched"] == bodies["at_once"]
    histories: dict[str, Any] = {}
    notices: dict[str, list[str]] = {}
    with sessions() as session:
        for run in runs:
            rows = session.execute(
                select(
                    ReservationEvent.reservation_id,
                    ReservationEvent.type,
                    ReservationEvent.from_status,
                    ReservationEvent.to_status,
                    ReservationEvent.actor,
                    ReservationEvent.reason,
                    ReservationEvent.data,
                    ReservationEvent.at,
                )
                .where(ReservationEvent.reservation_id.in_(parcels[run]))
                .order_by(ReservationEvent.id)
            )
            histories[run] = normalised([list(row) for row in rows], names[run])
            notice_rows = session.execute(
                select(Notice.key)
                .where(Notice.reservation_id.in_(parcels[run]))
                .order_by(Notice.id)
            )
            notices[run] = [
                "/".join(names[run].get(part, part) for part in key.split("/"))
                for (key,) in notice_rows
            ]
    assert histories["batched"] == histories["at_once"]
    assert notices["batched"] == notices["at_once"] != []
    with sessions() as session:
        states = session.execute(
            select(Compartment.bank_id, Compartment.label, Compartment.state).where(
                Compartment.label.in_(["A01", "A02", "A04"])
            )
        ).all()
        by_bank = {
            bank: {label: state for b, label, state in states if b == bank}
            for bank in runs.values()
        }
        capacity = {
            bank: [session.get(BankCapacity, (bank, size)) for size in ("S", "M")]
            for bank in runs.values()
        }
    assert by_bank["NYC-1"] == by_bank["NYC-2"] == {"A01": "free", "A02": "free", "A04": "occupied"}
    assert [(c.total, c.available) for c in capacity["NYC-1"] if c is not None] == [
        (c.total, c.available) for c in capacity["NYC-2"] if c is not None
    ]


def test_a_walk_up_amid_batched_moves_sees_them(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    """A walk-up's adoption reads the database (is its tracking number in use?) and writes at
    once: the batch's moves before it are written first, and the batch goes on after it."""
    node, labels = big_bank(client, world, sessions, clock)
    rid = reserve_for(client, world, "ACMEW1", "w@example.com")
    other = reserve_for(client, world, "ACMEW2", "v@example.com")
    walker = walk_up_id()
    results = send(
        node,
        deposit(node, rid, clock(), labels[0]),
        # The carrier's reservation for ACMEW1 is deposited (earlier in this batch): in use.
        walk_up(node, walk_up_id(), number="ACMEW1", compartment=labels[1]),
        walk_up(node, walker, number="ACMEW9", compartment=labels[2]),
        deposit(node, other, clock(), labels[3]),
        picked_up(walker, clock()),
        picked_up(rid, clock()),
    )
    assert results == [
        ("applied", None),
        ("rejected", "tracking_number_in_use"),
        ("applied", None),
        ("applied", None),
        ("applied", None),
        ("applied", None),
    ]
    with sessions() as session:
        states = dict(
            session.execute(
                select(Reservation.id, Reservation.status).where(
                    Reservation.id.in_([rid, other, walker])
                )
            ).all()
        )
        assert states == {rid: "picked_up", other: "deposited", walker: "picked_up"}
    assert deliveries_by_type(sessions) == {
        "reservation.created": 2,
        "parcel.deposited": 3,
        "parcel.picked_up": 2,
    }


def test_a_refused_event_leaves_its_reservation_as_it_found_it(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    """A move kept in memory and then refused with its event (`settle`) is undone: the
    reservation is as it was, and the flush writes nothing of it."""
    node, labels = big_bank(client, world, sessions, clock)
    rid = reserve_for(client, world, "ACMEU1", "u@example.com")
    assert send(node, deposit(node, rid, clock(), labels[0])) == [("applied", None)]
    with sessions.begin() as session:
        ctx = Ctx(session=session, keys=app.state.keys, now=clock(), notices=BatchNotices())
        batch = nodes_repository.lock_reservations(session, BANK, [rid])
        session.expunge_all()
        writes = BatchWrites()
        writes.hold(batch)
        reservation = batch[rid]
        step = plan_transition(ctx, reservation, ReservationStatus.PICKED_UP, actor=Actor.RECIPIENT)
        writes.apply(ctx, reservation, step, None)
        assert (reservation.status, reservation.recipient) == ("picked_up", None)
        writes.settle(applied=False)
        assert reservation.status == "deposited"
        assert reservation.recipient == {"name": "R", "email": "u@example.com"}
        writes.flush(session)
        # Kept, it is written at the flush.
        step = plan_transition(ctx, reservation, ReservationStatus.PICKED_UP, actor=Actor.RECIPIENT)
        writes.apply(ctx, reservation, step, None)
        writes.settle(applied=True)
        writes.flush(session)
    with sessions() as session:
        entries = session.scalars(
            select(ReservationEvent.to_status)
            .where(ReservationEvent.reservation_id == rid)
            .order_by(ReservationEvent.id)
        ).all()
        assert entries == ["reserved", "deposited", "picked_up"]
        stored = session.get(Reservation, rid)
        assert stored is not None and (stored.status, stored.recipient) == ("picked_up", None)
    assert deliveries_by_type(sessions)["parcel.picked_up"] == 1


def test_a_batch_resent_whole_applies_nothing_twice(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node, labels = big_bank(client, world, sessions, clock)
    rids = [reserve_for(client, world, f"ACMES{n}", f"s{n}@example.com") for n in range(4)]
    batch = [deposit(node, rid, clock(), label) for rid, label in zip(rids, labels, strict=False)]
    batch += [picked_up(rid, clock()) for rid in rids[:2]]
    assert send(node, *batch) == [("applied", None)] * 6
    before = deliveries_by_type(sessions)
    clock.advance(seconds=30)
    assert send(node, *batch) == [("duplicate", None)] * 6
    assert (
        deliveries_by_type(sessions)
        == before
        == {
            "reservation.created": 4,
            "parcel.deposited": 4,
            "parcel.picked_up": 2,
        }
    )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Notice)) == 6
        assert session.scalar(select(func.count()).select_from(ReservationEvent)) == 10
