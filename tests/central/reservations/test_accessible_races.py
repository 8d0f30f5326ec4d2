"""Two reservations racing for a bank's last units on PostgreSQL, made to meet: the second
starts while the first holds its unit uncommitted, and must wait for it and count again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from central.models import Reservation
from central.reservations import repository
from tests.central.banks.test_accessible_banks import add_accessible_bank, counts_of
from tests.central.conftest import engine_for, make_carrier
from tests.clock import FakeClock


@pytest.fixture
def pg(database_url: str, clock: FakeClock) -> Iterator[sessionmaker[Session]]:
    """ADA-1 (M A03-A04, A03 accessible) on PostgreSQL; SQLite has one writer at a time."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: SQLite has one writer at a time")
    sessions = engine_for(database_url)
    with sessions.begin() as session:
        make_carrier(session, carrier_id="acme", now=clock())
    add_accessible_bank(sessions, clock, accessible="A03")
    yield sessions
    sessions.kw["bind"].dispose()


def request(number: str, now: datetime, *, accessible: bool = False) -> repository.UnitRequest:
    """A new reservation's row and created event, as `service` builds them."""
    rid = f"rsv_{number.lower()}"
    reservation: dict[str, Any] = {
        "id": rid,
        "carrier_id": "acme",
        "tracking_number": number,
        "bank_id": "ADA-1",
        "size": "M",
        "status": "reserved",
        "compartment_label": None,
        "length_mm": None,
        "width_mm": None,
        "height_mm": None,
        "weight_g": None,
        "recipient": None,
        "reserved_until": now + timedelta(hours=72),
        "pickup_deadline": None,
        "deposited_at": None,
        "closed_at": None,
        "created_at": now,
        "updated_at": now,
        "tracking_status": None,
        "tracking_checked_at": None,
        "kind": "delivery",
        "accessible": accessible,
        "accessible_unit": False,
        "group_id": None,
        "dropoff_code_hash": None,
        "dropoff_qr_hash": None,
    }
    event = {
        "reservation_id": rid,
        "type": "created",
        "from_status": None,
        "to_status": "reserved",
        "actor": "carrier",
        "actor_id": "acme",
        "reason": None,
        "data": {"bank_id": "ADA-1", "size": "M"},
        "at": now,
    }
    return repository.UnitRequest("ADA-1", "M", reservation, event)


def reserve(session: Session, unit: repository.UnitRequest) -> str:
    return repository.reserve_units(session, [unit]).outcomes[0]


def race(
    sessions: sessionmaker[Session],
    first: repository.UnitRequest,
    second: repository.UnitRequest,
) -> tuple[str, str]:
    """`first` made in a transaction left open until `second` waits for its lock."""

    def waiting_for_a_lock() -> int:
        with sessions() as session:
            query = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return session.scalar(query) or 0

    def make_second() -> str:
        with sessions() as session, session.begin():
            return reserve(session, second)

    with sessions() as holder, ThreadPoolExecutor(1) as pool:
        holder.begin()
        first_outcome = reserve(holder, first)
        racing = pool.submit(make_second)
        deadline = time.monotonic() + 30
        while not waiting_for_a_lock():
            assert time.monotonic() < deadline, "the second reservation never waited"
            assert not racing.done(), "the second reservation did not wait for the first"
            time.sleep(0.01)
        holder.commit()
        return first_outcome, racing.result(timeout=30)


def units(sessions: sessionmaker[Session]) -> dict[str, bool]:
    with sessions() as session:
        rows = session.execute(select(Reservation.tracking_number, Reservation.accessible_unit))
        return {number: bool(unit) for number, unit in rows}


def test_two_accessible_requests_for_the_last_accessible_unit(
    pg: sessionmaker[Session], clock: FakeClock
) -> None:
    now = clock()
    outcomes = race(pg, request("A1", now, accessible=True), request("A2", now, accessible=True))
    assert outcomes == ("created", "full")
    assert units(pg) == {"A1": True}
    assert counts_of(pg, "ADA-1")["M"] == (2, 1, 1, 0)


def test_a_plain_request_counts_again_after_an_accessible_one_took_the_last_unit(
    pg: sessionmaker[Session], clock: FakeClock
) -> None:
    now = clock()
    with pg.begin() as session:
        assert reserve(session, request("P0", now)) == "created"  # the plain unit
    outcomes = race(pg, request("A1", now, accessible=True), request("P1", now))
    assert outcomes == ("created", "full")
    assert units(pg) == {"P0": False, "A1": True}
    assert counts_of(pg, "ADA-1")["M"] == (2, 0, 1, 0)


def test_a_plain_request_that_lost_the_plain_unit_takes_the_accessible_one(
    pg: sessionmaker[Session], clock: FakeClock
) -> None:
    """The batch statement re-reads the row under its lock: the plain unit is gone, so the
    request is left to the one-by-one path, which gives it the accessible unit."""
    now = clock()
    outcomes = race(pg, request("P1", now), request("P2", now))
    assert outcomes == ("created", "created")
    assert units(pg) == {"P1": False, "P2": True}
    assert counts_of(pg, "ADA-1")["M"] == (2, 0, 1, 0)


def test_an_accessible_request_waits_for_a_plain_one_holding_the_accessible_unit(
    pg: sessionmaker[Session], clock: FakeClock
) -> None:
    now = clock()
    with pg.begin() as session:
        assert reserve(session, request("P0", now)) == "created"
    outcomes = race(pg, request("P1", now), request("A1", now, accessible=True))
    assert outcomes == ("created", "full")
    assert units(pg) == {"P0": False, "P1": True}
    assert counts_of(pg, "ADA-1")["M"] == (2, 0, 1, 0)
