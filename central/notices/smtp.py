"""Email notices over SMTP: `LOCKER_SMTP_URL` parsed, one kept connection, errors classified."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import TracebackType
from typing import Literal
from urllib.parse import unquote, urlsplit

from central.notices.errors import PermanentSendError, SendError, TransientSendError

__all__ = ["SmtpConfig", "SmtpMailer", "SmtpSecurity"]

logger = logging.getLogger(__name__)

SmtpSecurity = Literal["plain", "starttls", "tls"]

_SCHEMES: dict[str, tuple[SmtpSecurity, int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
_URL_FORMS = (
    "smtp://host:25, smtp+starttls://user:password@host:587 or smtps://user:password@host:465"
)
_FIX_URL = "a configuration problem: fix LOCKER_SMTP_URL (notices wait until then)"
_SERVICE_CLOSING = 421  # the server is going away: on a kept connection, reconnect once
_AUTH_REQUIRED = 530  # RFC 4954: about the configuration, never about one message


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to hand notices to the mail server (`LOCKER_SMTP_URL`)."""

    host: str
    port: int
    security: SmtpSecurity
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("SMTP host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"SMTP port {self.port} is not between 1 and 65535")
        if self.security not in ("plain", "starttls", "tls"):
            raise ValueError(f"SMTP security {self.security!r} is not plain, starttls or tls")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP user and password go together: give both or neither")

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse `smtp://host:port`, `smtp+starttls://user:pass@host:587` or
        `smtps://user:pass@host:465` (ports 25, 587 and 465 when left out; user and password
        percent-encoded). A ValueError never quotes the password, nor the URL that holds it."""
        parts = urlsplit(url.strip())
        scheme = _SCHEMES.get(parts.scheme)
        if scheme is None:
            shown = f" {parts.scheme!r}" if parts.scheme else ""
            raise ValueError(f"unknown scheme{shown} in the SMTP URL; use {_URL_FORMS}")
        security, default_port = scheme
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("the SMTP URL takes no path, query or fragment after the port")
        if not parts.hostname:
            raise ValueError(f"no host in the SMTP URL; use {_URL_FORMS}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port in the SMTP URL is not a number from 1 to 65535") from None
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and username is None:
            raise ValueError("the SMTP URL has a password without a user")
        if username is not None and password is None:
            raise ValueError("the SMTP URL has a user without a password")
        return cls(
            host=parts.hostname,
            port=default_port if port is None else port,
            security=security,
            username=username,
            password=password,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class SmtpMailer:
    """Sends email notices through one SMTP server, keeping the connection open between sends.

    Not thread-safe, by design: one connection carries one conversation at a time, so the
    caller keeps one mailer per thread. A kept connection the server has dropped (idle
    timeout, restart) is found by a NOOP, or by the send itself, and replaced once without the
    caller seeing it. Every failure comes out as `TransientSendError` (try later) or
    `PermanentSendError` (this message never goes as it is); details never hold the password
    or the message body.
    """

    def __init__(
        self,
        config: SmtpConfig,
        *,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._timeout_s = timeout_s
        # Verifies the server's certificate and host name, against the system's CAs.
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._connection: smtplib.SMTP | None = None

    def __repr__(self) -> str:
        return f"SmtpMailer({self._config!r})"

    def send(self, message: EmailMessage) -> None:
        """Hand `message` to the server for its `To`, `Cc` and `Bcc` recipients."""
        try:
            self._send(message)
        except (smtplib.SMTPException, OSError) as exc:
            if not _connection_survives(exc):
                self._discard()
            raise self._send_error(exc) from exc
        except BaseException:
            self._discard()  # whatever it was, the conversation is in an unknown state
            raise

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open. Never raises."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()

    def __enter__(self) -> SmtpMailer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, message: EmailMessage) -> None:
        connection, kept = self._ready_connection()
        try:
            refused = connection.send_message(message)
        except smtplib.SMTPServerDisconnected:
            if not kept:
                raise
            logger.info("SMTP server %s dropped the kept connection: reconnecting", self._where)
            refused = self._resend(message)
        except smtplib.SMTPResponseException as exc:
            if not kept or exc.smtp_code != _SERVICE_CLOSING:
                raise
            logger.info("SMTP server %s is closing the kept connection: reconnecting", self._where)
            refused = self._resend(message)
        if refused:
            # Some recipients refused, the others took it: the notice went.
            logger.warning(
                "SMTP server %s refused %d of the message's recipients (codes %s)",
                self._where,
                len(refused),
                sorted({code for code, _ in refused.values()}),
            )

    def _resend(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        self._discard()
        connection, _ = self._ready_connection()
        return connection.send_message(message)

    def _ready_connection(self) -> tuple[smtplib.SMTP, bool]:
        """The kept connection if it still answers a NOOP (and True), else a new one."""
        connection = self._connection
        if connection is not None:
            if _answers(connection):
                return connection, True
            logger.info("SMTP connection to %s went stale: reconnecting", self._where)
            self._discard()
        self._connection = self._connect()
        return self._connection, False

    def _connect(self) -> smtplib.SMTP:
        config = self._config
        connection: smtplib.SMTP
        if config.security == "tls":
            connection = smtplib.SMTP_SSL(
                config.host, config.port, timeout=self._timeout_s, context=self._ssl_context
            )
        else:
            connection = smtplib.SMTP(config.host, config.port, timeout=self._timeout_s)
        try:
            if config.security == "starttls":
                connection.ehlo()
                connection.starttls(context=self._ssl_context)
                connection.ehlo()
            if config.username is not None:
                connection.login(config.username, config.password or "")
        except BaseException:
            connection.close()
            raise
        logger.debug("SMTP connection to %s open", self._where)
        return connection

    def _discard(self) -> None:
        """Close the connection without a QUIT: it is broken or in an unknown state."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    @property
    def _where(self) -> str:
        return self._config.address

    def _send_error(self, exc: smtplib.SMTPException | OSError) -> SendError:
        kind, detail = _classify(exc, self._where)
        password = self._config.password
        if password:
            # A server could echo what it was sent; the password must not reach the outbox.
            detail = detail.replace(password, "***")
        return kind(detail)


def _answers(connection: smtplib.SMTP) -> bool:
    try:
        code, _ = connection.noop()
    except (smtplib.SMTPException, OSError):
        return False
    return code == 250


def _connection_survives(exc: BaseException) -> bool:
    """After these the server has reset the transaction and the connection is still good."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return True
    return (
        isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError)
        and exc.smtp_code != _SERVICE_CLOSING
    )


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(words.split())}"


def _classify(exc: smtplib.SMTPException | OSError, where: str) -> tuple[type[SendError], str]:
    """The one place where smtplib's and the socket's errors become the notices' errors:
    which of the two, and the detail."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return TransientSendError, (
            f"SMTP server {where} refused the login ({_reply(exc.smtp_code, exc.smtp_error)}): "
            f"{_FIX_URL}, user and password"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransientSendError, (
            f"TLS certificate of SMTP server {where} not trusted ({exc.verify_message}): "
            f"{_FIX_URL}, host, or the server's certificate"
        )
    if isinstance(exc, ssl.SSLError):
        return TransientSendError, (
            f"TLS with SMTP server {where} failed ({exc.reason or type(exc).__name__}): "
            f"{_FIX_URL}, smtps:// or smtp+starttls:// and port"
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if "SMTPUTF8" in str(exc):
            # smtplib's one refusal that is about the message: a non-ASCII address.
            return PermanentSendError, f"SMTP server {where} takes no non-ASCII addresses: {exc}"
        return TransientSendError, f"SMTP server {where}: {exc}: {_FIX_URL}"
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == _AUTH_REQUIRED:
        return TransientSendError, (
            f"SMTP server {where} wants a login ({_reply(exc.smtp_code, exc.smtp_error)}): "
            f"{_FIX_URL}, add the user and password"
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and not exc.recipients:
        return PermanentSendError, "the message names no recipient"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = [_reply(code, text) for code, text in exc.recipients.values()]
        detail = f"SMTP server {where} refused the recipient: {'; '.join(replies)}"
        if all(500 <= code < 600 for code, _ in exc.recipients.values()):
            return PermanentSendError, detail
        return TransientSendError, detail
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        step = "sender" if isinstance(exc, smtplib.SMTPSenderRefused) else "message"
        detail = f"SMTP server {where} refused the {step}: {_reply(exc.smtp_code, exc.smtp_error)}"
        if 500 <= exc.smtp_code < 600:
            return PermanentSendError, detail
        return TransientSendError, detail
    if isinstance(exc, smtplib.SMTPResponseException):
        # 4xx, or a 5xx that is about the server or this client (a refused greeting), not the
        # message: another try can go once the server or its configuration is fixed.
        return TransientSendError, (
            f"SMTP server {where} answered {_reply(exc.smtp_code, exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientSendError, f"SMTP server {where} closed the connection: {exc}"
    if isinstance(exc, TimeoutError):
        return TransientSendError, f"SMTP server {where} did not answer in time"
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return TransientSendError, f"SMTP server {where} unreachable: {reason}"
    return TransientSendError, f"SMTP with {where} failed: {type(exc).__name__}: {exc}"
