"""Sending a page: webhooks by httpx POST, email through the notices' SMTP mailer.

Every failure comes out as the notices' `TransientSendError` (try again later) or
`PermanentSendError` (never goes as it is); the details never hold a webhook's URL beyond its
scheme and host, since the rest of it is the receiver's secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

import httpx

from central.notices.errors import TransientSendError
from central.paging.messages import Message

USER_AGENT = "locker-central-paging/1"
MAX_URL_LENGTH = 2000
# Per attempt: a receiver slower than this is treated as down for the round.
WEBHOOK_TIMEOUT_S = 10.0


class TargetUrlError(ValueError):
    """A webhook target's URL that pages cannot go to."""


def check_target_url(url: str) -> str:
    """The URL's hint (scheme and host) if pages can go there: http or https, with a host.
    Private and loopback addresses are allowed: operators run their own receivers."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetUrlError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() for c in url) or not url.isprintable():
        raise TargetUrlError("the URL holds spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # a bad port raises only when read
    except ValueError as exc:
        raise TargetUrlError("the URL cannot be read as one") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetUrlError("the URL must start with https:// (or http://)")
    if not parts.hostname:
        raise TargetUrlError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetUrlError("the URL must not carry a user name or password")
    return url_hint(url)


def url_hint(url: str) -> str:
    """What may be shown of a target's URL: its scheme and host (and port), never its path."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def scrub(text: str, url: str) -> str:
    """`text` without the URL's secret parts (path, query), wherever a library quoted them."""
    parts = urlsplit(url)
    hint = url_hint(url)
    text = text.replace(url, f"{hint}/…")
    secret = url[len(hint) :] if url.startswith(hint) else ""
    for piece in sorted({secret, parts.path, parts.query}, key=len, reverse=True):
        if len(piece) > 1:
            text = text.replace(piece, "/…")
    return text


class _HideTargetUrls(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://..."): for the
    URLs of webhook targets, the log gets their scheme and host instead."""

    MAX_KEPT = 1000

    def __init__(self) -> None:
        super().__init__()
        self._hints: dict[str, str] = {}
        self._lock = threading.Lock()

    def hide(self, url: str) -> None:
        with self._lock:
            if url not in self._hints and len(self._hints) >= self.MAX_KEPT:
                self._hints.clear()
            self._hints[url] = url_hint(url)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self._hints:
            hints = self._hints
            record.args = tuple(
                hints.get(str(arg), arg) if isinstance(arg, httpx.URL | str) else arg
                for arg in record.args
            )
        return True


_HIDE = _HideTargetUrls()
logging.getLogger("httpx").addFilter(_HIDE)


class WebhookSender:
    """POSTs Slack-compatible JSON with the injected client (its transport is the tests')."""

    def __init__(self, client: httpx.Client, *, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        self._client = client
        self._timeout_s = timeout_s

    def send(self, url: str, message: Message) -> None:
        _HIDE.hide(url)
        body = json.dumps(message.slack, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        where = url_hint(url)
        try:
            response = self._client.post(
                url, content=body, headers=headers, timeout=self._timeout_s
            )
        except httpx.HTTPError as exc:
            reason = scrub(str(exc), url) or "no answer"
            raise TransientSendError(f"{where}: {type(exc).__name__}: {reason}") from exc
        if 200 <= response.status_code < 300:
            return
        answer = scrub(" ".join(response.text[:200].split()), url)
        detail = f"{where} answered HTTP {response.status_code}" + (f": {answer}" if answer else "")
        # Every refusal is tried again until the page is given up: a receiver answering 404
        # while it is redeployed must not lose the page.
        raise TransientSendError(detail, retry_after_s=_retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    if re.fullmatch(r"[0-9]{1,6}", value.strip()):
        return float(value)
    return None


def email_message(
    message: Message, *, sender: str, to: str, key: str, date: datetime
) -> EmailMessage:
    """The page as a plain-text email; its Message-ID comes from `key`, so a page sent again
    after a crash is recognised by mail clients as the same message."""
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = sender
    email["To"] = to
    email["Message-ID"] = message_id(key, sender)
    email["Date"] = format_datetime(date)
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.text)
    return email


def message_id(key: str, sender: str) -> str:
    domain = sender.rpartition("@")[2].rstrip(">").strip() or "localhost"
    return f"<page-{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
