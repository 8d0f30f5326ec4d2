"""Courier code hashes kept in the database: made once for every worker and host, ahead of time
by a job, on demand by the feed when missing; never the code itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.app import create_app
from central.config import CentralSettings
from central.keys import ServiceKeys
from central.models import StoredCourierCode
from central.nodes import courier_codes
from central.nodes.courier_codes import CourierCodeDue, code_days, make_codes, prepare_codes
from central.scheduler import INTERVALS, SHARED_JOBS, Jobs
from tests.central.conftest import TEST_SECRET, World
from tests.central.nodes.support import NodeClient, enroll
from tests.clock import FakeClock

CARRIERS = ("acme", "dhl", "fedex", "ups", "usps")


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A cheap stand-in for scrypt; the codes it hashed."""
    made: list[str] = []

    def stand_in(code: str, salt: bytes) -> str:
        made.append(code)
        return hashlib.sha256(salt + code.encode()).hexdigest()

    monkeypatch.setattr(courier_codes, "hash_courier_code", stand_in)
    return made


def codes_of(node: NodeClient) -> list[dict[str, object]]:
    response = node.get("/v1/node/feed")
    assert response.status_code == 200, response.text
    codes: list[dict[str, object]] = response.json()["courier_codes"]
    return codes


def stored(sessions: sessionmaker[Session]) -> list[StoredCourierCode]:
    with sessions() as session:
        return list(
            session.scalars(
                select(StoredCourierCode).order_by(
                    StoredCourierCode.bank_id,
                    StoredCourierCode.carrier_id,
                    StoredCourierCode.valid_from,
                )
            )
        )


def test_the_stored_hash_is_scrypt_of_the_code_and_never_the_code(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    sent = codes_of(node)
    rows = stored(sessions)
    assert len(rows) == len(sent) == 10
    for row in rows:
        day = row.valid_from.astimezone(ZoneInfo("America/New_York")).date()
        code = app.state.keys.courier_code(row.carrier_id, "NYC-1", day)
        assert code not in (row.code_hash, row.salt)
        expected = hashlib.scrypt(
            code.encode(), salt=bytes.fromhex(row.salt), n=row.n, r=row.r, p=row.p, dklen=32
        ).hex()
        assert row.code_hash == expected
    assert {(c["carrier"], c["code_hash"]) for c in sent} == {
        (row.carrier_id, row.code_hash) for row in rows
    }


def test_a_restarted_or_other_host_hashes_nothing(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    settings: CentralSettings,
    clock: FakeClock,
    hashed: list[str],
) -> None:
    node = enroll(client, sessions, clock)
    first = codes_of(node)
    assert len(hashed) == 10
    restarted = create_app(settings, clock=clock)
    try:
        with TestClient(restarted) as other:
            again = codes_of(NodeClient(other, clock, node.node_id, node.bank_id, node.key))
    finally:
        restarted.state.engine.dispose()
    assert len(hashed) == 10 and again == first


def test_two_workers_making_the_same_code_serve_the_first_stored(
    world: World, app: FastAPI, sessions: sessionmaker[Session], clock: FakeClock, hashed: list[str]
) -> None:
    keys: ServiceKeys = app.state.keys
    start, end = code_days("America/New_York", clock())[0]
    due = [CourierCodeDue("ups", start, end, keys.courier_code("ups", "NYC-1", start.date()))]
    one = make_codes(sessions, keys, "NYC-1", due, clock())
    two = make_codes(sessions, keys, "NYC-1", due, clock())
    assert len(hashed) == 2 and one == two
    assert [row.salt for row in stored(sessions)] == [one[0].salt]


def test_a_hash_made_under_another_service_key_is_replaced(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    settings: CentralSettings,
    clock: FakeClock,
    hashed: list[str],
) -> None:
    node = enroll(client, sessions, clock)
    before = {(c["carrier"], c["valid_from"]): c["code_hash"] for c in codes_of(node)}
    secret = SecretStr(TEST_SECRET[::-1])
    rotated = create_app(settings.model_copy(update={"secret_key": secret}), clock=clock)
    try:
        with TestClient(rotated) as other:
            after = codes_of(NodeClient(other, clock, node.node_id, node.bank_id, node.key))
            new_key = courier_codes.key_id(rotated.state.keys)
    finally:
        rotated.state.engine.dispose()
    assert len(hashed) == 20
    assert all(before[(c["carrier"], c["valid_from"])] != c["code_hash"] for c in after)
    assert {row.key_id for row in stored(sessions)} == {new_key}


def test_the_job_makes_todays_missing_codes_first_then_spreads_tomorrows(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hashed: list[str],
) -> None:
    enroll(client, sessions, clock)
    enroll(client, sessions, clock, "NYC-2")  # BOS-1 has no node: no one is sent its codes
    keys: ServiceKeys = app.state.keys
    # 10:00 in New York: 14 hours to tomorrow; half of that in 60 s runs is 420 runs.
    assert prepare_codes(sessions, keys, clock(), max_per_run=6) == 6
    assert prepare_codes(sessions, keys, clock(), max_per_run=100) == 4 + 10
    rows = stored(sessions)
    assert {row.bank_id for row in rows} == {"NYC-1", "NYC-2"}
    today, tomorrow = code_days("America/New_York", clock())
    assert sum(1 for row in rows if row.valid_from == today[0]) == 10
    # Tomorrow's: at least the minimum a run, the rest in later runs.
    assert sum(1 for row in rows if row.valid_from == tomorrow[0]) == 10
    assert prepare_codes(sessions, keys, clock()) == 0
    # The day after: yesterday's are pruned a day after they ended, the next day's made.
    clock.advance(days=2)
    made = prepare_codes(sessions, keys, clock(), max_per_run=100)
    assert made == 20
    starts = {row.valid_from for row in stored(sessions)}
    assert today[0] not in starts and set(code_days("America/New_York", clock())) <= {
        (row.valid_from, row.valid_until) for row in stored(sessions)
    }
    assert len(hashed) == 6 + 14 + 20


def test_the_job_is_the_leaders_and_served_by_the_feed(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hashed: list[str],
) -> None:
    node = enroll(client, sessions, clock)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    jobs = Jobs(sessions, app.state.keys, clock, http, app.state.settings)
    try:
        assert "prepare_courier_codes" in jobs.all() and "prepare_courier_codes" not in SHARED_JOBS
        assert INTERVALS["prepare_courier_codes"] == courier_codes.JOB_INTERVAL_S
        assert jobs.all()["prepare_courier_codes"]() == 10
    finally:
        jobs.close()
    assert len(codes_of(node)) == 10 and len(hashed) == 10


@pytest.mark.parametrize(
    ("missing_today", "missing_ahead", "hours_ahead", "expected"),
    [
        (0, 0, 10, 0),  # nothing to do
        (5, 0, 10, 5),  # a day begun: all of it
        (500, 0, 10, 200),  # ... up to the cap
        (0, 40_000, 14, 96),  # 14 h ahead, done half-way: 420 runs
        (0, 30, 14, courier_codes.JOB_MIN_PER_RUN),  # a few: at least the minimum
        (0, 40_000, 0.01, 200),  # late: as many as a run may
    ],
)
def test_the_jobs_budget(
    missing_today: int, missing_ahead: int, hours_ahead: float, expected: int
) -> None:
    now = datetime(2026, 3, 2, 15, tzinfo=UTC)
    days = [
        courier_codes._Day("UTC", now - timedelta(hours=1), now, missing_today),
        courier_codes._Day("UTC", now + timedelta(hours=hours_ahead), now, missing_ahead),
    ]
    assert courier_codes._budget(days, now, 60, 200) == expected
