"""Create requests made a batch per transaction: each keeps its own outcome (both databases)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from central.carriers import service as carriers_service
from central.carriers.service import create_api_key, revoke_api_key
from central.context import Ctx
from central.errors import ApiError
from central.models import ApiKey, BankCapacity, Reservation, ReservationEvent, WebhookDelivery
from central.reservations import repository, service
from central.reservations.intake import ReservationIntake
from central.reservations.schemas import ReservationCreate, ReservationOut
from central.webhooks import service as webhooks_service
from central.webhooks.schemas import WebhookCreate
from tests.central.conftest import World
from tests.clock import FakeClock


def _body(number: str, bank_id: str = "NYC-1", size: str = "M") -> ReservationCreate:
    return ReservationCreate.model_validate(
        {"tracking_number": number, "bank_id": bank_id, "size": size}
    )


def _create_together(
    intake: ReservationIntake, requests: list[tuple[str | None, ReservationCreate]]
) -> list[tuple[ReservationOut, bool] | BaseException]:
    """Sent at once, as concurrent requests on one worker are: they share a batch."""

    async def run() -> list[tuple[ReservationOut, bool] | BaseException]:
        try:
            return await asyncio.gather(
                *(intake.create(header, body) for header, body in requests),
                return_exceptions=True,
            )
        finally:
            await intake.aclose()

    return asyncio.run(run())


def _count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _free(session: Session, bank_id: str, size: str) -> int:
    free = session.scalar(
        select(BankCapacity.available).where(
            BankCapacity.bank_id == bank_id, BankCapacity.size == size
        )
    )
    assert free is not None
    return free


def test_a_batch_answers_each_request_on_its_own(
    app: FastAPI, world: World, sessions: sessionmaker[Session]
) -> None:
    acme = f"Bearer {world.keys['acme']}"
    outcomes = _create_together(
        app.state.reservation_intake,
        [
            (acme, _body("ACME-01")),  # made
            (acme, _body("not a number!")),  # refused: tracking number
            (acme, _body("ACME-02", bank_id="NOWHERE")),  # refused: bank
            ("Bearer lk_aaaaaaaaaaaa_" + "x" * 43, _body("ACME-03")),  # bad key
            (None, _body("ACME-04")),  # no key
            (acme, _body("ACME-01")),  # the first one's twin
            (acme, _body("ACME-05")),  # made: NYC-1 has two M units
            (acme, _body("ACME-06")),  # refused: no M unit left
        ],
    )
    made, refused_number, unknown_bank, bad_key, no_key, twin, second, full = outcomes
    assert isinstance(made, tuple) and made[1] is True
    assert isinstance(twin, tuple) and twin == (made[0], False)
    assert isinstance(second, tuple) and second[1] is True
    expected = [
        (refused_number, 422, "invalid_tracking_number"),
        (unknown_bank, 404, "unknown_bank"),
        (bad_key, 401, "invalid_api_key"),
        (no_key, 401, "missing_api_key"),
        (full, 409, "no_capacity"),
    ]
    for outcome, status, code in expected:
        assert isinstance(outcome, ApiError), outcome
        assert (outcome.status, outcome.code) == (status, code)
    assert bad_key is not no_key  # every request raises an exception of its own

    with sessions() as session:
        assert _count(session, Reservation) == 2
        assert _count(session, ReservationEvent) == 2
        assert _free(session, "NYC-1", "M") == 0


def test_a_request_that_fails_is_made_alone_and_fails_alone(
    app: FastAPI,
    world: World,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = service._plan

    def failing_plan(ctx: Ctx, carrier_id: str, body: ReservationCreate) -> Any:
        if body.tracking_number == "ACME-13":
            raise RuntimeError("a bug in one request")
        return plan(ctx, carrier_id, body)

    monkeypatch.setattr(service, "_plan", failing_plan)
    acme = f"Bearer {world.keys['acme']}"
    first, broken, last = _create_together(
        app.state.reservation_intake,
        [
            (acme, _body("ACME-11", size="S")),
            (acme, _body("ACME-13", size="S")),
            (acme, _body("ACME-12", size="L")),
        ],
    )
    assert isinstance(broken, RuntimeError)
    assert isinstance(first, tuple) and first[1] is True
    assert isinstance(last, tuple) and last[1] is True
    with sessions() as session:
        numbers = set(session.scalars(select(Reservation.tracking_number)))
    assert numbers == {"ACME-11", "ACME-12"}


def test_reserving_many_gives_what_reserving_one_by_one_would(
    world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """PostgreSQL takes the lot in one statement; the outcomes are the one-by-one outcomes."""

    ids = iter(range(100))

    def unit(number: str, bank_id: str, size: str) -> repository.UnitRequest:
        reservation_id = f"rsv_{next(ids)}_{number}"
        now = clock()
        return repository.UnitRequest(
            bank_id,
            size,
            {
                "id": reservation_id,
                "carrier_id": "usps",
                "tracking_number": number,
                "bank_id": bank_id,
                "size": size,
                "status": "reserved",
                "compartment_label": None,
                "length_mm": None,
                "width_mm": None,
                "height_mm": None,
                "weight_g": None,
                "recipient": {"email": "r@example.com"},
                "reserved_until": now,
                "pickup_deadline": None,
                "deposited_at": None,
                "closed_at": None,
                "created_at": now,
                "updated_at": now,
                "tracking_status": None,
                "tracking_checked_at": None,
                "group_id": None,
            },
            {
                "reservation_id": reservation_id,
                "type": "created",
                "from_status": None,
                "to_status": "reserved",
                "actor": "carrier",
                "actor_id": "usps",
                "reason": None,
                "data": {"bank_id": bank_id, "size": size},
                "at": now,
            },
        )

    requests = [
        unit("A1", "NYC-1", "M"),
        unit("A1", "NYC-1", "M"),  # a twin: its unit is given back...
        unit("A2", "NYC-1", "M"),  # ...so this one gets the second unit
        unit("A3", "NYC-1", "M"),  # and this one finds none
        unit("B1", "NYC-2", "L"),
        unit("B2", "NYC-2", "L"),  # one L unit only
        unit("C1", "BOS-1", "S"),
    ]
    with sessions.begin() as session:
        outcomes = repository.reserve_units(session, requests).outcomes
    assert outcomes == ["created", "twin", "created", "full", "created", "full", "created"]
    with sessions() as session:
        assert _count(session, Reservation) == 4
        assert _count(session, ReservationEvent) == 4
        assert (_free(session, "NYC-1", "M"), _free(session, "NYC-2", "L")) == (0, 0)
        assert _free(session, "BOS-1", "S") == 1
        stored = session.get(Reservation, "rsv_2_A2")
        assert stored is not None and stored.recipient == {"email": "r@example.com"}
        assert stored.created_at == clock()


def test_a_batch_whose_connection_was_lost_is_made_again(
    app: FastAPI,
    world: World,
    sessions: sessionmaker[Session],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL: batch connections are not pinged; a dead one costs a retry, not an error."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite batches have no server connection to lose")
    intake: ReservationIntake = app.state.reservation_intake
    acme = f"Bearer {world.keys['acme']}"

    def drop_every_other_connection() -> None:
        engine = create_engine(database_url)
        with engine.connect() as conn:
            dropped = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        engine.dispose()
        assert dropped >= 1  # the batch connection, at least

    async def run() -> list[tuple[ReservationOut, bool]]:
        try:
            first = await intake.create(acme, _body("ACME-21"))
            await asyncio.to_thread(drop_every_other_connection)
            second = await intake.create(acme, _body("ACME-22"))
            return [first, second]
        finally:
            await intake.aclose()

    first, second = asyncio.run(run())
    assert first[1] is True and second[1] is True
    assert "lost its database connection" in caplog.text
    with sessions() as session:
        assert set(session.scalars(select(Reservation.tracking_number))) == {"ACME-21", "ACME-22"}


def test_a_key_revoked_after_use_is_refused_for_every_request_it_sends(
    app: FastAPI, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The key is recalled without a query once verified; its revocation still counts at once,
    for requests that would have been made, answered with a twin or refused otherwise."""
    intake: ReservationIntake = app.state.reservation_intake
    acme = f"Bearer {world.keys['acme']}"
    (made,) = _create_together(intake, [(acme, _body("ACME-31"))])
    assert isinstance(made, tuple) and made[1] is True
    assert intake._verified.recall(acme) is not None  # the next batches skip the key's lookup

    with sessions.begin() as session:
        other = f"Bearer {create_api_key(session, 'acme', clock()).key}"
        revoke_api_key(session, world.keys["acme"].split("_")[1], clock())
    new, twin, unknown_bank, by_other_key = _create_together(
        intake,
        [
            (acme, _body("ACME-32")),
            (acme, _body("ACME-31")),
            (acme, _body("ACME-33", bank_id="NOWHERE")),
            (other, _body("ACME-34")),
        ],
    )
    for outcome in (new, twin, unknown_bank):
        assert isinstance(outcome, ApiError), outcome
        assert (outcome.status, outcome.code) == (401, "api_key_revoked")
    assert isinstance(by_other_key, tuple) and by_other_key[1] is True
    assert intake._verified.recall(acme) is None  # forgotten once found revoked
    (later,) = _create_together(intake, [(acme, _body("ACME-35"))])
    assert isinstance(later, ApiError) and later.code == "api_key_revoked"
    with sessions() as session:
        numbers = set(session.scalars(select(Reservation.tracking_number)))
        assert numbers == {"ACME-31", "ACME-34"}
        assert _free(session, "NYC-1", "M") == 0


def test_a_recalled_key_still_records_its_use(
    app: FastAPI,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(carriers_service, "_touched", {})  # other tests' keys had these ids
    intake: ReservationIntake = app.state.reservation_intake
    acme = f"Bearer {world.keys['acme']}"
    prefix = world.keys["acme"].split("_")[1]

    def last_used() -> Any:
        with sessions() as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix))

    _create_together(intake, [(acme, _body("ACME-41", size="S"))])
    assert last_used() == clock()
    clock.advance(seconds=30)
    _create_together(intake, [(acme, _body("ACME-42", size="S"))])  # within the minute
    assert last_used() == clock() - timedelta(seconds=30)
    clock.advance(minutes=2)
    _create_together(intake, [(acme, _body("ACME-43", size="L"))])  # recalled, not looked up
    assert last_used() == clock()


def test_endpoints_registered_or_deleted_meanwhile_get_exactly_the_new_reservations_events(
    app: FastAPI, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A batch seals a reservation's `reservation.created` notice only for carriers it believes
    have endpoints; the statement that makes the reservation checks, so a belief gone stale
    either way costs a retry or a wasted seal, never a lost or a stray event."""
    intake: ReservationIntake = app.state.reservation_intake
    acme = f"Bearer {world.keys['acme']}"
    keys = app.state.keys

    def deliveries() -> list[tuple[str, str]]:
        with sessions() as session:
            rows = session.execute(
                select(WebhookDelivery.event_type, WebhookDelivery.body_sealed).order_by(
                    WebhookDelivery.id
                )
            ).all()
        return [(kind, json.loads(keys.decrypt(sealed))["data"]["id"]) for kind, sealed in rows]

    (first,) = _create_together(intake, [(acme, _body("ACME-51", size="S"))])
    assert isinstance(first, tuple) and deliveries() == []  # no endpoint yet

    with sessions.begin() as session:
        endpoint = webhooks_service.register(
            session,
            keys,
            "acme",
            WebhookCreate(url="https://acme.example/hooks", events=["reservation.created"]),
            clock(),
            allow_insecure=True,
        )
    (second,) = _create_together(intake, [(acme, _body("ACME-52", size="S"))])
    assert isinstance(second, tuple) and second[1] is True
    assert deliveries() == [("reservation.created", second[0].id)]

    with sessions.begin() as session:
        webhooks_service.delete(session, "acme", endpoint.id, clock())
    (third,) = _create_together(intake, [(acme, _body("ACME-53", size="L"))])
    assert isinstance(third, tuple) and third[1] is True
    assert deliveries() == [("reservation.created", second[0].id)]  # nothing for the third
