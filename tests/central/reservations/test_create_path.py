"""The create route's shortcuts give what the long way gave: its route, body, answer, statement."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.routing import APIRoute
from sqlalchemy import create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool
from starlette.requests import Request
from starlette.types import Message

from central.banks.service import BankDirectory
from central.models import Reservation, ReservationEvent
from central.reservations import repository
from central.reservations.endpoints import read_create_body
from central.reservations.intake import ReservationIntake
from central.reservations.json_parameter import json_parameter
from central.reservations.schemas import ReservationCreate, ReservationOut
from central.reservations.views import _built, describe
from tests.central.conftest import World
from tests.clock import FakeClock


def test_the_create_route_is_tried_before_every_router(app: FastAPI) -> None:
    routes = app.router.routes
    first_router = next(i for i, route in enumerate(routes) if not hasattr(route, "path"))
    create = [
        i
        for i, route in enumerate(routes)
        if isinstance(route, APIRoute) and route.path == "/v1/reservations"
    ]
    assert len(create) == 1 and create[0] < first_router
    operation = app.openapi()["paths"]["/v1/reservations"]["post"]
    assert operation["operationId"] == "create_reservation_v1_reservations_post"
    assert operation["tags"] == ["reservations"]
    assert operation["security"] == [{"HTTPBearer": []}]


def _request(messages: list[Message]) -> Request:
    pending = iter(messages)

    async def receive() -> Message:
        return next(pending)

    headers = [(b"content-type", b"application/json")]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def test_a_body_sent_in_pieces_is_read_whole() -> None:
    raw = json.dumps({"tracking_number": "ACME-1", "bank_id": "NYC-1", "size": "M"}).encode()
    request = _request(
        [
            {"type": "http.request", "body": raw[:10], "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": raw[10:], "more_body": False},
        ]
    )
    body = asyncio.run(read_create_body(request))
    assert body == ReservationCreate.model_validate_json(raw)


def test_a_client_gone_before_its_body_arrived_is_a_400() -> None:
    request = _request(
        [
            {"type": "http.request", "body": b'{"tracking_', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    with pytest.raises(HTTPException) as refused:
        asyncio.run(read_create_body(request))
    assert refused.value.status_code == 400


def test_an_answer_is_built_as_model_construct_builds_it(
    app: FastAPI, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    with sessions() as session:
        now = clock()
        reservation = Reservation(
            id="rsv_built",
            carrier_id="usps",
            tracking_number="9400100000000000000000",
            bank_id="NYC-1",
            size="M",
            status="deposited",
            compartment_label="A01",
            length_mm=300,
            width_mm=200,
            height_mm=100,
            weight_g=None,
            reserved_until=now + timedelta(hours=72),
            pickup_deadline=now + timedelta(hours=48),
            created_at=now,
            updated_at=now,
            kind="delivery",
            accessible=True,
        )
        history = [
            ReservationEvent(
                reservation_id="rsv_built",
                type="created",
                from_status=None,
                to_status="reserved",
                actor="carrier",
                reason=None,
                at=now,
                data={"bank_id": "NYC-1", "size": "M"},
            )
        ]
        out = describe(session, reservation, history=history, group_mates=())
    constructed = ReservationOut.model_construct(**dict(out))
    assert out == constructed
    assert out.model_fields_set == constructed.model_fields_set
    assert out.model_dump_json() == constructed.model_dump_json()
    assert ReservationOut.model_validate_json(out.model_dump_json()) == out


def test_a_model_given_other_fields_is_built_by_model_construct() -> None:
    built = _built(ReservationCreate, tracking_number="ACME-1", bank_id="NYC-1")
    assert built.hold_hours is None and built.model_fields_set == {"tracking_number", "bank_id"}
    given = {name: None for name in ReservationCreate.model_fields if name != "hold_hours"}
    misspelt = _built(ReservationCreate, **given, hold_hour=3)  # as many fields, one unknown
    assert misspelt.hold_hours is None and "hold_hour" not in misspelt.__dict__


def test_json_parameters_keep_timestamps_and_text(database_url: str) -> None:
    """Timestamps read back as the same instants whatever their offset; text as written."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the JSON parameters are PostgreSQL's")
    instants = [
        datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC),
        datetime(2026, 12, 5, 3, 2, 3, tzinfo=timezone(timedelta(hours=2))),
    ]
    name = 'Zoë Ñúñez "quoted" \\ and \u2603'
    engine = create_engine(database_url)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT (p->>0)::timestamptz, (p->>1)::timestamptz, p->>2 FROM "
            "(SELECT %(p)s::json AS p) AS given",
            {"p": json_parameter([*instants, name])},
        ).one()
    engine.dispose()
    assert list(row) == [*instants, name]


def test_the_batch_locks_each_capacity_row_by_its_key(database_url: str) -> None:
    """The statement looks each (bank, class) up in the primary key and locks it there: no scan
    of the whole capacity table for a batch, however many banks there are."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the one-statement batch is PostgreSQL's")
    requests = [{"ord": 0, "bank_id": "NYC-1", "size": "M", "accessible": False}]
    parameters = {"requests": json.dumps(requests), "keys": "[]", "event_type": "x"}
    engine = create_engine(database_url)
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) " + repository._RESERVE_MANY, parameters
        ).scalar_one()
        conn.rollback()
    engine.dispose()

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]

    locks = [n for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "LockRows"]
    assert len(locks) == 1
    (scanned,) = locks[0]["Plans"]
    assert scanned["Node Type"] == "Index Scan"
    assert scanned["Relation Name"] == "bank_capacity"


def test_batches_made_back_to_back_share_one_connection(
    app: FastAPI, world: World, database_url: str, clock: FakeClock
) -> None:
    """PostgreSQL: while requests keep coming, the lane keeps its connection from one batch to
    the next; once none is queued, the connection goes back to the pool."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite batches run in a database thread's transaction")
    engines: list[AsyncEngine] = []
    checkouts: list[object] = []

    def new_engine() -> AsyncEngine:
        engine = create_async_engine(
            app.state.engine.url, pool_size=1, max_overflow=0, isolation_level="AUTOCOMMIT"
        )
        event.listen(engine.sync_engine.pool, "checkout", lambda *_: checkouts.append(None))
        engines.append(engine)
        return engine

    state = app.state
    intake = ReservationIntake(
        state.sessions, state.keys, clock, BankDirectory(), state.db_limiter,
        async_engines=new_engine, max_batch=1,
    )  # fmt: skip
    header = f"Bearer {world.keys['acme']}"
    bodies = [
        ReservationCreate(tracking_number=number, bank_id="NYC-1", size=size)
        for number, size in (("ACME-31", "S"), ("ACME-32", "S"), ("ACME-33", "M"))
    ]

    async def run() -> tuple[list[bool], int]:
        try:
            made = await asyncio.gather(*(intake.create(header, body) for body in bodies))
            pool = engines[0].sync_engine.pool
            assert isinstance(pool, QueuePool)
            return [created for _, created in made], pool.checkedout()
        finally:
            await intake.aclose()

    made, held = asyncio.run(run())
    assert made == [True, True, True]  # three batches of one, made back to back...
    assert (len(checkouts), held, len(engines)) == (1, 0, 1)  # ...on one checkout, given back
    with app.state.sessions() as session:
        count = session.execute(
            text("SELECT count(*) FROM reservations WHERE tracking_number LIKE 'ACME-3%'")
        ).scalar_one()
    assert count == 3
