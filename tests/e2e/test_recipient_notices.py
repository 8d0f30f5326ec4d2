"""The recipient hears from the network itself: real central (`locker-central serve` with its
scheduler), a real node on a simulated board, a real SMTP server on 127.0.0.1.

A carrier reserves with the recipient's email; a courier deposits at the kiosk; the email that
arrives carries the code that opens the door; the reminder and the "collected" notice follow;
and with the SMTP server down for a while every notice still arrives, once, after it returns.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from central.models import Bank, Notice
from tests.central.conftest import TEST_SECRET
from tests.e2e.harness import BANK, World, create_world, deposit, eventually, provision_node
from tests.locker_node.e2e.nodes import NodeProcess, spawn
from tests.mail import SmtpTestServer

pytestmark = pytest.mark.slow

CODE_LINE = re.compile(r"^Pickup code: (\d+)$", re.M)
MAIL_WAIT_S = 30.0  # the scheduler sends every 2 s; a retry after an outage waits 1 s, then 2 s


@contextmanager
def central_serving(world: World, smtp: SmtpTestServer) -> Iterator[subprocess.Popen[bytes]]:
    """`locker-central serve` with its scheduler, sending notices to `smtp`."""
    env = os.environ | {
        "LOCKER_DATABASE_URL": world.url,
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(world.tmp / "central"),
        "LOCKER_PUBLIC_URL": world.base,
        "LOCKER_SMTP_URL": smtp.url,
        "LOCKER_NOTIFY_FROM": "Lockers <notices@lockers.test>",
        "LOCKER_NOTICE_FIRST_RETRY_S": "1",
    }
    log = (world.tmp / "central.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "serve", "--port", str(world.port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool | None:
        if process.poll() is not None:
            raise AssertionError("central exited while starting: see central.log")
        try:
            return httpx.get(f"{world.base}/healthz", timeout=1).status_code == 200 or None
        except httpx.TransportError:
            return None

    try:
        eventually(up, "central to answer")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert b"Traceback" not in (world.tmp / "central.log").read_bytes()


def run_job(world: World, name: str) -> None:
    env = os.environ | {
        "LOCKER_DATABASE_URL": world.url,
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(world.tmp / "central"),
        "LOCKER_PUBLIC_URL": world.base,
    }
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", "jobs", "run", name],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def reserve_for(world: World, tracking: str, email: str) -> str:
    answer = httpx.post(
        f"{world.base}/v1/reservations",
        json={
            "tracking_number": tracking,
            "bank_id": BANK,
            "size": "S",
            "recipient": {"name": "Ana", "email": email},
        },
        headers=world.carrier.headers,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def mails_to(smtp: SmtpTestServer, address: str) -> list[EmailMessage]:
    return [m for m in smtp.messages if m["To"] == address]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def wait_mails(smtp: SmtpTestServer, address: str, count: int) -> list[EmailMessage]:
    smtp.wait_for(lambda _: len(mails_to(smtp, address)) >= count, timeout=MAIL_WAIT_S)
    return mails_to(smtp, address)


def pickup(node: NodeProcess, kiosk: httpx.Client, code: str) -> None:
    answer = kiosk.post(f"{node.base_url}/api/pickup", json={"code": code})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with create_world(tmp_path) as built:
        # The reminder is due as soon as the parcel is in (reminder 72 h before a 72 h deadline).
        with built.sessions.begin() as session:
            session.execute(update(Bank).where(Bank.id == BANK).values(reminder_hours=72))
        yield built


def test_the_recipient_gets_the_code_by_email_and_every_notice_once_across_an_outage(
    world: World,
) -> None:
    with SmtpTestServer() as smtp, central_serving(world, smtp):
        config, port = provision_node(world)
        node = spawn(config, port=port)
        try:
            with httpx.Client(timeout=5) as kiosk:
                node.wait_ready(kiosk)
                first = "ana@example.com"
                reserve_for(world, "ACME-MAIL-1", first)
                deposit(node, kiosk, world, "ACME-MAIL-1")
                (ready,) = wait_mails(smtp, first, 1)
                match = CODE_LINE.search(text_of(ready))
                assert match, text_of(ready)
                assert f"{world.base}/p/" in text_of(ready)

                run_job(world, "send_reminders")
                reminder = wait_mails(smtp, first, 2)[1]
                assert CODE_LINE.search(text_of(reminder))

                pickup(node, kiosk, match.group(1))  # the emailed code opens the door
                collected = wait_mails(smtp, first, 3)[2]
                assert not CODE_LINE.search(text_of(collected))

                # The mail server goes down; a second parcel goes in and is reminded meanwhile.
                smtp.stop()
                second = "ben@example.com"
                reserve_for(world, "ACME-MAIL-2", second)
                deposit(node, kiosk, world, "ACME-MAIL-2")
                run_job(world, "send_reminders")
                eventually(lambda: failed_attempts(world) or None, "a failed attempt")
                smtp.start()
                later = wait_mails(smtp, second, 2)
        finally:
            node.stop()

    assert len({m["Subject"] for m in (ready, reminder, collected)}) == 3
    # Exactly once each: five notices, five messages, no Message-ID twice.
    assert len({m["Message-ID"] for m in smtp.messages}) == len(smtp.messages) == 5
    assert len(later) == 2 and all(CODE_LINE.search(text_of(m)) for m in later)
    with world.sessions() as session:
        rows = session.scalars(select(Notice)).all()
    assert sorted((r.kind, r.status) for r in rows) == sorted(
        [*[("ready", "sent"), ("reminder", "sent")] * 2, ("collected", "sent")]
    )
    assert all(r.payload_sealed is None for r in rows)


def failed_attempts(world: World) -> int:
    with world.sessions() as session:
        return len(session.scalars(select(Notice).where(Notice.last_error.is_not(None))).all())
