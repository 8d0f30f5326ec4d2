"""DHL unified statusCode values, refined by the event text, mapped onto the status vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from carrier_adapters.base import TrackingStatus as S

__all__ = ["STATUS_CODES", "status_for"]

# The unified API has five coarse codes for every DHL service.
STATUS_CODES: Mapping[str, S] = MappingProxyType(
    {
        "pre-transit": S.PRE_TRANSIT,
        "transit": S.IN_TRANSIT,
        "delivered": S.DELIVERED,
        "failure": S.EXCEPTION,
        "unknown": S.UNKNOWN,
    }
)

# The coarse codes cannot tell a Packstation delivery from a doorstep one, or a return from an
# ordinary failure; the status, description and remark texts can (English and German wording).
RETURN_MARKERS = (
    "returned to sender",
    "return to sender",
    "returned to the sender",
    "being returned",
    "return to shipper",
    "rücksendung",
    "zurückgesendet",
)
LOCKER_MARKERS = ("packstation", "parcel locker", "paketbox", "locker")
PICKUP_MARKERS = (
    "ready for pick",
    "ready for collection",
    "available for pick",
    "can be picked up",
    "awaiting collection",
    "held for pick",
    "abholbereit",
)
OUT_FOR_DELIVERY_MARKERS = (
    "with delivery courier",
    "out for delivery",
    "loaded onto the delivery vehicle",
    "in zustellung",
)
CANCELLED_MARKERS = ("cancelled", "canceled", "storniert")

_MOVING = frozenset({S.IN_TRANSIT, S.UNKNOWN})


def _mentions(text: str, markers: tuple[str, ...]) -> bool:
    return any(marker in text for marker in markers)


def status_for(status_code: str | None, *texts: str | None) -> S:
    """Status from statusCode, refined by the event's status/description/remark texts."""
    coarse = STATUS_CODES.get((status_code or "").strip().lower(), S.UNKNOWN)
    text = " ".join(t.lower() for t in texts if t)
    if not text:
        return coarse
    if coarse is not S.PRE_TRANSIT and _mentions(text, RETURN_MARKERS):
        return S.RETURN_TO_SENDER
    ready = _mentions(text, PICKUP_MARKERS)
    # "On its way to the Packstation" is still in transit; "delivered to" or "ready for pick-up
    # at" the Packstation means the parcel is in the locker.
    if (coarse is S.DELIVERED or (coarse in _MOVING and ready)) and _mentions(text, LOCKER_MARKERS):
        return S.DELIVERED_TO_LOCKER
    if coarse in (S.DELIVERED, *_MOVING) and ready:
        return S.READY_FOR_PICKUP
    if coarse in _MOVING and _mentions(text, OUT_FOR_DELIVERY_MARKERS):
        return S.OUT_FOR_DELIVERY
    if coarse in (S.PRE_TRANSIT, S.EXCEPTION, S.UNKNOWN) and _mentions(text, CANCELLED_MARKERS):
        return S.CANCELLED
    return coarse
