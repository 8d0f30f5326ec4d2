"""A walk-up deposit through central, then the carrier's PATCH with an email: the recipient gets
the "ready" email, with the code that the node sealed, over a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from central.notices.smtp import SmtpConfig, SmtpMailer
from central.notices.tasks import Channels, NoticeDispatcher
from tests.central.conftest import World
from tests.central.nodes.test_events import PICKUP_CODE, send, setup
from tests.central.nodes.test_walkup import available, walk_up, walk_up_id, webhooks
from tests.clock import FakeClock
from tests.mail import SmtpTestServer


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


def test_a_walk_up_counts_and_a_later_patch_with_an_email_sends_the_notice(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    smtp: SmtpTestServer,
) -> None:
    node = setup(client, world, sessions, clock)
    free = available(sessions)
    rid = walk_up_id()
    assert send(node, walk_up(node, rid, at=clock() - timedelta(minutes=1))) == [("applied", None)]
    assert available(sessions) == free - 1
    assert [b["type"] for b in webhooks(app, sessions)] == ["parcel.deposited"]

    config = SmtpConfig.from_url(smtp.url)
    dispatcher = NoticeDispatcher(
        app.state.sessions,
        app.state.keys,
        clock,
        Channels(
            sender="Lockers <notices@lockers.test>", mailer_factory=lambda: SmtpMailer(config)
        ),
        public_url="https://lockers.test",
    )
    try:
        assert dispatcher.run_once() == 0  # no contact yet: nobody to tell
        answer = client.patch(
            f"/v1/reservations/{rid}",
            json={"recipient": {"email": "walkup@example.com", "language": "es"}},
            headers=world.auth("acme"),
        )
        assert answer.status_code == 200, answer.text
        assert dispatcher.run_once() == 1
    finally:
        dispatcher.close()
    (mail,) = smtp.wait_for()
    assert mail.rcpt_tos == ("walkup@example.com",)
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None
    assert re.search(rf"^Código de recogida: {PICKUP_CODE}$", body.get_content(), re.M)
