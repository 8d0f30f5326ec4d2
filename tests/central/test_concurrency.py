"""No double booking: many processes race for the last units of one bank, over real HTTP."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.models import BankCapacity, Reservation
from tests.central.conftest import engine_for, make_bank, make_carrier
from tests.central.server import running_central
from tests.clock import FakeClock

PROCESSES = 4
PER_PROCESS = 50
UNITS = 50


def _fire(base: str, key: str, start: int, count: int) -> list[tuple[int, str]]:
    """One client process: `count` simultaneous requests, each for its own tracking number."""

    def one(n: int) -> tuple[int, str]:
        with httpx.Client(timeout=60) as client:
            response = client.post(
                f"{base}/v1/reservations",
                json={"tracking_number": f"RACE-{n:05d}", "bank_id": "HOT-1", "size": "M"},
                headers={"Authorization": f"Bearer {key}"},
            )
        body = response.json()
        return response.status_code, body.get("error") or body["id"]

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(start, start + count)))


@pytest.mark.slow
def test_200_concurrent_requests_for_50_units_make_exactly_50_reservations(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sessions: sessionmaker[Session] = engine_for(database_url)
    with sessions.begin() as session:
        key = make_carrier(session, carrier_id="acme", now=clock())
        make_bank(session, bank_id="HOT-1", now=clock(), compartments=f"M:{UNITS},S:5")

    workers = 2 if database_url.startswith("postgresql") else 1
    with (
        running_central(database_url, tmp_path / "var", workers=workers) as base,
        ProcessPoolExecutor(max_workers=PROCESSES, mp_context=get_context("spawn")) as pool,
    ):
        futures = [
            pool.submit(_fire, base, key, p * PER_PROCESS, PER_PROCESS) for p in range(PROCESSES)
        ]
        results = [item for future in futures for item in future.result()]

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: UNITS, 409: PROCESSES * PER_PROCESS - UNITS}
    assert {code for status, code in results if status == 409} == {"no_capacity"}
    created_ids = {rid for status, rid in results if status == 201}
    assert len(created_ids) == UNITS

    with sessions() as session:
        rows = session.scalars(select(Reservation.id).where(Reservation.bank_id == "HOT-1")).all()
        assert set(rows) == created_ids
        capacity = session.get(BankCapacity, ("HOT-1", "M"))
        assert capacity is not None
        assert (capacity.total, capacity.available) == (UNITS, 0)
        assert session.scalar(select(func.count()).select_from(Reservation)) == UNITS
    sessions.kw["bind"].dispose()


@pytest.mark.slow
def test_identical_concurrent_requests_make_one_reservation(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """The same tracking number sent 24 times at once: one 201, the rest 200 with the same id."""
    sessions: sessionmaker[Session] = engine_for(database_url)
    with sessions.begin() as session:
        key = make_carrier(session, carrier_id="acme", now=clock())
        make_bank(session, bank_id="HOT-1", now=clock(), compartments="M:5")

    def one(_: int) -> tuple[int, str]:
        with httpx.Client(timeout=60) as client:
            response = client.post(
                f"{base}/v1/reservations",
                json={"tracking_number": "TWIN-00001", "bank_id": "HOT-1", "size": "M"},
                headers={"Authorization": f"Bearer {key}"},
            )
        return response.status_code, response.json()["id"]

    workers = 2 if database_url.startswith("postgresql") else 1
    with (
        running_central(database_url, tmp_path / "var", workers=workers) as base,
        ThreadPoolExecutor(max_workers=24) as pool,
    ):
        results = list(pool.map(one, range(24)))

    assert Counter(status for status, _ in results) == {201: 1, 200: 23}
    assert len({rid for _, rid in results}) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Reservation)) == 1
        capacity = session.get(BankCapacity, ("HOT-1", "M"))
        assert capacity is not None
        assert capacity.available == 4
    sessions.kw["bind"].dispose()
