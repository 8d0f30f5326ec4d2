"""The notice outbox: written with the fact it tells of, once per fact and channel, sent once,
retried while a channel is down, given up on a permanent refusal, wiped once done."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.carriers.service import update_carrier
from central.context import Ctx
from central.models import Actor, Notice, Reservation
from central.notices import outbox
from central.notices.errors import PermanentSendError, TransientSendError
from central.notices.outbox import Fact
from central.notices.tasks import Channels, NoticeDispatcher
from central.reservations.transitions import extend, send_reminders
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll
from tests.central.nodes.test_events import PICKUP_CODE, deposit, event, send
from tests.clock import FakeClock

EMAIL = "ana.garcia@example.com"
PHONE = "+1 (212) 555-0143"


@dataclass
class FakeMailer:
    """Stands in for the SMTP mailer: records or refuses what it is given."""

    sent: list[EmailMessage]
    fail_with: list[Exception] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: EmailMessage) -> None:
        with self.lock:
            if self.fail_with:
                raise self.fail_with.pop(0)
            self.sent.append(message)

    def close(self) -> None:
        pass


@dataclass
class FakeSms:
    sent: list[tuple[str, str]] = field(default_factory=list)
    fail_with: list[Exception] = field(default_factory=list)

    def send(self, to: str, body: str) -> str:
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.sent.append((to, body))
        return f"SM{len(self.sent):032d}"


@dataclass
class Outbox:
    app: FastAPI
    clock: FakeClock
    mailer: FakeMailer
    sms: FakeSms
    dispatcher: NoticeDispatcher

    def rows(self) -> list[Notice]:
        with self.app.state.sessions() as session:
            return list(session.scalars(select(Notice).order_by(Notice.id)))

    def send_due(self) -> int:
        return self.dispatcher.run_once()


@pytest.fixture
def notices(app: FastAPI, clock: FakeClock) -> Iterator[Outbox]:
    mailer = FakeMailer([])
    sms = FakeSms()
    dispatcher = NoticeDispatcher(
        app.state.sessions,
        app.state.keys,
        clock,
        Channels(sender="Lockers <notices@lockers.test>", mailer_factory=lambda: mailer, sms=sms),
        public_url="https://lockers.test",
        retry_for=timedelta(hours=6),
    )
    yield Outbox(app, clock, mailer, sms, dispatcher)
    dispatcher.close()


def reserve_for(
    client: TestClient, world: World, number: str, recipient: dict[str, Any] | None
) -> str:
    body: dict[str, Any] = {"tracking_number": number, "bank_id": "NYC-1", "size": "S"}
    if recipient is not None:
        body["recipient"] = recipient
    response = client.post("/v1/reservations", json=body, headers=world.auth("acme"))
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def deposited(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    recipient: dict[str, Any] | None = None,
    number: str = "ACME-N1",
) -> tuple[NodeClient, str]:
    node = enroll(client, sessions, clock)
    rid = reserve_for(
        client, world, number, {"name": "Ana", "email": EMAIL, "phone": PHONE} | (recipient or {})
    )
    assert send(node, deposit(node, rid, clock())) == [("applied", None)]
    return node, rid


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def test_a_deposit_tells_the_recipient_by_email_and_sms_once(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    deposited(client, world, sessions, clock)
    rows = notices.rows()
    assert [(r.kind, r.channel, r.status) for r in rows] == [
        ("ready", "email", "pending"),
        ("ready", "sms", "pending"),
    ]
    assert rows[0].destination_hint == "a…@example.com" and rows[1].destination_hint == "***43"
    for row in rows:  # what waits is sealed: no code, no address in clear
        assert row.payload_sealed is not None
        assert PICKUP_CODE not in row.payload_sealed and EMAIL not in row.payload_sealed

    assert notices.send_due() == 2
    (message,) = notices.mailer.sent
    assert message["To"] == EMAIL
    assert re.search(rf"^Pickup code: {PICKUP_CODE}$", text_of(message), re.M)
    assert re.search(r"^https://lockers\.test/p/[A-Za-z0-9_-]+$", text_of(message), re.M)
    ((to, body),) = notices.sms.sent
    assert to == PHONE and PICKUP_CODE in body
    rows = notices.rows()
    assert [r.status for r in rows] == ["sent", "sent"]
    assert all(r.payload_sealed is None and r.sent_at == clock() for r in rows)
    assert rows[0].provider_ref == message["Message-ID"]

    # The same batch again (a node that did not hear the answer) writes and sends nothing more.
    assert notices.send_due() == 0
    assert len(notices.rows()) == 2 and len(notices.mailer.sent) == 1


def test_the_end_of_a_parcel_reaches_its_recipient_after_the_contact_is_wiped(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    node, rid = deposited(client, world, sessions, clock)
    notices.send_due()
    clock.advance(hours=1)
    picked = event("parcel.picked_up", {"reservation_id": rid}, clock())
    assert send(node, picked) == [("applied", None)]
    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.recipient is None and reservation.pickup_secret_sealed is None
    assert notices.send_due() == 2
    collected = notices.mailer.sent[-1]
    assert collected["To"] == EMAIL
    assert PICKUP_CODE not in collected.as_string()
    assert [r.kind for r in notices.rows()] == ["ready", "ready", "collected", "collected"]


def test_no_contact_or_a_carrier_that_tells_its_own_recipients_means_no_notice(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    node = enroll(client, sessions, clock)
    bare = reserve_for(client, world, "ACME-N2", None)
    with sessions.begin() as session:
        update_carrier(session, "acme", recipient_notices="carrier")
    theirs = reserve_for(client, world, "ACME-N3", {"email": EMAIL})
    assert send(node, deposit(node, bare, clock()), deposit(node, theirs, clock(), "A02")) == [
        ("applied", None),
        ("applied", None),
    ]
    assert notices.rows() == []


def test_a_channel_that_is_down_is_retried_with_backoff_and_sends_once(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    deposited(client, world, sessions, clock, {"phone": None})
    deposited(client, world, sessions, clock, {"phone": None}, number="ACME-N4")
    notices.mailer.fail_with.append(TransientSendError("connection refused"))
    assert notices.send_due() == 1  # the second email waits: the channel failed this round
    first, second = notices.rows()
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "connection refused")
    assert first.next_attempt_at > clock() + timedelta(seconds=29)
    assert (second.status, second.attempts) == ("pending", 0)
    assert notices.send_due() == 0  # nothing due yet

    clock.advance(minutes=2)
    assert notices.send_due() == 2
    assert [r.status for r in notices.rows()] == ["sent", "sent"]
    assert len(notices.mailer.sent) == 2


def test_a_permanent_refusal_fails_at_once_and_a_long_outage_gives_up(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    deposited(client, world, sessions, clock)
    notices.sms.fail_with.append(PermanentSendError("Twilio 21211: invalid 'To' number"))
    notices.mailer.fail_with.extend(TransientSendError("down") for _ in range(20))
    notices.send_due()
    email, sms = notices.rows()
    assert (sms.status, sms.last_error, sms.payload_sealed) == (
        "failed",
        "Twilio 21211: invalid 'To' number",
        None,
    )
    for _ in range(15):
        clock.advance(hours=1, minutes=5)
        notices.send_due()
    email = notices.rows()[0]
    assert (email.status, email.last_error, email.payload_sealed) == ("failed", "down", None)
    assert notices.mailer.sent == []


def test_without_channels_nothing_is_sent_and_nothing_fails(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    deposited(client, world, sessions, clock)
    dispatcher = NoticeDispatcher(
        app.state.sessions,
        app.state.keys,
        clock,
        Channels(sender="notices@lockers.test"),
        public_url="https://lockers.test",
    )
    try:
        assert dispatcher.run_once() == 0
    finally:
        dispatcher.close()
    with sessions() as session:
        rows = session.scalars(select(Notice)).all()
    assert [(r.status, r.payload_sealed) for r in rows] == [("unsent", None), ("unsent", None)]
    assert rows[0].last_error == "email is not configured (LOCKER_SMTP_URL)"


def test_reminder_and_extension_tell_the_recipient_with_the_code(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    _, rid = deposited(client, world, sessions, clock, {"phone": None, "language": "es"})
    clock.advance(hours=50)  # the bank reminds 24 h before its 72 h deadline
    with sessions.begin() as session:
        ctx = Ctx(session=session, keys=app.state.keys, now=clock())
        assert send_reminders(ctx) == 1
        assert send_reminders(ctx) == 0
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        extend(ctx, reservation, 12, actor=Actor.RECIPIENT, actor_id=None, reason=None)
    notices.send_due()
    kinds = [r.kind for r in notices.rows()]
    assert kinds == ["ready", "reminder", "extended"]
    for message in notices.mailer.sent:
        assert re.search(rf"^Código de recogida: {PICKUP_CODE}$", text_of(message), re.M)


def test_the_same_fact_is_written_once_per_channel(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    notices: Outbox,
) -> None:
    _, rid = deposited(client, world, sessions, clock)
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        ctx = Ctx(session=session, keys=app.state.keys, now=clock())
        fact = Fact("ready", "deposited", clock())
        assert outbox.enqueue(ctx, reservation, fact) == 2  # tried: the rows exist already
    assert len(notices.rows()) == 2
