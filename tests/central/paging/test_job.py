"""The page_alerts job: alert transitions matched to subscriptions, paged once per destination,
digested when many, retried with backoff, given up after the bound, never leaking a URL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.backoff import MAX_RETRY_INTERVAL
from central.keys import ServiceKeys
from central.models import OperatorAccount, PageOutbox, PageTarget
from central.notices.errors import PermanentSendError
from central.notices.smtp import SmtpConfig, SmtpMailer
from central.paging.tasks import PageDispatcher, run_paging
from tests.central.conftest import World
from tests.central.paging.support import (
    HOOK_URL,
    PUBLIC_URL,
    SECRET_PATH,
    FakeMailer,
    Receiver,
    dispatcher,
    later,
    operator,
    raise_alert,
    resolve,
    subscribe,
    target,
)
from tests.clock import FakeClock


@dataclass
class Rig:
    sessions: sessionmaker[Session]
    keys: ServiceKeys
    clock: FakeClock
    receiver: Receiver
    mailer: FakeMailer
    paging: PageDispatcher

    def pages(self) -> list[PageOutbox]:
        with self.sessions() as session:
            return list(session.scalars(select(PageOutbox).order_by(PageOutbox.id)))


@pytest.fixture
def rig(app: FastAPI, world: World, clock: FakeClock) -> Iterator[Rig]:
    sessions: sessionmaker[Session] = app.state.sessions
    receiver, mailer = Receiver(), FakeMailer()
    paging, client = dispatcher(sessions, app.state.keys, clock, receiver, mailer)
    yield Rig(sessions, app.state.keys, clock, receiver, mailer, paging)
    paging.close()
    client.close()


def test_a_raised_alert_pages_the_subscribers_once_each(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        ana = operator(session, "ana@ops.test", now)
        bo = operator(session, "bo@ops.test", now, role="admin")
        hook = target(session, rig.keys, now)
        subscribe(session, ana, now, alert_types=["bank_offline"], bank_ids=["NYC-1"])
        # Two matching subscriptions of one operator, and one to the shared target twice.
        subscribe(session, ana, now, alert_types=None, email=True, target_id=hook)
        subscribe(session, bo, now, bank_ids=["NYC-1", "BOS-1"], email=False, target_id=hook)
        alert_id = raise_alert(session, now, bank_id="NYC-1")
    assert rig.paging.run_once() == 2
    assert rig.paging.run_once() == 0
    run_paging(rig.paging)

    [email] = rig.mailer.sent
    assert email["To"] == "ana@ops.test"
    assert email["Subject"] == "[Locker] Alert: Bank offline at Bank NYC-1 (NYC-1)"
    body = email.get_content()
    assert "The bank's node stopped reporting (offline)" in body
    assert "Raised 2026-03-02 15:00 UTC" in body
    assert f"{PUBLIC_URL}/ops/banks/NYC-1" in body
    [chat] = rig.receiver.bodies
    assert rig.receiver.urls == [HOOK_URL]
    assert "Bank offline at Bank NYC-1 (NYC-1)" in chat["text"]
    assert f"<{PUBLIC_URL}/ops/banks/NYC-1|" in chat["text"]
    assert chat["blocks"][0]["type"] == "section"
    pages = rig.pages()
    assert {(p.alert_id, p.destination, p.status) for p in pages} == {
        (alert_id, f"email:{ana}", "sent"),
        (alert_id, f"webhook:{hook}", "sent"),
    }
    assert {p.destination_hint for p in pages} == {
        "a…@ops.test",
        "ops-chat (https://hooks.example.com)",
    }


def test_subscriptions_filter_by_type_and_bank_and_network_alerts_reach_bank_filters(
    rig: Rig,
) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        ana = operator(session, "ana@ops.test", now)
        subscribe(
            session, ana, now, alert_types=["door_fault", "webhook_failing"], bank_ids=["BOS-1"]
        )
        raise_alert(session, now, bank_id="NYC-1", alert_type="door_fault", subject="A01")
        raise_alert(session, now, bank_id="BOS-1", alert_type="bank_offline")
        wanted = raise_alert(session, now, bank_id="BOS-1", alert_type="door_fault", subject="B02")
        network = raise_alert(
            session,
            now,
            bank_id=None,
            alert_type="webhook_failing",
            subject="ep1",
            detail={"carrier": "acme", "host": "hooks.acme.test"},
        )
    run_paging(rig.paging)
    assert sorted(p.alert_id for p in rig.pages()) == [wanted, network]
    subjects = sorted(str(m["Subject"]) for m in rig.mailer.sent)
    assert subjects == [
        "[Locker] Alert: Carrier webhook failing at the network",
        "[Locker] Alert: Door faulty at Bank BOS-1 (BOS-1)",
    ]
    network_mail = next(m for m in rig.mailer.sent if "network" in str(m["Subject"]))
    assert f"{PUBLIC_URL}/ops/alerts?status=all&type=webhook_failing" in network_mail.get_content()


def test_a_resolved_alert_pages_only_those_who_asked(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        ana = operator(session, "ana@ops.test", now)
        bo = operator(session, "bo@ops.test", now)
        subscribe(session, ana, now, on_resolve=True)
        subscribe(session, bo, now, on_resolve=False)
        alert_id = raise_alert(session, now)
    run_paging(rig.paging)
    assert len(rig.mailer.sent) == 2
    later(rig.clock, minutes=10)
    with rig.sessions.begin() as session:
        resolve(session, alert_id, rig.clock())
    run_paging(rig.paging)
    run_paging(rig.paging)
    [resolved] = rig.mailer.sent[2:]
    assert resolved["To"] == "ana@ops.test"
    assert resolved["Subject"] == "[Locker] Resolved: Bank offline at Bank NYC-1 (NYC-1)"
    assert "resolved 2026-03-02 15:10 UTC" in resolved.get_content()


def test_many_at_once_go_as_one_digest_per_destination(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        ana = operator(session, "ana@ops.test", now)
        hook = target(session, rig.keys, now)
        subscribe(session, ana, now, email=True, target_id=hook)
        for n in range(6):
            raise_alert(session, now, alert_type="door_left_open", subject=f"A{n:02}")
        raise_alert(session, now, bank_id="BOS-1", alert_type="bank_offline")
    assert run_paging(rig.paging) == 14
    [digest] = rig.mailer.sent
    assert digest["Subject"] == "[Locker] 7 alert changes"
    body = digest.get_content()
    assert "Door left open: 6 raised" in body
    assert "Bank offline: 1 raised" in body
    assert "…and 2 more." in body
    [chat] = rig.receiver.bodies
    assert chat["text"].startswith("*7 alert changes*")
    assert {(p.status, p.digest_size) for p in rig.pages()} == {("sent", 7)}
    assert run_paging(rig.paging) == 0


def test_at_the_threshold_each_page_goes_on_its_own(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        subscribe(session, operator(session, "ana@ops.test", now), now)
        for n in range(5):
            raise_alert(session, now, alert_type="door_fault", subject=f"A{n:02}")
    run_paging(rig.paging)
    assert len(rig.mailer.sent) == 5
    assert {p.digest_size for p in rig.pages()} == {None}


def test_a_failing_receiver_is_retried_with_backoff_then_given_up_and_kept(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        hook = target(session, rig.keys, now)
        subscribe(session, operator(session, "ana@ops.test", now), now, email=False, target_id=hook)
        raise_alert(session, now)
    rig.receiver.fail_with = [404] * 100
    caplog.set_level(logging.DEBUG)
    run_paging(rig.paging)
    [page] = rig.pages()
    assert (page.status, page.attempts) == ("pending", 1)
    assert page.last_error is not None and "HTTP 404" in page.last_error
    first_wait = page.next_attempt_at - rig.clock()
    assert timedelta(seconds=30) <= first_wait <= timedelta(seconds=33)
    attempts = 1
    while rig.pages()[0].status == "pending":
        rig.clock.set(rig.pages()[0].next_attempt_at)
        run_paging(rig.paging)
        attempts += 1
        assert attempts < 60
    [page] = rig.pages()
    assert page.status == "failed" and page.attempts == attempts
    # It gives up when the next wait (at most an hour plus 10 % jitter) would pass the 24 hours.
    last_wait = MAX_RETRY_INTERVAL * 1.1
    assert (
        page.created_at + timedelta(hours=24) - last_wait
        < rig.clock()
        <= page.created_at + timedelta(hours=24)
    )
    assert rig.receiver.bodies == []
    everything = caplog.text + (page.last_error or "")
    assert SECRET_PATH not in everything and "secretTOKEN" not in everything
    assert "page to ops-chat (https://hooks.example.com) gave up" in caplog.text


def test_retry_after_is_honoured(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        hook = target(session, rig.keys, now)
        subscribe(session, operator(session, "ana@ops.test", now), now, email=False, target_id=hook)
        raise_alert(session, now)
    rig.receiver.fail_with = [429]
    rig.receiver.headers = {"Retry-After": "600"}
    run_paging(rig.paging)
    [page] = rig.pages()
    assert page.next_attempt_at - rig.clock() == timedelta(seconds=600)
    later(rig.clock, seconds=599)
    assert run_paging(rig.paging) == 0
    later(rig.clock, seconds=1)
    assert run_paging(rig.paging) == 1
    assert len(rig.receiver.bodies) == 1


def test_a_transport_error_never_quotes_the_url(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        hook = target(session, rig.keys, now)
        subscribe(session, operator(session, "ana@ops.test", now), now, email=False, target_id=hook)
        raise_alert(session, now)
    rig.receiver.down = True
    run_paging(rig.paging)
    [page] = rig.pages()
    assert page.status == "pending"
    assert page.last_error is not None
    assert page.last_error.startswith("https://hooks.example.com: ConnectError")
    assert "secretTOKEN" not in page.last_error


def test_a_refused_address_fails_at_once_and_other_pages_still_go(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        subscribe(session, operator(session, "ana@ops.test", now), now)
        subscribe(session, operator(session, "bo@ops.test", now), now)
        raise_alert(session, now)
    rig.mailer.fail_with = [PermanentSendError("550 mailbox unavailable")]
    run_paging(rig.paging)
    assert sorted(p.status for p in rig.pages()) == ["failed", "sent"]
    assert len(rig.mailer.sent) == 1


def test_disabled_operators_and_targets_are_not_paged(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        ana = operator(session, "ana@ops.test", now)
        hook = target(session, rig.keys, now)
        subscribe(session, ana, now, email=True, target_id=hook)
        raise_alert(session, now)
    rig.paging.scan()  # the pages are written ...
    with rig.sessions.begin() as session:
        # ... and before they go, the operator leaves and the target is switched off.
        account = session.get(OperatorAccount, ana)
        hook_row = session.get(PageTarget, hook)
        assert account is not None and hook_row is not None
        account.disabled_at = now
        hook_row.enabled = False
        raise_alert(session, now, alert_type="door_fault", subject="A01")
    run_paging(rig.paging)
    assert rig.mailer.sent == [] and rig.receiver.bodies == []
    assert [p.status for p in rig.pages()] == ["cancelled", "cancelled"]


def test_without_smtp_email_pages_end_as_not_sent(
    app: FastAPI, world: World, clock: FakeClock
) -> None:
    receiver = Receiver()
    paging, client = dispatcher(app.state.sessions, app.state.keys, clock, receiver, None)
    with app.state.sessions.begin() as session:
        subscribe(session, operator(session, "ana@ops.test", clock()), clock())
        raise_alert(session, clock())
    run_paging(paging)
    with app.state.sessions() as session:
        [page] = session.scalars(select(PageOutbox)).all()
        assert (page.status, page.last_error) == (
            "unsent",
            "email is not configured (LOCKER_SMTP_URL)",
        )
    client.close()


def test_alerts_older_than_the_scan_window_and_earlier_subscriptions(rig: Rig) -> None:
    now = rig.clock()
    with rig.sessions.begin() as session:
        ana = operator(session, "ana@ops.test", now)
        raise_alert(session, now - timedelta(hours=25), alert_type="door_fault", subject="A01")
        raise_alert(session, now, alert_type="door_fault", subject="A02")
    run_paging(rig.paging)  # nobody subscribed yet: scanned, nothing paged
    with rig.sessions.begin() as session:
        subscribe(session, ana, now)
    run_paging(rig.paging)
    assert rig.mailer.sent == [] and rig.pages() == []


def test_the_scheduler_runs_page_alerts_on_every_host(app: FastAPI, clock: FakeClock) -> None:
    from central.scheduler import INTERVALS, SHARED_JOBS, Jobs

    with httpx.Client() as http:
        jobs = Jobs(app.state.sessions, app.state.keys, clock, http, app.state.settings)
        try:
            assert "page_alerts" in jobs.all()
            assert jobs.page_alerts() == 0
        finally:
            jobs.close()
    assert "page_alerts" in SHARED_JOBS and INTERVALS["page_alerts"] <= 10


def test_a_bad_smtp_url_is_refused_at_start_up(app: FastAPI) -> None:
    from central.paging.channels import build_paging_channels

    settings = app.state.settings.model_copy(update={"smtp_url": SecretStr("ftp://mail")})
    with httpx.Client() as http, pytest.raises(ValueError, match="LOCKER_SMTP_URL"):
        build_paging_channels(settings, http)
    good = app.state.settings.model_copy(update={"smtp_url": SecretStr("smtp://127.0.0.1:2525")})
    with httpx.Client() as http:
        channels = build_paging_channels(good, http)
    assert channels.mailer_factory is not None
    mailer = channels.mailer_factory()
    assert isinstance(mailer, SmtpMailer)
    assert repr(mailer) == repr(SmtpMailer(SmtpConfig.from_url("smtp://127.0.0.1:2525")))
