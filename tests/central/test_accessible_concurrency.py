"""No double booking of accessible units: requests that need one and requests that do not race
for one bank's last units, from several processes over real HTTP (see test_concurrency.py)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.banks.service import NewBank, add_bank
from central.models import BankCapacity, Reservation, SizeClass
from tests.central.conftest import engine_for, make_carrier
from tests.central.server import running_central
from tests.clock import FakeClock

PROCESSES = 4
PER_PROCESS = 30
UNITS = 24
ACCESSIBLE = frozenset({"A01", "A05", "A09", "B01", "B05", "B09"})


def _fire(base: str, key: str, start: int, count: int) -> list[tuple[bool, int, str]]:
    """One client process: `count` simultaneous requests, every other one for an accessible
    unit. Returns (asked for one, status, reservation id or error code) per request."""

    def one(n: int) -> tuple[bool, int, str]:
        accessible = n % 2 == 0
        with httpx.Client(timeout=60) as client:
            response = client.post(
                f"{base}/v1/reservations",
                json={
                    "tracking_number": f"ADA-{n:05d}",
                    "bank_id": "HOT-ADA",
                    "size": "M",
                    "recipient": {"accessible": accessible},
                },
                headers={"Authorization": f"Bearer {key}"},
            )
        body = response.json()
        return accessible, response.status_code, body.get("error") or body["id"]

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(start, start + count)))


@pytest.mark.slow
def test_racing_requests_never_book_an_accessible_unit_twice(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sessions: sessionmaker[Session] = engine_for(database_url)
    with sessions.begin() as session:
        key = make_carrier(session, carrier_id="acme", now=clock())
        add_bank(
            session,
            NewBank(
                bank_id="HOT-ADA",
                name="Hot",
                address="1 Hot St",
                lat=40.75,
                lon=-73.99,
                compartments={SizeClass.M: UNITS},
                accessible=ACCESSIBLE,
            ),
            clock(),
        )

    workers = 2 if database_url.startswith("postgresql") else 1
    with (
        running_central(database_url, tmp_path / "var", workers=workers) as base,
        ProcessPoolExecutor(max_workers=PROCESSES, mp_context=get_context("spawn")) as pool,
    ):
        futures = [
            pool.submit(_fire, base, key, p * PER_PROCESS, PER_PROCESS) for p in range(PROCESSES)
        ]
        results = [item for future in futures for item in future.result()]

    # Every unit is taken once: a plain request is refused only when nothing at all is free,
    # so however the race goes, the bank ends full with exactly one reservation per unit.
    statuses = Counter(status for _, status, _ in results)
    assert statuses == {201: UNITS, 409: PROCESSES * PER_PROCESS - UNITS}
    refusals = {(asked, code) for asked, status, code in results if status == 409}
    assert refusals <= {(True, "no_accessible_capacity"), (False, "no_capacity")}
    created = {rid for _, status, rid in results if status == 201}
    asked = {rid for accessible, status, rid in results if status == 201 and accessible}

    with sessions() as session:
        rows = session.execute(
            select(Reservation.id, Reservation.accessible, Reservation.accessible_unit).where(
                Reservation.bank_id == "HOT-ADA"
            )
        ).all()
        assert {row.id for row in rows} == created
        # Each that asked for an accessible unit holds one, and the accessible units held (by
        # them or, last, by plain parcels) are exactly the bank's accessible units.
        assert {row.id for row in rows if row.accessible} == asked
        assert all(row.accessible_unit for row in rows if row.accessible)
        assert sum(1 for row in rows if row.accessible_unit) == len(ACCESSIBLE)
        assert len(asked) <= len(ACCESSIBLE)
        capacity = session.get(BankCapacity, ("HOT-ADA", "M"))
        assert capacity is not None
        assert (
            capacity.total,
            capacity.available,
            capacity.accessible_total,
            capacity.accessible_available,
        ) == (UNITS, 0, len(ACCESSIBLE), 0)
        assert session.scalar(select(func.count()).select_from(Reservation)) == UNITS
    sessions.kw["bind"].dispose()
