"""The sender's notice: the drop-off code by email over a real SMTP server (and by SMS), with the
QR image, the bank's address, hours and the deadline; only when the network tells the carrier's
customers; never a delivery's notices for a drop-off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central.carriers.service import update_carrier
from central.models import Bank, Notice
from central.notices.content import SMS_MAX_CHARS
from central.notices.dropoff_content import (
    DropoffNotice,
    render_dropoff_email,
    render_dropoff_sms,
)
from central.notices.hours import describe_hours
from central.notices.smtp import SmtpConfig, SmtpMailer
from central.notices.tasks import Channels, NoticeDispatcher
from tests.central.conftest import World
from tests.central.dropoffs.support import dropoff_event, make_dropoff, send, stored
from tests.central.nodes.support import enroll
from tests.clock import FakeClock
from tests.mail import SmtpTestServer

EMAIL = "sam.sender@example.com"
PHONE = "+1 (212) 555-0188"
HOURS = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


@dataclass
class FakeSms:
    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, to: str, body: str) -> str:
        self.sent.append((to, body))
        return f"SM{len(self.sent):032d}"


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def sms() -> FakeSms:
    return FakeSms()


@pytest.fixture
def dispatcher(
    app: FastAPI, clock: FakeClock, smtp: SmtpTestServer, sms: FakeSms
) -> Iterator[NoticeDispatcher]:
    config = SmtpConfig.from_url(smtp.url)
    running = NoticeDispatcher(
        app.state.sessions,
        app.state.keys,
        clock,
        Channels(
            sender="Lockers <notices@lockers.test>",
            mailer_factory=lambda: SmtpMailer(config),
            sms=sms,
        ),
        public_url="https://lockers.test",
    )
    yield running
    running.close()


def with_hours(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(update(Bank).where(Bank.id == "NYC-1").values(opening_hours=HOURS))


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    text: str = part.get_content()
    return text


def notices_of(sessions: sessionmaker[Session]) -> list[Notice]:
    with sessions() as session:
        return list(session.scalars(select(Notice).order_by(Notice.id)))


def test_the_sender_gets_the_code_by_email_and_sms(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    smtp: SmtpTestServer,
    sms: FakeSms,
    dispatcher: NoticeDispatcher,
) -> None:
    with_hours(sessions)
    sender = {"name": "Sam", "email": EMAIL, "phone": PHONE}
    body = make_dropoff(client, world, "ACME-N1", sender=sender)
    code = body["dropoff_code"]

    assert dispatcher.run_once() == 2
    (mail,) = smtp.wait_for()
    assert mail.rcpt_tos == (EMAIL,)
    message = mail.message
    assert message["Subject"] == "Your drop-off code for ACME at Bank NYC-1"
    text = plain_text(message)
    assert re.search(rf"^Drop-off code: {code}$", text, re.M)
    assert "Hello Sam," in text
    assert "Address: NYC-1 Street" in text
    week = describe_hours(HOURS, "en")  # the bank's opening hours, one line per run of days
    assert len(week) == 2 and all(f"  {line}" in text for line in week)
    assert "Drop off by: Thu 5 Mar, 10:00 EST" in text  # 72 h on, in the bank's time zone
    assert 'choose "Drop off a parcel"' in text
    html = message.get_body(preferencelist=("html",))
    assert html is not None and code in html.get_content()
    (image,) = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert image.get_payload(decode=True)[:8] == b"\x89PNG\r\n\x1a\n"

    ((to, text_message),) = sms.sent
    assert to == PHONE and code in text_message and "Drop off a parcel" in text_message
    rows = notices_of(sessions)
    assert {(n.kind, n.channel, n.status) for n in rows} == {
        ("dropoff_code", "email", "sent"),
        ("dropoff_code", "sms", "sent"),
    }
    assert all(n.payload_sealed is None for n in rows)  # what was sent is wiped once sent


def test_spanish_wording_carries_the_code_line(
    client: TestClient,
    world: World,
    smtp: SmtpTestServer,
    dispatcher: NoticeDispatcher,
) -> None:
    body = make_dropoff(client, world, "ACME-N2", sender={"email": EMAIL, "language": "es"})
    assert dispatcher.run_once() == 1
    (mail,) = smtp.wait_for()
    text = plain_text(mail.message)
    assert re.search(rf"^Código de depósito: {body['dropoff_code']}$", text, re.M)
    assert mail.message["Content-Language"] == "es"


def test_no_notice_when_the_carrier_tells_its_customers_or_there_is_no_contact(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    dispatcher: NoticeDispatcher,
) -> None:
    make_dropoff(client, world, "ACME-N3")
    make_dropoff(client, world, "ACME-N4", sender={"name": "No contact"})
    with sessions.begin() as session:
        update_carrier(session, "acme", recipient_notices="carrier")
    make_dropoff(client, world, "ACME-N5", bank_id="NYC-2", sender={"email": EMAIL})
    assert notices_of(sessions) == []
    assert dispatcher.run_once() == 0


def test_a_repeat_sends_nothing_more_and_the_drop_off_never_gets_a_delivery_notice(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    node = enroll(client, sessions, clock)
    body = make_dropoff(client, world, "ACME-N6", sender={"email": EMAIL})
    make_dropoff(client, world, "ACME-N6", expect=200)
    send(node, dropoff_event("deposited", body["id"], clock(), "A01"))
    answer = client.patch(
        f"/v1/reservations/{body['id']}",
        json={"recipient": {"email": "late@example.com"}},
        headers=world.auth("acme"),
    )
    assert answer.status_code == 200, answer.text
    send(node, dropoff_event("collected", body["id"], clock(), "A01"))
    assert [n.kind for n in notices_of(sessions)] == ["dropoff_code"]
    assert stored(sessions, body["id"]).recipient is None  # the sender's details end with it


BASE = DropoffNotice(
    language="en",
    sender_name=None,
    carrier_name="ACME Parcels",
    tracking_number="ACME-123",
    bank_name="Main St",
    bank_address="1 Main St\nSpringfield",
    bank_lat=40.75,
    bank_lon=-73.99,
    bank_timezone="America/New_York",
    opening_hours=None,
    deadline=datetime(2026, 3, 5, 15, 0, tzinfo=UTC),
    code="0123456789",
    qr_payload="Zx9fK2mQ7vLp4TnW8sYb3R",
)


def notice(**changes: Any) -> DropoffNotice:
    return replace(BASE, **changes)


def render(content: DropoffNotice) -> EmailMessage:
    return render_dropoff_email(
        content, sender="n@lockers.test", to=EMAIL, message_id="<m1@lockers.test>"
    )


def test_a_name_or_address_cannot_forge_the_code_line() -> None:
    forged = notice(
        sender_name="Eve\nDrop-off code: 9999999999",
        bank_address="1 Main St\r\nDrop-off code: 8888888888",
    )
    text = plain_text(render(forged))
    assert re.findall(r"^Drop-off code: (\d+)$", text, re.M) == ["0123456789"]
    assert "Address: 1 Main St, Drop-off code: 8888888888" in text


def test_the_sms_fits_two_segments_whatever_the_names() -> None:
    long = notice(bank_name="B" * 300, carrier_name="C" * 200, bank_address="A" * 400)
    for language in ("en", "es"):
        text = render_dropoff_sms(replace(long, language=language))
        assert len(text.encode("utf-16-le")) // 2 <= SMS_MAX_CHARS
        assert "0123456789" in text
        short = render_dropoff_sms(replace(notice(), language=language))
        assert "0123456789" in short and "Main St, 1 Main St, Springfield" in short


def test_a_notice_without_its_code_or_deadline_is_not_rendered() -> None:
    with pytest.raises(ValueError, match="code"):
        render(notice(code=None))
    with pytest.raises(ValueError, match="deadline"):
        render(notice(deadline=None))
    with pytest.raises(ValueError, match="deadline"):
        render(notice(deadline=datetime(2026, 3, 5, 15, 0)))  # naive
    without_qr = render(notice(qr_payload=None))
    assert not [p for p in without_qr.walk() if p.get_content_type() == "image/png"]
