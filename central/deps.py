"""Request-scoped dependencies: the carrier's unit of work (one transaction, one thread hop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from central.carriers.service import AuthenticatedCarrier, authenticate, bearer_token
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
