"""Carrier API v1: webhook endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from central.deps import CarrierDep, CtxDep
from central.errors import error_responses
from central.webhooks import service
from central.webhooks.schemas import DeliveryList, WebhookCreate, WebhookList, WebhookOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
WebhookId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "",
    response_model=WebhookOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 422),
)
def register_webhook(
    request: Request, ctx: CtxDep, carrier: CarrierDep, body: WebhookCreate
) -> WebhookOut:
    """Register an HTTPS endpoint. Deliveries are signed with the secret (generated if absent and
    returned only in this answer): `X-Locker-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
    "<t>.<raw body>")>`."""
    return service.register(
        ctx.session,
        ctx.keys,
        carrier.carrier_id,
        body,
        ctx.now,
        allow_insecure=request.app.state.settings.allow_insecure_webhooks,
    )


@router.get("", response_model=WebhookList, responses=error_responses(401))
def list_webhooks(ctx: CtxDep, carrier: CarrierDep) -> WebhookList:
    return WebhookList(items=service.list_endpoints(ctx.session, carrier.carrier_id))


@router.get("/{webhook_id}", response_model=WebhookOut, responses=error_responses(401, 404))
def get_webhook(ctx: CtxDep, carrier: CarrierDep, webhook_id: WebhookId) -> WebhookOut:
    return service.describe(service.require_endpoint(ctx.session, carrier.carrier_id, webhook_id))


@router.get(
    "/{webhook_id}/deliveries", response_model=DeliveryList, responses=error_responses(401, 404)
)
def list_deliveries(ctx: CtxDep, carrier: CarrierDep, webhook_id: WebhookId) -> DeliveryList:
    """The latest deliveries to this endpoint with their status and attempt count."""
    return DeliveryList(
        items=service.recent_deliveries(ctx.session, carrier.carrier_id, webhook_id)
    )


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 404)
)
def delete_webhook(ctx: CtxDep, carrier: CarrierDep, webhook_id: WebhookId) -> None:
    """Stop deliveries to this endpoint; pending ones are cancelled."""
    service.delete(ctx.session, carrier.carrier_id, webhook_id, ctx.now)
