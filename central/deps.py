"""The carrier API's requests: the key checked before the body, and the unit of work (one
transaction, one thread hop)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from central.carriers.service import AuthenticatedCarrier, authenticate, bearer_token, read_key
from central.config import CentralSettings
from central.context import Ctx

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="a carrier API key: `Bearer lk_...`")
# The key as a parameter of its own (documents the route's security in /openapi.json).
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


class CarrierWork:
    """Runs a request's database work as one unit: check the key, do the work, commit.

    The request owns the transaction (services never commit) and the whole of it runs in a single
    worker-thread hop. Spreading it over several hops (a dependency that opens the transaction, the
    endpoint, FastAPI's response validation, a dependency exit that commits) lets a request hold a
    connection, or SQLite's write lock, while it waits for a worker thread that is itself waiting
    for that lock; under load that deadlocks until timeouts fire. Endpoints are async and await
    `run`, so response serialisation happens on the event loop after the commit.
    """

    def __init__(self, request: Request, header: str | None) -> None:
        self._sessions: sessionmaker[Session] = request.app.state.sessions
        self._keys = request.app.state.keys
        self._clock = request.app.state.clock
        self._banks = request.app.state.bank_directory
        self.settings: CentralSettings = request.app.state.settings
        self._header = header
        self._limiter: CapacityLimiter = request.app.state.db_limiter

    async def run(self, work: Callable[[Ctx, AuthenticatedCarrier], T]) -> T:
        return await anyio.to_thread.run_sync(self._run, work, limiter=self._limiter)

    def _run(self, work: Callable[[Ctx, AuthenticatedCarrier], T]) -> T:
        with self._sessions() as session, session.begin():
            ctx = Ctx(session=session, keys=self._keys, now=self._clock(), banks=self._banks)
            carrier = authenticate(session, self._header, ctx.now)
            return work(ctx, carrier)


def bearer_header(authorization: str | None) -> str | None:
    """`Bearer <key>` as `_bearer` reads the header: anything else counts as no key at all."""
    token = bearer_token(authorization)
    return None if token is None else f"Bearer {token}"


async def _carrier_work(
    request: Request,
    credentials: BearerCredentials,
) -> CarrierWork:
    return CarrierWork(request, f"Bearer {credentials.credentials}" if credentials else None)


CarrierWorkDep = Annotated[CarrierWork, Depends(_carrier_work)]


async def serve_carrier(
    request: Request, handler: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Serve a carrier API request, the caller's key looked at before the body is read.

    A header that cannot hold a key is refused at once, with no query and no byte of the body
    read. A well-formed key is checked against the database with the work, as ever (one hop,
    and on the busiest route one query for a batch of requests); so that an unknown or revoked
    key is not told what is wrong with its body, a request refused for its form (400, 413,
    422) has its key checked first, which costs a query on that path only.
    """
    read_key(bearer_header(request.headers.get("authorization")))
    try:
        return await handler(request)
    except (RequestValidationError, HTTPException):
        await _check_key(request)
        raise


async def _check_key(request: Request) -> None:
    state = request.app.state
    sessions: sessionmaker[Session] = state.sessions
    header = bearer_header(request.headers.get("authorization"))

    def check() -> None:
        with sessions() as session, session.begin():
            authenticate(session, header, state.clock())

    await anyio.to_thread.run_sync(check, limiter=state.db_limiter)


class CarrierRoute(APIRoute):
    """A carrier API route: FastAPI reads and validates the body before any dependency runs, so
    the key is looked at here, before FastAPI's handler (`serve_carrier`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await serve_carrier(request, handler)

        return handle
