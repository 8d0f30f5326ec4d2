"""The one email layout every notice fills in, and the message around it.

A notice module (`central.notices.content` for the recipients', `central.notices.dropoff_content`
for the senders') turns its wording into an `EmailBody`: plain data, the same shape for every
kind. The two templates (`email.txt`, `email.html`) lay that out, and `compose_email` wraps them
in the message: headers, text and HTML alternatives, and the QR image inline when there is one.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import segno
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from central.notices.hours import Language

__all__ = ["Code", "EmailBody", "Link", "Row", "compose_email", "qr_content_id", "qr_png"]

# The kiosk's scanner reads the code off a phone screen: medium error correction, never Micro QR
# (few scanners read it).
_QR_ERROR = "m"

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class Code:
    """The code box: the code, what to do with it (with and without a QR image), the image."""

    label: str  # the published contract: "<label>: <value>" on a line of its own
    value: str
    intro_text: str
    intro_html: str
    qr_cid: str | None
    qr_alt: str


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class EmailBody:
    language: Language
    subject: str
    greeting: str
    heading: str
    paragraphs: tuple[str, ...]
    code: Code | None
    rows: tuple[Row, ...]
    links: tuple[Link, ...]
    footer: tuple[str, ...]


def qr_content_id(message_id: str) -> str:
    """The QR image's Content-ID: from the message id, so unique to the message and the same
    each time it is rendered."""
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:24]
    return f"qr.{digest}@notice.invalid"


def compose_email(
    body: EmailBody,
    *,
    sender: str,
    to: str,
    message_id: str,
    sent: datetime,
    qr_payload: str | None,
    qr_filename: str,
) -> EmailMessage:
    """The whole message; the QR image of `qr_payload` goes inline under `body.code.qr_cid`."""
    if sent.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = body.subject
    message["Date"] = format_datetime(sent.astimezone(UTC), usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message["X-Auto-Response-Suppress"] = "All"  # the same for Exchange, which ignores RFC 3834
    # Quoted-printable: 7-bit clean for any relay, and the text stays legible in the raw source.
    message.set_content(_render("email.txt", body), cte="quoted-printable")
    message.add_alternative(_render("email.html", body), subtype="html", cte="quoted-printable")
    qr_cid = None if body.code is None else body.code.qr_cid
    if qr_payload is not None and qr_cid is not None:
        html_part = list(message.iter_parts())[1]
        html_part.add_related(
            qr_png(qr_payload),
            maintype="image",
            subtype="png",
            cid=f"<{qr_cid}>",
            disposition="inline",
            filename=qr_filename,
        )
    # After the body: set_content() and add_alternative() move Content-* headers to the parts.
    message["Content-Language"] = body.language
    return message


def qr_png(payload: str, *, scale: int = 8) -> bytes:
    """The QR code of `payload` as a black-on-white PNG with the standard quiet zone."""
    out = io.BytesIO()
    segno.make(payload, error=_QR_ERROR, micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def _render(template: str, body: EmailBody) -> str:
    return _ENV.get_template(template).render(body=body)
