"""USPS scan event codes (Publication 199, Appendix G-4) mapped onto the status vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from carrier_adapters.base import TrackingStatus as S

__all__ = ["EVENT_CODES", "STATUS_CATEGORIES", "category_status", "event_status"]

# code -> (USPS description, normalised status)
EVENT_CODES: Mapping[str, tuple[str, S]] = MappingProxyType(
    {
        "MA": ("Manifest Acknowledgement (pre-shipment information received)", S.PRE_TRANSIT),
        "TM": ("Shipment Acceptance (truck manifest)", S.IN_TRANSIT),
        "PA": ("Shipment Acceptance (passive)", S.IN_TRANSIT),
        "03": ("Accept or Pickup", S.IN_TRANSIT),
        "80": ("Picked Up by Shipping Partner", S.IN_TRANSIT),
        "81": ("Arrived Shipping Partner Facility", S.IN_TRANSIT),
        "82": ("Departed Shipping Partner Facility", S.IN_TRANSIT),
        "42": ("USPS Handoff to Shipping Partner", S.IN_TRANSIT),
        "10": ("Processed", S.IN_TRANSIT),
        "PC": ("Sorting / Processing Complete", S.IN_TRANSIT),
        "EF": ("Departed Sort Facility", S.IN_TRANSIT),
        "SF": ("Departed Post Office", S.IN_TRANSIT),
        "07": ("Arrival at Unit", S.IN_TRANSIT),
        "06": ("Forwarded", S.IN_TRANSIT),
        "19": ("DC eVS Arrive", S.IN_TRANSIT),
        "41": ("Received at Opening Unit", S.IN_TRANSIT),
        # Arrived where it will be offered for pickup, but not yet offered.
        "14": ("Arrival at Pickup Point", S.IN_TRANSIT),
        "OF": ("Out for Delivery", S.OUT_FOR_DELIVERY),
        # Code 01 covers every kind of delivery; the event type says which (see event_status).
        "01": ("Delivered", S.DELIVERED),
        "17": ("Picked Up By Agent", S.DELIVERED),
        "43": ("Picked Up", S.DELIVERED),
        "16": ("Available for Pickup", S.READY_FOR_PICKUP),
        "02": ("Attempted / Notice Left", S.EXCEPTION),
        "52": ("Notice Left", S.EXCEPTION),
        "53": ("Receptacle Blocked", S.EXCEPTION),
        "54": ("Receptacle Full / Item Oversized", S.EXCEPTION),
        "55": ("No Secure Location Available", S.EXCEPTION),
        "56": ("No Authorized Recipient Available", S.EXCEPTION),
        "30": ("Delivery Attempted - No Access to Delivery Location", S.EXCEPTION),
        "51": ("Business Closed", S.EXCEPTION),
        "71": ("Rescheduled to Next Delivery Day", S.EXCEPTION),
        "04": ("Refused", S.EXCEPTION),
        "05": ("Undeliverable as Addressed", S.EXCEPTION),
        "08": ("Missent", S.EXCEPTION),
        "15": ("Mis-shipped", S.EXCEPTION),
        "11": ("Dead Letter", S.EXCEPTION),
        "09": ("Return to Sender", S.RETURN_TO_SENDER),
        "21": ("Return to Sender: No Such Number", S.RETURN_TO_SENDER),
        "22": ("Return to Sender: Insufficient Address", S.RETURN_TO_SENDER),
        "23": ("Return to Sender: Moved, Left No Address", S.RETURN_TO_SENDER),
        "24": ("Return to Sender: Forward Expired", S.RETURN_TO_SENDER),
        "25": ("Return to Sender: Addressee Unknown", S.RETURN_TO_SENDER),
        "26": ("Return to Sender: Vacant", S.RETURN_TO_SENDER),
        "27": ("Return to Sender: Unclaimed", S.RETURN_TO_SENDER),
        "28": ("Return to Sender: Deceased", S.RETURN_TO_SENDER),
        "29": ("Return to Sender: Other", S.RETURN_TO_SENDER),
        "31": ("Return to Sender: Not Picked Up", S.RETURN_TO_SENDER),
        "44": ("Customer Recall", S.RETURN_TO_SENDER),
        "DX": ("Delivery Status Not Updated", S.UNKNOWN),
    }
)

# statusCategory of the tracking reply, for replies whose events say nothing usable.
STATUS_CATEGORIES: Mapping[str, S] = MappingProxyType(
    {
        "label created, not yet in system": S.PRE_TRANSIT,
        "pre-shipment": S.PRE_TRANSIT,
        "accepted": S.IN_TRANSIT,
        "in transit": S.IN_TRANSIT,
        "usps in possession of item": S.IN_TRANSIT,
        "out for delivery": S.OUT_FOR_DELIVERY,
        "delivered": S.DELIVERED,
        "available for pickup": S.READY_FOR_PICKUP,
        "delivery attempt": S.EXCEPTION,
        "alert": S.EXCEPTION,
        "return to sender": S.RETURN_TO_SENDER,
    }
)

_LOCKER_MARKERS = ("parcel locker", "smart locker", "gopost")


def _mentions_locker(text: str | None) -> bool:
    lowered = (text or "").lower()
    return any(marker in lowered for marker in _LOCKER_MARKERS)


def event_status(code: str | None, event_type: str | None) -> S:
    """Status of one event; a delivery whose type names a parcel locker is a locker delivery."""
    entry = EVENT_CODES.get((code or "").strip().upper())
    status = entry[1] if entry else S.UNKNOWN
    if status is S.UNKNOWN and event_type:
        status = category_status(event_type.split(",")[0])
    if status is S.DELIVERED and _mentions_locker(event_type):
        return S.DELIVERED_TO_LOCKER
    return status


def category_status(category: str | None, status_text: str | None = None) -> S:
    """Status from the reply's statusCategory (and its status line for locker deliveries)."""
    status = STATUS_CATEGORIES.get((category or "").strip().lower(), S.UNKNOWN)
    if status is S.DELIVERED and _mentions_locker(status_text):
        return S.DELIVERED_TO_LOCKER
    return status
