"""Pure request builders and response parsers for USPS OAuth 3 and Tracking 3.x."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    overall_status,
)
from carrier_adapters.http import CarrierRequest
from carrier_adapters.parsing import (
    clean_text,
    delivery_event,
    describe_error,
    parse_iso_datetime,
    parse_utc_offset,
)
from carrier_adapters.usps.codes import category_status, event_status

__all__ = [
    "CARRIER",
    "build_token_request",
    "build_tracking_request",
    "parse_error_response",
    "parse_tracking_response",
]

CARRIER = "usps"
OAUTH_PATH = "/oauth2/v3/token"
TRACKING_PATH = "/tracking/v3/tracking/{tracking_number}"


def build_token_request(base_url: str, client_id: str, client_secret: str) -> CarrierRequest:
    return CarrierRequest(
        method="POST",
        url=base_url + OAUTH_PATH,
        headers={"Accept": "application/json"},
        form={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": "tracking",
        },
    )


def build_tracking_request(base_url: str, tracking_number: str) -> CarrierRequest:
    """GET the detailed view: the summary view has no event codes to map."""
    return CarrierRequest(
        method="GET",
        url=base_url + TRACKING_PATH.format(tracking_number=tracking_number),
        headers={"Accept": "application/json"},
        params={"expand": "DETAIL"},
    )


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Event(_Model):
    event_type: str | None = Field(default=None, alias="eventType")
    event_timestamp: str | None = Field(default=None, alias="eventTimestamp")
    gmt_timestamp: str | None = Field(default=None, alias="GMTTimestamp")
    gmt_offset: str | None = Field(default=None, alias="GMTOffset")
    country: str | None = Field(default=None, alias="eventCountry")
    city: str | None = Field(default=None, alias="eventCity")
    state: str | None = Field(default=None, alias="eventState")
    zip_code: str | None = Field(default=None, alias="eventZIP")
    firm: str | None = None
    event_code: str | None = Field(default=None, alias="eventCode")


class _TrackingDetails(_Model):
    tracking_number: str = Field(alias="trackingNumber")
    mail_class: str | None = Field(default=None, alias="mailClass")
    status: str | None = None
    status_category: str | None = Field(default=None, alias="statusCategory")
    status_summary: str | None = Field(default=None, alias="statusSummary")
    expected_delivery: str | None = Field(default=None, alias="expectedDeliveryTimeStamp")
    tracking_events: list[_Event] = Field(default_factory=list, alias="trackingEvents")


class _ErrorSource(_Model):
    parameter: str | None = None


class _ErrorItem(_Model):
    code: str | None = None
    title: str | None = None
    detail: str | None = None
    source: _ErrorSource | None = None


class _ErrorBody(_Model):
    code: str | None = None
    message: str | None = None
    errors: list[_ErrorItem] = Field(default_factory=list)


class _ErrorMessage(_Model):
    error: _ErrorBody | None = None


def _event_time(event: _Event) -> datetime:
    offset = parse_utc_offset(event.gmt_offset)
    if event.gmt_timestamp:
        moment = parse_iso_datetime(event.gmt_timestamp)
        return moment.astimezone(offset) if offset else moment
    if event.event_timestamp:
        return parse_iso_datetime(event.event_timestamp, offset=offset)
    raise ValueError("event without a timestamp")


def _event_location(event: _Event) -> Location | None:
    location = Location(
        city=clean_text(event.city),
        state=clean_text(event.state),
        postal_code=clean_text(event.zip_code),
        # USPS leaves eventCountry empty for domestic scans.
        country_code=clean_text(event.country) or ("US" if event.city or event.zip_code else None),
        description=clean_text(event.firm),
    )
    return None if location.is_empty else location


def _parse_event(event: _Event) -> TrackingEvent:
    return TrackingEvent(
        occurred_at=_event_time(event),
        status=event_status(event.event_code, event.event_type),
        code=clean_text(event.event_code),
        description=clean_text(event.event_type) or "",
        location=_event_location(event),
    )


def parse_tracking_response(data: object) -> TrackingDetails:
    """Normalise a TrackingDetails reply (expand=DETAIL)."""
    try:
        reply = _TrackingDetails.model_validate(data)
        events = tuple(_parse_event(e) for e in reply.tracking_events)
        expected = parse_iso_datetime(reply.expected_delivery) if reply.expected_delivery else None
    except (ValidationError, ValueError) as exc:
        raise MalformedCarrierResponse(
            f"usps: tracking reply is not the documented shape ({describe_error(exc)})",
            carrier=CARRIER,
        ) from exc
    latest = events[0] if events else None
    current = latest.status if latest else TrackingStatus.UNKNOWN
    status = overall_status(current, events)
    if status is TrackingStatus.UNKNOWN:
        status = category_status(reply.status_category, reply.status)
    delivered = delivery_event(status, events)
    located = delivered or latest
    return TrackingDetails(
        carrier=CARRIER,
        tracking_number=reply.tracking_number,
        status=status,
        carrier_status_code=latest.code if latest else None,
        carrier_status_text=clean_text(reply.status) or (latest.description if latest else None),
        events=events,
        estimated_delivery=expected,
        delivered_at=delivered.occurred_at if delivered else None,
        location=located.location if located else None,
        service=clean_text(reply.mail_class),
    )


def parse_error_response(status_code: int, data: object, tracking_number: str) -> CarrierError:
    """The error for a non-200 reply (ErrorMessage body, or anything else)."""
    message = f"HTTP {status_code}"
    parameters: set[str] = set()
    code: str | None = None
    try:
        body = _ErrorMessage.model_validate(data).error
    except ValidationError:
        body = None
    if body is not None:
        code = body.code
        details = [e.detail or e.title for e in body.errors if e.detail or e.title]
        message = "; ".join(filter(None, [body.message, *details])) or message
        parameters = {e.source.parameter for e in body.errors if e.source and e.source.parameter}
    text = f"usps: {message}"
    if status_code == 404:
        return TrackingNotFound(f"{text} ({tracking_number})", carrier=CARRIER)
    if status_code == 400 and "trackingNumber" in parameters:
        return InvalidTrackingNumber(text, carrier=CARRIER)
    return CarrierRequestError(text, carrier=CARRIER, status_code=status_code, carrier_code=code)
