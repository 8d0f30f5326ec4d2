"""What every kiosk route module depends on: the courier session of a request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from locker_node.flows.courier import Courier
from locker_node.flows.facade import LockerFlows

SESSION_COOKIE = "courier_session"


def current_courier(request: Request) -> Courier:
    """The courier session from `Authorization: Bearer` or the HttpOnly cookie."""
    flows: LockerFlows = request.app.state.flows
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    return flows.authenticate(token or request.cookies.get(SESSION_COOKIE))


CourierDep = Annotated[Courier, Depends(current_courier)]
