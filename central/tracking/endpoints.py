"""Inbound carrier webhooks: tracking pushes, verified the way each carrier signs them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Request, status
from sqlalchemy.orm import Session, sessionmaker

from carrier_adapters.base import Capability, CarrierAdapter, TrackingDetails, WebhookPayloadError
from central.clock import Clock
from central.context import Ctx
from central.errors import ApiError, NotFound, error_responses
from central.keys import ServiceKeys
from central.tracking import service
from central.tracking.schemas import PushAccepted

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/carrier-webhooks", tags=["carrier webhooks"])

MAX_PUSH_BYTES = 1 << 20
"""Carrier pushes are a few kilobytes; anyone can reach this endpoint, so it reads no more."""


async def _raw_body(request: Request) -> bytes:
    # The signature covers the exact bytes, so they are kept as received, before any parsing.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PUSH_BYTES:
        raise ApiError(413, "payload_too_large", f"pushes are at most {MAX_PUSH_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_PUSH_BYTES:
            raise ApiError(413, "payload_too_large", f"pushes are at most {MAX_PUSH_BYTES} bytes")
    return bytes(body)


def _record(
    sessions: sessionmaker[Session],
    keys: ServiceKeys,
    clock: Clock,
    carrier_id: str,
    updates: Sequence[TrackingDetails],
) -> service.PushOutcome:
    # The whole push is one transaction in one worker-thread hop, as in central.deps.CarrierWork.
    with sessions() as session, session.begin():
        ctx = Ctx(session=session, keys=keys, now=clock())
        return service.record_push(ctx, carrier_id, updates)


@router.post(
    "/{carrier_id}",
    response_model=PushAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(400, 401, 404, 413),
)
async def receive_carrier_webhook(
    request: Request, carrier_id: Annotated[str, Path(min_length=1, max_length=32)]
) -> PushAccepted:
    """A carrier's tracking push. Not authenticated by API key but by the carrier's own
    signature: FedEx `fdx-signature` (HMAC-SHA256 of the body), UPS Track Alert `Authorization:
    Bearer <credential>`, DHL a shared token header. 401 `invalid_signature` when it does not
    verify, 400 `malformed_payload` for a verified body that is not the carrier's shape, 404 for
    a carrier without webhooks configured. Numbers without an active reservation are accepted
    and ignored."""
    adapters: Mapping[str, CarrierAdapter] = request.app.state.carrier_adapters
    adapter = adapters.get(carrier_id)
    if adapter is None or Capability.WEBHOOK_VERIFY not in adapter.capabilities:
        raise NotFound("carrier webhook")
    body = await _raw_body(request)
    if not adapter.verify_webhook(request.headers, body):
        client = request.client.host if request.client else "unknown"
        log.warning(
            "carrier webhook refused: carrier=%s reason=signature did not verify client=%s",
            carrier_id,
            client,
        )
        raise ApiError(401, "invalid_signature", "the push does not carry a valid signature")
    try:
        updates = adapter.parse_webhook(body)
    except WebhookPayloadError as exc:
        log.warning("carrier webhook refused: carrier=%s reason=malformed payload", carrier_id)
        raise ApiError(
            400, "malformed_payload", f"the body is not a {carrier_id} tracking push"
        ) from exc
    state = request.app.state
    outcome = await anyio.to_thread.run_sync(
        _record, state.sessions, state.keys, state.clock, carrier_id, updates
    )
    # Counts only: tracking numbers and event texts can lead to a person.
    log.info(
        "carrier webhook from %s: %d updates, %d for active reservations, %d new events, "
        "%d cancellations, %d ignored",
        carrier_id,
        outcome.received,
        outcome.matched,
        outcome.new_events,
        outcome.cancelled,
        outcome.received - outcome.matched,
    )
    return PushAccepted(
        received=outcome.received, matched=outcome.matched, new_events=outcome.new_events
    )
