"""Operator sessions for the dashboard: the session cookie, CSRF, roles, and the unit of work.

Pages and JSON endpoints under /ops depend on these two:

- `current_operator`: the signed-in operator, or `NotSignedIn` (a 401 `not_signed_in` in the
  API's error shape). For a state-changing method (POST, PUT, PATCH, DELETE) it also checks the
  `X-CSRF-Token` header against the session's token (403 `csrf_failed`).
- `require_admin`: the signed-in operator if their role is admin, else 403 `forbidden`.

Pages that redirect to the login form instead of answering 401 call `operator_or_none(request)`
(None when not signed in), or catch `NotSignedIn` around `current_operator`.

The cookie `locker_ops` holds a random 256-bit token (HttpOnly, SameSite=Strict, path /ops,
Secure when `public_url` is https); the database keeps only its SHA-256. A session ends after
`ops_session_idle_hours` without a request, after `ops_session_max_hours` in any case, at logout,
and when the operator is disabled.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.context import Ctx
from central.db import LaggingReads
from central.errors import ApiError
from central.keys import ServiceKeys
from central.ops.accounts import Passwords, SignedIn, csrf_token, resolve_session

Role = Literal["admin", "viewer"]
T = TypeVar("T")

COOKIE_NAME = "locker_ops"
COOKIE_PATH = "/ops"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HASHES_AT_ONCE = 2


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    email: str
    role: Role


class NotSignedIn(ApiError):
    """No valid session. JSON callers get the 401; pages catch it and redirect to /ops/login."""

    def __init__(self) -> None:
        super().__init__(401, "not_signed_in", "sign in to the operator dashboard first")


class CsrfFailed(ApiError):
    def __init__(self) -> None:
        super().__init__(
            403, "csrf_failed", f"the {CSRF_HEADER} header is missing or does not match"
        )


class Forbidden(ApiError):
    def __init__(self, detail: str = "this needs an admin operator") -> None:
        super().__init__(403, "forbidden", detail)


# Unit of work -------------------------------------------------------------------------------------


def _run_unit(
    sessions: sessionmaker[Session],
    keys: ServiceKeys,
    now: datetime,
    work: Callable[[Ctx], T],
) -> T:
    with sessions() as session, session.begin():
        return work(Ctx(session=session, keys=keys, now=now))


async def run_unit(request: Request, work: Callable[[Ctx], T]) -> T:
    """Run `work` as one transaction in one worker-thread hop (see `central.deps.CarrierWork`)."""
    state = request.app.state
    limiter: CapacityLimiter = state.db_limiter
    return await anyio.to_thread.run_sync(
        _run_unit, state.sessions, state.keys, state.clock(), work, limiter=limiter
    )


def _run_lagging_read(
    reads: LaggingReads, keys: ServiceKeys, now: datetime, work: Callable[[Ctx], T]
) -> T:
    with reads.transaction() as session:
        return work(Ctx(session=session, keys=keys, now=now))


async def run_lagging_read(request: Request, work: Callable[[Ctx], T]) -> T:
    """Run read-only `work` like `run_unit`, on the read standby (`database_read_url`), whose
    data may be a little behind the primary's; on the primary when there is no standby or it
    cannot be reached (`central.db.LaggingReads`). For figures an operator reads, never for
    what an operator acts on. The operator's session is still checked on the primary
    (`current_operator`): checking it writes."""
    state = request.app.state
    limiter: CapacityLimiter = state.read_limiter
    return await anyio.to_thread.run_sync(
        _run_lagging_read, state.lagging_reads, state.keys, state.clock(), work, limiter=limiter
    )


def settings_of(request: Request) -> CentralSettings:
    settings: CentralSettings = request.app.state.settings
    return settings


def passwords_of(request: Request) -> Passwords:
    """The app's password hasher, made on first use with the costs from the settings."""
    state = request.app.state
    passwords: Passwords | None = getattr(state, "ops_passwords", None)
    if passwords is None:
        passwords = Passwords.from_settings(settings_of(request))
        state.ops_passwords = passwords
    return passwords


def hashing_limiter(request: Request) -> CapacityLimiter:
    """Password hashes computed at once: each takes `ops_argon2_memory_kib` of memory."""
    state = request.app.state
    limiter: CapacityLimiter | None = getattr(state, "ops_hashing_limiter", None)
    if limiter is None:
        limiter = CapacityLimiter(HASHES_AT_ONCE)
        state.ops_hashing_limiter = limiter
    return limiter


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# Cookie -------------------------------------------------------------------------------------------


def set_session_cookie(request: Request, response: Response, token: str, max_age_s: int) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age_s,
        path=COOKIE_PATH,
        secure=settings_of(request).public_url.startswith("https://"),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        secure=settings_of(request).public_url.startswith("https://"),
        httponly=True,
        samesite="strict",
    )


def session_token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE_NAME)
    # Tokens are 43 URL-safe characters; anything far off is not one of ours.
    return token if token and len(token) <= 128 else None


def csrf_for(request: Request) -> str:
    """The CSRF token of the request's session (call after `current_operator` succeeded)."""
    token = session_token(request)
    if token is None:
        raise NotSignedIn()
    keys: ServiceKeys = request.app.state.keys
    return csrf_token(keys, token)


# Dependencies -------------------------------------------------------------------------------------


async def signed_in(request: Request) -> SignedIn | None:
    """The session behind the request's cookie, looked up once per request."""
    if hasattr(request.state, "ops_signed_in"):
        cached: SignedIn | None = request.state.ops_signed_in
        return cached
    token = session_token(request)
    found: SignedIn | None = None
    if token is not None:
        settings = settings_of(request)
        found = await run_unit(
            request, lambda ctx: resolve_session(ctx.session, token, ctx.now, settings)
        )
    request.state.ops_signed_in = found
    return found


def _check_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), csrf_for(request).encode()):
        raise CsrfFailed()


async def operator_or_none(request: Request) -> Operator | None:
    """For pages: the signed-in operator, or None (no CSRF check: pages are GETs)."""
    found = await signed_in(request)
    return Operator(found.operator_id, found.email, found.role) if found else None


async def current_operator(request: Request) -> Operator:
    found = await signed_in(request)
    if found is None:
        raise NotSignedIn()
    _check_csrf(request)
    return Operator(found.operator_id, found.email, found.role)


async def require_admin(request: Request) -> Operator:
    operator = await current_operator(request)
    if operator.role != "admin":
        raise Forbidden()
    return operator


class OperatorRoute(APIRoute):
    """An operator API route. FastAPI reads and validates a body before any dependency runs, so
    a route with a body that needs a signed-in operator checks the session and the CSRF header
    here, before the body is read (the dependency then finds the session already looked up)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or not _needs_operator(self.dependant):
            return handler

        async def handle(request: Request) -> Response:
            await current_operator(request)
            return await handler(request)

        return handle


def _needs_operator(dependant: Dependant) -> bool:
    return any(
        sub.call in (current_operator, require_admin) or _needs_operator(sub)
        for sub in dependant.dependencies
    )
