"""Pure request builders and response parsers for DHL Shipment Tracking - Unified."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carrier_adapters.base import (
    CarrierError,
    CarrierRequestError,
    InvalidTrackingNumber,
    Location,
    MalformedCarrierResponse,
    TrackingDetails,
    TrackingEvent,
    TrackingNotFound,
    TrackingStatus,
    WebhookPayloadError,
    overall_status,
)
from carrier_adapters.dhl.codes import status_for
from carrier_adapters.http import CarrierRequest
from carrier_adapters.parsing import clean_text, delivery_event, describe_error, parse_iso_datetime
from carrier_adapters.tracking_numbers import normalize_tracking_number

__all__ = [
    "CARRIER",
    "build_tracking_request",
    "parse_error_response",
    "parse_tracking_response",
    "parse_webhook_payload",
]

CARRIER = "dhl"
TRACKING_PATH = "/track/shipments"


def build_tracking_request(
    base_url: str,
    tracking_number: str,
    api_key: str,
    *,
    service: str | None = None,
    language: str | None = None,
) -> CarrierRequest:
    params = {"trackingNumber": tracking_number}
    if service:
        params["service"] = service
    if language:
        params["language"] = language
    return CarrierRequest(
        method="GET",
        url=base_url + TRACKING_PATH,
        headers={"Accept": "application/json", "DHL-API-Key": api_key},
        params=params,
    )


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Address(_Model):
    country_code: str | None = Field(default=None, alias="countryCode")
    postal_code: str | None = Field(default=None, alias="postalCode")
    locality: str | None = Field(default=None, alias="addressLocality")


class _Place(_Model):
    address: _Address | None = None


class _Status(_Model):
    timestamp: str | None = None
    location: _Place | None = None
    status_code: str | None = Field(default=None, alias="statusCode")
    status: str | None = None
    description: str | None = None
    remark: str | None = None


class _ProofOfDelivery(_Model):
    timestamp: str | None = None


class _Product(_Model):
    name: str | None = Field(default=None, alias="productName")


class _Details(_Model):
    proof_of_delivery: _ProofOfDelivery | None = Field(default=None, alias="proofOfDelivery")
    product: _Product | None = None


class _Shipment(_Model):
    id: str
    service: str | None = None
    status: _Status | None = None
    estimated_delivery: str | None = Field(default=None, alias="estimatedTimeOfDelivery")
    details: _Details | None = None
    events: list[_Status] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # DHL's own example sends the id as a JSON number.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _Reply(_Model):
    shipments: list[_Shipment]


class _Problem(_Model):
    title: str | None = None
    detail: str | None = None
    status: int | None = None


def _location(place: _Place | None) -> Location | None:
    if place is None or place.address is None:
        return None
    address = place.address
    location = Location(
        postal_code=clean_text(address.postal_code),
        country_code=clean_text(address.country_code),
        description=clean_text(address.locality),
    )
    return None if location.is_empty else location


def _status_of(entry: _Status) -> TrackingStatus:
    return status_for(entry.status_code, entry.status, entry.description, entry.remark)


def _parse_event(entry: _Status) -> TrackingEvent:
    if not entry.timestamp:
        raise ValueError("event without a timestamp")
    return TrackingEvent(
        occurred_at=parse_iso_datetime(entry.timestamp),
        status=_status_of(entry),
        code=clean_text(entry.status_code),
        description=clean_text(entry.description) or clean_text(entry.status) or "",
        location=_location(entry.location),
    )


def _parse_shipment(shipment: _Shipment) -> TrackingDetails:
    events = tuple(_parse_event(e) for e in shipment.events)
    latest = shipment.status
    current = _status_of(latest) if latest else TrackingStatus.UNKNOWN
    status = overall_status(current, events)
    delivered = delivery_event(status, events)
    pod = shipment.details.proof_of_delivery if shipment.details else None
    delivered_at = None
    if status in (TrackingStatus.DELIVERED, TrackingStatus.DELIVERED_TO_LOCKER):
        if pod and pod.timestamp:
            delivered_at = parse_iso_datetime(pod.timestamp)
        elif delivered:
            delivered_at = delivered.occurred_at
        elif latest and latest.timestamp:
            delivered_at = parse_iso_datetime(latest.timestamp)
    product = shipment.details.product if shipment.details else None
    return TrackingDetails(
        carrier=CARRIER,
        tracking_number=shipment.id,
        status=status,
        carrier_status_code=clean_text(latest.status_code) if latest else None,
        carrier_status_text=(
            clean_text(latest.description) or clean_text(latest.status) if latest else None
        ),
        events=events,
        estimated_delivery=(
            parse_iso_datetime(shipment.estimated_delivery)
            if shipment.estimated_delivery and not status.is_final
            else None
        ),
        delivered_at=delivered_at,
        location=(_location(latest.location) if latest else None)
        or (events[0].location if events else None),
        service=clean_text(shipment.service) or (clean_text(product.name) if product else None),
    )


def parse_tracking_response(data: object, tracking_number: str) -> TrackingDetails:
    """The shipment for `tracking_number` in a /track/shipments reply."""
    try:
        reply = _Reply.model_validate(data)
        if not reply.shipments:
            raise TrackingNotFound(f"dhl: no shipment for {tracking_number}", carrier=CARRIER)
        wanted = next(
            (s for s in reply.shipments if normalize_tracking_number(s.id) == tracking_number),
            reply.shipments[0],
        )
        return _parse_shipment(wanted)
    except (ValidationError, ValueError) as exc:
        raise MalformedCarrierResponse(
            f"dhl: tracking reply is not the documented shape ({describe_error(exc)})",
            carrier=CARRIER,
        ) from exc


def parse_error_response(status_code: int, data: object, tracking_number: str) -> CarrierError:
    """The error for a non-200 reply (RFC 7807 problem body)."""
    try:
        problem = _Problem.model_validate(data) if isinstance(data, dict) else _Problem()
    except ValidationError:
        problem = _Problem()
    detail = clean_text(problem.detail) or clean_text(problem.title) or ""
    message = f"dhl: HTTP {status_code} {detail}".strip()
    if status_code == 404:
        return TrackingNotFound(f"{message} ({tracking_number})", carrier=CARRIER)
    if status_code == 400 and "tracking" in detail.lower():
        return InvalidTrackingNumber(message, carrier=CARRIER)
    return CarrierRequestError(message, carrier=CARRIER, status_code=status_code)


def parse_webhook_payload(body: bytes) -> list[TrackingDetails]:
    """A DHL push: one shipment object, or `{"shipments": [...]}` as in the tracking reply."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "shipments" in data:
            shipments = _Reply.model_validate(data).shipments
        else:
            shipments = [_Shipment.model_validate(data)]
        return [_parse_shipment(s) for s in shipments]
    except (ValidationError, ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(
            f"dhl: push body is not the shipment shape ({describe_error(exc)})", carrier=CARRIER
        ) from exc
