"""Helpers for the paging tests: operators, targets, subscriptions, alerts and a dispatcher
whose webhooks go to an `httpx.MockTransport` and whose email goes to a fake mailer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from central.keys import ServiceKeys
from central.models import Alert, OperatorAccount, PageSubscription, PageTarget
from central.ops import alerts as ops_alerts
from central.paging.senders import WebhookSender, url_hint
from central.paging.tasks import PageDispatcher, PagingChannels
from tests.clock import FakeClock

PUBLIC_URL = "https://locker.example.com"
SECRET_PATH = "/services/T000/B000/XXXXsecretTOKEN"
HOOK_URL = f"https://hooks.example.com{SECRET_PATH}"


@dataclass
class Receiver:
    """A webhook receiver for `httpx.MockTransport`: records bodies, or answers `fail_with`
    (a status code, or an exception to raise) while that list lasts."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    fail_with: list[int | Exception] = field(default_factory=list)
    down: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if self.down:
                raise httpx.ConnectError(f"connection refused to {request.url}", request=request)
            if self.fail_with:
                failure = self.fail_with.pop(0)
                if isinstance(failure, Exception):
                    raise failure
                # A receiver that quotes the URL back must not leak it into the outbox.
                return httpx.Response(
                    failure, text=f"no such hook {request.url}", headers=self.headers
                )
            self.bodies.append(json.loads(request.content))
            self.urls.append(str(request.url))
            return httpx.Response(200, text="ok")


@dataclass
class FakeMailer:
    sent: list[EmailMessage] = field(default_factory=list)
    fail_with: list[Exception] = field(default_factory=list)

    def send(self, message: EmailMessage) -> None:
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.sent.append(message)

    def close(self) -> None:
        pass


def dispatcher(
    sessions: sessionmaker[Session],
    keys: ServiceKeys,
    clock: FakeClock,
    receiver: Callable[[httpx.Request], httpx.Response],
    mailer: FakeMailer | None,
    *,
    threshold: int = 5,
) -> tuple[PageDispatcher, httpx.Client]:
    client = httpx.Client(transport=httpx.MockTransport(receiver))
    channels = PagingChannels(
        sender="Locker paging <paging@locker.example.com>",
        webhooks=WebhookSender(client),
        mailer_factory=(lambda: mailer) if mailer is not None else None,
    )
    return (
        PageDispatcher(
            sessions, keys, clock, channels, public_url=PUBLIC_URL, digest_threshold=threshold
        ),
        client,
    )


def operator(session: Session, email: str, now: datetime, role: str = "viewer") -> int:
    account = OperatorAccount(email=email, password_hash="x", role=role, created_at=now)
    session.add(account)
    session.flush()
    return account.id


def target(
    session: Session, keys: ServiceKeys, now: datetime, name: str = "ops-chat", url: str = HOOK_URL
) -> int:
    row = PageTarget(
        name=name,
        url_sealed=keys.encrypt(url),
        url_hint=url_hint(url),
        enabled=True,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def subscribe(
    session: Session,
    operator_id: int,
    now: datetime,
    *,
    alert_types: list[str] | None = None,
    bank_ids: list[str] | None = None,
    email: bool = True,
    target_id: int | None = None,
    on_resolve: bool = False,
) -> int:
    row = PageSubscription(
        operator_id=operator_id,
        alert_types=alert_types,
        bank_ids=bank_ids,
        email=email,
        target_id=target_id,
        on_resolve=on_resolve,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def raise_alert(
    session: Session,
    now: datetime,
    *,
    bank_id: str | None = "NYC-1",
    alert_type: str = "bank_offline",
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    alert, _ = ops_alerts.raise_alert(
        session,
        bank_id=bank_id,
        alert_type=alert_type,
        subject=subject,
        detail=detail or {},
        now=now,
    )
    return alert.id


def resolve(session: Session, alert_id: int, now: datetime) -> None:
    alert = session.get(Alert, alert_id)
    assert alert is not None
    alert.resolved_at = now
    session.flush()


def later(clock: FakeClock, **delta: float) -> datetime:
    return clock.advance(timedelta(**delta).total_seconds())
