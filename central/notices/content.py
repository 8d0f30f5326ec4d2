"""What the network says to a parcel's recipient: subject, email (text, HTML, QR image) and SMS.

The wording lives here, one `_Wording` per language; the two templates (`email.txt`,
`email.html`, filled in by `central.notices.email_layout`) only lay it out. So six kinds in two
languages need two layouts instead of 24 near-copies that drift apart, a translator edits one
block of sentences per language, and a phrase missing in one language is a type error (common
phrases) or a failing test (per kind).
The SMS is a format string per kind, not a template: it is one sentence that must be shortened
to fit, which is easier to do in Python than in Jinja.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from central.notices.email_layout import (
    Code,
    EmailBody,
    Link,
    Row,
    compose_email,
    qr_content_id,
    qr_png,
)
from central.notices.hours import Language, describe_hours, format_deadline, map_url
from central.notices.pickup import SHARED_CODE
from central.notices.redirected import redirected_wording
from central.notices.text import address_line, has_blanks, one_line, shorten, sms_length

__all__ = [
    "SMS_MAX_CHARS",
    "Language",
    "NoticeContent",
    "NoticeKind",
    "qr_png",
    "render_email",
    "render_sms",
    "subject",
]

NoticeKind = Literal[
    "ready", "reminder", "extended", "reissued", "collected", "returned", "redirected"
]

SMS_MAX_CHARS = 320  # two segments; counted in UTF-16 units, as the phone network counts them
_CODE_KINDS: frozenset[str] = frozenset({"ready", "reminder", "extended", "reissued"})
# What each kind cannot do without; everything else is shown when it is given.
_NEEDS_CODE: frozenset[str] = frozenset({"ready", "reminder", "reissued"})
_NEEDS_AT: frozenset[str] = frozenset({"collected"})
_PICKUP_CODE = re.compile(r"[0-9]{4,32}")


@dataclass(frozen=True, slots=True)
class NoticeContent:
    """Everything one notice says, as plain data.

    Checked when rendered, not when made: the sending job makes these while it claims a batch,
    where one bad row must not stop the others, and renders each where a failure is that
    notice's alone.
    """

    kind: NoticeKind
    language: Language
    recipient_name: str | None
    carrier_name: str  # "USPS", "DHL Express", or any carrier's display name
    tracking_number: str
    bank_name: str
    bank_address: str
    bank_lat: float
    bank_lon: float
    bank_timezone: str  # IANA name, e.g. "America/New_York"
    # {"mon": [["08:00", "20:00"]], ...}; a missing day is closed; None = always open
    opening_hours: dict[str, list[list[str]]] | None
    deadline: datetime | None  # aware; the pickup deadline (ready, reminder, extended, reissued)
    pickup_code: str | None  # ready, reminder, reissued (extended: when known): digits
    qr_payload: str | None  # what the kiosk's scanner reads; shown as a QR image
    page_url: str  # the recipient's page for this parcel, https://.../p/<token>
    compartment: str | None = None
    at: datetime | None = None  # when it happened (collected / returned)
    shares_code: bool = False  # the parcel joined the pickup code of another of the recipient's


def _check(content: NoticeContent) -> None:
    kind = content.kind
    if kind not in get_args(NoticeKind):
        raise ValueError(f"unknown notice kind: {kind!r}")
    if content.language not in get_args(Language):
        raise ValueError(f"unknown notice language: {content.language!r}")
    if kind in _NEEDS_CODE and content.pickup_code is None:
        raise ValueError(f"a {kind!r} notice needs the pickup code")
    if content.pickup_code is not None and not _PICKUP_CODE.fullmatch(content.pickup_code):
        raise ValueError("the pickup code must be 4 to 32 digits")
    if kind in _CODE_KINDS and content.deadline is None:
        raise ValueError(f"a {kind!r} notice needs the deadline")
    if kind in _NEEDS_AT and content.at is None:
        raise ValueError(f"a {kind!r} notice needs the time it happened (at)")
    for name, moment in (("deadline", content.deadline), ("at", content.at)):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware")
    try:
        ZoneInfo(content.bank_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {content.bank_timezone!r}") from exc
    map_url(content.bank_lat, content.bank_lon)  # raises for a location off the map
    url = urlsplit(content.page_url)
    # http is for the demo and development (central's public_url defaults to it).
    if url.scheme not in ("https", "http") or not url.netloc or has_blanks(content.page_url):
        raise ValueError(f"not a web address for the parcel page: {content.page_url!r}")
    if content.qr_payload == "":
        raise ValueError("an empty QR payload: give None for no QR image")


# --- wording ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kind:
    subject: str
    heading: str
    paragraphs: tuple[str, ...]
    sms: str  # {code} is `_Wording.sms_code` filled in, or nothing


@dataclass(frozen=True, slots=True)
class _Wording:
    greeting_named: str
    greeting: str
    code_label: str  # the published contract: "<code_label>: <code>" on a line of its own
    code_intro: str
    code_intro_qr: str
    qr_alt: str
    code_unchanged: str
    sms_code: str
    locker: str
    address: str
    compartment: str
    hours: str
    deadline: str
    collected_at: str
    returned_at: str
    carrier: str
    tracking: str
    map_link: str
    page_link: str
    report_link: str
    footer: tuple[str, ...]
    kinds: dict[NoticeKind, _Kind]


_ENGLISH = _Wording(
    greeting_named="Hello {name},",
    greeting="Hello,",
    code_label="Pickup code",
    code_intro="At the locker, type this code on the screen:",
    code_intro_qr="At the locker, scan the QR code or type the code on the screen.",
    qr_alt="QR code for pickup. You can type the code {code} on the locker's screen instead.",
    code_unchanged="Your pickup code has not changed.",
    sms_code=" Pickup code: {code}.",
    locker="Locker",
    address="Address",
    compartment="Compartment",
    hours="Opening hours",
    deadline="Collect by",
    collected_at="Collected",
    returned_at="Returned",
    carrier="Carrier",
    tracking="Tracking number",
    map_link="Open the map",
    page_link="Your parcel's page",
    report_link="Not you? Report a problem",
    footer=(
        "You are receiving this because {carrier} delivered your parcel to a pickup locker.",
        "This message was sent automatically; please do not reply to it.",
    ),
    kinds={
        "ready": _Kind(
            subject="Your {carrier} parcel is ready for pickup at {bank}",
            heading="Your parcel is ready for pickup",
            paragraphs=(
                "Your parcel from {carrier} (tracking number {tracking}) is waiting for you"
                " in the locker {bank} at {address}.",
                "Collect it by {deadline}. After that, it goes back to {carrier}.",
            ),
            sms="Your {carrier} parcel is ready at {bank}.{code} Collect by {deadline}. {url}",
        ),
        "reminder": _Kind(
            subject="Reminder: collect your {carrier} parcel by {deadline}",
            heading="Your parcel is still waiting for you",
            paragraphs=(
                "Your parcel from {carrier} (tracking number {tracking}) is still in the"
                " locker {bank} at {address}.",
                "The pickup deadline is near: collect it by {deadline}."
                " After that, it goes back to {carrier}.",
            ),
            sms="Reminder: collect your {carrier} parcel at {bank} by {deadline}.{code} {url}",
        ),
        "extended": _Kind(
            subject="More time to collect your {carrier} parcel",
            heading="You have more time to collect your parcel",
            paragraphs=(
                "The pickup deadline for your parcel from {carrier} (tracking number"
                " {tracking}) in the locker {bank} at {address} has been extended.",
                "You now have until {deadline} to collect it.",
            ),
            sms="More time: collect your {carrier} parcel at {bank} by {deadline}.{code} {url}",
        ),
        "reissued": _Kind(
            subject="A new pickup code for your {carrier} parcel",
            heading="Your pickup code has changed",
            paragraphs=(
                "Your parcel from {carrier} (tracking number {tracking}) is in the locker"
                " {bank} at {address}.",
                "Your previous pickup code no longer works. Use the new code below.",
                "Collect it by {deadline}. After that, it goes back to {carrier}.",
            ),
            sms="New code for your {carrier} parcel at {bank}; the old one no longer works."
            "{code} Collect by {deadline}. {url}",
        ),
        "collected": _Kind(
            subject="Your {carrier} parcel has been collected",
            heading="Your parcel has been collected",
            paragraphs=(
                "Your parcel from {carrier} (tracking number {tracking}) was collected from"
                " the locker {bank} at {address} on {at}.",
                "If it was not you who collected it, please report a problem on your"
                " parcel's page.",
            ),
            sms="Your {carrier} parcel was collected from {bank} on {at}."
            " Not you? Report it: {url}",
        ),
        "returned": _Kind(
            subject="Your parcel was not collected and has gone back to {carrier}",
            heading="Your parcel has gone back to {carrier}",
            paragraphs=(
                "Your parcel from {carrier} (tracking number {tracking}) was not collected in"
                " time from the locker {bank} at {address}, so it has gone back to {carrier}.",
                "Please contact {carrier} about its delivery, quoting the tracking number"
                " {tracking}.",
            ),
            sms="Your {carrier} parcel was not collected from {bank} in time and has gone"
            " back to {carrier}. Please contact {carrier} (tracking number {tracking}). {url}",
        ),
        "redirected": _Kind(*redirected_wording("en")),  # templates/redirected.en.txt
    },
)

_SPANISH = _Wording(
    greeting_named="Hola, {name}:",
    greeting="Hola:",
    code_label="Código de recogida",
    code_intro="En el casillero, escriba este código en la pantalla:",
    code_intro_qr="En el casillero, escanee el código QR o escriba el código en la pantalla.",
    qr_alt="Código QR para recoger el paquete. También puede escribir el código {code}"
    " en la pantalla del casillero.",
    code_unchanged="Su código de recogida no ha cambiado.",
    sms_code=" Código de recogida: {code}.",
    locker="Casillero",
    address="Dirección",
    compartment="Compartimento",
    hours="Horario",
    deadline="Plazo de recogida",
    collected_at="Recogido",
    returned_at="Devuelto",
    carrier="Empresa de transporte",
    tracking="Número de seguimiento",
    map_link="Ver en el mapa",
    page_link="Página de su paquete",
    report_link="¿No fue usted? Avísenos",
    footer=(
        "Recibe este mensaje porque {carrier} entregó su paquete en un casillero de recogida.",
        "Este mensaje se ha enviado automáticamente; no responda a este correo.",
    ),
    kinds={
        "ready": _Kind(
            subject="Su paquete de {carrier} está listo para recoger en {bank}",
            heading="Su paquete está listo para recoger",
            paragraphs=(
                "Su paquete de {carrier} (número de seguimiento {tracking}) le espera en el"
                " casillero {bank}, en {address}.",
                "Tiene hasta el {deadline} para recogerlo. Después se devolverá a {carrier}.",
            ),
            sms="Su paquete de {carrier} está listo en {bank}.{code}"
            " Puede recogerlo hasta el {deadline}. {url}",
        ),
        "reminder": _Kind(
            subject="Recordatorio: tiene hasta el {deadline} para recoger su paquete de {carrier}",
            heading="Su paquete le sigue esperando",
            paragraphs=(
                "Su paquete de {carrier} (número de seguimiento {tracking}) sigue en el"
                " casillero {bank}, en {address}.",
                "Se acerca el plazo de recogida: tiene hasta el {deadline} para recogerlo."
                " Después se devolverá a {carrier}.",
            ),
            sms="Recordatorio: su paquete de {carrier} sigue en {bank}."
            " Puede recogerlo hasta el {deadline}.{code} {url}",
        ),
        "extended": _Kind(
            subject="Tiene más tiempo para recoger su paquete de {carrier}",
            heading="Tiene más tiempo para recoger su paquete",
            paragraphs=(
                "Hemos ampliado el plazo para recoger su paquete de {carrier} (número de"
                " seguimiento {tracking}) en el casillero {bank}, en {address}.",
                "Ahora tiene hasta el {deadline} para recogerlo.",
            ),
            sms="Más tiempo: puede recoger su paquete de {carrier} en {bank}"
            " hasta el {deadline}.{code} {url}",
        ),
        "reissued": _Kind(
            subject="Nuevo código de recogida para su paquete de {carrier}",
            heading="Su código de recogida ha cambiado",
            paragraphs=(
                "Su paquete de {carrier} (número de seguimiento {tracking}) está en el"
                " casillero {bank}, en {address}.",
                "El código anterior ya no funciona. Use el nuevo código que aparece a"
                " continuación.",
                "Tiene hasta el {deadline} para recogerlo. Después se devolverá a {carrier}.",
            ),
            sms="Nuevo código para su paquete de {carrier} en {bank}; el anterior ya no"
            " funciona.{code} Puede recogerlo hasta el {deadline}. {url}",
        ),
        "collected": _Kind(
            subject="Se ha recogido su paquete de {carrier}",
            heading="Su paquete se ha recogido",
            paragraphs=(
                "Su paquete de {carrier} (número de seguimiento {tracking}) se recogió del"
                " casillero {bank}, en {address}, el {at}.",
                "Si no lo recogió usted, avísenos desde la página de su paquete.",
            ),
            sms="Su paquete de {carrier} se recogió de {bank} el {at}."
            " ¿No fue usted? Avísenos: {url}",
        ),
        "returned": _Kind(
            subject="Su paquete no se recogió a tiempo y se ha devuelto a {carrier}",
            heading="Su paquete se ha devuelto a {carrier}",
            paragraphs=(
                "Su paquete de {carrier} (número de seguimiento {tracking}) no se recogió a"
                " tiempo del casillero {bank}, en {address}, y se ha devuelto a {carrier}.",
                "Póngase en contacto con {carrier} para acordar la entrega e indique el"
                " número de seguimiento {tracking}.",
            ),
            sms="Su paquete de {carrier} no se recogió a tiempo en {bank} y se ha devuelto"
            " a {carrier}. Póngase en contacto con {carrier} (seguimiento {tracking}). {url}",
        ),
        "redirected": _Kind(*redirected_wording("es")),  # templates/redirected.es.txt
    },
)

_WORDING: dict[Language, _Wording] = {"en": _ENGLISH, "es": _SPANISH}


def subject(content: NoticeContent) -> str:
    _check(content)
    return _WORDING[content.language].kinds[content.kind].subject.format_map(_fields(content))


def render_email(
    content: NoticeContent,
    *,
    sender: str,
    to: str,
    message_id: str,
    date: datetime | None = None,
) -> EmailMessage:
    """The whole message: text and HTML alternatives, the QR image inline where there is a code.

    `date` is the Date header (now when not given); `message_id` is the caller's, so a resend
    after a crash carries the same one.
    """
    _check(content)
    qr_payload = _qr_payload(content)
    qr_cid = None if qr_payload is None else qr_content_id(message_id)
    return compose_email(
        _body(content, qr_cid),
        sender=sender,
        to=to,
        message_id=message_id,
        sent=datetime.now(UTC) if date is None else date,
        qr_payload=qr_payload,
        qr_filename="pickup-code.png",
    )


def render_sms(content: NoticeContent) -> str:
    """One short text of at most `SMS_MAX_CHARS`; long bank and carrier names are shortened."""
    _check(content)
    words = _WORDING[content.language]
    fields = _fields(content)
    code = _shown_code(content)
    shared = f" {SHARED_CODE[content.language]}" if content.shares_code else ""
    fields["code"] = "" if code is None else words.sms_code.format(code=code) + shared
    fields["url"] = content.page_url
    template = words.kinds[content.kind].sms
    for width in (None, 60, 40, 28, 16, 8):
        short = {name: shorten(fields[name], width) for name in ("bank", "carrier")}
        text = template.format_map(fields | short)
        if sms_length(text) <= SMS_MAX_CHARS:
            return text
    raise ValueError(f"no SMS fits in {SMS_MAX_CHARS} characters; is the page URL that long?")


def _body(content: NoticeContent, qr_cid: str | None) -> EmailBody:
    words = _WORDING[content.language]
    kind = words.kinds[content.kind]
    fields = _fields(content)
    paragraphs = [paragraph.format_map(fields) for paragraph in kind.paragraphs]
    code = _shown_code(content)
    if content.kind in _CODE_KINDS and code is None:
        paragraphs.append(words.code_unchanged)
    if content.shares_code and code is not None:
        paragraphs.append(SHARED_CODE[content.language])
    name = one_line(content.recipient_name or "")
    return EmailBody(
        language=content.language,
        subject=kind.subject.format_map(fields),
        greeting=words.greeting_named.format(name=name) if name else words.greeting,
        heading=kind.heading.format_map(fields),
        paragraphs=tuple(paragraphs),
        code=None if code is None else _code_box(code, words, qr_cid),
        rows=_rows(content, words, fields),
        links=_links(content, words),
        footer=tuple(line.format_map(fields) for line in words.footer),
    )


def _code_box(code: str, words: _Wording, qr_cid: str | None) -> Code:
    return Code(
        label=words.code_label,
        value=code,
        intro_text=words.code_intro,
        intro_html=words.code_intro if qr_cid is None else words.code_intro_qr,
        qr_cid=qr_cid,
        qr_alt=words.qr_alt.format(code=code),
    )


def _rows(content: NoticeContent, words: _Wording, fields: dict[str, str]) -> tuple[Row, ...]:
    rows: list[Row] = []
    if content.kind == "collected":
        rows.append(Row(words.collected_at, (fields["at"],)))
    if content.kind == "returned" and content.at is not None:
        rows.append(Row(words.returned_at, (fields["at"],)))
    rows += [Row(words.locker, (fields["bank"],)), Row(words.address, (fields["address"],))]
    if content.kind in _CODE_KINDS and content.compartment:
        rows.append(Row(words.compartment, (one_line(content.compartment),)))
    if content.kind in _CODE_KINDS:
        hours = describe_hours(content.opening_hours, content.language)
        rows += [Row(words.hours, tuple(hours)), Row(words.deadline, (fields["deadline"],))]
    rows += [Row(words.carrier, (fields["carrier"],)), Row(words.tracking, (fields["tracking"],))]
    return tuple(rows)


def _links(content: NoticeContent, words: _Wording) -> tuple[Link, ...]:
    if content.kind == "collected":
        return (Link(words.report_link, content.page_url),)
    page = Link(words.page_link, content.page_url)
    if content.kind == "returned":
        return (page,)
    return (Link(words.map_link, map_url(content.bank_lat, content.bank_lon)), page)


def _fields(content: NoticeContent) -> dict[str, str]:
    """The values sentences are made of, each on one line: a name or address with line breaks
    in it cannot start a line of the text part (and so cannot forge the pickup-code line)."""

    def moment(value: datetime | None) -> str:
        if value is None:
            return ""
        return format_deadline(value, content.bank_timezone, content.language)

    return {
        "carrier": one_line(content.carrier_name),
        "tracking": one_line(content.tracking_number),
        "bank": one_line(content.bank_name),
        "address": address_line(content.bank_address),
        "deadline": moment(content.deadline),
        "at": moment(content.at),
    }


def _shown_code(content: NoticeContent) -> str | None:
    """The pickup code, for the kinds that show one; "collected" and "returned" never do."""
    return content.pickup_code if content.kind in _CODE_KINDS else None


def _qr_payload(content: NoticeContent) -> str | None:
    return content.qr_payload if _shown_code(content) is not None else None
