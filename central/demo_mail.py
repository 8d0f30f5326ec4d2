"""The demo's recipient mail: a local SMTP receiver saving .eml files, and the inbox pages."""

from __future__ import annotations

import asyncio
import errno
import html
import re
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from central.notices.smtp import SmtpConfig

__all__ = [
    "DEFAULT_SMTP_PORT",
    "MAIL_PATH",
    "DemoMail",
    "MailReceiverError",
    "MailSummary",
    "Mailbox",
    "Page",
    "SmtpReceiver",
    "demo_mail_env",
    "serve_mail",
    "start_demo_mail",
    "start_smtp_receiver",
]

HOST = "127.0.0.1"
DEFAULT_SMTP_PORT = 8025
MAIL_PATH = "/mail"
DEMO_SENDER = "Locker network demo <notices@demo.localhost>"
LISTED = 200  # the inbox page shows this many, newest first; the folder keeps them all
MAX_MESSAGE_BYTES = 10 << 20
STOP_TIMEOUT_S = 5.0
# Only images a browser cannot run: never image/svg+xml, which may carry script.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_ID = re.compile(r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{6}$")
_STAMP = "%Y%m%dT%H%M%S%fZ"
_CID_REFERENCE = re.compile(r"\bcid:([^\"'\s>)]+)", re.IGNORECASE)
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"']+")
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
# Mail content is someone else's HTML: shown in a sandbox (its own opaque origin, no script,
# no forms), with images from this server only, and links opening in a new tab.
_FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PLAIN_CSP = "default-src 'none'; sandbox"


class MailReceiverError(Exception):
    """The demo's SMTP receiver could not start."""


@dataclass(frozen=True)
class MailSummary:
    """One saved message as the inbox lists it."""

    message_id: str
    received_at: datetime
    to: str
    subject: str


class Mailbox:
    """The messages under one folder, one `.eml` file each, named by arrival time so that the
    names sort in the order the messages came; written whole or not at all."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._mutex = threading.Lock()
        self._last = datetime.min.replace(tzinfo=UTC)

    def save(self, raw: bytes, *, at: datetime | None = None) -> str:
        """Keep `raw` (the message as SMTP carried it) and return its id."""
        with self._mutex:
            stamp = max(at or datetime.now(UTC), self._last + timedelta(microseconds=1))
            self._last = stamp
        message_id = f"{stamp.astimezone(UTC).strftime(_STAMP)}-{secrets.token_hex(3)}"
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{message_id}.part"
        partial.write_bytes(raw)
        partial.replace(self.path(message_id))
        return message_id

    def path(self, message_id: str) -> Path:
        return self.folder / f"{message_id}.eml"

    def ids(self) -> list[str]:
        """Every saved message's id, newest first."""
        if not self.folder.is_dir():
            return []
        found = (entry.stem for entry in self.folder.glob("*.eml"))
        return sorted((name for name in found if _ID.match(name)), reverse=True)

    def summaries(self, limit: int = LISTED) -> list[MailSummary]:
        listed = []
        for message_id in self.ids()[:limit]:
            try:
                with self.path(message_id).open("rb") as handle:
                    headers = BytesHeaderParser(policy=policy.default).parse(handle)
            except OSError:
                continue
            listed.append(
                MailSummary(
                    message_id=message_id,
                    received_at=received_at(message_id),
                    to=_header(headers, "To") or _header(headers, "Delivered-To"),
                    subject=_header(headers, "Subject"),
                )
            )
        return listed

    def message(self, message_id: str) -> EmailMessage | None:
        """The parsed message, or None for an id that is not one of this mailbox's."""
        raw = self.raw(message_id)
        if raw is None:
            return None
        # Kept with SMTP's CRLF line ends; read back with Python's LF ones.
        parsed = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        return parsed if isinstance(parsed, EmailMessage) else None

    def raw(self, message_id: str) -> bytes | None:
        if not _ID.match(message_id):
            return None
        try:
            return self.path(message_id).read_bytes()
        except OSError:
            return None


def received_at(message_id: str) -> datetime:
    return datetime.strptime(message_id.split("-")[0], _STAMP).replace(tzinfo=UTC)


def _header(message: Any, name: str) -> str:
    value = message.get(name)
    return "" if value is None else " ".join(str(value).split())


class _Handler:
    """aiosmtpd's hook: every message to anyone is kept, with who it was delivered to."""

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        # As a delivery agent does: the envelope's recipients, which Bcc leaves out of To.
        delivered = "".join(
            f"Delivered-To: {' '.join(address.split())}\r\n" for address in envelope.rcpt_tos
        )
        try:
            self._mailbox.save(delivered.encode() + raw)
        except OSError:
            return "451 4.3.0 could not save the message; try again later"
        return "250 2.0.0 saved"


class _Controller(Controller):
    """Keeps each client's protocol, so that `close` can end connections a client kept open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocols: list[SMTP] = []

    def factory(self) -> SMTP:
        # The loop is passed so aiosmtpd does not look one up (under a catch_warnings that is
        # not thread-safe) in its thread.
        smtp = SMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)
        self.protocols.append(smtp)
        return smtp


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 in a daemon thread of the demo's own process; no TLS, no login:
    it listens on loopback only and keeps whatever it is sent."""

    def __init__(self, mailbox: Mailbox, port: int, *, host: str = HOST) -> None:
        self.mailbox = mailbox
        self.host = host
        self.port = port
        self._controller: _Controller | None = None

    @property
    def url(self) -> str:
        """For `LOCKER_SMTP_URL`."""
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> None:
        controller = _Controller(
            _Handler(self.mailbox),
            hostname=self.host,
            port=self.port,
            server_hostname="demo.localhost",  # not socket.getfqdn(), which may wait on DNS
            data_size_limit=MAX_MESSAGE_BYTES,
        )
        try:
            controller.start()
        except BaseException:
            # Its thread ended without closing the loop it was given.
            if not controller.loop.is_closed():
                controller.loop.close()
            raise
        self._controller = controller

    def close(self) -> None:
        """End open connections, stop listening and wait for the thread. Never raises."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        if not controller.loop.is_running():  # its thread is gone
            if not controller.loop.is_closed():
                controller.loop.close()
            return
        aborted = asyncio.run_coroutine_threadsafe(
            _abort_all(controller.protocols), controller.loop
        )
        try:
            aborted.result(STOP_TIMEOUT_S)
        except TimeoutError:
            aborted.cancel()
        controller.stop()


async def _abort_all(protocols: list[SMTP]) -> None:
    """Abort the connections (central keeps one open) and wait until aiosmtpd has seen them go:
    a server that still has connections does not finish closing."""
    for protocol in protocols:
        if isinstance(protocol.transport, asyncio.WriteTransport):
            protocol.transport.abort()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_TIMEOUT_S
    while any(protocol.transport is not None for protocol in protocols):
        if loop.time() > deadline:
            return
        await asyncio.sleep(0.005)


def start_smtp_receiver(mailbox: Mailbox, port: int = DEFAULT_SMTP_PORT) -> SmtpReceiver:
    """On `port`, or on a free one when something else has it (another demo, a mail catcher)."""
    for attempt in range(3):
        # Checked first: aiosmtpd only reports a port it cannot bind after its start timeout.
        chosen = port if attempt == 0 and _bindable(port) else _free_port()
        receiver = SmtpReceiver(mailbox, chosen)
        try:
            receiver.start()
        except TimeoutError:
            raise MailReceiverError(
                f"SMTP on {receiver.host}:{receiver.port} did not start in time"
            ) from None
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise MailReceiverError(f"SMTP on {receiver.host}:{receiver.port}: {exc}") from None
            continue
        return receiver
    raise MailReceiverError("no free port for the demo's SMTP receiver")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        # As asyncio binds: a port left in TIME_WAIT by the last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class DemoMail:
    """Where the demo's notices go: to its own SMTP receiver, which saves them in `mailbox`, or
    (`receiver` None) to the server of the operator's own LOCKER_SMTP_URL."""

    mailbox: Mailbox
    receiver: SmtpReceiver | None
    central_env: dict[str, str]
    """What the demo's central is started with on top of the environment."""
    their_server: str | None = None

    def summary(self, inbox_url: str) -> list[str]:
        """The summary's lines about the recipients' mail."""
        if self.receiver is None:
            lines = [
                f"  recipient mail  sent to your SMTP server {self.their_server} "
                "(LOCKER_SMTP_URL), not to the demo's inbox"
            ]
        else:
            lines = [
                f"  recipient mail  {inbox_url:30} (saved in {self.mailbox.folder}/)",
                f"    central sends it to the demo's SMTP receiver, {self.receiver.url}",
            ]
        if "LOCKER_PUBLIC_URL" not in self.central_env:
            lines.append("    its links use your LOCKER_PUBLIC_URL")
        return lines

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()


def start_demo_mail(
    folder: Path, environ: Mapping[str, str], public_url: str, port: int = DEFAULT_SMTP_PORT
) -> DemoMail:
    """The demo's SMTP receiver, unless the operator set LOCKER_SMTP_URL: then theirs is used."""
    mailbox = Mailbox(folder)
    their_server = operators_smtp(environ)
    receiver = None if their_server is not None else start_smtp_receiver(mailbox, port)
    smtp_url = None if receiver is None else receiver.url
    return DemoMail(mailbox, receiver, demo_mail_env(environ, smtp_url, public_url), their_server)


def demo_mail_env(
    environ: Mapping[str, str], smtp_url: str | None, public_url: str
) -> dict[str, str]:
    """What the demo's central is given so that notices reach the demo's inbox, less whatever
    the operator set: their own LOCKER_SMTP_URL, LOCKER_NOTIFY_FROM or LOCKER_PUBLIC_URL wins."""
    wanted = {"LOCKER_NOTIFY_FROM": DEMO_SENDER, "LOCKER_PUBLIC_URL": public_url}
    if smtp_url is not None:
        wanted["LOCKER_SMTP_URL"] = smtp_url
    return {name: value for name, value in wanted.items() if name not in environ}


def operators_smtp(environ: Mapping[str, str]) -> str | None:
    """The host and port of the operator's own `LOCKER_SMTP_URL` (never its password), or
    None when they set none."""
    url = environ.get("LOCKER_SMTP_URL")
    if url is None:
        return None
    try:
        return SmtpConfig.from_url(url).address
    except ValueError:
        return "(LOCKER_SMTP_URL is not valid: see central's log)"


@dataclass(frozen=True)
class Page:
    """One HTTP answer of the inbox."""

    status: HTTPStatus
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


_NOT_FOUND = Page(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found")


def serve_mail(mailbox: Mailbox, path: str, host: str | None) -> Page:
    """GET `path` (under /mail): the inbox, a message, its HTML part, an inline image or the
    raw message. `host` is the request's Host header, for the HTML part's image origin."""
    parts = urlsplit(path).path.split("/")[2:]  # after "", "mail"
    if parts in ([], [""]):
        return _html_page(render_inbox(mailbox.summaries(), mailbox.folder))
    message_id, rest = parts[0], parts[1:]
    message = mailbox.message(message_id)
    if message is None:
        return _NOT_FOUND
    if rest in ([], [""]):
        return _html_page(render_message(message_id, message))
    if rest == ["html"]:
        return _html_part(message_id, message, host)
    if rest == ["raw"]:
        raw = mailbox.raw(message_id) or b""
        return Page(HTTPStatus.OK, "text/plain; charset=utf-8", raw, _safe(_PLAIN_CSP))
    if len(rest) == 2 and rest[0] == "cid":
        return _inline_image(message, unquote(rest[1]))
    return _NOT_FOUND


def _safe(csp: str) -> tuple[tuple[str, str], ...]:
    return (
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    )


def _html_page(text: str) -> Page:
    return Page(HTTPStatus.OK, "text/html; charset=utf-8", text.encode(), _safe(_PAGE_CSP))


def _html_part(message_id: str, message: EmailMessage, host: str | None) -> Page:
    html_text = _content(message, "html")
    if html_text is None:
        return _NOT_FOUND
    origin = f"http://{host}" if host and _HOST_HEADER.match(host) else "'self'"
    csp = (
        f"sandbox {_FRAME_SANDBOX}; default-src 'none'; style-src 'unsafe-inline'; "
        f"img-src 'self' {origin}; base-uri 'none'; form-action 'none'"
    )
    body = sandboxed_html(message_id, html_text)
    return Page(HTTPStatus.OK, "text/html; charset=utf-8", body.encode(), _safe(csp))


def sandboxed_html(message_id: str, text: str) -> str:
    """The HTML part with its `cid:` images pointed at this server and links opening in a new
    tab (the sandbox has no way back to the inbox otherwise)."""

    def served(found: re.Match[str]) -> str:
        cid = quote(unquote(found.group(1)), safe="")
        return f"{MAIL_PATH}/{message_id}/cid/{cid}"

    text = _CID_REFERENCE.sub(served, text)
    base = '<base target="_blank">'
    head = _HEAD.search(text)
    if head is None:
        return base + text
    return text[: head.end()] + base + text[head.end() :]


def _inline_image(message: EmailMessage, cid: str) -> Page:
    for part in message.walk():
        content_id = str(part.get("Content-ID") or "").strip().strip("<>")
        if content_id != cid or part.get_content_type() not in INLINE_IMAGE_TYPES:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return Page(HTTPStatus.OK, part.get_content_type(), payload, _safe(_PLAIN_CSP))
    return _NOT_FOUND


def _content(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset, a broken encoding
        return None
    return content if isinstance(content, str) else None


def _local_time(at: datetime) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


_STYLE = (
    "<style>body{font-family:sans-serif;margin:1.5em}td,th{padding:4px 8px;text-align:left;"
    "vertical-align:top}table{border-collapse:collapse}tr{border-top:1px solid #ccc}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em;max-width:60em}"
    "iframe{width:100%;max-width:60em;height:60em;border:1px solid #ccc}</style>"
)


def render_inbox(summaries: list[MailSummary], folder: Path) -> str:
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(_local_time(mail.received_at))}</td>"
        f"<td>{html.escape(mail.to)}</td>"
        f"<td><a href='{MAIL_PATH}/{mail.message_id}'>"
        f"{html.escape(mail.subject or '(no subject)')}</a></td>"
        "</tr>"
        for mail in summaries
    )
    if not rows:
        rows = "<tr><td colspan='3'>No mail yet: deposit a demo parcel at a kiosk.</td></tr>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='3'>"
        f"<title>Demo recipient mail</title>{_STYLE}</head><body>"
        "<h1>Mail to the demo's recipients</h1>"
        "<p>What central sent to the demo parcels' recipients, newest first. The "
        "&ldquo;parcel ready&rdquo; mail carries the pickup code: type it on the bank's kiosk "
        "(Pick up). Each message is also saved as a file in "
        f"<code>{html.escape(str(folder))}/</code>. This page refreshes itself; the "
        "<a href='/'>webhook receiver</a> shows what the carrier heard.</p>"
        "<table><tr><th>received</th><th>to</th><th>subject</th></tr>"
        f"{rows}</table></body></html>"
    )


def render_message(message_id: str, message: EmailMessage) -> str:
    base = f"{MAIL_PATH}/{message_id}"
    fields = "".join(
        f"<tr><th>{name}</th><td>{html.escape(_header(message, name))}</td></tr>"
        for name in ("Date", "From", "To", "Subject")
    )
    text = _content(message, "plain")
    text_html = "<p>(no text part)</p>" if text is None else f"<pre>{_linked(text)}</pre>"
    html_part = (
        "<p>(no HTML part)</p>"
        if _content(message, "html") is None
        else f"<p><a href='{base}/html' target='_blank' rel='noopener'>open on its own</a></p>"
        f"<iframe sandbox='{_FRAME_SANDBOX}' src='{base}/html' "
        "title='the message&#39;s HTML part' referrerpolicy='no-referrer'></iframe>"
    )
    images = "".join(
        f"<li><a href='{base}/cid/{quote(cid, safe='')}'>{html.escape(name)}</a> "
        f"({html.escape(content_type)})</li>"
        for cid, name, content_type in _inline_images(message)
    )
    subject = html.escape(_header(message, "Subject") or "(no subject)")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{subject}</title>{_STYLE}</head><body>"
        f"<p><a href='{MAIL_PATH}'>&larr; inbox</a> &middot; <a href='{base}/raw'>raw "
        "message</a></p>"
        f"<h1>{subject}</h1><table>{fields}</table>"
        f"<h2>Text part</h2>{text_html}<h2>HTML part</h2>{html_part}"
        + (f"<h2>Inline images</h2><ul>{images}</ul>" if images else "")
        + "</body></html>"
    )


def _inline_images(message: EmailMessage) -> list[tuple[str, str, str]]:
    """(content id, file name, type) of each image part that has a content id."""
    found = []
    for part in message.walk():
        content_id = str(part.get("Content-ID") or "").strip().strip("<>")
        if content_id and part.get_content_type() in INLINE_IMAGE_TYPES:
            found.append((content_id, part.get_filename() or content_id, part.get_content_type()))
    return found


def _linked(text: str) -> str:
    """`text` escaped, with its http(s) addresses as links (the parcel page's, mostly)."""
    pieces = []
    position = 0
    for found in _URL.finditer(text):
        url = found.group(0)
        pieces.append(html.escape(text[position : found.start()]))
        pieces.append(
            f"<a href='{html.escape(url)}' target='_blank' rel='noopener noreferrer'>"
            f"{html.escape(url)}</a>"
        )
        position = found.end()
    pieces.append(html.escape(text[position:]))
    return "".join(pieces)
