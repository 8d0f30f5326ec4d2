"""Email notices over SMTP, against a real SMTP server: plain, STARTTLS and implicit TLS, AUTH,
refusals, an outage and a kept connection; and the `LOCKER_SMTP_URL` contract."""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
import trustme

from central.notices.errors import PermanentSendError, TransientSendError
from central.notices.smtp import SmtpConfig, SmtpMailer
from tests.mail import TEST_PASSWORD, TEST_USER, SmtpTestServer, TlsMode

SENDER = "notices@locker.example"
RECIPIENT = "ana.garcia@example.com"
TEXT = "Your parcel is in locker 12 at Main St.\nPickup code: 482913\n"
HTML = "<p>Your parcel is in locker <b>12</b> at Main St.</p><p>Pickup code: 482913</p>"
TIMEOUT_S = 5.0


def notice(to: str = RECIPIENT, subject: str = "Your parcel is ready") -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="locker.example")
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return message


def mailer_for(server: SmtpTestServer, *, url: str | None = None) -> SmtpMailer:
    """A mailer that trusts the test server's CA, as an operator's would trust a real one."""
    config = SmtpConfig.from_url(url or server.url)
    return SmtpMailer(config, timeout_s=TIMEOUT_S, ssl_context=server.client_ssl_context())


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer(refuse_recipients={"gone@example.com"}) as running:
        yield running


@pytest.fixture
def mailer(server: SmtpTestServer) -> Iterator[SmtpMailer]:
    with mailer_for(server) as opened:
        yield opened


def test_a_plain_send_arrives_intact(server: SmtpTestServer, mailer: SmtpMailer) -> None:
    sent = notice()

    mailer.send(sent)

    [mail] = server.wait_for(lambda received: len(received) == 1, TIMEOUT_S)
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == (RECIPIENT,)
    got = mail.message
    assert got["Subject"] == "Your parcel is ready"
    assert got["To"] == RECIPIENT
    assert got["Message-ID"] == sent["Message-ID"]
    assert got.get_content_type() == "multipart/alternative"
    plain, html = got.get_body(("plain",)), got.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content() == TEXT
    assert html.get_content().strip() == HTML


@pytest.mark.parametrize("tls", ["starttls", "tls"])
def test_tls_with_login_sends_when_the_certificate_is_trusted(tls: TlsMode) -> None:
    with SmtpTestServer(tls=tls, auth=(TEST_USER, TEST_PASSWORD)) as server:
        assert SmtpConfig.from_url(server.url).security == tls
        with mailer_for(server) as mailer:
            mailer.send(notice())

        [mail] = server.wait_for(timeout=TIMEOUT_S)
        assert mail.login == TEST_USER
        assert mail.rcpt_tos == (RECIPIENT,)


def test_the_server_requires_the_login_it_checks() -> None:
    # What makes the login tests above mean something: without a login, no message goes in.
    with SmtpTestServer(tls="starttls", auth=(TEST_USER, TEST_PASSWORD)) as server:
        url = f"smtp+starttls://{server.host}:{server.port}"
        with mailer_for(server, url=url) as mailer, pytest.raises(TransientSendError) as refused:
            mailer.send(notice())
        assert "530" in refused.value.detail
        assert "LOCKER_SMTP_URL" in refused.value.detail
        assert server.received == []


@pytest.mark.parametrize("tls", ["starttls", "tls"])
def test_an_untrusted_certificate_is_a_configuration_problem_that_waits(tls: TlsMode) -> None:
    with SmtpTestServer(tls=tls) as server:
        other_ca = ssl.create_default_context()
        trustme.CA().configure_trust(other_ca)
        config = SmtpConfig.from_url(server.url)
        with (
            SmtpMailer(config, timeout_s=TIMEOUT_S, ssl_context=other_ca) as mailer,
            pytest.raises(TransientSendError) as failed,
        ):
            mailer.send(notice())

    assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)
    assert "certificate" in failed.value.detail
    assert "LOCKER_SMTP_URL" in failed.value.detail
    assert "configuration" in failed.value.detail
    assert server.received == []


def test_the_default_context_verifies_the_certificate() -> None:
    server = SmtpTestServer(tls="tls")
    with (
        server,
        SmtpMailer(SmtpConfig.from_url(server.url), timeout_s=TIMEOUT_S) as mailer,
        pytest.raises(TransientSendError) as failed,
    ):
        mailer.send(notice())
    assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)


def test_a_wrong_password_is_a_configuration_problem_that_waits() -> None:
    wrong = "not-the-password-42"
    with SmtpTestServer(tls="starttls", auth=(TEST_USER, TEST_PASSWORD)) as server:
        url = f"smtp+starttls://{TEST_USER}:{wrong}@{server.host}:{server.port}"
        with mailer_for(server, url=url) as mailer, pytest.raises(TransientSendError) as failed:
            mailer.send(notice())

    assert isinstance(failed.value.__cause__, smtplib.SMTPAuthenticationError)
    assert "535" in failed.value.detail
    assert "LOCKER_SMTP_URL" in failed.value.detail
    assert wrong not in failed.value.detail
    assert wrong not in str(failed.value)
    assert server.received == []


def test_a_refused_recipient_is_permanent_and_the_connection_goes_on(
    server: SmtpTestServer, mailer: SmtpMailer
) -> None:
    with pytest.raises(PermanentSendError) as refused:
        mailer.send(notice(to="gone@example.com"))
    assert "550" in refused.value.detail
    assert isinstance(refused.value.__cause__, smtplib.SMTPRecipientsRefused)

    mailer.send(notice())

    assert [mail.rcpt_tos for mail in server.received] == [(RECIPIENT,)]
    assert server.connections == 1


def test_a_4xx_refusal_is_transient(server: SmtpTestServer, mailer: SmtpMailer) -> None:
    # A server that is only busy or greylisting answers 4xx: nothing wrong with the message.
    server.refuse_recipients.clear()
    server.defer_recipients.add(RECIPIENT)

    with pytest.raises(TransientSendError) as deferred:
        mailer.send(notice())

    assert "451" in deferred.value.detail


def test_several_sends_share_one_connection(server: SmtpTestServer, mailer: SmtpMailer) -> None:
    for number in range(3):
        mailer.send(notice(subject=f"notice {number}"))

    assert [mail.message["Subject"] for mail in server.received] == [
        "notice 0",
        "notice 1",
        "notice 2",
    ]
    assert server.connections == 1


def test_a_dropped_connection_is_replaced_without_the_caller_seeing_it(
    server: SmtpTestServer, mailer: SmtpMailer
) -> None:
    mailer.send(notice(subject="before"))
    server.drop_connections()  # an idle timeout on the server's side

    mailer.send(notice(subject="after"))

    assert [mail.message["Subject"] for mail in server.received] == ["before", "after"]
    assert server.connections == 2


def test_a_drop_the_noop_did_not_see_is_caught_by_the_send(
    server: SmtpTestServer, mailer: SmtpMailer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server may go between the NOOP and the MAIL FROM: the send itself reconnects, once.
    mailer.send(notice(subject="before"))
    server.drop_connections()
    monkeypatch.setattr(smtplib.SMTP, "noop", lambda self: (250, b"2.0.0 OK"))

    mailer.send(notice(subject="after"))

    assert [mail.message["Subject"] for mail in server.received] == ["before", "after"]
    assert server.connections == 2


def test_notices_survive_an_outage_on_the_same_port(
    server: SmtpTestServer, mailer: SmtpMailer
) -> None:
    mailer.send(notice(subject="before"))
    port = server.port
    server.stop()

    with pytest.raises(TransientSendError) as down:
        mailer.send(notice(subject="during"))
    assert f"{server.host}:{port}" in down.value.detail
    assert isinstance(down.value.__cause__, OSError)

    server.start()
    mailer.send(notice(subject="after"))

    assert server.port == port
    assert [mail.message["Subject"] for mail in server.received] == ["before", "after"]


def test_a_server_that_never_was_is_transient() -> None:
    server = SmtpTestServer()  # never started: nothing listens on its port
    with (
        SmtpMailer(SmtpConfig.from_url(server.url), timeout_s=TIMEOUT_S) as mailer,
        pytest.raises(TransientSendError),
    ):
        mailer.send(notice())


def test_close_says_quit_and_a_closed_mailer_opens_again(
    server: SmtpTestServer, mailer: SmtpMailer
) -> None:
    mailer.send(notice(subject="one"))
    mailer.close()
    mailer.close()  # twice is harmless

    mailer.send(notice(subject="two"))

    assert len(server.received) == 2
    assert server.connections == 2


PASSWORD = "pa ss:w@rd/%"
ENCODED = "pa%20ss%3Aw%40rd%2F%25"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpConfig("mail.example.com", 25, "plain")),
        ("smtp://127.0.0.1:2525", SmtpConfig("127.0.0.1", 2525, "plain")),
        (
            "smtp://relay:p@relay.internal:25",
            SmtpConfig("relay.internal", 25, "plain", "relay", "p"),
        ),
        (
            f"smtp+starttls://notices%40locker.example:{ENCODED}@smtp.example.com",
            SmtpConfig("smtp.example.com", 587, "starttls", "notices@locker.example", PASSWORD),
        ),
        (
            f"smtps://notices:{ENCODED}@smtp.example.com",
            SmtpConfig("smtp.example.com", 465, "tls", "notices", PASSWORD),
        ),
        (
            "smtps://u:p@smtp.example.com:2465/",
            SmtpConfig("smtp.example.com", 2465, "tls", "u", "p"),
        ),
        ("SMTP+STARTTLS://Mail.Example.com", SmtpConfig("mail.example.com", 587, "starttls")),
        ("smtp://[::1]:25", SmtpConfig("::1", 25, "plain")),
    ],
)
def test_from_url_reads_the_published_forms(url: str, expected: SmtpConfig) -> None:
    assert SmtpConfig.from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"http://user:{ENCODED}@mail.example.com", "unknown scheme 'http'"),
        (f"smtp+ssl://user:{ENCODED}@mail.example.com", "unknown scheme 'smtp+ssl'"),
        ("mail.example.com:25", "unknown scheme"),
        ("", "unknown scheme"),
        (f"smtps://user:{ENCODED}@", "no host"),
        (f"smtps://user:{ENCODED}@:465", "no host"),
        (f"smtps://user:{ENCODED}@mail.example.com:smtp", "port"),
        (f"smtps://user:{ENCODED}@mail.example.com:70000", "port"),
        (f"smtps://user:{ENCODED}@mail.example.com:0", "port"),
        (f"smtps://user:{ENCODED}@mail.example.com:465/inbox", "no path"),
        (f"smtps://user:{ENCODED}@mail.example.com?timeout=3", "no path"),
        (f"smtps://:{ENCODED}@mail.example.com", "password without a user"),
        ("smtps://user@mail.example.com", "user without a password"),
    ],
)
def test_from_url_refuses_what_it_cannot_use_without_showing_the_password(
    url: str, says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as refused:
        SmtpConfig.from_url(url)

    shown = f"{refused.value} {refused.value.__cause__} {refused.value.__context__}"
    assert PASSWORD not in shown
    assert ENCODED not in shown


def test_the_password_is_never_shown() -> None:
    config = SmtpConfig.from_url(f"smtps://notices:{ENCODED}@smtp.example.com")
    mailer = SmtpMailer(config)

    for text in (repr(config), str(config), repr(mailer), str(mailer)):
        assert PASSWORD not in text
        assert ENCODED not in text
        assert "notices" in text or "smtp.example.com" in text
