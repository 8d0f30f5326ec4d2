"""Opening hours honoured by allocation: no deadline falls while the bank is closed without
the hold covering an open period; it moves to the end of the next one, in the bank's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.models import Reservation
from tests.central.banks.settings_support import (
    WEEKDAYS_8_TO_20,
    deposit_event,
    reserve,
    send,
    set_up,
)
from tests.central.conftest import World
from tests.central.ops.support import fast
from tests.clock import FakeClock

POLICY = "/ops/api/banks/NYC-1/policy"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


def _weekdays(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock, webhooks_for=())
    response = s.admin.call("PUT", POLICY, {"opening_hours": WEEKDAYS_8_TO_20})
    assert response.status_code == 200, response.text


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def test_a_hold_ending_at_night_runs_to_the_end_of_the_next_open_day(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    _weekdays(app, client, world, sessions, clock)
    clock.set(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))  # Monday 10:00 in New York (EST)

    inside = reserve(client, world, "ACME-H1", hold_hours=6)  # 16:00: open
    at_night = reserve(client, world, "ACME-H2", hold_hours=12)  # 22:00: closed

    assert _at(inside.json()["reserved_until"]) == datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    # Tuesday 20:00 EST.
    assert _at(at_night.json()["reserved_until"]) == datetime(2026, 3, 4, 1, 0, tzinfo=UTC)


def test_a_weekend_across_the_change_to_summer_time_ends_on_monday_evening_local_time(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    _weekdays(app, client, world, sessions, clock)
    clock.set(datetime(2026, 3, 7, 0, 0, tzinfo=UTC))  # Friday 19:00 EST; clocks go forward Sunday

    held = reserve(client, world, "ACME-H3", hold_hours=12)  # Saturday 07:00: closed

    # Monday 20:00 EDT (UTC-4 now, not -5).
    assert _at(held.json()["reserved_until"]) == datetime(2026, 3, 10, 0, 0, tzinfo=UTC)


def test_a_pickup_deadline_on_a_closed_day_moves_and_so_does_an_extension(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock, webhooks_for=())
    s.admin.call("PUT", POLICY, {"opening_hours": WEEKDAYS_8_TO_20})
    clock.set(datetime(2026, 3, 4, 15, 0, tzinfo=UTC))  # Wednesday 10:00 EST
    rid = reserve(client, world, "ACME-H4").json()["id"]

    assert send(s.node, deposit_event(s.node, rid, clock(), "A01")) == [("applied", None)]

    # 72 h: Saturday 10:00, closed; Monday 20:00 EDT instead.
    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.pickup_deadline == datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
    # Two more hours would be Monday 22:00, closed: the end of Tuesday's opening instead.
    extended = client.post(
        f"/v1/reservations/{rid}/extend", json={"hours": 2}, headers=world.auth("acme")
    )
    assert extended.status_code == 200, extended.text
    assert _at(extended.json()["pickup_deadline"]) == datetime(2026, 3, 11, 0, 0, tzinfo=UTC)


def test_without_opening_hours_a_deadline_is_the_plain_hold(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    set_up(app, client, world, sessions, clock, webhooks_for=())
    clock.set(datetime(2026, 3, 7, 0, 0, tzinfo=UTC))
    held = reserve(client, world, "ACME-H5", hold_hours=12)
    assert _at(held.json()["reserved_until"]) == datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
