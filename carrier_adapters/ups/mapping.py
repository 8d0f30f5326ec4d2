"""Pure request builders and response parsers for UPS OAuth, Track API v1 and Track Alert."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carrier_adapters.base import (
    CarrierError,
    CarrierRequestError,
    InvalidTrackingNumber,
    Location,
    MalformedCarrierResponse,
    SubscriptionResult,
    TrackingDetails,
    TrackingEvent,
    TrackingNotFound,
    TrackingStatus,
    WebhookPayloadError,
    overall_status,
)
from carrier_adapters.http import CarrierRequest
from carrier_adapters.parsing import (
    clean_text,
    delivery_event,
    describe_error,
    parse_compact_datetime,
    parse_utc_offset,
)
from carrier_adapters.ups.codes import status_for

__all__ = [
    "CARRIER",
    "MAX_SUBSCRIPTION_SIZE",
    "build_subscription_request",
    "build_token_request",
    "build_tracking_request",
    "parse_error_response",
    "parse_subscription_response",
    "parse_tracking_response",
    "parse_webhook_payload",
]

CARRIER = "ups"
OAUTH_PATH = "/security/v1/oauth/token"
TRACKING_PATH = "/api/track/v1/details/{inquiry_number}"
SUBSCRIPTION_PATH = "/api/track/v2/subscription/standard/package"
MAX_SUBSCRIPTION_SIZE = 100


def build_token_request(
    base_url: str, client_id: str, client_secret: str, merchant_id: str | None = None
) -> CarrierRequest:
    """Client credentials go in HTTP Basic (client_secret_basic), the grant in the form."""
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    headers = {"Accept": "application/json", "Authorization": f"Basic {basic}"}
    if merchant_id:
        headers["x-merchant-id"] = merchant_id
    return CarrierRequest(
        method="POST",
        url=base_url + OAUTH_PATH,
        headers=headers,
        form={"grant_type": "client_credentials"},
    )


def build_tracking_request(
    base_url: str,
    inquiry_number: str,
    *,
    transaction_id: str,
    transaction_src: str,
    locale: str = "en_US",
) -> CarrierRequest:
    return CarrierRequest(
        method="GET",
        url=base_url + TRACKING_PATH.format(inquiry_number=inquiry_number),
        headers={
            "Accept": "application/json",
            "transId": transaction_id,
            "transactionSrc": transaction_src,
        },
        params={
            "locale": locale,
            "returnSignature": "false",
            "returnMilestones": "false",
            "returnPOD": "false",
        },
    )


def build_subscription_request(
    base_url: str,
    numbers: Sequence[str],
    *,
    transaction_id: str,
    transaction_src: str,
    locale: str = "en_US",
    country_code: str = "US",
) -> CarrierRequest:
    """Track Alert v2 package subscription; callbacks go to the webhook registered with UPS."""
    if not 1 <= len(numbers) <= MAX_SUBSCRIPTION_SIZE:
        raise ValueError(f"UPS subscribes 1 to {MAX_SUBSCRIPTION_SIZE} numbers per request")
    return CarrierRequest(
        method="POST",
        url=base_url + SUBSCRIPTION_PATH,
        headers={
            "Accept": "application/json",
            "transId": transaction_id,
            "transactionSrc": transaction_src,
        },
        json_body={
            "locale": locale,
            "countryCode": country_code,
            "trackingNumberList": list(numbers),
        },
    )


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _as_text(value: object) -> object:
    # Codes arrive as strings ("011"), but a lenient JSON producer may send numbers.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _Address(_Model):
    address_line1: str | None = Field(default=None, alias="addressLine1")
    city: str | None = None
    state: str | None = Field(default=None, alias="stateProvince")
    postal_code: str | None = Field(default=None, alias="postalCode")
    country: str | None = None
    country_code: str | None = Field(default=None, alias="countryCode")


class _Location(_Model):
    address: _Address | None = None


class _Status(_Model):
    type: str | None = None
    description: str | None = None
    code: str | None = None
    status_code: str | None = Field(default=None, alias="statusCode")

    _text = field_validator("code", "status_code", mode="before")(_as_text)


class _Activity(_Model):
    date: str | None = None
    time: str | None = None
    gmt_date: str | None = Field(default=None, alias="gmtDate")
    gmt_time: str | None = Field(default=None, alias="gmtTime")
    gmt_offset: str | None = Field(default=None, alias="gmtOffset")
    location: _Location | None = None
    status: _Status | None = None

    _text = field_validator("date", "time", "gmt_date", "gmt_time", mode="before")(_as_text)


class _DeliveryDate(_Model):
    type: str | None = None
    date: str | None = None


class _DeliveryTime(_Model):
    type: str | None = None
    start_time: str | None = Field(default=None, alias="startTime")
    end_time: str | None = Field(default=None, alias="endTime")


class _DeliveryInformation(_Model):
    location: str | None = None
    received_by: str | None = Field(default=None, alias="receivedBy")


class _Service(_Model):
    description: str | None = None


class _Package(_Model):
    tracking_number: str | None = Field(default=None, alias="trackingNumber")
    activity: list[_Activity] = Field(default_factory=list)
    current_status: _Status | None = Field(default=None, alias="currentStatus")
    delivery_date: list[_DeliveryDate] = Field(default_factory=list, alias="deliveryDate")
    delivery_time: _DeliveryTime | None = Field(default=None, alias="deliveryTime")
    delivery_information: _DeliveryInformation | None = Field(
        default=None, alias="deliveryInformation"
    )
    service: _Service | None = None


class _Warning(_Model):
    code: str | None = None
    message: str | None = None


class _Shipment(_Model):
    inquiry_number: str | None = Field(default=None, alias="inquiryNumber")
    package: list[_Package] = Field(default_factory=list)
    warnings: list[_Warning] = Field(default_factory=list)


class _TrackResponse(_Model):
    shipment: list[_Shipment]


class _TrackApiResponse(_Model):
    track_response: _TrackResponse = Field(alias="trackResponse")


class _Error(_Model):
    code: str | None = None
    message: str | None = None


class _Errors(_Model):
    errors: list[_Error] = Field(default_factory=list)


class _ErrorResponse(_Model):
    response: _Errors


def _location(address: _Address | None) -> Location | None:
    if address is None:
        return None
    location = Location(
        city=clean_text(address.city),
        state=clean_text(address.state),
        postal_code=clean_text(address.postal_code),
        country_code=clean_text(address.country_code) or clean_text(address.country),
    )
    return None if location.is_empty else location


def _activity_time(activity: _Activity) -> datetime:
    offset = parse_utc_offset(activity.gmt_offset)
    if activity.gmt_date and activity.gmt_time:
        moment = parse_compact_datetime(activity.gmt_date, activity.gmt_time)
        return moment.astimezone(offset) if offset else moment
    if activity.date:
        return parse_compact_datetime(activity.date, activity.time, offset=offset)
    raise ValueError("activity without a date")


def _parse_activity(activity: _Activity) -> TrackingEvent:
    status = activity.status or _Status()
    return TrackingEvent(
        occurred_at=_activity_time(activity),
        status=status_for(status.status_code, status.type),
        code=clean_text(status.status_code) or clean_text(status.code),
        description=clean_text(status.description) or "",
        location=_location(activity.location.address if activity.location else None),
    )


def _estimated_delivery(package: _Package, tz: timezone | None) -> datetime | None:
    # UPS gives the date and the window end in the destination's local time without an offset;
    # the offset of the newest scan is the best available guess for that zone.
    chosen = next((d for d in package.delivery_date if d.type == "RDD" and d.date), None) or next(
        (d for d in package.delivery_date if d.type == "SDD" and d.date), None
    )
    if chosen is None or chosen.date is None:
        return None
    end = package.delivery_time.end_time if package.delivery_time else None
    return parse_compact_datetime(chosen.date, end or "235959", offset=tz)


def _parse_package(package: _Package, inquiry: str | None) -> TrackingDetails:
    events = tuple(_parse_activity(a) for a in package.activity)
    current = package.current_status
    current_status = (
        status_for(current.status_code, current.type) if current else TrackingStatus.UNKNOWN
    )
    status = overall_status(current_status, events)
    delivered = delivery_event(status, events)
    newest = events[0] if events else None
    tz = newest.occurred_at.tzinfo if newest else None
    located = delivered or newest
    location = located.location if located else None
    info = package.delivery_information
    if delivered and info and info.location and location is not None:
        location = Location(
            city=location.city,
            state=location.state,
            postal_code=location.postal_code,
            country_code=location.country_code,
            description=clean_text(info.location),
        )
    return TrackingDetails(
        carrier=CARRIER,
        tracking_number=package.tracking_number or inquiry or "",
        status=status,
        carrier_status_code=(
            clean_text(current.status_code) or clean_text(current.code) if current else None
        ),
        carrier_status_text=clean_text(current.description) if current else None,
        events=events,
        estimated_delivery=(
            None
            if status.is_final
            else _estimated_delivery(package, tz if isinstance(tz, timezone) else None)
        ),
        delivered_at=delivered.occurred_at if delivered else None,
        location=location,
        service=clean_text(package.service.description) if package.service else None,
    )


def parse_tracking_response(data: object, inquiry_number: str) -> TrackingDetails:
    """The package of a Track API reply; a reply with only warnings means not found."""
    try:
        reply = _TrackApiResponse.model_validate(data)
        shipments = reply.track_response.shipment
        packages = [(p, s.inquiry_number) for s in shipments for p in s.package]
        if not packages:
            warnings = [w.message or w.code for s in shipments for w in s.warnings]
            detail = "; ".join(filter(None, warnings)) or "no package in reply"
            raise TrackingNotFound(f"ups: {detail} ({inquiry_number})", carrier=CARRIER)
        wanted = next(
            (p for p in packages if (p[0].tracking_number or "").upper() == inquiry_number),
            packages[0],
        )
        return _parse_package(*wanted)
    except (ValidationError, ValueError) as exc:
        raise MalformedCarrierResponse(
            f"ups: tracking reply is not the documented shape ({describe_error(exc)})",
            carrier=CARRIER,
        ) from exc


def parse_error_response(status_code: int, data: object, inquiry_number: str) -> CarrierError:
    """The error for a non-200 Track API reply (`response.errors[]`)."""
    try:
        errors = _ErrorResponse.model_validate(data).response.errors
    except ValidationError:
        errors = []
    first = errors[0] if errors else _Error()
    message = f"ups: HTTP {status_code} {clean_text(first.message) or first.code or ''}".strip()
    if status_code == 404:
        return TrackingNotFound(f"{message} ({inquiry_number})", carrier=CARRIER)
    text = (first.message or "").lower()
    if status_code == 400 and "invalid" in text and ("number" in text or "inquiry" in text):
        return InvalidTrackingNumber(message, carrier=CARRIER)
    return CarrierRequestError(
        message, carrier=CARRIER, status_code=status_code, carrier_code=first.code
    )


class _SubscriptionReply(_Model):
    valid: list[str] = Field(default_factory=list, alias="validTrackingNumbers")
    invalid: list[str] = Field(default_factory=list, alias="invalidTrackingNumbers")


def parse_subscription_response(data: object) -> SubscriptionResult:
    """Accepted and refused numbers of a Track Alert subscription reply."""
    try:
        reply = _SubscriptionReply.model_validate(data)
    except ValidationError as exc:
        raise MalformedCarrierResponse(
            f"ups: subscription reply is not the documented shape ({describe_error(exc)})",
            carrier=CARRIER,
        ) from exc
    return SubscriptionResult(accepted=tuple(reply.valid), rejected=tuple(reply.invalid))


class _AlertLocation(_Model):
    city: str | None = None
    state: str | None = Field(default=None, alias="stateProvince")
    postal_code: str | None = Field(default=None, alias="postalCode")
    country: str | None = None


class _AlertStatus(_Model):
    type: str | None = None
    code: str | None = None
    description: str | None = None
    description_code: str | None = Field(default=None, alias="descriptionCode")

    _text = field_validator("code", "description_code", mode="before")(_as_text)


class _TrackingEventRequest(_Model):
    tracking_number: str = Field(alias="trackingNumber")
    local_date: str | None = Field(default=None, alias="localActivityDate")
    local_time: str | None = Field(default=None, alias="localActivityTime")
    gmt_date: str | None = Field(default=None, alias="gmtActivityDate")
    gmt_time: str | None = Field(default=None, alias="gmtActivityTime")
    gmt_offset: str | None = Field(default=None, alias="gmtOffset")
    location: _AlertLocation | None = Field(default=None, alias="activityLocation")
    status: _AlertStatus = Field(alias="activityStatus")
    scheduled_delivery_date: str | None = Field(default=None, alias="scheduledDeliveryDate")
    actual_delivery_date: str | None = Field(default=None, alias="actualDeliveryDate")
    actual_delivery_time: str | None = Field(default=None, alias="actualDeliveryTime")
    delivery_end_time: str | None = Field(default=None, alias="deliveryEndTime")

    _text = field_validator(
        "local_date",
        "local_time",
        "gmt_date",
        "gmt_time",
        "scheduled_delivery_date",
        "actual_delivery_date",
        "actual_delivery_time",
        "delivery_end_time",
        mode="before",
    )(_as_text)


def _alert_time(alert: _TrackingEventRequest, offset: timezone | None) -> datetime:
    if alert.gmt_date and alert.gmt_time:
        moment = parse_compact_datetime(alert.gmt_date, alert.gmt_time)
        if offset is None and alert.local_date and alert.local_time:
            # No gmtOffset in the message: the local and GMT times together give it.
            local = parse_compact_datetime(alert.local_date, alert.local_time)
            offset = timezone(local - moment)
        return moment.astimezone(offset) if offset else moment
    if alert.local_date:
        return parse_compact_datetime(alert.local_date, alert.local_time, offset=offset)
    raise ValueError("activity without a date")


def parse_webhook_payload(body: bytes) -> list[TrackingDetails]:
    """A Track Alert TrackingEvent callback: one event for one package."""
    try:
        alert = _TrackingEventRequest.model_validate(json.loads(body))
        offset = parse_utc_offset(alert.gmt_offset)
        occurred_at = _alert_time(alert, offset)
        tz = occurred_at.tzinfo if isinstance(occurred_at.tzinfo, timezone) else None
        status = status_for(alert.status.description_code, alert.status.type)
        location = None
        if alert.location:
            location = Location(
                city=clean_text(alert.location.city),
                state=clean_text(alert.location.state),
                postal_code=clean_text(alert.location.postal_code),
                country_code=clean_text(alert.location.country),
            )
            location = None if location.is_empty else location
        event = TrackingEvent(
            occurred_at=occurred_at,
            status=status,
            code=clean_text(alert.status.description_code) or clean_text(alert.status.code),
            description=clean_text(alert.status.description) or "",
            location=location,
        )
        delivered_at = (
            parse_compact_datetime(
                alert.actual_delivery_date, alert.actual_delivery_time, offset=tz
            )
            if alert.actual_delivery_date
            else None
        )
        estimated = (
            parse_compact_datetime(
                alert.scheduled_delivery_date, alert.delivery_end_time or "235959", offset=tz
            )
            if alert.scheduled_delivery_date and not status.is_final
            else None
        )
    except (ValidationError, ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(
            f"ups: push body is not a Track Alert event ({describe_error(exc)})", carrier=CARRIER
        ) from exc
    return [
        TrackingDetails(
            carrier=CARRIER,
            tracking_number=alert.tracking_number,
            status=status,
            carrier_status_code=event.code,
            carrier_status_text=event.description or None,
            events=(event,),
            estimated_delivery=estimated,
            delivered_at=delivered_at,
            location=location,
        )
    ]
