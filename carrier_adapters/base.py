"""The CarrierAdapter protocol, shared tracking models, the status vocabulary and the errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = [
    "Capability",
    "CarrierAdapter",
    "CarrierAuthError",
    "CarrierError",
    "CarrierRateLimited",
    "CarrierRequestError",
    "CarrierTimeout",
    "CarrierUnavailable",
    "InvalidTrackingNumber",
    "Location",
    "MalformedCarrierResponse",
    "SubscriptionResult",
    "TrackingDetails",
    "TrackingEvent",
    "TrackingNotFound",
    "TrackingStatus",
    "UnsupportedCapability",
    "WebhookPayloadError",
    "overall_status",
]


class TrackingStatus(StrEnum):
    """The one status vocabulary every carrier's codes are mapped onto."""

    PRE_TRANSIT = "pre_transit"
    """Label created or shipment data received; the carrier does not have the parcel yet."""
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    """Delivered to the recipient's address or handed to the recipient."""
    DELIVERED_TO_LOCKER = "delivered_to_locker"
    """Delivered into a parcel locker or an access point, where the recipient collects it."""
    READY_FOR_PICKUP = "ready_for_pickup"
    """Held for the recipient to collect (hold at location, post office, counter)."""
    EXCEPTION = "exception"
    """Delay, failed attempt, damage, refusal or anything else that needs attention."""
    RETURN_TO_SENDER = "return_to_sender"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    """No status, or an informational event that says nothing about where the parcel is."""

    @property
    def is_final(self) -> bool:
        """Whether the carrier will report nothing further that matters for a locker."""
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {
        TrackingStatus.DELIVERED,
        TrackingStatus.DELIVERED_TO_LOCKER,
        TrackingStatus.RETURN_TO_SENDER,
        TrackingStatus.CANCELLED,
    }
)


class Capability(StrEnum):
    """What an adapter can do; callers check these instead of catching 'not supported'."""

    TRACKING = "tracking"
    """`track` and `track_many` (one request per number unless BATCH_TRACKING)."""
    BATCH_TRACKING = "batch_tracking"
    """`track_many` sends up to `max_batch_size` numbers per request."""
    WEBHOOK_VERIFY = "webhook_verify"
    """`verify_webhook` and `parse_webhook` for the carrier's inbound pushes."""
    PUSH_SUBSCRIBE = "push_subscribe"
    """`subscribe` asks the carrier to push events for tracking numbers."""


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where an event happened, as precisely as the carrier said."""

    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country_code: str | None = None
    description: str | None = None
    """Free text the carrier gives instead of (or beside) structured fields."""

    @property
    def is_empty(self) -> bool:
        return not any(
            (self.city, self.state, self.postal_code, self.country_code, self.description)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingEvent:
    """One scan or status change reported by a carrier."""

    occurred_at: datetime
    status: TrackingStatus
    code: str | None
    """The carrier's own code for the event, for display and diagnosis."""
    description: str
    location: Location | None = None

    def __post_init__(self) -> None:
        _require_aware(self.occurred_at, "occurred_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingDetails:
    """What a carrier knows about one tracking number, normalised."""

    carrier: str
    tracking_number: str
    status: TrackingStatus
    carrier_status_code: str | None = None
    carrier_status_text: str | None = None
    events: tuple[TrackingEvent, ...] = ()
    """Newest first."""
    estimated_delivery: datetime | None = None
    delivered_at: datetime | None = None
    location: Location | None = None
    """Delivery or pickup location when known, else where the latest event happened."""
    service: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.estimated_delivery, "estimated_delivery")
        _require_aware(self.delivered_at, "delivered_at")
        ordered = tuple(sorted(self.events, key=lambda e: e.occurred_at, reverse=True))
        if ordered != self.events:
            object.__setattr__(self, "events", ordered)

    @property
    def latest_event(self) -> TrackingEvent | None:
        return self.events[0] if self.events else None


@dataclass(frozen=True, slots=True)
class SubscriptionResult:
    """The carrier's answer to a push subscription request."""

    accepted: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()


def overall_status(current: TrackingStatus, events: Iterable[TrackingEvent]) -> TrackingStatus:
    """The carrier's current status, or the newest event that says something when it does not."""
    if current is not TrackingStatus.UNKNOWN:
        return current
    ordered = sorted(events, key=lambda e: e.occurred_at, reverse=True)
    return next(
        (e.status for e in ordered if e.status is not TrackingStatus.UNKNOWN),
        TrackingStatus.UNKNOWN,
    )


# --- errors ---------------------------------------------------------------------------------------


class CarrierError(Exception):
    """Base of every error this package raises."""

    def __init__(self, message: str, *, carrier: str | None = None) -> None:
        super().__init__(message)
        self.carrier = carrier


class CarrierAuthError(CarrierError, PermissionError):
    """The carrier refused our credentials (after one token refresh) or our access."""


class CarrierRateLimited(CarrierError):
    """The carrier said too many requests, or our own budget for it is spent."""

    def __init__(
        self, message: str, *, carrier: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, carrier=carrier)
        self.retry_after = retry_after
        """Seconds to wait before the next call, when known."""


class TrackingNotFound(CarrierError, LookupError):
    """The carrier has no record of the tracking number (yet)."""


class InvalidTrackingNumber(CarrierError, ValueError):
    """The tracking number is malformed, or the carrier says so."""


class CarrierUnavailable(CarrierError, ConnectionError):
    """The carrier could not be reached or kept failing with server errors."""


class CarrierTimeout(CarrierUnavailable, TimeoutError):
    """The carrier did not answer in time."""


class MalformedCarrierResponse(CarrierError, ValueError):
    """The carrier answered with something that is not the documented shape."""


class CarrierRequestError(CarrierError):
    """The carrier rejected the request for a reason other than those above (a 4xx)."""

    def __init__(
        self,
        message: str,
        *,
        carrier: str | None = None,
        status_code: int | None = None,
        carrier_code: str | None = None,
    ) -> None:
        super().__init__(message, carrier=carrier)
        self.status_code = status_code
        self.carrier_code = carrier_code


class WebhookPayloadError(MalformedCarrierResponse):
    """An inbound push body is not the documented shape."""


class UnsupportedCapability(CarrierError, NotImplementedError):
    """A method was called that the adapter's capabilities do not include: a caller bug."""


# --- the protocol ---------------------------------------------------------------------------------


class CarrierAdapter(Protocol):
    """One carrier integration. Methods outside `capabilities` raise UnsupportedCapability."""

    @property
    def carrier_id(self) -> str:
        """Lower-case id: "usps", "fedex", "ups", "dhl"."""
        ...

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    @property
    def max_batch_size(self) -> int:
        """Numbers per request in `track_many`; 1 without BATCH_TRACKING."""
        ...

    def recognizes(self, tracking_number: str) -> bool:
        """Whether the number is a valid format of this carrier (no I/O)."""
        ...

    async def track(self, tracking_number: str) -> TrackingDetails:
        """Fetch and normalise tracking for one number.

        Raises TrackingNotFound, InvalidTrackingNumber, CarrierAuthError, CarrierRateLimited
        (with `retry_after`), CarrierUnavailable/CarrierTimeout, MalformedCarrierResponse.
        """
        ...

    async def track_many(
        self, tracking_numbers: Sequence[str]
    ) -> dict[str, TrackingDetails | CarrierError]:
        """Track several numbers, keyed by normalised number.

        Per-number outcomes (not found, invalid) are values; failures of the whole call (auth,
        rate limit, carrier down) raise.
        """
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether an inbound push really comes from the carrier (constant-time comparison)."""
        ...

    def parse_webhook(self, body: bytes) -> list[TrackingDetails]:
        """Normalise a verified push body; raises WebhookPayloadError on a malformed body."""
        ...

    async def subscribe(self, tracking_numbers: Sequence[str]) -> SubscriptionResult:
        """Ask the carrier to push events for these numbers (PUSH_SUBSCRIBE)."""
        ...
