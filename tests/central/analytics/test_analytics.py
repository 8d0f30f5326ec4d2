"""Usage analytics: the outbox filled from history, flushed through the mixpanel library."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.analytics.node_events import NODE_EVENT_MODELS, record_kiosk_event
from central.analytics.service import SETTLE, recipient_key
from central.analytics.tasks import BATCH_SIZE, AnalyticsJobs, MixpanelSender
from central.config import CentralSettings
from central.context import Ctx
from central.keys import ServiceKeys
from central.models import (
    Actor,
    AnalyticsCursor,
    AnalyticsEvent,
    Node,
    NodeEventRecord,
    Reservation,
    ReservationStatus,
)
from central.nodes import events as node_events
from central.nodes.batch import Handler
from central.reservations.transitions import transition
from central.scheduler import INTERVALS, Jobs
from locker_wire.schemas import NodeEvent
from tests.central.conftest import TEST_SECRET, World, make_bank
from tests.central.nodes.support import enroll
from tests.clock import FakeClock

TOKEN = "mp-project-token-0123456789"
EMAIL = "Jane.Doe@Example.org"
PHONE = "+1 (212) 555-0142"
NAME = "Jane Doe"
# Every way the recipient or the parcel could show up in a payload.
PERSONAL = ("jane", "example.org", "2125550142", "555-0142", "(212)", "ACME-")


# A stand-in for Mixpanel's /track on 127.0.0.1 ------------------------------------------------


@dataclass
class TrackServer:
    """Records every raw request body; answers 200 `{"status": 1}` unless told to fail."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses to answer with first

    accepted: list[bytes] = field(default_factory=list)

    def events(self, body: bytes) -> list[dict[str, Any]]:
        data = parse_qs(body.decode())["data"][0]
        batch: list[dict[str, Any]] = json.loads(data)
        return batch

    def accepted_insert_ids(self) -> list[str]:
        return [e["properties"]["$insert_id"] for b in self.accepted for e in self.events(b)]


@pytest.fixture
def track_server() -> Iterator[TrackServer]:
    server = TrackServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server.bodies.append(body)
            if server.failures:
                status = server.failures.pop(0)
                payload = b'{"status": 0, "error": "unavailable"}'
            else:
                status = 200
                server.accepted.append(body)
                payload = b'{"status": 1, "error": null}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}/track"
    yield server
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


# Helpers ----------------------------------------------------------------------------------------


def keys() -> ServiceKeys:
    return ServiceKeys(TEST_SECRET.encode())


def reserve(
    client: TestClient, world: World, number: str, *, recipient: bool = True, size: str = "S"
) -> str:
    body: dict[str, Any] = {"tracking_number": number, "bank_id": "NYC-1", "size": size}
    if recipient:
        body["recipient"] = {"name": NAME, "email": EMAIL, "phone": PHONE}
    response = client.post("/v1/reservations", json=body, headers=world.auth("acme"))
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def move(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    rid: str,
    target: ReservationStatus,
    **kwargs: Any,
) -> None:
    """A lifecycle transition as the node's events and the jobs make them."""
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        ctx = Ctx(session=session, keys=keys(), now=clock())
        transition(ctx, reservation, target, actor=Actor.SYSTEM, **kwargs)


def deposit(sessions: sessionmaker[Session], clock: FakeClock, rid: str) -> None:
    move(
        sessions,
        clock,
        rid,
        ReservationStatus.DEPOSITED,
        changes={
            "compartment_label": "A01",
            "deposited_at": clock(),
            "pickup_deadline": clock() + timedelta(hours=72),
        },
    )


def outbox(sessions: sessionmaker[Session]) -> list[AnalyticsEvent]:
    with sessions() as session:
        return list(session.scalars(select(AnalyticsEvent).order_by(AnalyticsEvent.id)))


def analytics(app: FastAPI, clock: FakeClock, url: str | None) -> AnalyticsJobs:
    sender = MixpanelSender(TOKEN, events_url=url, timeout_s=5) if url else None
    return AnalyticsJobs(app.state.sessions, app.state.keys, clock, sender)


def assert_no_personal_data(raw: bytes | str) -> None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    for readable in (text, unquote_plus(text)):
        for fragment in PERSONAL:
            assert fragment.lower() not in readable.lower(), fragment


# The filler ----------------------------------------------------------------------------------


def test_history_becomes_events_keyed_by_an_hmac_of_the_recipient(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    sessions = app.state.sessions
    jobs = analytics(app, clock, None)
    picked = reserve(client, world, "ACME-A1")
    cancelled = reserve(client, world, "ACME-A2", recipient=False)
    assert jobs.fill().reservation_events == 0  # too recent; the recipient is keyed already
    clock.advance(hours=2)
    deposit(sessions, clock, picked)
    clock.advance(hours=30)
    node_time = clock() - timedelta(minutes=1)
    move(
        sessions,
        clock,
        picked,
        ReservationStatus.PICKED_UP,
        event_data={"occurred_at": node_time.isoformat()},
    )
    assert client.delete(f"/v1/reservations/{cancelled}", headers=world.auth("acme")).is_success

    # The pickup and the cancellation are too recent to be sure every earlier id has committed.
    assert jobs.fill().reservation_events == 3
    clock.advance(seconds=SETTLE.total_seconds() + 1)
    assert jobs.fill().reservation_events == 2
    assert jobs.fill().reservation_events == 0  # the cursor moved: nothing twice

    rows = outbox(sessions)
    assert [(r.event, r.reservation_id) for r in rows] == [
        ("Reservation Created", picked),
        ("Reservation Created", cancelled),
        ("Parcel Deposited", picked),
        ("Parcel Picked Up", picked),
        ("Reservation Cancelled", cancelled),
    ]
    hmac_id = recipient_key(keys(), {"email": "jane.doe@example.org"})
    assert hmac_id is not None and len(hmac_id) == 64
    # The recipient was wiped at pickup; the reservation kept the id it got at creation.
    assert {r.distinct_id for r in rows if r.reservation_id == picked} == {hmac_id}
    assert {r.distinct_id for r in rows if r.reservation_id == cancelled} == {cancelled}
    pickup = rows[3]
    assert pickup.properties == {
        "bank_id": "NYC-1",
        "size": "S",
        "carrier_id": "acme",
        "dwell_hours": round((30 * 60 - 1) / 60, 2),
    }
    assert pickup.occurred_at == node_time
    assert rows[2].properties["wait_hours"] == 2.0
    assert {r.status for r in rows} == {"kept"}  # no token: kept locally, nothing to send
    assert jobs.flush().sent == 0
    for row in rows:
        assert_no_personal_data(json.dumps([row.distinct_id, row.properties, row.insert_id]))


def test_a_creation_the_eager_capture_missed_is_keyed_by_the_filler(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    sessions = app.state.sessions
    rid = reserve(client, world, "ACME-L1")
    with sessions.begin() as session:
        # As if the creation had committed after a later one: the capture cursor is past it.
        session.add(AnalyticsCursor(source="subjects", last_id=10**6, updated_at=clock()))
    jobs = analytics(app, clock, None)
    clock.advance(minutes=3)
    jobs.fill()
    deposit(sessions, clock, rid)
    move(sessions, clock, rid, ReservationStatus.PICKED_UP)  # the recipient is wiped
    clock.advance(minutes=3)
    jobs.fill()

    rows = outbox(sessions)
    assert [r.event for r in rows] == [
        "Reservation Created",
        "Parcel Deposited",
        "Parcel Picked Up",
    ]
    assert {r.distinct_id for r in rows} == {recipient_key(keys(), {"email": EMAIL})}


def test_the_recipient_key_depends_on_the_contact_not_its_spelling() -> None:
    one = recipient_key(keys(), {"email": " Jane.Doe@Example.org ", "name": "J"})
    assert one == recipient_key(keys(), {"email": "jane.doe@example.org", "phone": "+1 555"})
    by_phone = recipient_key(keys(), {"phone": "+1 (212) 555-0142"})
    assert by_phone == recipient_key(keys(), {"phone": "12125550142"}) != one
    assert recipient_key(keys(), {"name": NAME}) is None
    other_key = ServiceKeys(b"another-secret-key-0123456789-abcdefghijklmnop")
    assert recipient_key(other_key, {"email": EMAIL}) != one


def test_door_faults_and_kiosk_events_come_from_node_events(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    sessions = app.state.sessions
    node = enroll(client, sessions, clock)
    stored = {
        "door.forced_open": {"compartment": "A01", "detail": None},
        "kiosk.code_failed": {"kind": "pickup", "attempts_left": 3},
        "kiosk.locked_out": {"kind": "pickup", "retry_after_s": 30},
        "kiosk.session": {
            "carrier_id": "ups",
            "started_at": clock().isoformat(),
            "duration_s": 200,
            "deposits": 2,
            "ended_by": "logout",
        },
        "parcel.picked_up": {"reservation_id": "rsv_x"},  # comes from history instead
    }
    with sessions.begin() as session:
        for kind, data in stored.items():
            session.add(
                NodeEventRecord(
                    id=str(uuid.uuid4()),
                    node_id=node.node_id,
                    bank_id="NYC-1",
                    type=kind,
                    occurred_at=clock() - timedelta(seconds=5),
                    received_at=clock(),
                    status="applied",
                    error=None,
                    data=data,
                )
            )
    clock.advance(minutes=3)
    jobs = analytics(app, clock, "http://127.0.0.1:9/track")

    assert jobs.fill().node_events == 4
    rows = {row.event: row for row in outbox(sessions)}
    assert set(rows) == {"Door Fault", "Code Failed", "Keypad Locked Out", "Courier Session"}
    assert rows["Door Fault"].properties == {
        "bank_id": "NYC-1",
        "kind": "door.forced_open",
        "compartment": "A01",
    }
    assert rows["Courier Session"].properties == {
        "bank_id": "NYC-1",
        "carrier_id": "ups",
        "duration_s": 200,
        "deposits": 2,
        "ended_by": "logout",
    }
    assert {row.distinct_id for row in rows.values()} == {"bank:NYC-1"}
    assert {row.status for row in rows.values()} == {"pending"}
    assert jobs.fill().node_events == 0


def test_the_kiosk_event_models_refuse_anything_but_counts() -> None:
    assert set(NODE_EVENT_MODELS) == {"kiosk.code_failed", "kiosk.locked_out", "kiosk.session"}
    model = NODE_EVENT_MODELS["kiosk.code_failed"]
    with pytest.raises(ValidationError):
        model.model_validate({"kind": "pickup", "attempts_left": 3, "code": "12345678"})
    data = model.model_validate({"kind": "pickup", "attempts_left": 3})
    event = NodeEvent.model_validate(
        {"id": str(uuid.uuid4()), "type": "kiosk.code_failed", "occurred_at": "2026-03-02T15:00Z"}
    )
    record_kiosk_event(None, Node(), event, data)  # type: ignore[arg-type]  # changes nothing


def test_kiosk_events_sent_by_a_node_reach_the_outbox_once_registered(
    client: TestClient,
    world: World,
    app: FastAPI,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registration `central.nodes.events` is to carry, made here for the test only."""
    for kind, model in NODE_EVENT_MODELS.items():
        monkeypatch.setitem(node_events._DATA_MODELS, kind, model)
        monkeypatch.setitem(node_events._HANDLERS, kind, Handler(record_kiosk_event))
    node = enroll(client, app.state.sessions, clock)
    at = clock().isoformat()
    events = [
        {"kind": "pickup", "attempts_left": 2},
        {"kind": "pickup", "attempts_left": 0, "code": "12345678"},  # refused: no codes
    ]
    batch = [
        {"id": str(uuid.uuid4()), "type": "kiosk.code_failed", "occurred_at": at, "data": data}
        for data in events
    ]
    answer = node.post("/v1/node/events", {"events": batch + batch[:1]})

    assert answer.status_code == 200, answer.text
    statuses = [r["status"] for r in answer.json()["results"]]
    assert statuses == ["applied", "rejected", "duplicate"]
    clock.advance(minutes=3)
    jobs = analytics(app, clock, "http://127.0.0.1:9/track")
    assert jobs.fill().node_events == 1
    [row] = outbox(app.state.sessions)
    assert (row.event, row.properties) == (
        "Code Failed",
        {"bank_id": "NYC-1", "kind": "pickup", "attempts_left": 2},
    )
    with app.state.sessions() as session:
        stored = [r.data for r in session.scalars(select(NodeEventRecord))]
    assert len(stored) == 2 and "12345678" not in json.dumps(stored)


# Sending through the mixpanel library ----------------------------------------------------------


def test_events_go_out_in_batches_through_the_library_with_no_personal_data(
    client: TestClient,
    world: World,
    app: FastAPI,
    clock: FakeClock,
    track_server: TrackServer,
) -> None:
    with app.state.sessions.begin() as session:
        make_bank(session, bank_id="BIG-1", now=clock(), compartments="S:60")
    for n in range(BATCH_SIZE + 5):
        body = {
            "tracking_number": f"ACME-B{n:03d}",
            "bank_id": "BIG-1",
            "size": "S",
            "recipient": {"name": NAME, "email": EMAIL, "phone": PHONE},
        }
        assert client.post("/v1/reservations", json=body, headers=world.auth("acme")).is_success
    clock.advance(minutes=3)
    settings: CentralSettings = app.state.settings
    jobs = Jobs(
        app.state.sessions,
        app.state.keys,
        clock,
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))),
        settings.model_copy(
            update={"mixpanel_token": SecretStr(TOKEN), "mixpanel_events_url": track_server.url}
        ),
    )
    try:
        assert {"fill_analytics", "flush_analytics"} <= set(jobs.all())
        assert INTERVALS["fill_analytics"] == INTERVALS["flush_analytics"] == 60
        jobs.fill_analytics()
        result = jobs.flush_analytics()
    finally:
        jobs.close()

    assert (result.sent, result.failed) == (BATCH_SIZE + 5, 0)
    sizes = [len(track_server.events(raw)) for raw in track_server.bodies]
    assert sizes == [BATCH_SIZE, 5]
    first = track_server.events(track_server.bodies[0])[0]
    assert first["event"] == "Reservation Created"
    properties = first["properties"]
    assert properties["token"] == TOKEN
    assert properties["distinct_id"] == recipient_key(keys(), {"email": EMAIL})
    assert properties["time"] == int((clock() - timedelta(minutes=3)).timestamp())
    assert properties["$insert_id"].startswith("re-")
    assert {properties["bank_id"], properties["size"], properties["carrier_id"]} == {
        "BIG-1",
        "S",
        "acme",
    }
    for raw in track_server.bodies:
        assert_no_personal_data(raw)
    assert {row.status for row in outbox(app.state.sessions)} == {"sent"}


def test_a_failed_batch_stays_pending_and_is_delivered_once_later(
    client: TestClient,
    world: World,
    app: FastAPI,
    clock: FakeClock,
    track_server: TrackServer,
) -> None:
    rids = [reserve(client, world, f"ACME-F{n}", size=size) for n, size in enumerate("SSM")]
    clock.advance(minutes=3)
    jobs = analytics(app, clock, track_server.url)
    jobs.fill()
    track_server.failures.append(500)

    failed = jobs.flush()

    assert (failed.sent, failed.failed) == (0, 3)
    rows = outbox(app.state.sessions)
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    assert all(r.next_attempt_at > clock() and r.last_error for r in rows)
    assert jobs.flush().sent == 0  # not due yet: nothing is sent before the backoff
    assert len(track_server.bodies) == 1

    clock.advance(minutes=5)
    assert jobs.flush().sent == 3
    assert jobs.flush().sent == 0

    expected = sorted(f"re-{r.id}" for r in rows)
    assert sorted(r.insert_id for r in rows) == expected
    assert sorted(track_server.accepted_insert_ids()) == expected  # each once
    # The retry carried the very same events, $insert_id and time included.
    assert track_server.events(track_server.bodies[0]) == track_server.events(
        track_server.bodies[1]
    )
    assert {r.status for r in outbox(app.state.sessions)} == {"sent"}
    assert len(rids) == 3


def test_an_unreachable_endpoint_fails_nothing_but_the_flush(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock
) -> None:
    reserve(client, world, "ACME-U1")
    clock.advance(minutes=3)
    jobs = analytics(app, clock, "http://127.0.0.1:9/track")  # nothing listens on port 9
    jobs.fill()
    assert jobs.flush().failed == 1
    [row] = outbox(app.state.sessions)
    assert (row.status, row.attempts) == ("pending", 1)


def test_events_past_the_track_window_are_not_sent_and_old_rows_are_purged(
    client: TestClient,
    world: World,
    app: FastAPI,
    clock: FakeClock,
    track_server: TrackServer,
) -> None:
    reserve(client, world, "ACME-O1")
    clock.advance(minutes=3)
    jobs = analytics(app, clock, track_server.url)
    jobs.fill()
    clock.advance(days=6)  # Mixpanel's /track drops events older than five days

    assert jobs.flush().stale == 1
    assert track_server.bodies == []
    clock.advance(days=30)
    jobs.fill()
    assert outbox(app.state.sessions) == []


def test_without_a_token_nothing_is_sent_and_nothing_fails(
    client: TestClient, world: World, app: FastAPI, clock: FakeClock, track_server: TrackServer
) -> None:
    reserve(client, world, "ACME-N1")
    clock.advance(minutes=3)
    settings: CentralSettings = app.state.settings
    assert settings.mixpanel_token is None
    jobs = Jobs(
        app.state.sessions,
        app.state.keys,
        clock,
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))),
        settings.model_copy(update={"mixpanel_events_url": track_server.url}),
    )
    try:
        jobs.fill_analytics()
        assert jobs.flush_analytics().sent == 0
    finally:
        jobs.close()
    [row] = outbox(app.state.sessions)
    assert (row.event, row.status) == ("Reservation Created", "kept")
    assert track_server.bodies == []
