"""Recipient notices in the dashboard's APIs: per parcel, in the bank's listing, in the search and
as the overview's signal; never what was sent, nor to whom beyond the masked hint."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import count
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.models import Notice
from tests.central.conftest import World
from tests.central.ops.support import VIEWER, fast, make_operator, reserve, sign_in
from tests.clock import FakeClock

SEALED = "SEALED-CONTENT-NEVER-SHOWN"
FULL_EMAIL = "john.doe@example.com"
FULL_PHONE = "+1 (555) 123-4567"
_keys = count()


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)  # cheap password hashing: sign-in is not what these tests measure


@pytest.fixture
def viewer(client: TestClient, app: FastAPI, clock: FakeClock, world: World) -> TestClient:
    make_operator(app, clock, VIEWER, "viewer")
    sign_in(client, VIEWER)
    return client


def add_notice(
    sessions: sessionmaker[Session],
    reservation_id: str,
    *,
    created_at: datetime,
    status: str,
    kind: str = "ready",
    channel: str = "email",
    attempts: int = 0,
    next_attempt_at: datetime | None = None,
    sent_at: datetime | None = None,
    last_error: str | None = None,
    provider_ref: str | None = None,
    bank_id: str = "NYC-1",
) -> int:
    """A notice row as the outbox and the sender leave it in `status`."""
    hint = "j…@example.com" if channel == "email" else "…67"
    with sessions.begin() as session:
        notice = Notice(
            key=f"{reservation_id}/{kind}/{next(_keys)}/{channel}",
            reservation_id=reservation_id,
            bank_id=bank_id,
            carrier_id="acme",
            kind=kind,
            channel=channel,
            language="en",
            destination_hint=hint,
            payload_sealed=SEALED if status == "pending" else None,
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at or created_at,
            created_at=created_at,
            sent_at=sent_at,
            last_error=last_error,
            provider_ref=provider_ref,
        )
        session.add(notice)
        session.flush()
        return notice.id


def one_of_each(sessions: sessionmaker[Session], rid: str, now: datetime) -> dict[str, int]:
    """Sent, failed (its error quoting the full number), waiting, unsent and fresh notices."""
    return {
        "sent": add_notice(
            sessions, rid, created_at=now, status="sent", attempts=1,
            sent_at=now + timedelta(seconds=3), provider_ref="<abc@lockers.example>",
        ),
        "failed": add_notice(
            sessions, rid, created_at=now, status="failed", channel="sms", attempts=1,
            next_attempt_at=now + timedelta(minutes=5),
            last_error=f"Twilio refused the message: The 'To' number {FULL_PHONE} is not valid",
        ),
        "waiting": add_notice(
            sessions, rid, created_at=now + timedelta(hours=1), status="pending",
            kind="reminder", attempts=2, next_attempt_at=now + timedelta(hours=1, minutes=2),
            last_error=f"SMTP server 10.0.0.7:25 refused the recipient: 450 <{FULL_EMAIL}> busy",
        ),
        "unsent": add_notice(
            sessions, rid, created_at=now + timedelta(hours=1), status="unsent",
            kind="reminder", channel="sms", last_error="SMS is not configured (LOCKER_TWILIO_*)",
        ),
        "fresh": add_notice(
            sessions, rid, created_at=now + timedelta(hours=2), status="pending", kind="extended"
        ),
    }  # fmt: skip


def assert_nothing_private(text: str) -> None:
    assert SEALED not in text
    assert "payload" not in text
    assert FULL_EMAIL not in text and "john.doe" not in text
    digits = re.sub(r"\D", "", text)
    assert "5551234567" not in digits


def test_a_parcels_notices_in_detail(
    viewer: TestClient, app: FastAPI, clock: FakeClock, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(app, clock, "ACME-N1", deposit_into="A01")
    now = clock()
    ids = one_of_each(sessions, rid, now)

    response = viewer.get(f"/ops/api/parcels/{rid}/notices")

    assert response.status_code == 200, response.text
    assert_nothing_private(response.text)
    body = response.json()
    assert body["reservation_id"] == rid
    assert body["tracking_number"] == "ACME-N1"
    assert body["bank_id"] == "NYC-1"
    assert body["notice_counts"] == {"sent": 1, "failed": 1, "pending": 2, "unsent": 1}
    notices = {n["id"]: n for n in body["notices"]}
    assert [n["id"] for n in body["notices"]] == list(ids.values())  # oldest first
    sent = notices[ids["sent"]]
    assert sent == {
        "id": ids["sent"],
        "kind": "ready",
        "channel": "email",
        "destination_hint": "j…@example.com",
        "status": "sent",
        "attempts": 1,
        "created_at": now.isoformat(),
        "sent_at": (now + timedelta(seconds=3)).isoformat(),
        "next_attempt_at": None,
        "last_error": None,
        "provider_ref": "<abc@lockers.example>",
    }
    failed = notices[ids["failed"]]
    assert (failed["status"], failed["channel"], failed["attempts"]) == ("failed", "sms", 1)
    assert failed["next_attempt_at"] is None  # no next attempt once given up
    assert failed["last_error"].startswith("Twilio refused the message: The 'To' number ")
    assert failed["last_error"].endswith("67 is not valid")  # masked, the last digits kept
    waiting = notices[ids["waiting"]]
    assert waiting["status"] == "pending" and waiting["attempts"] == 2
    assert waiting["next_attempt_at"] == (now + timedelta(hours=1, minutes=2)).isoformat()
    # The address is masked; the server's own address stays readable.
    assert waiting["last_error"] == (
        "SMTP server 10.0.0.7:25 refused the recipient: 450 <j…@example.com> busy"
    )
    unsent = notices[ids["unsent"]]
    assert unsent["status"] == "unsent"
    assert unsent["last_error"] == "SMS is not configured (LOCKER_TWILIO_*)"
    fresh = notices[ids["fresh"]]
    assert (fresh["status"], fresh["attempts"], fresh["last_error"]) == ("pending", 0, None)
    assert fresh["next_attempt_at"] == (now + timedelta(hours=2)).isoformat()


def test_a_parcel_without_notices_and_an_unknown_one(
    viewer: TestClient, app: FastAPI, clock: FakeClock
) -> None:
    rid = reserve(app, clock, "ACME-N0")
    body = viewer.get(f"/ops/api/parcels/{rid}/notices").json()
    assert body["notices"] == []
    assert body["notice_counts"] == {"sent": 0, "failed": 0, "pending": 0, "unsent": 0}
    missing = viewer.get("/ops/api/parcels/no-such-reservation/notices")
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown_reservation"


def test_the_banks_parcels_carry_their_notice_counts(
    viewer: TestClient, app: FastAPI, clock: FakeClock, sessions: sessionmaker[Session]
) -> None:
    noticed = reserve(app, clock, "ACME-N2", deposit_into="A01")
    quiet = reserve(app, clock, "ACME-N3", deposit_into="A02")
    other = reserve(app, clock, "ACME-N4", bank_id="NYC-2", deposit_into="A01")
    one_of_each(sessions, noticed, clock())
    add_notice(sessions, other, created_at=clock(), status="failed", bank_id="NYC-2")

    response = viewer.get("/ops/api/banks/NYC-1")

    assert response.status_code == 200, response.text
    assert_nothing_private(response.text)
    parcels = {
        c["parcel"]["reservation_id"]: c["parcel"]
        for c in response.json()["compartments"]
        if c["parcel"]
    }
    assert parcels[noticed]["notice_counts"] == {"sent": 1, "failed": 1, "pending": 2, "unsent": 1}
    assert parcels[quiet]["notice_counts"] == {"sent": 0, "failed": 0, "pending": 0, "unsent": 0}
    assert "notices" not in parcels[noticed]  # the details come on demand


def test_the_search_gives_each_parcels_notices(
    viewer: TestClient, app: FastAPI, clock: FakeClock, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(app, clock, "ACME-N5", deposit_into="A01")
    ids = one_of_each(sessions, rid, clock())

    response = viewer.get("/ops/api/parcels", params={"tracking_number": "ACME-N5"})

    assert response.status_code == 200, response.text
    assert_nothing_private(response.text)
    (parcel,) = response.json()["parcels"]
    assert parcel["notice_counts"] == {"sent": 1, "failed": 1, "pending": 2, "unsent": 1}
    assert [n["id"] for n in parcel["notices"]] == list(ids.values())
    assert parcel["notices"] == viewer.get(f"/ops/api/parcels/{rid}/notices").json()["notices"]


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    sa_event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa_event.remove(app.state.engine, "before_cursor_execute", record)


def on_notices(seen: list[str]) -> list[str]:
    return [s for s in seen if re.search(r"\bFROM notices\b", s, re.IGNORECASE)]


def test_the_listings_notice_counts_are_one_query_whatever_the_parcel_count(
    viewer: TestClient, app: FastAPI, clock: FakeClock, sessions: sessionmaker[Session]
) -> None:
    def bank_page() -> tuple[int, int]:
        with statements(app) as seen:
            assert viewer.get("/ops/api/banks/NYC-1").status_code == 200
        return len(on_notices(seen)), len(seen)

    first = reserve(app, clock, "ACME-Q0", deposit_into="A01")
    one_of_each(sessions, first, clock())
    few = bank_page()
    for i, (label, size) in enumerate((("A02", "S"), ("A03", "M"), ("A04", "M"), ("A05", "L"))):
        rid = reserve(app, clock, f"ACME-Q{i + 1}", size=size, deposit_into=label)
        one_of_each(sessions, rid, clock())

    many = bank_page()

    assert few[0] == many[0] == 1
    assert few[1] == many[1]


def test_the_overview_signals_failed_and_waiting_notices(
    viewer: TestClient, app: FastAPI, clock: FakeClock, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(app, clock, "ACME-N6", deposit_into="A01")
    now = clock()
    start = now - timedelta(hours=48)
    # Failed two days ago: out of the window.
    add_notice(sessions, rid, created_at=start, status="failed", attempts=3)
    add_notice(  # failed 30 min ago, at its last attempt
        sessions, rid, created_at=start, status="failed", attempts=9,
        next_attempt_at=now - timedelta(minutes=30), last_error="SMTP server down",
    )  # fmt: skip
    oldest = now - timedelta(hours=3)
    for created in (oldest, now - timedelta(hours=1)):
        add_notice(
            sessions, rid, created_at=created, status="pending", attempts=2,
            next_attempt_at=now + timedelta(minutes=4), last_error="SMTP server down",
        )  # fmt: skip
    add_notice(sessions, rid, created_at=now, status="pending")  # not tried yet
    add_notice(sessions, rid, created_at=now, status="sent", attempts=1, sent_at=now)
    add_notice(sessions, rid, created_at=now, status="unsent", channel="sms")

    with statements(app) as seen:
        response = viewer.get("/ops/api/overview/notices")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "since": (now - timedelta(hours=24)).isoformat(),
        "failed_last_24h": 1,
        "waiting": 2,
        "waiting_since": oldest.isoformat(),
    }
    assert len(on_notices(seen)) == 1


def test_the_overview_signal_with_no_notices(viewer: TestClient) -> None:
    body = viewer.get("/ops/api/overview/notices").json()
    assert (body["failed_last_24h"], body["waiting"], body["waiting_since"]) == (0, 0, None)


@pytest.mark.parametrize("path", ["/ops/api/parcels/{rid}/notices", "/ops/api/overview/notices"])
def test_a_viewer_may_read_notices_and_nobody_signed_out(
    client: TestClient, app: FastAPI, clock: FakeClock, world: World, path: str
) -> None:
    url = path.format(rid=reserve(app, clock, "ACME-N7"))
    refused = client.get(url)
    assert refused.status_code == 401
    assert refused.json()["error"] == "not_signed_in"
    make_operator(app, clock, VIEWER, "viewer")
    sign_in(client, VIEWER)
    assert client.get(url).status_code == 200
