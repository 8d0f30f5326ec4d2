"""Paging through real servers: an alert raised while the SMTP server and the webhook receiver
are both down is delivered once to each when they come back; two job runs at once page once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from central.models import PageOutbox
from central.paging.channels import build_page_dispatcher
from central.paging.tasks import run_paging
from tests.central.conftest import World
from tests.central.paging.support import (
    FakeMailer,
    Receiver,
    dispatcher,
    operator,
    raise_alert,
    subscribe,
    target,
)
from tests.clock import FakeClock
from tests.locker_node.e2e.nodes import free_port
from tests.mail import SmtpTestServer


class HookServer:
    """A real HTTP server on 127.0.0.1 that takes webhook POSTs; `stop()` and `start()` take it
    down and up again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T0/secretTOKEN"

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer()
    yield server
    server.stop()


def test_pages_wait_while_both_receivers_are_down_and_go_once_when_back(
    app: FastAPI, world: World, clock: FakeClock, hooks: HookServer, smtp: SmtpTestServer
) -> None:
    settings = app.state.settings.model_copy(
        update={"smtp_url": SecretStr(smtp.url), "notify_from": "Paging <paging@ops.test>"}
    )
    now = clock()
    with app.state.sessions.begin() as session:
        ana = operator(session, "ana@ops.test", now)
        hook = target(session, app.state.keys, now, url=hooks.url)
        subscribe(session, ana, now, email=True, target_id=hook)
        raise_alert(session, now, bank_id="NYC-2", alert_type="door_forced_open", subject="B03")
    with httpx.Client(timeout=5) as http:
        paging = build_page_dispatcher(app.state.sessions, app.state.keys, clock, settings, http)
        try:
            # Both down: the run fails, and the pages stay pending.
            assert run_paging(paging) == 2
            with app.state.sessions() as session:
                pages = session.scalars(select(PageOutbox).order_by(PageOutbox.id)).all()
            assert [(p.status, p.attempts) for p in pages] == [("pending", 1), ("pending", 1)]
            errors = sorted(p.last_error or "" for p in pages)
            assert errors[0].startswith(f"SMTP server 127.0.0.1:{smtp.port} unreachable")
            assert errors[1].startswith(f"http://127.0.0.1:{hooks.port}: ConnectError")
            assert "secretTOKEN" not in errors[1]

            # Both back, on the same ports; the next try after the backoff delivers each once.
            smtp.start()
            hooks.start()
            assert run_paging(paging) == 0  # not due yet
            clock.advance(timedelta(minutes=1).total_seconds())
            assert run_paging(paging) == 2
            clock.advance(timedelta(hours=2).total_seconds())
            assert run_paging(paging) == 0
        finally:
            paging.close()
    [mail] = smtp.received
    assert mail.rcpt_tos == ("ana@ops.test",)
    assert mail.message["Subject"] == "[Locker] Alert: Door forced open at Bank NYC-2 (NYC-2)"
    assert "Door B03 opened without a command" in mail.message.get_content()
    [(path, body)] = hooks.received
    assert path == "/hooks/T0/secretTOKEN"
    assert "Door B03 opened without a command" in body["text"]
    with app.state.sessions() as session:
        statuses = session.scalars(select(PageOutbox.status)).all()
    assert statuses == ["sent", "sent"]


def test_two_runs_at_once_page_each_transition_once(
    app: FastAPI, world: World, clock: FakeClock
) -> None:
    """Two hosts' job runs started together (on PostgreSQL: SKIP LOCKED claims and the
    outbox's unique key; on SQLite: its single writer)."""
    now = clock()
    with app.state.sessions.begin() as session:
        hook = target(session, app.state.keys, now)
        for n in range(3):
            subscribe(session, operator(session, f"op{n}@ops.test", now), now, target_id=hook)
        for n in range(12):
            raise_alert(session, now, alert_type="door_left_open", subject=f"A{n:02}")
    receiver, mailer = Receiver(), FakeMailer()
    runs = [
        dispatcher(app.state.sessions, app.state.keys, clock, receiver, mailer, threshold=100)
        for _ in range(2)
    ]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            run_paging(runs[index][0])
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for paging, client in runs:
        paging.close()
        client.close()
    assert failures == []
    texts = sorted(body["text"] for body in receiver.bodies)
    assert len(texts) == 12 and len(set(texts)) == 12
    assert len(mailer.sent) == 36
    assert len({(str(m["To"]), str(m["Subject"]), m.get_content()) for m in mailer.sent}) == 36
    with app.state.sessions() as session:
        assert set(session.scalars(select(PageOutbox.status))) == {"sent"}


def test_a_run_that_dies_mid_send_is_not_doubled_by_another(
    app: FastAPI, world: World, clock: FakeClock
) -> None:
    """While one run is sending, another finds the page claimed and leaves it alone."""
    now = clock()
    with app.state.sessions.begin() as session:
        hook = target(session, app.state.keys, now)
        subscribe(session, operator(session, "ana@ops.test", now), now, email=False, target_id=hook)
        raise_alert(session, now)
    sending, release = threading.Event(), threading.Event()
    received: list[httpx.Request] = []

    def slow(request: httpx.Request) -> httpx.Response:
        received.append(request)
        sending.set()
        assert release.wait(10)
        return httpx.Response(200)

    first, first_client = dispatcher(app.state.sessions, app.state.keys, clock, slow, None)
    second, second_client = dispatcher(app.state.sessions, app.state.keys, clock, slow, None)
    thread = threading.Thread(target=run_paging, args=(first,))
    thread.start()
    try:
        assert sending.wait(10)
        assert run_paging(second) == 0
    finally:
        release.set()
        thread.join()
    first_client.close()
    second_client.close()
    assert len(received) == 1
