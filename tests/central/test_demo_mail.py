"""The demo's recipient mail on its own: the SMTP receiver saves what central's mailer sends, and
the demo receiver's /mail pages show it without letting the mail's HTML script the page."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from central.demo_mail import (
    DEFAULT_SMTP_PORT,
    DEMO_SENDER,
    Mailbox,
    SmtpReceiver,
    demo_mail_env,
    received_at,
    start_demo_mail,
    start_smtp_receiver,
)
from central.demo_receiver import DemoReceiver, start_receiver
from central.notices.content import render_email
from central.notices.smtp import SmtpConfig, SmtpMailer
from tests.central.notices.test_content import make_content
from tests.locker_node.e2e.test_kiosk_browser import CHROMIUM, CHROMIUM_ARGS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CODE_LINE = re.compile(r"^Pickup code: (\d+)$", re.M)
CENTRAL = "http://127.0.0.1:8000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpReceiver]:
    receiver = start_smtp_receiver(Mailbox(tmp_path / "mail"), free_port())
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def inbox(smtp: SmtpReceiver) -> Iterator[tuple[DemoReceiver, httpx.Client]]:
    receiver = start_receiver("s" * 32, free_port(), smtp.mailbox)
    try:
        with httpx.Client(base_url=receiver.url, timeout=5) as http:
            yield receiver, http
    finally:
        receiver.close()


def ready_notice(to: str, number: int = 1) -> EmailMessage:
    """A "parcel ready" notice as central renders it: text, HTML and the QR image inline."""
    return render_email(
        make_content(),
        sender=DEMO_SENDER,
        to=to,
        message_id=f"<rsv_demo.ready.{number}@demo.localhost>",
    )


def send(smtp: SmtpReceiver, *messages: EmailMessage) -> None:
    """Through central's own mailer, as its notice dispatcher sends."""
    with SmtpMailer(SmtpConfig.from_url(smtp.url), timeout_s=5) as mailer:
        for message in messages:
            mailer.send(message)


def test_each_message_is_saved_as_an_eml_file_named_by_arrival_and_listed_newest_first(
    smtp: SmtpReceiver,
) -> None:
    send(smtp, ready_notice("ana@demo.example", 1), ready_notice("luis@demo.example", 2))

    files = sorted(smtp.mailbox.folder.glob("*.eml"))
    assert len(files) == 2
    assert sorted(smtp.mailbox.folder.iterdir()) == files  # no partial file left behind
    assert b"Delivered-To: ana@demo.example" in files[0].read_bytes()
    [first, second] = [smtp.mailbox.message(path.stem) for path in files]
    assert first is not None and second is not None
    assert (first["To"], second["To"]) == ("ana@demo.example", "luis@demo.example")
    summaries = smtp.mailbox.summaries()
    assert [mail.to for mail in summaries] == ["luis@demo.example", "ana@demo.example"]
    assert summaries[0].subject == str(second["Subject"])
    assert summaries[1].received_at <= summaries[0].received_at


def test_ids_sort_by_arrival_even_within_one_microsecond(tmp_path: Path) -> None:
    mailbox = Mailbox(tmp_path)
    at = received_at("20250102T030405000006Z-abcdef")

    ids = [mailbox.save(b"Subject: x\r\n\r\nbody\r\n", at=at) for _ in range(3)]

    assert mailbox.ids() == sorted(ids, reverse=True)
    assert len(set(ids)) == 3
    assert received_at(ids[0]) == at


def test_the_inbox_lists_time_to_and_subject_escaped(
    smtp: SmtpReceiver, inbox: tuple[DemoReceiver, httpx.Client]
) -> None:
    _, http = inbox
    send(smtp, ready_notice("ana@demo.example"))
    hostile = EmailMessage()
    hostile["From"] = "x@demo.example"
    hostile["To"] = "bob@demo.example"
    hostile["Subject"] = "<script>alert(1)</script>"
    hostile.set_content("hi")
    send(smtp, hostile)

    page = http.get("/mail")

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert page.text.index("bob@demo.example") < page.text.index("ana@demo.example")
    assert "Your USPS parcel is ready for pickup at Main Street Lockers" in page.text
    assert str(smtp.mailbox.folder) in page.text
    assert http.get("/").text.count("href='/mail'") == 1  # the webhook page links to it


def test_a_message_shows_its_text_part_and_its_html_part_only_in_a_sandbox(
    smtp: SmtpReceiver, inbox: tuple[DemoReceiver, httpx.Client]
) -> None:
    receiver, http = inbox
    message = ready_notice("ana@demo.example")
    html_part = message.get_body(("html",))
    assert html_part is not None
    html_part.set_content(
        "<html><head><title>t</title></head><body><p>Hi</p><script>parent.x=1</script>"
        '<img src="cid:qr.0@notice.invalid"></body></html>',
        subtype="html",
    )
    send(smtp, message)
    [message_id] = smtp.mailbox.ids()

    page = http.get(f"/mail/{message_id}")

    assert page.status_code == 200
    found = CODE_LINE.search(page.text)
    assert found is not None and found.group(1) == "0123456789"
    assert "<script>" not in page.text  # the HTML part is not in the page itself
    assert re.search(
        rf"<iframe sandbox='allow-popups allow-popups-to-escape-sandbox' "
        rf"src='/mail/{message_id}/html'",
        page.text,
    )
    # The parcel page's link in the text part is a link.
    assert "<a href='https://lockers.example/p/" in page.text

    framed = http.get(f"/mail/{message_id}/html")

    assert framed.status_code == 200
    policy = framed.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-popups allow-popups-to-escape-sandbox;")
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert f"img-src 'self' {receiver.url}" in policy
    assert framed.headers["x-content-type-options"] == "nosniff"
    assert '<head><base target="_blank">' in framed.text
    assert f'src="/mail/{message_id}/cid/qr.0%40notice.invalid"' in framed.text


def test_the_inline_qr_image_is_served_from_the_message(
    smtp: SmtpReceiver, inbox: tuple[DemoReceiver, httpx.Client]
) -> None:
    _, http = inbox
    send(smtp, ready_notice("ana@demo.example"))
    [message_id] = smtp.mailbox.ids()
    framed = http.get(f"/mail/{message_id}/html").text
    image = re.search(rf'src="(/mail/{message_id}/cid/[^"]+)"', framed)
    assert image is not None

    served = http.get(image.group(1))

    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.content.startswith(PNG_SIGNATURE)
    assert image.group(1) in http.get(f"/mail/{message_id}").text  # listed under the message
    assert http.get(f"/mail/{message_id}/cid/nothing%40here").status_code == 404


def test_an_svg_part_is_never_served(
    smtp: SmtpReceiver, inbox: tuple[DemoReceiver, httpx.Client]
) -> None:
    _, http = inbox
    message = EmailMessage()
    message["To"] = "ana@demo.example"
    message["Subject"] = "svg"
    message.set_content("text")
    message.add_alternative("<img src='cid:pic@x'>", subtype="html")
    html_part = message.get_body(("html",))
    assert html_part is not None
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    html_part.add_related(svg, maintype="image", subtype="svg+xml", cid="<pic@x>")
    send(smtp, message)
    [message_id] = smtp.mailbox.ids()

    assert http.get(f"/mail/{message_id}/cid/pic%40x").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/mail/..%2Fcentral.db",
        "/mail/../secret.key",
        "/mail/20250102T030405000006Z-abcdef",  # well-formed, not there
        "/mail/not-an-id/html",
    ],
)
def test_paths_outside_the_mailbox_are_not_found(
    inbox: tuple[DemoReceiver, httpx.Client], path: str, tmp_path: Path
) -> None:
    (tmp_path / "secret.key").write_text("secret")
    _, http = inbox

    answer = http.get(path)

    assert answer.status_code == 404
    assert "secret" not in answer.text


def test_the_raw_message_is_plain_text_that_cannot_run(
    smtp: SmtpReceiver, inbox: tuple[DemoReceiver, httpx.Client]
) -> None:
    _, http = inbox
    send(smtp, ready_notice("ana@demo.example"))
    [message_id] = smtp.mailbox.ids()

    raw = http.get(f"/mail/{message_id}/raw")

    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert raw.content == smtp.mailbox.path(message_id).read_bytes()


def test_a_taken_port_makes_the_receiver_take_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        receiver = start_smtp_receiver(Mailbox(tmp_path), port)
        try:
            assert receiver.port != port
            assert receiver.url == f"smtp://127.0.0.1:{receiver.port}"
            send(receiver, ready_notice("ana@demo.example"))
            assert len(receiver.mailbox.ids()) == 1
        finally:
            receiver.close()
    assert DEFAULT_SMTP_PORT == 8025


def test_a_receiver_closes_while_a_client_keeps_its_connection_open(tmp_path: Path) -> None:
    receiver = start_smtp_receiver(Mailbox(tmp_path), free_port())
    mailer = SmtpMailer(SmtpConfig.from_url(receiver.url), timeout_s=5)
    try:
        mailer.send(ready_notice("ana@demo.example"))  # central keeps this connection

        receiver.close()

        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", receiver.port))
    finally:
        mailer.close()
        receiver.close()  # again: nothing happens


def test_central_gets_the_demo_mail_settings_unless_the_operator_set_their_own() -> None:
    smtp_url = "smtp://127.0.0.1:8025"

    assert demo_mail_env({}, smtp_url, CENTRAL) == {
        "LOCKER_SMTP_URL": smtp_url,
        "LOCKER_NOTIFY_FROM": "Locker network demo <notices@demo.localhost>",
        "LOCKER_PUBLIC_URL": CENTRAL,
    }
    theirs = {
        "LOCKER_SMTP_URL": "smtp+starttls://me:pw@mail.example.com:587",
        "LOCKER_PUBLIC_URL": "https://lockers.example.com",
    }
    assert demo_mail_env(theirs, None, CENTRAL) == {"LOCKER_NOTIFY_FROM": DEMO_SENDER}


def test_with_the_operators_smtp_server_no_receiver_starts_and_the_summary_says_so(
    tmp_path: Path,
) -> None:
    environ = {"LOCKER_SMTP_URL": "smtp+starttls://me:pw@mail.example.com:587"}

    mail = start_demo_mail(tmp_path, environ, CENTRAL, free_port())
    try:
        lines = mail.summary("http://127.0.0.1:8084/mail")
    finally:
        mail.close()

    assert mail.receiver is None
    assert "LOCKER_SMTP_URL" not in mail.central_env
    assert "mail.example.com:587" in lines[0] and "your SMTP server" in lines[0]
    assert "pw" not in "\n".join(lines)


def test_the_demo_receiver_summary_names_the_inbox_and_the_folder(tmp_path: Path) -> None:
    mail = start_demo_mail(tmp_path / "demo" / "mail", {}, CENTRAL, free_port())
    try:
        lines = mail.summary("http://127.0.0.1:8084/mail")
        assert mail.receiver is not None
        assert mail.central_env["LOCKER_SMTP_URL"] == mail.receiver.url
    finally:
        mail.close()

    assert lines[0].startswith("  recipient mail  http://127.0.0.1:8084/mail ")
    assert lines[0].endswith(f"(saved in {tmp_path / 'demo' / 'mail'}/)")


@pytest.mark.browser
def test_in_a_browser_the_html_part_shows_its_qr_image_and_runs_no_script(
    smtp: SmtpReceiver, inbox: tuple[DemoReceiver, httpx.Client]
) -> None:
    receiver, _ = inbox
    message = ready_notice("ana@demo.example")
    html_part = message.get_body(("html",))
    assert html_part is not None
    script = "<script>document.body.dataset.ran = 'yes'; top.document.title = 'x'</script>"
    html_part.set_content(  # the QR image stays beside it, in the multipart/related
        str(html_part.get_content()).replace("</body>", script + "</body>"), subtype="html"
    )
    send(smtp, message)
    [message_id] = smtp.mailbox.ids()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{receiver.url}/mail/{message_id}")
            frame = page.frame_locator("iframe")
            image = frame.locator("img")
            expect(image).to_have_count(1)
            expect(frame.get_by_text("0123456789")).to_be_visible()
            page.wait_for_function(
                "() => document.querySelector('iframe').contentDocument === null"
            )  # a sandboxed frame of its own origin: the page cannot reach into it, nor it out
            width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
            ran = frame.locator("body").evaluate("body => body.dataset.ran || 'no'")
            title = page.title()
        finally:
            browser.close()

    assert width > 0  # the QR image came from the message
    assert ran == "no"
    assert title.startswith("Your USPS parcel is ready")
