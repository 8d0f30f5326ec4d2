"""What the soak's carrier and recipients receive: signed webhooks, and the notices' mail."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.support import free_port
from central.demo_mail import Mailbox, SmtpReceiver, start_smtp_receiver
from central.webhooks import signing

WEBHOOK_PATH = "/webhooks"
MAX_BODY_BYTES = 1_000_000
# The published contract of the "ready" mail: the code on a line of its own (DESIGN.md).
CODE_LINE = re.compile(r"^(?:Pickup code|Código de recogida): (\d+)\s*$", re.MULTILINE)


@dataclass
class ReceivedWebhook:
    """One event id as the carrier's endpoint saw it; `deliveries` counts the times it came."""

    event_id: str
    type: str
    reservation_id: str
    tracking_number: str
    pickup_code: str | None
    deliveries: int = 1


@dataclass
class WebhookLog:
    """Every delivery checked against the secret, as a carrier's endpoint checks it."""

    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    events: dict[str, ReceivedWebhook] = field(default_factory=dict)
    bad_signatures: int = 0
    unreadable: int = 0
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, body: bytes, signature: str | None) -> bool:
        if signature is None or not signing.verify(self.secret, body, signature):
            with self._mutex:
                self.bad_signatures += 1
            return False
        try:
            payload = json.loads(body)
            data = payload["data"]
            event = ReceivedWebhook(
                event_id=str(payload["id"]),
                type=str(payload["type"]),
                reservation_id=str(data["id"]),
                tracking_number=str(data.get("tracking_number")),
                pickup_code=None if data.get("pickup_code") is None else str(data["pickup_code"]),
            )
        except (ValueError, TypeError, KeyError):
            with self._mutex:
                self.unreadable += 1
            return True  # signed by central: answered, so that it is not sent again
        with self._mutex:
            known = self.events.get(event.event_id)
            if known is None:
                self.events[event.event_id] = event
            else:
                known.deliveries += 1
        return True

    def snapshot(self) -> list[ReceivedWebhook]:
        with self._mutex:
            return [ReceivedWebhook(**vars(event)) for event in self.events.values()]

    def forget(self, event_id: str) -> None:
        """Drop one event from the record (`--break webhook`: a delivery that never came)."""
        with self._mutex:
            self.events.pop(event_id, None)


def _handler(log: WebhookLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != WEBHOOK_PATH or not 0 < length <= MAX_BODY_BYTES:
                self._answer(HTTPStatus.NOT_FOUND)
                return
            body = self.rfile.read(length)
            if log.accept(body, self.headers.get(signing.HEADER)):
                self._answer(HTTPStatus.NO_CONTENT)
            else:
                self._answer(HTTPStatus.UNAUTHORIZED)

        def _answer(self, status: HTTPStatus) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class WebhookReceiver:
    """The carrier's endpoint on 127.0.0.1, served from daemon threads of the soak's process."""

    def __init__(self) -> None:
        self.log = WebhookLog()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.log))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="soak-webhooks", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{WEBHOOK_PATH}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Letter:
    to: str
    subject: str
    code: str | None


class RecipientMail(Mailbox):
    """The recipients' inboxes, in memory: who got what, and the pickup codes the "ready" mail
    carried. Nothing is written to disk (a long soak sends thousands of messages)."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent-soak-mailbox"))
        self._letters: dict[str, list[Letter]] = {}
        self._arrived = threading.Condition()
        self.unreadable = 0

    def save(self, raw: bytes, *, at: datetime | None = None) -> str:
        parsed = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        with self._arrived:
            if not isinstance(parsed, EmailMessage):
                self.unreadable += 1
                return secrets.token_hex(6)
            letter = Letter(
                to=str(parsed.get("Delivered-To") or parsed.get("To") or "").strip().lower(),
                subject=" ".join(str(parsed.get("Subject") or "").split()),
                code=_pickup_code(parsed),
            )
            self._letters.setdefault(letter.to, []).append(letter)
            self._arrived.notify_all()
        return secrets.token_hex(6)

    def wait_for_code(self, address: str, timeout_s: float) -> str | None:
        """The pickup code of the first "ready" mail to `address`, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while True:
                codes = [letter.code for letter in self._letters.get(address.lower(), [])]
                found = next((code for code in codes if code is not None), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._arrived.wait(min(left, 1.0))

    def letters(self) -> dict[str, list[Letter]]:
        with self._arrived:
            return {address: list(letters) for address, letters in self._letters.items()}

    def count(self) -> int:
        with self._arrived:
            return sum(len(letters) for letters in self._letters.values())

    def kinds(self) -> Counter[str]:
        """Messages by subject, for the report."""
        with self._arrived:
            return Counter(
                letter.subject.split(":")[0] for group in self._letters.values() for letter in group
            )


def _pickup_code(message: EmailMessage) -> str | None:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return None
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        return None
    found = CODE_LINE.search(text) if isinstance(text, str) else None
    return None if found is None else found.group(1)


def start_mail() -> tuple[RecipientMail, SmtpReceiver]:
    """aiosmtpd on a free port of 127.0.0.1, into the in-memory inboxes."""
    mail = RecipientMail()
    return mail, start_smtp_receiver(mail, free_port())
