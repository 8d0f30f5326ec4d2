"""Pure request builders and response parsers for FedEx OAuth and the Track API."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    WebhookPayloadError,
    overall_status,
)
from carrier_adapters.fedex.codes import TRACKING_ERROR_NOT_FOUND, status_for
from carrier_adapters.http import CarrierRequest
from carrier_adapters.parsing import clean_text, delivery_event, describe_error, parse_iso_datetime
from carrier_adapters.tracking_numbers import normalize_tracking_number

__all__ = [
    "CARRIER",
    "MAX_BATCH_SIZE",
    "build_token_request",
    "build_tracking_request",
    "parse_error_response",
    "parse_tracking_response",
    "parse_webhook_payload",
    "split_batches",
]

CARRIER = "fedex"
OAUTH_PATH = "/oauth/token"
TRACKING_PATH = "/track/v1/trackingnumbers"
MAX_BATCH_SIZE = 30


def build_token_request(base_url: str, client_id: str, client_secret: str) -> CarrierRequest:
    return CarrierRequest(
        method="POST",
        url=base_url + OAUTH_PATH,
        headers={"Accept": "application/json"},
        form={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )


def split_batches(numbers: Sequence[str], size: int = MAX_BATCH_SIZE) -> list[list[str]]:
    """Groups of at most `size` numbers: the Track API takes 30 per request."""
    return [list(numbers[i : i + size]) for i in range(0, len(numbers), size)]


def build_tracking_request(base_url: str, numbers: Sequence[str], locale: str) -> CarrierRequest:
    if not 1 <= len(numbers) <= MAX_BATCH_SIZE:
        raise ValueError(f"FedEx tracks 1 to {MAX_BATCH_SIZE} numbers per request")
    return CarrierRequest(
        method="POST",
        url=base_url + TRACKING_PATH,
        headers={"Accept": "application/json", "X-locale": locale},
        json_body={
            "includeDetailedScans": True,
            "trackingInfo": [{"trackingNumberInfo": {"trackingNumber": n}} for n in numbers],
        },
    )


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Address(_Model):
    street_lines: list[str] = Field(default_factory=list, alias="streetLines")
    city: str | None = None
    state: str | None = Field(default=None, alias="stateOrProvinceCode")
    postal_code: str | None = Field(default=None, alias="postalCode")
    country_code: str | None = Field(default=None, alias="countryCode")


class _ContactAndAddress(_Model):
    address: _Address | None = None


class _LocationDetail(_Model):
    location_id: str | None = Field(default=None, alias="locationId")
    contact_and_address: _ContactAndAddress | None = Field(
        default=None, alias="locationContactAndAddress"
    )


class _StatusDetail(_Model):
    code: str | None = None
    derived_code: str | None = Field(default=None, alias="derivedCode")
    description: str | None = None
    status_by_locale: str | None = Field(default=None, alias="statusByLocale")
    scan_location: _Address | None = Field(default=None, alias="scanLocation")


class _ScanEvent(_Model):
    date: str
    event_type: str | None = Field(default=None, alias="eventType")
    event_description: str | None = Field(default=None, alias="eventDescription")
    derived_status_code: str | None = Field(default=None, alias="derivedStatusCode")
    exception_description: str | None = Field(default=None, alias="exceptionDescription")
    scan_location: _Address | None = Field(default=None, alias="scanLocation")


class _DateAndTime(_Model):
    type: str | None = None
    date_time: str | None = Field(default=None, alias="dateTime")


class _Window(_Model):
    begins: str | None = None
    ends: str | None = None


class _TimeWindow(_Model):
    window: _Window | None = None


class _Error(_Model):
    code: str | None = None
    message: str | None = None


class _ServiceDetail(_Model):
    description: str | None = None
    type: str | None = None


class _DeliveryDetails(_Model):
    actual_delivery_address: _Address | None = Field(default=None, alias="actualDeliveryAddress")
    location_description: str | None = Field(default=None, alias="locationDescription")


class _NumberInfo(_Model):
    tracking_number: str | None = Field(default=None, alias="trackingNumber")


class _TrackResult(_Model):
    tracking_number_info: _NumberInfo | None = Field(default=None, alias="trackingNumberInfo")
    latest_status_detail: _StatusDetail | None = Field(default=None, alias="latestStatusDetail")
    scan_events: list[_ScanEvent] = Field(default_factory=list, alias="scanEvents")
    date_and_times: list[_DateAndTime] = Field(default_factory=list, alias="dateAndTimes")
    estimated_window: _TimeWindow | None = Field(default=None, alias="estimatedDeliveryTimeWindow")
    service_detail: _ServiceDetail | None = Field(default=None, alias="serviceDetail")
    delivery_details: _DeliveryDetails | None = Field(default=None, alias="deliveryDetails")
    hold_at_location: _LocationDetail | None = Field(default=None, alias="holdAtLocation")
    error: _Error | None = None


class _CompleteTrackResult(_Model):
    tracking_number: str | None = Field(default=None, alias="trackingNumber")
    track_results: list[_TrackResult] = Field(default_factory=list, alias="trackResults")


class _Output(_Model):
    complete_track_results: list[_CompleteTrackResult] = Field(alias="completeTrackResults")


class _Reply(_Model):
    output: _Output


class _ErrorReply(_Model):
    errors: list[_Error] = Field(default_factory=list)


def _location(address: _Address | None, description: str | None = None) -> Location | None:
    if address is None and not description:
        return None
    street = ", ".join(address.street_lines) if address and address.street_lines else None
    location = Location(
        city=clean_text(address.city) if address else None,
        state=clean_text(address.state) if address else None,
        postal_code=clean_text(address.postal_code) if address else None,
        country_code=clean_text(address.country_code) if address else None,
        description=clean_text(description) or clean_text(street),
    )
    return None if location.is_empty else location


def _parse_event(event: _ScanEvent) -> TrackingEvent:
    description = clean_text(event.event_description) or ""
    if event.exception_description:
        description = f"{description}: {clean_text(event.exception_description)}".lstrip(": ")
    return TrackingEvent(
        occurred_at=parse_iso_datetime(event.date),
        status=status_for(event.event_type, event.derived_status_code),
        code=clean_text(event.event_type) or clean_text(event.derived_status_code),
        description=description,
        location=_location(event.scan_location),
    )


def _date_of(result: _TrackResult, kind: str) -> datetime | None:
    for entry in result.date_and_times:
        if entry.type == kind and entry.date_time:
            return parse_iso_datetime(entry.date_time)
    return None


def _error_for(number: str, error: _Error) -> CarrierError:
    message = f"fedex: {clean_text(error.message) or error.code} ({number})"
    code = (error.code or "").upper()
    if code in TRACKING_ERROR_NOT_FOUND:
        return TrackingNotFound(message, carrier=CARRIER)
    if "TRACKINGNUMBER" in code:
        return InvalidTrackingNumber(message, carrier=CARRIER)
    return CarrierRequestError(message, carrier=CARRIER, carrier_code=error.code)


def _parse_result(requested: str | None, result: _TrackResult) -> TrackingDetails | CarrierError:
    number = (
        (result.tracking_number_info.tracking_number if result.tracking_number_info else None)
        or requested
        or ""
    )
    if result.error is not None:
        return _error_for(number, result.error)
    events = tuple(_parse_event(e) for e in result.scan_events)
    latest = result.latest_status_detail
    current = status_for(latest.code, latest.derived_code) if latest else TrackingStatus.UNKNOWN
    status = overall_status(current, events)
    delivered = delivery_event(status, events)
    delivered_at = (
        (delivered.occurred_at if delivered else None) or _date_of(result, "ACTUAL_DELIVERY")
        if status in (TrackingStatus.DELIVERED, TrackingStatus.DELIVERED_TO_LOCKER)
        else None
    )
    estimated = None if status.is_final else _date_of(result, "ESTIMATED_DELIVERY")
    if (
        estimated is None
        and not status.is_final
        and result.estimated_window
        and result.estimated_window.window
    ):
        ends = result.estimated_window.window.ends
        estimated = parse_iso_datetime(ends) if ends else None
    location: Location | None
    if status is TrackingStatus.READY_FOR_PICKUP and result.hold_at_location:
        held = result.hold_at_location
        address = held.contact_and_address.address if held.contact_and_address else None
        location = _location(address, held.location_id)
    elif status is TrackingStatus.DELIVERED and result.delivery_details:
        details = result.delivery_details
        location = _location(details.actual_delivery_address, details.location_description)
    else:
        location = (_location(latest.scan_location) if latest else None) or (
            events[0].location if events else None
        )
    return TrackingDetails(
        carrier=CARRIER,
        tracking_number=number,
        status=status,
        carrier_status_code=clean_text(latest.code) if latest else None,
        carrier_status_text=(
            clean_text(latest.description) or clean_text(latest.status_by_locale)
            if latest
            else None
        ),
        events=events,
        estimated_delivery=estimated,
        delivered_at=delivered_at,
        location=location,
        service=(
            clean_text(result.service_detail.description or result.service_detail.type)
            if result.service_detail
            else None
        ),
    )


def _parse_complete(item: _CompleteTrackResult) -> tuple[str, TrackingDetails | CarrierError]:
    key = normalize_tracking_number(item.tracking_number or "")
    if not item.track_results:
        return key, TrackingNotFound(f"fedex: no results for {key}", carrier=CARRIER)
    # Several results mean FedEx reused the number; the first is the most recent shipment.
    parsed = _parse_result(item.tracking_number, item.track_results[0])
    if not key and isinstance(parsed, TrackingDetails):
        key = normalize_tracking_number(parsed.tracking_number)
    return key, parsed


def parse_tracking_response(data: object) -> dict[str, TrackingDetails | CarrierError]:
    """Results of a Track by Tracking Number reply, keyed by normalised tracking number."""
    try:
        reply = _Reply.model_validate(data)
        return dict(_parse_complete(item) for item in reply.output.complete_track_results)
    except (ValidationError, ValueError) as exc:
        raise MalformedCarrierResponse(
            f"fedex: tracking reply is not the documented shape ({describe_error(exc)})",
            carrier=CARRIER,
        ) from exc


def parse_error_response(status_code: int, data: object) -> CarrierError:
    """The error for a non-200 reply of the Track API (ErrorResponseVO body)."""
    try:
        errors = _ErrorReply.model_validate(data).errors
    except ValidationError:
        errors = []
    first = errors[0] if errors else _Error()
    message = f"fedex: HTTP {status_code} {clean_text(first.message) or first.code or ''}".strip()
    code = (first.code or "").upper()
    if status_code == 400 and "TRACKINGNUMBER" in code:
        return InvalidTrackingNumber(message, carrier=CARRIER)
    return CarrierRequestError(
        message, carrier=CARRIER, status_code=status_code, carrier_code=first.code
    )


def parse_webhook_payload(body: bytes) -> list[TrackingDetails]:
    """A FedEx push, which carries the track reply shape at one of its levels.

    Accepted: the whole reply (`output.completeTrackResults`), its `output`, one complete result
    (`trackingNumber` + `trackResults`), or one bare track result.
    """
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("push body is not a JSON object")
        if "output" in data:
            items = _Reply.model_validate(data).output.complete_track_results
        elif "completeTrackResults" in data:
            items = _Output.model_validate(data).complete_track_results
        elif "trackResults" in data:
            items = [_CompleteTrackResult.model_validate(data)]
        elif "trackingNumberInfo" in data:
            items = [_CompleteTrackResult.model_validate({"trackResults": [data]})]
        else:
            raise ValueError("no track results in push body")
        parsed = [_parse_complete(item)[1] for item in items]
    except (ValidationError, ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(
            f"fedex: push body is not the track reply shape ({describe_error(exc)})",
            carrier=CARRIER,
        ) from exc
    return [p for p in parsed if isinstance(p, TrackingDetails)]
