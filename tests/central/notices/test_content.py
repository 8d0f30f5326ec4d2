"""What recipients read: every notice kind in both languages, by email and by SMS."""

from __future__ import annotations

import email
import email.policy
import re
import struct
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, get_args

import pytest
import segno

from central.notices.content import (
    SMS_MAX_CHARS,
    Language,
    NoticeContent,
    NoticeKind,
    qr_png,
    render_email,
    render_sms,
    subject,
)
from central.notices.hours import describe_hours, format_deadline, map_url

KINDS: tuple[NoticeKind, ...] = get_args(NoticeKind)
LANGUAGES: tuple[Language, ...] = get_args(Language)
CODE_KINDS = ("ready", "reminder", "extended", "reissued")
NO_CODE_KINDS = ("collected", "returned")
EVERY_NOTICE = [(kind, language) for kind in KINDS for language in LANGUAGES]

CODE = "0123456789"
QR = "LKR1.rsv_8Hq2.0123456789"
PAGE = "https://lockers.example/p/cnN2XzhIcTIAAAA-bW9ja21hYw"
SENDER = "Parcel lockers <notices@lockers.example>"
TO = "ana@example.com"
MESSAGE_ID = "<rsv_8Hq2.ready.1@lockers.example>"
DEADLINE = datetime(2020, 12, 11, 23, 0, tzinfo=UTC)  # Fri 11 Dec, 18:00 in New York
CODE_LINE = {
    "en": re.compile(r"^Pickup code: (\d+)$", re.M),
    "es": re.compile(r"^Código de recogida: (\d+)$", re.M),
}
DEADLINE_TEXT = {"en": "Fri 11 Dec, 18:00 EST", "es": "vie 11 dic, 18:00 EST"}
WEEK = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dashed(text: str) -> str:
    """Ranges as the notices print them, with an en dash: dashed("Mon-Fri") == "Mon\u2013Fri"."""
    return text.replace("-", "\u2013")


def make_content(
    *, kind: NoticeKind = "ready", language: Language = "en", **changes: Any
) -> NoticeContent:
    content = NoticeContent(
        kind=kind,
        language=language,
        recipient_name="Ana Torres",
        carrier_name="USPS",
        tracking_number="9400111899223344556677",
        bank_name="Main Street Lockers",
        bank_address="123 Main St\nSpringfield, IL 62701",
        bank_lat=40.7128,
        bank_lon=-74.006,
        bank_timezone="America/New_York",
        opening_hours=WEEK | {"sat": [["09:00", "14:00"]]},
        deadline=DEADLINE,
        pickup_code=CODE,
        qr_payload=QR,
        page_url=PAGE,
        compartment="B07",
        at=datetime(2020, 12, 10, 15, 4, tzinfo=UTC),
    )
    return replace(content, **changes)


def sent(content: NoticeContent, **headers: Any) -> EmailMessage:
    """The message as the recipient's mail program reads it back."""
    message = render_email(content, sender=SENDER, to=TO, message_id=MESSAGE_ID, **headers)
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    html = part.get_content()
    assert isinstance(html, str)
    return html


def images_of(message: EmailMessage) -> list[EmailMessage]:
    return [part for part in message.walk() if part.get_content_maintype() == "image"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, name = struct.unpack(">I4s", data[8:16])
    assert (length, name) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_pixels(data: bytes) -> list[list[int]]:
    """The rows of a 1-bit greyscale PNG as segno writes one (filters None and Up only)."""
    width, height = png_size(data)
    assert data[24:26] == b"\x01\x00"  # bit depth 1, greyscale
    idat, offset = b"", 8
    while offset < len(data):
        length, name = struct.unpack(">I4s", data[offset : offset + 8])
        if name == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = (width + 7) // 8
    rows: list[list[int]] = []
    previous = bytes(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        filter_type, scanline = line[0], line[1:]
        assert filter_type in (0, 2), filter_type
        if filter_type == 2:
            scanline = bytes((a + b) & 0xFF for a, b in zip(scanline, previous, strict=True))
        rows.append([(scanline[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
        previous = scanline
    return rows


# --- the email ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "language"), EVERY_NOTICE)
def test_the_email_parses_back_with_its_headers_and_both_parts(
    kind: NoticeKind, language: Language
) -> None:
    content = make_content(kind=kind, language=language)
    message = sent(content)

    assert message["From"] == SENDER
    assert message["To"] == TO
    assert message["Subject"] == subject(content)
    assert message["Message-ID"] == MESSAGE_ID
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == language
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "multipart/alternative"
    assert message.defects == []
    assert PAGE in text_of(message)
    assert re.search(rf"^{re.escape(PAGE)}$", text_of(message), re.M)
    assert f'href="{PAGE}"' in html_of(message)
    assert f'<html lang="{language}"' in html_of(message)


@pytest.mark.parametrize(("kind", "language"), EVERY_NOTICE)
def test_the_html_loads_nothing_from_anywhere(kind: NoticeKind, language: Language) -> None:
    html = html_of(sent(make_content(kind=kind, language=language)))

    sources = re.findall(r"""\b(?:src|background|poster)\s*=\s*["']?([^"'\s>]*)""", html, re.I)
    assert all(source.startswith("cid:") for source in sources), sources
    for remote in ("<link", "<script", "<iframe", "url(", "@import", '<img src="http'):
        assert remote not in html.lower()
    links = re.findall(r'href="([^"]*)"', html)
    assert links
    assert all(link.startswith("https://") for link in links), links
    assert "max-width:600px" in html
    assert 'name="viewport"' in html


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", CODE_KINDS)
def test_the_text_part_has_the_pickup_code_line(kind: NoticeKind, language: Language) -> None:
    message = sent(make_content(kind=kind, language=language))

    assert CODE_LINE[language].findall(text_of(message)) == [CODE]
    other = "es" if language == "en" else "en"
    assert not CODE_LINE[other].search(text_of(message))
    assert CODE in html_of(message)
    assert DEADLINE_TEXT[language] in text_of(message)
    assert DEADLINE_TEXT[language] in html_of(message)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", CODE_KINDS)
def test_the_qr_image_is_inline_by_cid_next_to_the_html(
    kind: NoticeKind, language: Language
) -> None:
    message = sent(make_content(kind=kind, language=language))

    [image] = images_of(message)
    assert image.get_content_type() == "image/png"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == qr_png(QR)
    [related] = [p for p in message.walk() if p.get_content_type() == "multipart/related"]
    assert [p.get_content_type() for p in related.iter_parts()] == ["text/html", "image/png"]
    cid = image["Content-ID"].strip("<>")
    html = html_of(message)
    assert f'src="cid:{cid}"' in html
    [alt] = re.findall(r'<img [^>]*alt="([^"]*)"', html)
    assert CODE in alt  # the alt text says the code can be typed instead


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", NO_CODE_KINDS)
def test_collected_and_returned_carry_no_code(kind: NoticeKind, language: Language) -> None:
    content = make_content(kind=kind, language=language)
    message = sent(content)
    raw = render_email(content, sender=SENDER, to=TO, message_id=MESSAGE_ID).as_bytes()

    assert images_of(message) == []
    for shown in (text_of(message), html_of(message), render_sms(content), raw.decode()):
        assert CODE not in shown
        assert QR not in shown
        assert not CODE_LINE["en"].search(shown)
        assert not CODE_LINE["es"].search(shown)


@pytest.mark.parametrize("language", LANGUAGES)
def test_collected_says_when_and_how_to_report_a_problem(language: Language) -> None:
    message = sent(make_content(kind="collected", language=language))
    when = {"en": "Thu 10 Dec, 10:04 EST", "es": "jue 10 dic, 10:04 EST"}[language]
    report = {"en": "report a problem", "es": "avísenos"}[language]

    assert when in text_of(message)
    assert report in text_of(message).lower()
    assert f'href="{PAGE}"' in html_of(message)


@pytest.mark.parametrize("language", LANGUAGES)
def test_returned_says_to_contact_the_carrier(language: Language) -> None:
    message = sent(make_content(kind="returned", language=language, carrier_name="DHL Express"))
    contact = {"en": "Please contact DHL Express", "es": "Póngase en contacto con DHL Express"}

    assert contact[language] in text_of(message)
    assert "DHL Express" in message["Subject"]


def test_an_extension_without_the_code_says_the_code_has_not_changed() -> None:
    message = sent(make_content(kind="extended", pickup_code=None, qr_payload=None))

    assert not CODE_LINE["en"].search(text_of(message))
    assert "Your pickup code has not changed." in text_of(message)
    assert images_of(message) == []


def test_a_code_without_a_qr_payload_is_sent_without_an_image() -> None:
    message = sent(make_content(kind="ready", qr_payload=None))

    assert CODE_LINE["en"].findall(text_of(message)) == [CODE]
    assert images_of(message) == []
    assert "<img" not in html_of(message)


def test_ready_tells_the_whole_story_in_english() -> None:
    message = sent(make_content(kind="ready", language="en"))
    text = text_of(message)

    assert message["Subject"] == "Your USPS parcel is ready for pickup at Main Street Lockers"
    assert text.startswith("Hello Ana Torres,\n")
    assert "USPS (tracking number 9400111899223344556677)" in text
    assert "Main Street Lockers at 123 Main St, Springfield, IL 62701" in text
    assert dashed("  Mon-Fri 08:00-20:00\n  Sat 09:00-14:00\n  Sun closed\n") in text
    assert "Compartment: B07" in text
    assert f"{map_url(40.7128, -74.006)}\n" in text
    assert text.endswith("please do not reply to it.\n")


def test_ready_tells_the_whole_story_in_spanish() -> None:
    message = sent(make_content(kind="ready", language="es"))
    text = text_of(message)

    assert message["Subject"] == (
        "Su paquete de USPS está listo para recoger en Main Street Lockers"
    )
    assert text.startswith("Hola, Ana Torres:\n")
    assert "Su paquete de USPS (número de seguimiento 9400111899223344556677)" in text
    assert dashed("  lun-vie 08:00-20:00\n  sáb 09:00-14:00\n  dom cerrado\n") in text
    assert "Tiene hasta el vie 11 dic, 18:00 EST para recogerlo." in text
    assert "Pickup code" not in text
    assert "Hello" not in text


@pytest.mark.parametrize(("language", "greeting"), [("en", "Hello,"), ("es", "Hola:")])
@pytest.mark.parametrize("name", [None, "", "  \n "])
def test_without_a_name_the_greeting_is_neutral(
    language: Language, greeting: str, name: str | None
) -> None:
    message = sent(make_content(language=language, recipient_name=name))

    assert text_of(message).startswith(f"{greeting}\n\n")
    assert f">{greeting}</p>" in html_of(message)


def test_the_html_escapes_what_it_is_given_and_the_text_does_not() -> None:
    content = make_content(
        bank_name='<script>alert("x")</script> & "Lockers"',
        recipient_name="<b>Eve</b>",
        bank_address="<img src=http://evil.example/x.png>",
        carrier_name="Fast & <Cheap>",
    )
    message = sent(content)
    html = html_of(message)

    assert "<script" not in html
    assert "<b>Eve" not in html
    assert "evil.example" not in html.replace("&lt;img src=http://evil.example/x.png&gt;", "")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;Lockers&#34;" in html
    assert "Hello &lt;b&gt;Eve&lt;/b&gt;," in html
    assert "Fast &amp; &lt;Cheap&gt;" in html
    text = text_of(message)
    assert '<script>alert("x")</script> & "Lockers"' in text
    assert "Hello <b>Eve</b>," in text


def test_line_breaks_in_names_cannot_forge_the_code_line() -> None:
    content = make_content(
        recipient_name="Eve\nPickup code: 9999999999",
        tracking_number="X1\r\nPickup code: 8888888888",
        bank_name="Lockers\u2028Pickup code: 7777777777",
    )
    message = sent(content)

    assert CODE_LINE["en"].findall(text_of(message)) == [CODE]
    assert "\n" not in message["Subject"]


def test_the_date_header_is_the_one_given() -> None:
    when = datetime(2020, 12, 10, 12, 0, tzinfo=UTC)

    message = sent(make_content(), date=when)

    assert message["Date"].datetime == when


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"kind": "ready", "pickup_code": None}, "pickup code"),
        ({"kind": "reissued", "pickup_code": None}, "pickup code"),
        ({"pickup_code": "12 34"}, "digits"),
        ({"kind": "reminder", "deadline": None}, "deadline"),
        ({"deadline": datetime(2020, 12, 11, 18, 0)}, "timezone-aware"),
        ({"kind": "collected", "at": None}, "at"),
        ({"bank_timezone": "Mars/Olympus_Mons"}, "time zone"),
        ({"bank_lat": 123.0}, "latitude"),
        ({"page_url": "javascript:alert(1)"}, "web address"),
        ({"page_url": "https://lockers.example/p/a b"}, "web address"),
        ({"kind": "lost"}, "kind"),
    ],
)
def test_content_no_notice_can_be_made_of_is_refused_when_rendered(
    changes: dict[str, Any], problem: str
) -> None:
    content = make_content(**changes)  # made without complaint: the sending job makes it early

    with pytest.raises(ValueError, match=problem):
        render_email(content, sender=SENDER, to=TO, message_id=MESSAGE_ID)
    with pytest.raises(ValueError, match=problem):
        render_sms(content)
    with pytest.raises(ValueError, match=problem):
        subject(content)


# --- the QR image ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [8, 4])
@pytest.mark.parametrize("payload", [CODE, QR, "x" * 120])
def test_the_qr_image_is_the_png_segno_makes_of_the_payload(payload: str, scale: int) -> None:
    data = qr_png(payload, scale=scale)
    # The level content.py asks for; segno raises it further when the symbol has room.
    matrix = segno.make(payload, error="m", micro=False).matrix
    modules = len(matrix)

    assert data.startswith(PNG_SIGNATURE)
    width, height = png_size(data)
    assert width == height == (modules + 2 * 4) * scale
    assert 21 <= modules <= 177 and (modules - 17) % 4 == 0  # a QR version 1..40
    pixels = png_pixels(data)
    for row in range(modules):
        for column in range(modules):
            y, x = (row + 4) * scale + scale // 2, (column + 4) * scale + scale // 2
            assert pixels[y][x] == (0 if matrix[row][column] else 1), (row, column)
    assert all(pixel == 1 for pixel in pixels[0])  # the quiet zone is white


# --- the SMS -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "language"), EVERY_NOTICE)
def test_the_sms_fits_two_segments_even_for_long_names(
    kind: NoticeKind, language: Language
) -> None:
    content = make_content(
        kind=kind,
        language=language,
        bank_name="Lockers at the Springfield Regional Transit Center, North Concourse " * 4,
        bank_address="1234 Extremely Long Boulevard, Building C, Floor 2, Springfield " * 5,
        carrier_name="International Express Parcel Logistics Incorporated",
        tracking_number="Z" * 64,
    )

    sms = render_sms(content)

    assert len(sms) <= SMS_MAX_CHARS
    assert len(sms.encode("utf-16-le")) // 2 <= SMS_MAX_CHARS
    assert sms.endswith(PAGE)
    assert "\n" not in sms
    assert "<" not in sms
    assert "Lockers at th" in sms  # shortened, never dropped
    if kind in CODE_KINDS:
        assert DEADLINE_TEXT[language] in sms
        label = {"en": "Pickup code", "es": "Código de recogida"}[language]
        assert f"{label}: {CODE}." in sms


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_short_sms_names_the_bank_and_the_carrier_in_full(language: Language) -> None:
    sms = render_sms(make_content(kind="ready", language=language))

    assert "Main Street Lockers" in sms
    assert "USPS" in sms


def test_the_english_sms_stays_in_the_gsm_alphabet() -> None:
    for kind in KINDS:
        assert render_sms(make_content(kind=kind, language="en")).isascii()


def test_an_sms_that_cannot_fit_is_refused() -> None:
    content = make_content(page_url="https://lockers.example/p/" + "a" * 400)

    with pytest.raises(ValueError, match="SMS"):
        render_sms(content)


# --- hours, deadlines, maps --------------------------------------------------------------

WEEKEND_24 = {"sat": [["00:00", "24:00"]], "sun": [["00:00", "24:00"]]}
SPLIT = [["14:00", "18:00"], ["08:00", "12:00"]]
ODD = {
    "Mon": [["8:00", "20:00"]],
    "holiday": [["10:00", "12:00"]],
    "tue": [],
    "wed": [["25:00", "26:00"], ["09:00"], "09:00-17:00"],
    "thu": "08:00-20:00",
    "friday": [["08:00", "20:00"]],
    7: [["08:00", "20:00"]],
}


@pytest.mark.parametrize(
    ("hours", "english", "spanish"),
    [
        (None, ["Open 24 hours"], ["Abierto las 24 horas"]),
        (
            WEEK | {"sat": [["09:00", "14:00"]]},
            ["Mon-Fri 08:00-20:00", "Sat 09:00-14:00", "Sun closed"],
            ["lun-vie 08:00-20:00", "sáb 09:00-14:00", "dom cerrado"],
        ),
        (
            {
                day: [["07:00", "22:00"]]
                for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
            ["Every day 07:00-22:00"],
            ["Todos los días 07:00-22:00"],
        ),
        ({}, ["Closed every day"], ["Cerrado todos los días"]),
        (
            {
                day: [["00:00", "24:00"]]
                for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
            ["Open 24 hours"],
            ["Abierto las 24 horas"],
        ),
        (
            WEEK | WEEKEND_24,
            ["Mon-Fri 08:00-20:00", "Sat-Sun open 24 hours"],
            ["lun-vie 08:00-20:00", "sáb-dom abierto las 24 horas"],
        ),
        (
            {"mon": SPLIT, "wed": SPLIT},
            [
                "Mon 08:00-12:00, 14:00-18:00",
                "Tue closed",
                "Wed 08:00-12:00, 14:00-18:00",
                "Thu-Sun closed",
            ],
            [
                "lun 08:00-12:00, 14:00-18:00",
                "mar cerrado",
                "mié 08:00-12:00, 14:00-18:00",
                "jue-dom cerrado",
            ],
        ),
        (
            {"fri": [["22:00", "02:00"]]},
            ["Mon-Thu closed", "Fri 22:00-02:00", "Sat-Sun closed"],
            ["lun-jue cerrado", "vie 22:00-02:00", "sáb-dom cerrado"],
        ),
        (
            ODD,
            ["Mon 08:00-20:00", "Tue-Thu closed", "Fri 08:00-20:00", "Sat-Sun closed"],
            ["lun 08:00-20:00", "mar-jue cerrado", "vie 08:00-20:00", "sáb-dom cerrado"],
        ),
    ],
)
def test_describe_hours_groups_days_with_the_same_hours(
    hours: Any, english: list[str], spanish: list[str]
) -> None:
    assert describe_hours(hours, "en") == [dashed(line) for line in english]
    assert describe_hours(hours, "es") == [dashed(line) for line in spanish]


@pytest.mark.parametrize(
    ("moment", "zone", "english", "spanish"),
    [
        (DEADLINE, "America/New_York", "Fri 11 Dec, 18:00 EST", "vie 11 dic, 18:00 EST"),
        (DEADLINE, "America/Los_Angeles", "Fri 11 Dec, 15:00 PST", "vie 11 dic, 15:00 PST"),
        (DEADLINE, "Europe/Madrid", "Sat 12 Dec, 00:00 CET", "sáb 12 dic, 00:00 CET"),
        (
            datetime(2026, 7, 1, 16, 30, tzinfo=UTC),
            "Europe/Madrid",
            "Wed 1 Jul, 18:30 CEST",
            "mié 1 jul, 18:30 CEST",
        ),
        (
            datetime(2026, 7, 1, 16, 30, tzinfo=UTC),
            "America/New_York",
            "Wed 1 Jul, 12:30 EDT",
            "mié 1 jul, 12:30 EDT",
        ),
        (DEADLINE, "America/Bogota", "Fri 11 Dec, 18:00 UTC-5", "vie 11 dic, 18:00 UTC-5"),
        (DEADLINE, "Asia/Kathmandu", "Sat 12 Dec, 04:45 UTC+5:45", "sáb 12 dic, 04:45 UTC+5:45"),
        (DEADLINE, "UTC", "Fri 11 Dec, 23:00 UTC", "vie 11 dic, 23:00 UTC"),
    ],
)
def test_format_deadline_in_the_banks_time_zone(
    moment: datetime, zone: str, english: str, spanish: str
) -> None:
    assert format_deadline(moment, zone, "en") == english
    assert format_deadline(moment, zone, "es") == spanish


def test_format_deadline_refuses_a_naive_time_or_an_unknown_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_deadline(datetime(2020, 12, 11, 18, 0), "America/New_York", "en")
    with pytest.raises(ValueError, match="time zone"):
        format_deadline(DEADLINE, "America/Springfield", "en")


def test_map_url_points_openstreetmap_at_the_bank() -> None:
    assert map_url(40.7128, -74.006) == (
        "https://www.openstreetmap.org/?mlat=40.7128&mlon=-74.006#map=18/40.7128/-74.006"
    )
    assert map_url(-33.86881234567, 151.2093) == (
        "https://www.openstreetmap.org/?mlat=-33.868812&mlon=151.2093#map=18/-33.868812/151.2093"
    )
    assert map_url(-0.0000001, 0.0) == ("https://www.openstreetmap.org/?mlat=0&mlon=0#map=18/0/0")
    with pytest.raises(ValueError, match="longitude"):
        map_url(0.0, 180.5)
    with pytest.raises(ValueError, match="latitude"):
        map_url(float("nan"), 0.0)
