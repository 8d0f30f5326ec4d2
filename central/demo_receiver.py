"""The demo's receiver on 127.0.0.1: the carrier's webhooks, the recipients' mail (demo only)."""

from __future__ import annotations

import html
import json
import threading
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

from central.demo_mail import MAIL_PATH, Mailbox, serve_mail
from central.webhooks import signing

WEBHOOK_PATH = "/webhooks"
EVENTS_PATH = "/events"
KEEP_EVENTS = 100
MAX_BODY_BYTES = 1_000_000


@dataclass(frozen=True)
class ReceivedEvent:
    """One verified delivery, as the receiver's page shows it."""

    event_id: str
    type: str
    received_at: str
    tracking_number: str | None
    bank_id: str | None
    compartment: str | None
    status: str | None
    pickup_code: str | None
    qr_payload: str | None


class EventLog:
    """Verifies deliveries as a carrier would and keeps the latest ones, newest first."""

    def __init__(self, secret: str, *, keep: int = KEEP_EVENTS) -> None:
        self.secret = secret
        self._events: deque[ReceivedEvent] = deque(maxlen=keep)
        self._seen: deque[str] = deque(maxlen=keep)
        self._mutex = threading.Lock()

    def accept(self, body: bytes, signature: str | None) -> bool:
        """False for a delivery that is not signed with the secret (or too old, or not JSON)."""
        if signature is None or not signing.verify(self.secret, body, signature):
            return False
        try:
            event = _received(json.loads(body))
        except (ValueError, TypeError, KeyError):
            return False
        with self._mutex:
            # Retries send the same event id: keep it once.
            if event.event_id not in self._seen:
                self._seen.append(event.event_id)
                self._events.appendleft(event)
        return True

    def events(self) -> list[ReceivedEvent]:
        with self._mutex:
            return list(self._events)


def _received(payload: dict[str, Any]) -> ReceivedEvent:
    data = payload["data"]
    bank = data.get("bank") or {}

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return ReceivedEvent(
        event_id=str(payload["id"]),
        type=str(payload["type"]),
        received_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tracking_number=text(data.get("tracking_number")),
        bank_id=text(bank.get("id")),
        compartment=text(data.get("compartment")),
        status=text(data.get("status")),
        pickup_code=text(data.get("pickup_code")),
        qr_payload=text(data.get("qr_payload")),
    )


def render_page(events: list[ReceivedEvent]) -> str:
    columns = ("received", "event", "tracking number", "bank", "compartment", "pickup code")
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(value or '')}</td>"
            for value in (
                event.received_at,
                event.type,
                event.tracking_number,
                event.bank_id,
                event.compartment,
            )
        )
        + f"<td><b>{html.escape(event.pickup_code or '')}</b></td></tr>"
        for event in events
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='3'>"
        "<title>Demo webhook receiver</title></head><body>"
        "<h1>Webhooks received by the demo carrier</h1>"
        "<p>What central sent to the demo's <code>usps</code> webhook, newest first. A "
        "<code>parcel.deposited</code> event carries the recipient's pickup code: type it on "
        "the bank's kiosk. This page refreshes itself; "
        f"<a href='{EVENTS_PATH}'>{EVENTS_PATH}</a> has the same as JSON, and "
        f"<a href='{MAIL_PATH}'>{MAIL_PATH}</a> the mail the recipients got.</p>"
        "<table border='1' cellpadding='4'><tr>"
        + "".join(f"<th>{name}</th>" for name in columns)
        + f"</tr>{rows}</table></body></html>"
    )


def _handler(log: EventLog, mailbox: Mailbox | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != WEBHOOK_PATH or not 0 < length <= MAX_BODY_BYTES:
                self._answer(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
                return
            body = self.rfile.read(length)
            if log.accept(body, self.headers.get(signing.HEADER)):
                self._answer(HTTPStatus.NO_CONTENT, "text/plain", b"")
            else:
                self._answer(HTTPStatus.UNAUTHORIZED, "text/plain", b"bad signature")

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if mailbox is not None and (path == MAIL_PATH or path.startswith(MAIL_PATH + "/")):
                page = serve_mail(mailbox, path, self.headers.get("Host"))
                self._answer(page.status, page.content_type, page.body, page.headers)
                return
            events = log.events()
            if path == "/":
                self._answer(
                    HTTPStatus.OK, "text/html; charset=utf-8", render_page(events).encode()
                )
            elif path == EVENTS_PATH:
                items = [asdict(event) for event in events]
                self._answer(HTTPStatus.OK, "application/json", json.dumps(items).encode())
            else:
                self._answer(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

        def _answer(
            self,
            status: HTTPStatus,
            content_type: str,
            body: bytes,
            headers: tuple[tuple[str, str], ...] = (),
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the demo's terminal is for its summary

    return Handler


class DemoReceiver:
    """The receiver's HTTP server, served from a daemon thread of the demo's own process: the
    webhook page, and the inbox of `mailbox` under /mail when there is one."""

    def __init__(
        self,
        log: EventLog,
        port: int,
        *,
        host: str = "127.0.0.1",
        mailbox: Mailbox | None = None,
    ) -> None:
        self.log = log
        self.mailbox = mailbox
        self._server = ThreadingHTTPServer((host, port), _handler(log, mailbox))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def mail_url(self) -> str:
        return self.url + MAIL_PATH

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def start_receiver(secret: str, port: int, mailbox: Mailbox | None = None) -> DemoReceiver:
    receiver = DemoReceiver(EventLog(secret), port, mailbox=mailbox)
    receiver.start()
    return receiver


def register_webhook(
    http: httpx.Client, central_url: str, auth: dict[str, str], url: str, secret: str
) -> None:
    """Make `url` the carrier's webhook endpoint with `secret`, in place of the last run's."""
    endpoints = f"{central_url}/v1/webhooks"
    listed = _checked(http.get(endpoints, headers=auth))
    for endpoint in listed.json()["items"]:
        if endpoint["url"] == url:
            _checked(http.delete(f"{endpoints}/{endpoint['id']}", headers=auth))
    _checked(http.post(endpoints, json={"url": url, "secret": secret}, headers=auth))


def _checked(answer: httpx.Response) -> httpx.Response:
    if not answer.is_success:
        raise ReceiverError(
            f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text}"
        )
    return answer


class ReceiverError(Exception):
    """Central refused to take the receiver as the demo carrier's webhook endpoint."""


def newcomer_guide(
    receiver: DemoReceiver, carrier_id: str, auto_close_s: int, mail_lines: list[str]
) -> list[str]:
    """Where the pickup codes are, and what the demo can and cannot show of returns and jams."""
    url = receiver.url
    return [
        "Pickup codes, as the recipient and the carrier hear them (received in this process)",
        *mail_lines,
        f"  webhooks        {url + '/':30} {carrier_id}'s parcel.deposited events, with the codes",
        f"  webhooks JSON   {url + EVENTS_PATH:30} the same as JSON",
        "  For the webhooks, the demo's central alone runs with",
        "  LOCKER_ALLOW_INSECURE_WEBHOOKS=true and delivers to plain http on 127.0.0.1; real",
        "  carriers' endpoints must be https.",
        "Try it: deposit a listed parcel with the courier code, read its pickup code in the mail,",
        f"  type it on the kiosk (Pick up); the door closes itself {auto_close_s} s after opening.",
        "Returns: a parcel still in its compartment after its pickup deadline (72 h after the",
        "  deposit) is listed under Returns when its carrier's courier logs in on the kiosk.",
        "  The demo cannot hurry a deadline; an operator can only extend one (dashboard).",
        "Stuck door: the demo's boards are simulated inside each node and take no commands, so",
        "  no door can be jammed here. `locker-node simulate-board --protocol kerong-cu16 --pty`",
        '  plays a board that does (type `fault jam N`); see the README\'s "Running a node".',
        "",
    ]
