"""The scheduler's lease on several hosts: one leader, a fencing token per leadership, a stale
leader's writes refused, and the sending jobs shared by every host."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from central.config import CentralSettings
from central.leases import LeaseLost
from central.models import Reservation, WebhookDelivery
from central.scheduler import SHARED_JOBS, Jobs, _guarded
from central.webhooks import repository as webhooks_repository
from tests.central.conftest import World
from tests.clock import FakeClock


def jobs_for(app: FastAPI, clock: FakeClock) -> Jobs:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings: CentralSettings = app.state.settings
    jobs = Jobs(app.state.sessions, app.state.keys, clock, http, settings)
    jobs.fence()  # as the scheduler does
    return jobs


def reserve(
    client: TestClient, world: World, number: str, hold_hours: int = 1, size: str = "S"
) -> str:
    body = {"tracking_number": number, "bank_id": "NYC-1", "size": size, "hold_hours": hold_hours}
    answer = client.post("/v1/reservations", json=body, headers=world.auth("acme"))
    assert answer.status_code == 201, answer.text
    rid: str = answer.json()["id"]
    return rid


def test_the_token_grows_with_each_new_leader_and_stays_while_one_renews(
    app: FastAPI, clock: FakeClock
) -> None:
    first, second = jobs_for(app, clock), jobs_for(app, clock)
    assert first.is_leader() and first.token == 1
    clock.advance(seconds=20)
    assert first.is_leader() and first.token == 1  # renewed, same leadership
    assert not second.is_leader() and second.token is None
    clock.advance(seconds=31)  # the first one stalled past its lease
    assert second.is_leader() and second.token == 2
    assert not first.is_leader() and first.token is None
    clock.advance(seconds=31)
    assert first.is_leader() and first.token == 3


def test_a_stale_leaders_writes_are_refused_by_the_token(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    rid = reserve(client, world, "ACME-L1")
    stale, fresh = jobs_for(app, clock), jobs_for(app, clock)
    assert stale.is_leader()
    clock.advance(hours=2)  # the hold is past due, and the stale leader's lease long lapsed
    assert fresh.is_leader() and fresh.token == 2

    # The stale one still believes it leads (it has not asked since): its job is refused
    # before it writes anything.
    assert stale.token == 1
    with pytest.raises(LeaseLost):
        stale.expire_reservations()
    with app.state.sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None and reservation.status == "reserved"

    assert fresh.expire_reservations() == 1


def test_a_job_without_the_lease_writes_nothing_and_the_guard_says_so(
    app: FastAPI, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = jobs_for(app, clock)
    with pytest.raises(LeaseLost):
        jobs.detect_offline_nodes()  # never asked for the lease
    jobs.token = 7  # a token the lease never had
    assert jobs.is_leader() is True and jobs.token == 1
    jobs.token = 7
    with pytest.raises(LeaseLost):
        jobs.purge_node_nonces()
    jobs.token = 7
    _guarded(jobs, "expire_node_commands", jobs.expire_node_commands)()  # renews, then runs
    assert jobs.token == 1


def test_sending_jobs_run_on_every_host_the_rest_on_the_leader_only(
    app: FastAPI, clock: FakeClock
) -> None:
    leader, other = jobs_for(app, clock), jobs_for(app, clock)
    assert leader.is_leader()
    ran: list[str] = []
    for name in ("deliver_webhooks", "deliver_notices", "page_alerts", "expire_reservations"):
        _guarded(other, name, lambda name=name: ran.append(name))()  # type: ignore[misc]
    assert ran == ["deliver_webhooks", "deliver_notices", "page_alerts"]
    assert {"deliver_webhooks", "deliver_notices", "page_alerts"} == SHARED_JOBS


def waiting_on_a_lock(app: FastAPI) -> bool:
    with app.state.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'UPDATE leases%'"
            )
        ).scalar()
    return bool(waiting)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_takeover_waits_for_the_fenced_transaction_under_way(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    stale, fresh = jobs_for(app, clock), jobs_for(app, clock)
    assert stale.is_leader()
    session = stale.led_sessions()
    transaction = session.begin()
    session.execute(select(func.count()).select_from(Reservation))  # fenced: FOR SHARE taken
    clock.advance(seconds=31)
    outcome: list[bool] = []
    takeover = threading.Thread(target=lambda: outcome.append(fresh.is_leader()))
    takeover.start()
    # The takeover's UPDATE waits on the lease row's lock: PostgreSQL says so.
    deadline = time.monotonic() + 10
    while not waiting_on_a_lock(app):
        assert time.monotonic() < deadline, "the takeover never waited on the lease row"
        time.sleep(0.02)
    assert takeover.is_alive() and outcome == []
    transaction.commit()
    session.close()
    takeover.join(timeout=10)
    assert outcome == [True] and fresh.token == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_hosts_claim_disjoint_webhook_deliveries(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    hook = client.post(
        "/v1/webhooks", json={"url": "http://carrier.test/h"}, headers=world.auth("acme")
    )
    assert hook.status_code == 201, hook.text
    for n in range(4):
        reserve(client, world, f"ACME-W{n}", size="SM"[n % 2])
    sessions = app.state.sessions
    with sessions() as first, first.begin():
        mine = webhooks_repository.due_deliveries(first, clock(), 2)
        with sessions() as second, second.begin():
            theirs = webhooks_repository.due_deliveries(second, clock(), 10)
        assert len(mine) == 2 and len(theirs) == 2
        assert {d.id for d in mine}.isdisjoint(d.id for d in theirs)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 4


def test_the_lease_time_is_a_setting(app: FastAPI, clock: FakeClock) -> None:
    settings: CentralSettings = app.state.settings
    jobs = Jobs(
        app.state.sessions,
        app.state.keys,
        clock,
        httpx.Client(),
        settings.model_copy(update={"scheduler_lease_s": 5.0}),
    )
    assert jobs.lease_ttl == timedelta(seconds=5)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_fenced_transaction_may_sit_idle_two_lease_times_at_most(
    app: FastAPI, clock: FakeClock
) -> None:
    settings: CentralSettings = app.state.settings
    jobs = Jobs(
        app.state.sessions,
        app.state.keys,
        clock,
        httpx.Client(),
        settings.model_copy(update={"scheduler_lease_s": 1.0}),
    )
    jobs.fence()
    assert jobs.is_leader()
    with jobs.led_sessions() as session:
        session.begin()
        limit = session.execute(select(func.current_setting("idle_in_transaction_session_timeout")))
        assert limit.scalar() == "2s"
