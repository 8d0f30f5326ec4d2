"""Paging in the dashboard: which alert kinds and banks each operator is paged for, and the
outgoing webhook targets.

Any operator manages their own subscriptions; admins manage the webhook targets, see everyone's
subscriptions and the page outbox. Every change is audited, refusals included. A target's URL
is write-only: answers and the audit show its scheme and host alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import httpx
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from central.context import Ctx
from central.errors import ApiError
from central.notices.errors import SendError
from central.ops import accounts
from central.ops.auth import (
    Forbidden,
    Operator,
    OperatorRoute,
    current_operator,
    run_unit,
    settings_of,
)
from central.ops.endpoints import _audited
from central.ops.pages import _page
from central.paging import service
from central.paging.schemas import (
    PageList,
    PageStatus,
    PagingOptions,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
    TargetIn,
    TargetList,
    TargetOut,
    TargetUpdate,
    TestSendOut,
)
from central.paging.senders import WEBHOOK_TIMEOUT_S, WebhookSender
from central.paging.words import ALERT_KINDS

T = TypeVar("T")
# The JSON API (every call needs a signed-in operator) and the HTML pages.
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
pages = APIRouter(prefix="/ops", include_in_schema=False)
OperatorDep = Annotated[Operator, Depends(current_operator)]
SubscriptionId = Annotated[int, Path(ge=1)]
TargetId = Annotated[int, Path(ge=1)]


@pages.get("/paging")
async def paging_page(request: Request) -> Response:
    return await _page(request, "paging.html", "/ops/paging", alert_kinds=ALERT_KINDS)


async def _audited_own(
    request: Request,
    operator: Operator,
    *,
    action: str,
    target_id: str,
    work: Callable[[Ctx], tuple[T, dict[str, Any]]],
) -> T:
    """An operator's change to their own paging: audited like an admin's, open to every role."""
    return await _audited(
        request,
        operator,
        action=action,
        target_type="page_subscription",
        target_id=target_id,
        reason=None,
        work=work,
        admin_only=False,
    )


def _require_admin(operator: Operator) -> None:
    if operator.role != "admin":
        raise Forbidden()


# Options and subscriptions ------------------------------------------------------------------------


@router.get("/paging/options")
async def paging_options(request: Request, operator: OperatorDep) -> PagingOptions:
    settings = settings_of(request)
    return await run_unit(
        request,
        lambda ctx: service.options(
            ctx.session,
            email_configured=settings.smtp_url is not None,
            digest_threshold=settings.paging_digest_threshold,
        ),
    )


@router.get("/paging/subscriptions")
async def list_subscriptions(
    request: Request,
    operator: OperatorDep,
    everyone: Annotated[bool, Query(alias="all")] = False,
) -> SubscriptionList:
    """The operator's own subscriptions; with `all=true`, everyone's (admins only)."""
    if everyone:
        _require_admin(operator)
    owner = None if everyone else operator.id
    return await run_unit(request, lambda ctx: service.list_subscriptions(ctx.session, owner))


@router.post("/paging/subscriptions", status_code=status.HTTP_201_CREATED)
async def create_subscription(
    request: Request, operator: OperatorDep, body: SubscriptionIn
) -> SubscriptionOut:
    def work(ctx: Ctx) -> tuple[SubscriptionOut, dict[str, Any]]:
        out = service.create_subscription(ctx.session, operator.id, body, ctx.now)
        return out, {"subscription_id": out.id, **service.audit_detail(out)}

    return await _audited_own(
        request, operator, action="paging_subscribe", target_id="new", work=work
    )


@router.put("/paging/subscriptions/{subscription_id}")
async def update_subscription(
    request: Request, operator: OperatorDep, subscription_id: SubscriptionId, body: SubscriptionIn
) -> SubscriptionOut:
    def work(ctx: Ctx) -> tuple[SubscriptionOut, dict[str, Any]]:
        out = service.update_subscription(ctx.session, operator.id, subscription_id, body, ctx.now)
        return out, service.audit_detail(out)

    return await _audited_own(
        request,
        operator,
        action="paging_subscription_change",
        target_id=str(subscription_id),
        work=work,
    )


@router.delete("/paging/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(
    request: Request, operator: OperatorDep, subscription_id: SubscriptionId
) -> Response:
    def work(ctx: Ctx) -> tuple[None, dict[str, Any]]:
        service.delete_subscription(ctx.session, operator.id, subscription_id)
        return None, {}

    await _audited_own(
        request,
        operator,
        action="paging_unsubscribe",
        target_id=str(subscription_id),
        work=work,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Webhook targets ----------------------------------------------------------------------------------


@router.get("/paging/targets")
async def list_targets(request: Request, operator: OperatorDep) -> TargetList:
    """Targets to page: enabled ones for everyone (to subscribe with), all for admins."""
    admin = operator.role == "admin"
    return await run_unit(
        request, lambda ctx: service.list_targets(ctx.session, include_disabled=admin)
    )


@router.post("/paging/targets", status_code=status.HTTP_201_CREATED)
async def create_target(request: Request, operator: OperatorDep, body: TargetIn) -> TargetOut:
    keys = request.app.state.keys

    def work(ctx: Ctx) -> tuple[TargetOut, dict[str, Any]]:
        out = service.create_target(ctx.session, keys, operator.id, body, ctx.now)
        return out, {"target_id": out.id, "host": out.host}

    return await _audited(
        request,
        operator,
        action="paging_target_create",
        target_type="page_target",
        target_id=body.name,
        reason=None,
        work=work,
    )


@router.patch("/paging/targets/{target_id}")
async def update_target(
    request: Request, operator: OperatorDep, target_id: TargetId, body: TargetUpdate
) -> TargetOut:
    def work(ctx: Ctx) -> tuple[TargetOut, dict[str, Any]]:
        out = service.set_target_enabled(ctx.session, target_id, body.enabled)
        return out, {"name": out.name}

    return await _audited(
        request,
        operator,
        action="paging_target_enable" if body.enabled else "paging_target_disable",
        target_type="page_target",
        target_id=str(target_id),
        reason=None,
        work=work,
    )


@router.delete("/paging/targets/{target_id}", status_code=204)
async def delete_target(request: Request, operator: OperatorDep, target_id: TargetId) -> Response:
    await _audited(
        request,
        operator,
        action="paging_target_delete",
        target_type="page_target",
        target_id=str(target_id),
        reason=None,
        work=lambda ctx: (None, service.delete_target(ctx.session, target_id, ctx.now)),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def webhook_sender(request: Request) -> WebhookSender:
    """The app's sender for test pages: `app.state.paging_http` (tests put a client with their
    transport there), else a client made on first use and kept for the process."""
    state = request.app.state
    client: httpx.Client | None = getattr(state, "paging_http", None)
    if client is None:
        client = httpx.Client(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False)
        state.paging_http = client
    return WebhookSender(client, timeout_s=settings_of(request).webhook_timeout_s)


@router.post("/paging/targets/{target_id}/test")
async def test_target(request: Request, operator: OperatorDep, target_id: TargetId) -> TestSendOut:
    """Send a test page to the target now, enabled or not, and say how it went (a receiver
    that refuses it is an answer, not an error). Sent outside any transaction; audited."""
    keys = request.app.state.keys
    public_url = settings_of(request).public_url

    async def audit(outcome: str, detail: dict[str, Any]) -> None:
        await run_unit(
            request,
            lambda ctx: accounts.audit(
                ctx.session,
                now=ctx.now,
                operator_id=operator.id,
                action="paging_target_test",
                outcome=outcome,
                target_type="page_target",
                target_id=str(target_id),
                detail=detail,
            ),
        )

    def load(ctx: Ctx) -> tuple[str, str]:
        _require_admin(operator)
        target = service.require_target(ctx.session, target_id)
        return target.name, keys.decrypt(target.url_sealed)

    try:
        name, url = await run_unit(request, load)
    except ApiError as exc:
        await audit(exc.code, {"status": exc.status, "detail": exc.detail})
        raise
    message = service.trial_message(name, public_url)
    try:
        await anyio.to_thread.run_sync(webhook_sender(request).send, url, message)
        out = TestSendOut(delivered=True, detail=f"{name} took the test page")
    except SendError as exc:
        out = TestSendOut(delivered=False, detail=exc.detail)
    await audit("ok" if out.delivered else "not_delivered", {"name": name, "detail": out.detail})
    return out


# Outbox -------------------------------------------------------------------------------------------


@router.get("/paging/outbox")
async def page_outbox(
    request: Request,
    operator: OperatorDep,
    page_status: Annotated[PageStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> PageList:
    """The latest pages, newest first (admins only)."""
    _require_admin(operator)
    return await run_unit(
        request, lambda ctx: service.recent_pages(ctx.session, status=page_status, limit=limit)
    )
