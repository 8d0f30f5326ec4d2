"""Carrier API v1: webhook endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from central.deps import CarrierRoute, CarrierWorkDep
from central.errors import error_responses
from central.webhooks import service
from central.webhooks.schemas import DeliveryList, WebhookCreate, WebhookList, WebhookOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=CarrierRoute)
WebhookId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "",
    response_model=WebhookOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 422),
)
async def register_webhook(work: CarrierWorkDep, body: WebhookCreate) -> WebhookOut:
    """Register an HTTPS endpoint. Deliveries are signed with the secret (generated if absent and
    returned only in this answer): `X-Locker-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
    "<t>.<raw body>")>`."""
    insecure = work.settings.allow_insecure_webhooks
    return await work.run(
        lambda ctx, carrier: service.register(
            ctx.session, ctx.keys, carrier.carrier_id, body, ctx.now, allow_insecure=insecure
        )
    )


@router.get("", response_model=WebhookList, responses=error_responses(401))
async def list_webhooks(work: CarrierWorkDep) -> WebhookList:
    return await work.run(
        lambda ctx, carrier: WebhookList(
            items=service.list_endpoints(ctx.session, carrier.carrier_id)
        )
    )


@router.get("/{webhook_id}", response_model=WebhookOut, responses=error_responses(401, 404))
async def get_webhook(work: CarrierWorkDep, webhook_id: WebhookId) -> WebhookOut:
    return await work.run(
        lambda ctx, carrier: service.describe(
            service.require_endpoint(ctx.session, carrier.carrier_id, webhook_id)
        )
    )


@router.get(
    "/{webhook_id}/deliveries", response_model=DeliveryList, responses=error_responses(401, 404)
)
async def list_deliveries(work: CarrierWorkDep, webhook_id: WebhookId) -> DeliveryList:
    """The latest deliveries to this endpoint with their status and attempt count."""
    return await work.run(
        lambda ctx, carrier: DeliveryList(
            items=service.recent_deliveries(ctx.session, carrier.carrier_id, webhook_id)
        )
    )


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 404)
)
async def delete_webhook(work: CarrierWorkDep, webhook_id: WebhookId) -> None:
    """Stop deliveries to this endpoint; pending ones are cancelled."""
    await work.run(
        lambda ctx, carrier: service.delete(ctx.session, carrier.carrier_id, webhook_id, ctx.now)
    )
