"""What the network says to a drop-off's sender: the code, as email (text, HTML, QR image) or SMS.

One notice kind, `dropoff_code`, sent when a carrier makes a drop-off for a sender with an email
or phone number: the code to type at the kiosk ("Drop off a parcel"), the QR code its scanner
reads instead, the bank's address and opening hours, and until when the code works. Laid out by
the recipients' templates (`email.txt`, `email.html`, through `central.notices.email_layout`);
the wording is here, one block per language, as in `central.notices.content` for theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from central.models import Bank
from central.notices.content import SMS_MAX_CHARS
from central.notices.email_layout import (
    Code,
    EmailBody,
    Link,
    Row,
    compose_email,
    qr_content_id,
)
from central.notices.hours import Language, describe_hours, format_deadline, map_url
from central.notices.text import address_line, one_line, shorten, sms_length

__all__ = [
    "DROPOFF_CODE",
    "DropoffNotice",
    "dropoff_notice",
    "render_dropoff_email",
    "render_dropoff_sms",
]

DROPOFF_CODE = "dropoff_code"  # the notice kind (`central.notices.outbox.NoticeKind`)
_CODE = re.compile(r"[0-9]{4,32}")


@dataclass(frozen=True, slots=True)
class DropoffNotice:
    """Everything the sender's notice says, as plain data; checked when rendered."""

    language: Language
    sender_name: str | None
    carrier_name: str
    tracking_number: str
    bank_name: str
    bank_address: str
    bank_lat: float
    bank_lon: float
    bank_timezone: str  # IANA name
    opening_hours: dict[str, list[list[str]]] | None  # as `Bank.opening_hours`; None: always
    deadline: datetime | None  # aware: the drop-off's reserved_until
    code: str | None  # the drop-off code: digits
    qr_payload: str | None  # what the kiosk's scanner reads; shown as a QR image


def dropoff_notice(
    facts: dict[str, Any], *, language: str, bank: Bank, carrier_name: str
) -> DropoffNotice:
    """The notice from the facts `outbox.enqueue` sealed and the bank's current details."""
    deadline = facts.get("deadline")
    return DropoffNotice(
        language="es" if language == "es" else "en",
        sender_name=facts.get("name"),
        carrier_name=carrier_name,
        tracking_number=str(facts.get("tracking_number") or ""),
        bank_name=bank.name,
        bank_address=bank.address,
        bank_lat=bank.lat,
        bank_lon=bank.lon,
        bank_timezone=bank.timezone,
        opening_hours=bank.opening_hours,
        deadline=datetime.fromisoformat(deadline) if deadline else None,
        code=facts.get("code"),
        qr_payload=facts.get("qr"),
    )


@dataclass(frozen=True, slots=True)
class _Wording:
    subject: str
    heading: str
    greeting_named: str
    greeting: str
    paragraphs: tuple[str, ...]
    code_label: str  # the published contract: "<code_label>: <code>" on a line of its own
    code_intro: str
    code_intro_qr: str
    qr_alt: str
    locker: str
    address: str
    hours: str
    deadline: str
    carrier: str
    tracking: str
    map_link: str
    footer: tuple[str, ...]
    sms: str


_ENGLISH = _Wording(
    subject="Your drop-off code for {carrier} at {bank}",
    heading="Drop off your parcel at the locker",
    greeting_named="Hello {name},",
    greeting="Hello,",
    paragraphs=(
        "{carrier} has kept a compartment for your parcel (tracking number {tracking}) in the"
        " locker {bank} at {address}.",
        "Drop it off by {deadline}. After that, the code no longer works.",
    ),
    code_label="Drop-off code",
    code_intro='At the locker, choose "Drop off a parcel" and type this code on the screen:',
    code_intro_qr='At the locker, choose "Drop off a parcel", then scan the QR code or type the'
    " code on the screen.",
    qr_alt="QR code for the drop-off. You can type the code {code} on the locker's screen instead.",
    locker="Locker",
    address="Address",
    hours="Opening hours",
    deadline="Drop off by",
    carrier="Carrier",
    tracking="Tracking number",
    map_link="Open the map",
    footer=(
        "You are receiving this because {carrier} arranged for you to drop off a parcel at a"
        " locker.",
        "This message was sent automatically; please do not reply to it.",
    ),
    sms="Drop-off code for your {carrier} parcel: {code}. At {bank}, {address}, choose"
    ' "Drop off a parcel" by {deadline}.',
)

_SPANISH = _Wording(
    subject="Su código de depósito de {carrier} para {bank}",
    heading="Deposite su paquete en el casillero",
    greeting_named="Hola, {name}:",
    greeting="Hola:",
    paragraphs=(
        "{carrier} ha reservado un compartimento para su paquete (número de seguimiento"
        " {tracking}) en el casillero {bank}, en {address}.",
        "Tiene hasta el {deadline} para depositarlo. Después, el código dejará de funcionar.",
    ),
    code_label="Código de depósito",
    code_intro='En el casillero, elija "Depositar un paquete" y escriba este código en la'
    " pantalla:",
    code_intro_qr='En el casillero, elija "Depositar un paquete" y escanee el código QR o'
    " escriba el código en la pantalla.",
    qr_alt="Código QR para depositar el paquete. También puede escribir el código {code}"
    " en la pantalla del casillero.",
    locker="Casillero",
    address="Dirección",
    hours="Horario",
    deadline="Depositar antes del",
    carrier="Empresa de transporte",
    tracking="Número de seguimiento",
    map_link="Ver en el mapa",
    footer=(
        "Recibe este mensaje porque {carrier} le ha preparado el depósito de un paquete en un"
        " casillero.",
        "Este mensaje se ha enviado automáticamente; no responda a este correo.",
    ),
    sms="Código de depósito para su paquete de {carrier}: {code}. En {bank}, {address}, elija"
    ' "Depositar un paquete" antes del {deadline}.',
)

_WORDING: dict[Language, _Wording] = {"en": _ENGLISH, "es": _SPANISH}


def _check(notice: DropoffNotice) -> tuple[str, datetime]:
    """The code and deadline, once everything the notice needs is known to be there and sound."""
    if notice.language not in get_args(Language):
        raise ValueError(f"unknown notice language: {notice.language!r}")
    if notice.code is None or not _CODE.fullmatch(notice.code):
        raise ValueError("a drop-off notice needs the code, 4 to 32 digits")
    if notice.deadline is None or notice.deadline.utcoffset() is None:
        raise ValueError("a drop-off notice needs its deadline, timezone-aware")
    try:
        ZoneInfo(notice.bank_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {notice.bank_timezone!r}") from exc
    map_url(notice.bank_lat, notice.bank_lon)  # raises for a location off the map
    if notice.qr_payload == "":
        raise ValueError("an empty QR payload: give None for no QR image")
    return notice.code, notice.deadline


def _fields(notice: DropoffNotice, deadline: datetime) -> dict[str, str]:
    """The values sentences are made of, each on one line: a name or address with a line break
    in it cannot start a line of the text part (and so cannot forge the code line)."""
    return {
        "carrier": one_line(notice.carrier_name),
        "tracking": one_line(notice.tracking_number),
        "bank": one_line(notice.bank_name),
        "address": address_line(notice.bank_address),
        "deadline": format_deadline(deadline, notice.bank_timezone, notice.language),
        "name": one_line(notice.sender_name or ""),
    }


def _body(notice: DropoffNotice, qr_cid: str | None) -> EmailBody:
    code, deadline = _check(notice)
    words = _WORDING[notice.language]
    fields = _fields(notice, deadline)
    hours = describe_hours(notice.opening_hours, notice.language)
    return EmailBody(
        language=notice.language,
        subject=words.subject.format_map(fields),
        greeting=words.greeting_named.format_map(fields) if fields["name"] else words.greeting,
        heading=words.heading,
        paragraphs=tuple(p.format_map(fields) for p in words.paragraphs),
        code=Code(
            label=words.code_label,
            value=code,
            intro_text=words.code_intro,
            intro_html=words.code_intro if qr_cid is None else words.code_intro_qr,
            qr_cid=qr_cid,
            qr_alt=words.qr_alt.format(code=code),
        ),
        rows=(
            Row(words.locker, (fields["bank"],)),
            Row(words.address, (fields["address"],)),
            Row(words.hours, tuple(hours)),
            Row(words.deadline, (fields["deadline"],)),
            Row(words.carrier, (fields["carrier"],)),
            Row(words.tracking, (fields["tracking"],)),
        ),
        links=(Link(words.map_link, map_url(notice.bank_lat, notice.bank_lon)),),
        footer=tuple(line.format_map(fields) for line in words.footer),
    )


def render_dropoff_email(
    notice: DropoffNotice, *, sender: str, to: str, message_id: str, date: datetime | None = None
) -> EmailMessage:
    """The whole message: text and HTML alternatives, the QR image inline when there is one.

    `message_id` is the caller's, so a resend after a crash carries the same one.
    """
    _check(notice)
    qr_cid = None if notice.qr_payload is None else qr_content_id(message_id)
    return compose_email(
        _body(notice, qr_cid),
        sender=sender,
        to=to,
        message_id=message_id,
        sent=datetime.now(UTC) if date is None else date,
        qr_payload=notice.qr_payload,
        qr_filename="dropoff-code.png",
    )


def render_dropoff_sms(notice: DropoffNotice) -> str:
    """One short text of at most `SMS_MAX_CHARS`; long names and addresses are shortened."""
    code, deadline = _check(notice)
    fields = _fields(notice, deadline) | {"code": code}
    template = _WORDING[notice.language].sms
    for width in (None, 80, 60, 40, 28, 16):
        short = {name: shorten(fields[name], width) for name in ("bank", "carrier", "address")}
        text = template.format_map(fields | short)
        if sms_length(text) <= SMS_MAX_CHARS:
            return text
    raise ValueError(f"no SMS fits in {SMS_MAX_CHARS} characters")
