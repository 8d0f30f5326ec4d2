"""Guarded opens: an action that opens more than one door ("open all") waits for a second admin's
approval within ten minutes; both steps are audited.

Requests, approvals, refusals and cancellations need an admin (and the CSRF header); every
operator can read the requests. The rules are in `central.ops.open_requests`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse

from central.context import Ctx
from central.errors import ApiError
from central.ops import open_requests as service
from central.ops.auth import Operator, OperatorRoute, current_operator, run_unit
from central.ops.endpoints import _audited
from central.ops.open_requests import (
    DecisionIn,
    OpenRequestIn,
    OpenRequestList,
    OpenRequestOut,
    StatusFilter,
)
from central.ops.pages import _page

# The JSON API (every call needs a signed-in operator) and the HTML pages.
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
pages = APIRouter(prefix="/ops", include_in_schema=False)

OperatorDep = Annotated[Operator, Depends(current_operator)]
BankId = Annotated[str, Path(min_length=1, max_length=64)]
RequestId = Annotated[str, Path(min_length=1, max_length=32)]
# service.approve, refuse or cancel
Decide = Callable[[Ctx, Operator, str, str | None], tuple[OpenRequestOut, dict[str, Any]]]


@router.post("/banks/{bank_id}/open-requests", status_code=status.HTTP_201_CREATED)
async def request_open(
    request: Request, operator: OperatorDep, bank_id: BankId, body: OpenRequestIn
) -> OpenRequestOut:
    """Ask to open several doors (or all): nothing opens until a different admin approves
    within ten minutes."""

    def work(ctx: Ctx) -> tuple[OpenRequestOut, dict[str, Any]]:
        return service.request_open(ctx, operator, bank_id, body)

    return await _audited(
        request,
        operator,
        action="request_mass_open",
        target_type="bank",
        target_id=bank_id,
        reason=body.reason,
        work=work,
    )


@router.get("/open-requests")
async def list_open_requests(
    request: Request,
    operator: OperatorDep,
    status: StatusFilter = "all",
    bank_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> OpenRequestList:
    return await run_unit(
        request,
        lambda ctx: service.list_requests(ctx, status=status, bank_id=bank_id, limit=limit),
    )


@router.get("/open-requests/{request_id}")
async def get_open_request(
    request: Request, operator: OperatorDep, request_id: RequestId
) -> OpenRequestOut:
    return await run_unit(request, lambda ctx: service.get_request(ctx, request_id))


async def _decide(
    request: Request,
    operator: Operator,
    request_id: str,
    body: DecisionIn | None,
    action: str,
    decide: Decide,
) -> OpenRequestOut:
    reason = body.reason if body else None
    try:
        return await _audited(
            request,
            operator,
            action=action,
            target_type="open_request",
            target_id=request_id,
            reason=reason,
            work=lambda ctx: decide(ctx, operator, request_id, reason),
        )
    except ApiError as exc:
        if exc.code == service.APPROVAL_EXPIRED:
            # The refusal rolled its transaction back: mark the request expired in one of its own.
            await run_unit(request, lambda ctx: service.settle(ctx.session, ctx.now))
        raise


@router.post("/open-requests/{request_id}/approve")
async def approve_open_request(
    request: Request, operator: OperatorDep, request_id: RequestId, body: DecisionIn | None = None
) -> OpenRequestOut:
    """A second admin's approval: the node gets one signed command opening the doors."""
    return await _decide(
        request, operator, request_id, body, "approve_open_request", service.approve
    )


@router.post("/open-requests/{request_id}/refuse")
async def refuse_open_request(
    request: Request, operator: OperatorDep, request_id: RequestId, body: DecisionIn | None = None
) -> OpenRequestOut:
    return await _decide(request, operator, request_id, body, "refuse_open_request", service.refuse)


@router.post("/open-requests/{request_id}/cancel")
async def cancel_open_request(
    request: Request, operator: OperatorDep, request_id: RequestId, body: DecisionIn | None = None
) -> OpenRequestOut:
    return await _decide(request, operator, request_id, body, "cancel_open_request", service.cancel)


@pages.get("/approvals", response_class=HTMLResponse)
async def approvals_page(request: Request) -> Response:
    return await _page(request, "approvals.html", "/ops/approvals")
