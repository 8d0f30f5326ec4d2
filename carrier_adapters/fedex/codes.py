"""FedEx tracking status codes (movement and regulatory) mapped onto the status vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from carrier_adapters.base import TrackingStatus as S

__all__ = ["STATUS_CODES", "TRACKING_ERROR_NOT_FOUND", "status_for"]

# code -> (FedEx definition, normalised status). The possession codes of the same FedEx table
# (CA carrier, RC recipient, SH shipper, CU, BR, TP) say who holds the parcel, not its status,
# and never appear as a status or scan code, so they are not listed.
STATUS_CODES: Mapping[str, tuple[str, S]] = MappingProxyType(
    {
        "OC": ("Order Created", S.PRE_TRANSIT),
        "EP": ("Enroute to Pickup", S.PRE_TRANSIT),
        "AP": ("At Pickup", S.PRE_TRANSIT),
        # Return-label lifecycle: the return shipment does not exist yet, or never will.
        "RP": ("Return label link emailed to return sender", S.PRE_TRANSIT),
        "RG": ("Return label link expiring soon", S.PRE_TRANSIT),
        "LP": ("Return label link cancelled by shipment originator", S.CANCELLED),
        "RD": ("Return label link expired", S.CANCELLED),
        "PU": ("Picked Up", S.IN_TRANSIT),
        "PX": ("Picked up (see Details)", S.IN_TRANSIT),
        "AA": ("At Airport", S.IN_TRANSIT),
        "AC": ("At Canada Post facility", S.IN_TRANSIT),
        "AF": ("At local FedEx Facility", S.IN_TRANSIT),
        "AO": ("Shipment arriving On-time", S.IN_TRANSIT),
        "AR": ("Arrived at FedEx location", S.IN_TRANSIT),
        "AX": ("At USPS facility", S.IN_TRANSIT),
        "CH": ("Location Changed", S.IN_TRANSIT),
        "DP": ("Departed", S.IN_TRANSIT),
        "DR": ("Vehicle furnished but not used", S.IN_TRANSIT),
        "DS": ("Vehicle Dispatched", S.IN_TRANSIT),
        # EA is both "Enroute to Airport" and the regulatory "Export Approved": in transit anyway.
        "EA": ("Enroute to Airport / Export Approved", S.IN_TRANSIT),
        "EO": ("Enroute to Origin Airport", S.IN_TRANSIT),
        "FD": ("At FedEx Destination", S.IN_TRANSIT),
        "IT": ("In Transit", S.IN_TRANSIT),
        "IX": ("In transit (see Details)", S.IN_TRANSIT),
        "LO": ("Left Origin", S.IN_TRANSIT),
        "OF": ("At FedEx origin facility", S.IN_TRANSIT),
        "OW": ("On the way", S.IN_TRANSIT),
        "OX": ("Shipment information sent to USPS", S.IN_TRANSIT),
        "PF": ("Plane in Flight", S.IN_TRANSIT),
        "PL": ("Plane Landed", S.IN_TRANSIT),
        "PM": ("In Progress", S.IN_TRANSIT),
        "SF": ("At Sort Facility", S.IN_TRANSIT),
        "SP": ("Split Status", S.IN_TRANSIT),
        "TR": ("Transfer", S.IN_TRANSIT),
        "CC": ("Cleared Customs", S.IN_TRANSIT),
        "CP": ("Clearance in Progress", S.IN_TRANSIT),
        # Custom delivery options (CDO) change the plan, not where the parcel is.
        "RR": ("CDO requested", S.IN_TRANSIT),
        "RM": ("CDO Modified", S.IN_TRANSIT),
        "RC": ("CDO Cancelled", S.IN_TRANSIT),
        "ED": ("Enroute to Delivery", S.OUT_FOR_DELIVERY),
        "OD": ("Out for Delivery", S.OUT_FOR_DELIVERY),
        "AD": ("At Delivery", S.OUT_FOR_DELIVERY),
        "DL": ("Delivered", S.DELIVERED),
        "HL": ("Hold at Location", S.READY_FOR_PICKUP),
        "HP": ("Ready for Recipient Pickup", S.READY_FOR_PICKUP),
        "DE": ("Delivery Exception", S.EXCEPTION),
        "SE": ("Shipment Exception", S.EXCEPTION),
        "DD": ("Delivery Delay", S.EXCEPTION),
        "DY": ("Delay", S.EXCEPTION),
        "PD": ("Pickup Delay", S.EXCEPTION),
        "CD": ("Clearance Delay", S.EXCEPTION),
        "RS": ("Return to Shipper", S.RETURN_TO_SENDER),
        "CA": ("Shipment Cancelled", S.CANCELLED),
    }
)

TRACKING_ERROR_NOT_FOUND = frozenset(
    {"TRACKING.TRACKINGNUMBER.NOTFOUND", "TRACKING.DATA.NOTFOUND", "TRACKING.REFERENCE.NOTFOUND"}
)


def status_for(*codes: str | None) -> S:
    """Status of the first of `codes` that the table knows (code, then derived code)."""
    for code in codes:
        entry = STATUS_CODES.get((code or "").strip().upper())
        if entry is not None:
            return entry[1]
    return S.UNKNOWN
