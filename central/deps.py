"""Request-scoped dependencies: the transaction, the clock, the calling carrier."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from central.carriers.service import AuthenticatedCarrier, authenticate
from central.reservations.service import Ctx

_bearer = HTTPBearer(auto_error=False, description="a carrier API key: `Bearer lk_...`")


def _session(request: Request) -> Iterator[Session]:
    # The request owns the transaction: services never commit; this commits on success and rolls
    # back on any error. scope="function" makes the commit happen before the response is sent, so a
    # failed commit can never hide behind a 2xx already on the wire.
    with request.app.state.sessions() as session, session.begin():
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]


def _ctx(request: Request, session: SessionDep) -> Ctx:
    return Ctx(session=session, keys=request.app.state.keys, now=request.app.state.clock())


CtxDep = Annotated[Ctx, Depends(_ctx)]


def _carrier(
    ctx: CtxDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AuthenticatedCarrier:
    header = f"Bearer {credentials.credentials}" if credentials else None
    return authenticate(ctx.session, header, ctx.now)


CarrierDep = Annotated[AuthenticatedCarrier, Depends(_carrier)]
