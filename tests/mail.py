"""A real SMTP server on 127.0.0.1 for tests: aiosmtpd in a thread, optional TLS and AUTH."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["TEST_PASSWORD", "TEST_USER", "ReceivedMail", "SmtpTestServer", "TlsMode"]

TlsMode = Literal["starttls", "tls"]
HOST = "127.0.0.1"
TEST_USER = "notices"
TEST_PASSWORD = "s3cret p@ss:word"  # needs percent-encoding in a URL, on purpose
_SCHEMES: dict[TlsMode | None, str] = {None: "smtp", "starttls": "smtp+starttls", "tls": "smtps"}
_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message as the server took it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    login: str | None
    """The user the client logged in as, None without AUTH."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class _Handler:
    """aiosmtpd's hooks: refuse the listed recipients, keep every accepted message."""

    def __init__(self, server: SmtpTestServer) -> None:
        self._server = server

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._server.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self._server.refuse_recipients:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if address.lower() in self._server.defer_recipients:
            return f"451 4.3.0 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        # SMTP carries CRLF line ends; tests compare with Python text, so parse as a mailbox
        # file holds it, with LF.
        message = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        if not isinstance(message, EmailMessage):  # policy.default always builds EmailMessage
            return "554 5.6.0 message not parsed"
        auth_data = session.auth_data
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
        self._server._keep(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,
                login=login,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class _Controller(Controller):
    """Counts client connections (not the one `start()` makes to check the server is up) and
    keeps their protocols, so the server can drop them."""

    def __init__(self, owner: SmtpTestServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner
        self.started = False
        self.protocols: list[SMTP] = []

    def factory(self) -> SMTP:
        # The loop is passed so aiosmtpd does not look one up (with a catch_warnings that is
        # not thread-safe) in the server thread.
        smtp = SMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)
        if self.started:
            self.protocols.append(smtp)
            self._owner._count_connection()
        return smtp


class SmtpTestServer:
    """A real SMTP server bound to 127.0.0.1, for `LOCKER_SMTP_URL` in tests.

    `tls`: "starttls" (STARTTLS offered and required before anything else) or "tls" (implicit
    TLS, smtps), with a certificate for 127.0.0.1 and localhost issued by `ca`, a `trustme.CA`
    clients trust with `ca.configure_trust(context)` (or take `client_ssl_context()`).
    `auth`: (user, password) the server checks, and requires before MAIL (530 otherwise); with
    STARTTLS, AUTH is offered only once TLS is on.
    `refuse_recipients`: addresses answered with 550 at RCPT, `defer_recipients` with 451 (sets
    the test may change while the server runs; lower-case).

    `stop()` and `start()` take the server down and up again on the same port; `.received`,
    `.messages` and `.connections` keep counting across restarts.
    """

    def __init__(
        self,
        *,
        tls: TlsMode | None = None,
        auth: tuple[str, str] | None = None,
        refuse_recipients: Iterable[str] = (),
        defer_recipients: Iterable[str] = (),
        ca: trustme.CA | None = None,
        port: int | None = None,
    ) -> None:
        self.host = HOST
        self.port = port or _free_port()
        self.tls = tls
        self.auth = auth
        self.refuse_recipients: set[str] = {address.lower() for address in refuse_recipients}
        self.defer_recipients: set[str] = {address.lower() for address in defer_recipients}
        self.ca = ca or trustme.CA()
        self._server_context: ssl.SSLContext | None = None
        if tls is not None:
            self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(HOST, "localhost").configure_cert(self._server_context)
        self._received: list[ReceivedMail] = []
        self._connections = 0
        self._changed = threading.Condition()
        self._controller: _Controller | None = None

    @property
    def url(self) -> str:
        """The URL for `LOCKER_SMTP_URL`: scheme from the TLS mode, with the credentials."""
        userinfo = ""
        if self.auth is not None:
            user, password = self.auth
            userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"{_SCHEMES[self.tls]}://{userinfo}{self.host}:{self.port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's CA (and nothing else)."""
        return ssl.create_default_context(cadata=self.ca.cert_pem.bytes().decode())

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def received(self) -> list[ReceivedMail]:
        with self._changed:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [mail.message for mail in self.received]

    @property
    def connections(self) -> int:
        """Client connections accepted so far (a STARTTLS upgrade is not a new one)."""
        with self._changed:
            return self._connections

    def wait_for(
        self,
        predicate: Callable[[list[ReceivedMail]], bool] = bool,
        timeout: float = 10.0,
    ) -> list[ReceivedMail]:
        """Block until `predicate(received)` holds (by default: any message), return them all.

        Raises AssertionError at the deadline, with what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._received)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"SMTP test server: condition not met in {timeout} s; received "
                        f"{[mail.message['Subject'] for mail in self._received]}"
                    )
                self._changed.wait(left)
            return list(self._received)

    def start(self) -> SmtpTestServer:
        if self._controller is not None:
            raise RuntimeError("SMTP test server already running")
        controller = _Controller(
            self,
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=self._server_context if self.tls == "tls" else None,
            server_hostname="localhost",  # not socket.getfqdn(), which may wait on DNS
            **self._smtp_options(),
        )
        try:
            controller.start()
        except BaseException:
            if not controller.loop.is_closed():
                controller.loop.close()
            raise
        controller.started = True
        self._controller = controller
        return self

    def _smtp_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.tls == "starttls":
            options |= {"tls_context": self._server_context, "require_starttls": True}
        if self.auth is not None:
            options |= {
                "authenticator": self._authenticate,
                # aiosmtpd only offers AUTH after STARTTLS when this is set, and does not see
                # implicit TLS as TLS; its own `auth_required` without `auth_require_tls`
                # warns, so `handle_MAIL` is what insists on a login, in every mode.
                "auth_require_tls": self.tls == "starttls",
            }
        return options

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self.auth is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.auth
        ok = data.login == user.encode() and data.password == password.encode()
        return AuthResult(success=ok, auth_data=data if ok else None, handled=False)

    def stop(self) -> None:
        """Drop every client connection and stop listening; `start()` brings it back."""
        controller = self._controller
        if controller is None:
            return
        self.drop_connections()
        controller.stop()
        self._controller = None

    def drop_connections(self) -> None:
        """Cut every open client connection, as a server does to idle clients."""
        controller = self._controller
        if controller is None:
            return
        future = asyncio.run_coroutine_threadsafe(_abort_all(controller.protocols), controller.loop)
        future.result(_STOP_TIMEOUT_S)

    def _keep(self, mail: ReceivedMail) -> None:
        with self._changed:
            self._received.append(mail)
            self._changed.notify_all()

    def _count_connection(self) -> None:
        with self._changed:
            self._connections += 1

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


async def _abort_all(protocols: list[SMTP]) -> None:
    """Abort the connections and wait until aiosmtpd has seen each one go."""
    for protocol in protocols:
        if isinstance(protocol.transport, asyncio.WriteTransport):
            protocol.transport.abort()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _STOP_TIMEOUT_S
    while any(protocol.transport is not None for protocol in protocols):
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.005)
    protocols.clear()
