"""UPS status description codes and activity types mapped onto the status vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from carrier_adapters.base import TrackingStatus as S

__all__ = ["ACTIVITY_TYPES", "STATUS_CODES", "status_for"]

_PRE = S.PRE_TRANSIT
_MOVE = S.IN_TRANSIT
_OUT = S.OUT_FOR_DELIVERY
_EXC = S.EXCEPTION
_RTS = S.RETURN_TO_SENDER
# Requests, confirmations and updates that change the plan but not where the parcel is; the
# overall status then comes from the newest event that does say something.
_INFO = S.UNKNOWN

# Status/description code (as UPS publishes it, without leading zeros) -> (text, status).
STATUS_CODES: Mapping[str, tuple[str, S]] = MappingProxyType(
    {
        "0": ("Status Not Available", S.UNKNOWN),
        "3": ("Shipment Ready for UPS", _PRE),
        "5": ("On the Way", _MOVE),
        "6": ("Out for Delivery", _OUT),
        "7": ("Shipment Information Voided", S.CANCELLED),
        "10": ("On the Way", _MOVE),
        "11": ("Delivered", S.DELIVERED),
        "12": ("Clearance in Progress", _MOVE),
        "13": ("Exception", _EXC),
        "14": ("Clearance Completed", _MOVE),
        "16": ("In Warehouse", _MOVE),
        "17": ("Held for Customer Pickup", S.READY_FOR_PICKUP),
        "18": ("Delivery Change Requested: Hold for Pickup", _INFO),
        "19": ("Held for Future Delivery", _MOVE),
        "20": ("Held for Future Delivery Requested", _INFO),
        "21": ("Out for Delivery", _OUT),
        "22": ("First Attempt Made", _EXC),
        "23": ("Second Delivery Attempted", _EXC),
        "24": ("Final Attempt Made", _EXC),
        "25": ("On the Way", _MOVE),
        "26": ("Delivered by Local Post Office", S.DELIVERED),
        "27": ("Delivery Address Change Requested", _INFO),
        "28": ("Delivery Address Changed", _INFO),
        "29": ("Exception: Action Required", _EXC),
        "30": ("Local Post Office Exception", _EXC),
        "32": ("Adverse Weather May Cause Delay", _EXC),
        "33": ("Return to Sender Requested", _RTS),
        "34": ("Returned to Sender", _RTS),
        "35": ("Returning to Sender", _RTS),
        "36": ("Returning to Sender: In Transit", _RTS),
        "37": ("Out for Delivery", _OUT),
        "38": ("Picked Up by UPS", _MOVE),
        "39": ("On the Way", _MOVE),
        "40": ("Ready for Customer Pickup", S.READY_FOR_PICKUP),
        "41": ("Service Upgrade Requested", _INFO),
        "42": ("Service Upgraded", _INFO),
        "43": ("Voided Pickup", _PRE),
        "44": ("On the Way to UPS", _PRE),
        "45": ("On the Way to UPS", _PRE),
        "46": ("Delay", _EXC),
        "47": ("On the Way", _MOVE),
        "48": ("Delay", _EXC),
        "49": ("Delay: Action Required", _EXC),
        "50": ("Address Information Required", _EXC),
        "51": ("Delay: Emergency Situation or Severe Weather", _EXC),
        "52": ("Delay: Severe Weather", _EXC),
        "53": ("Delay: Severe Weather", _EXC),
        "54": ("Delivery Change Requested", _INFO),
        "55": ("Rescheduled Delivery", _INFO),
        "56": ("Service Upgrade Requested", _INFO),
        "57": ("On the Way to a Local UPS Access Point", _MOVE),
        "58": ("Clearance Information Required", _EXC),
        "59": ("Damage Reported", _EXC),
        "60": ("Delivery Attempted", _EXC),
        "61": ("Delivery Attempted: Adult Signature Required", _EXC),
        "62": ("Delivery Attempted: Funds Required", _EXC),
        "63": ("Delivery Change Completed", _INFO),
        "64": ("Delivery Refused", _EXC),
        "65": ("Pickup Attempted", _PRE),
        "66": ("Post Office Delivery Attempted", _EXC),
        "67": ("Returned to Sender by Post Office", _RTS),
        "68": ("Sent to Lost and Found", _EXC),
        "69": ("Unable to Deliver", _EXC),
        "70": ("Package not at UPS Access Point yet", _MOVE),
        "71": ("Preparing for Delivery", _MOVE),
        "72": ("Loaded on Delivery Vehicle", _OUT),
        "73": ("In Transit to UPS Delivery Partner", _MOVE),
        "74": ("UPS Delivery Partner has Shipment", _MOVE),
        "75": ("Scheduled for Delivery", _MOVE),
        "76": ("UPS Delivery Partner Exception", _EXC),
        "77": ("Scheduled for Pickup Today", _PRE),
        "78": ("Your Driver is Arriving Soon!", _OUT),
        "79": ("Order Processed: In Transit to UPS", _PRE),
        "80": ("Order Processed: Ready for UPS", _PRE),
        "81": ("Returned - Damage Reported", _RTS),
        "82": ("Delivery Instructions Received", _INFO),
        "83": ("Held", _EXC),
        "84": ("Cleared", _MOVE),
        "85": ("Held for COD Payment", _EXC),
        "86": ("Delay", _EXC),
        "87": ("On the Way", _MOVE),
        "88": ("Test", S.UNKNOWN),
        "89": ("Out for Delivery", _OUT),
        "90": ("Delay", _EXC),
        "91": ("Out for Delivery", _OUT),
        "92": ("Customs Clearance in Progress", _MOVE),
        "93": ("Premier Recovery In Progress", _EXC),
        "94": ("Premier Recovery Completed", _MOVE),
        "95": ("Additional Attempt Requested", _INFO),
        "96": ("Address Change Confirmed", _INFO),
        "97": ("Address Change Requested", _INFO),
        "98": ("Deliver to Original Address Requested", _INFO),
        "99": ("Deliver to Original Address Confirmed", _INFO),
        "100": ("Hold at UPS Access Point Confirmed", _INFO),
        "101": ("Hold at UPS Access Point Requested", _INFO),
        "102": ("Hold for Courier Requested", _INFO),
        "103": ("Hold for Courier Confirmed", _INFO),
        "104": ("Hold for Instructions Confirmed", _INFO),
        "105": ("Hold for Instructions Requested", _INFO),
        "106": ("Hold for Pickup Confirmed", _INFO),
        "107": ("Hold for Pickup Requested", _INFO),
        "108": ("Hold for Pickup Today Confirmed", _INFO),
        "109": ("Hold for Pickup Today Requested", _INFO),
        "110": ("Refrigeration Confirmed", _INFO),
        "111": ("Refrigeration Requested", _INFO),
        "112": ("Re-Ice Confirmed", _INFO),
        "113": ("Re-Ice Requested", _INFO),
        "114": ("Request Canceled", _INFO),
        "115": ("Reschedule Delivery Confirmed", _INFO),
        "116": ("Reschedule Delivery Requested", _INFO),
        "117": ("Return by Saturday Confirmed", _RTS),
        "118": ("Return to Sender Confirmed", _RTS),
        "119": ("Return to Sender Requested", _RTS),
        "120": ("Saturday Delivery Confirmed", _INFO),
        "121": ("Saturday Delivery Requested", _INFO),
        "122": ("Upgrade Confirmed", _INFO),
        "123": ("Pending Release From Non-UPS Broker", _EXC),
        "124": ("Clearance Information Needed", _EXC),
        "125": ("Clearance Information Needed", _EXC),
        "126": ("Pending Government Agency Release", _EXC),
        "127": ("Investigation Closed", _INFO),
        "128": ("Investigation Canceled", _INFO),
        "129": ("Investigation Opened", _EXC),
        "130": ("Claim in Progress", _EXC),
        "131": ("Final Pickup Attempted", _PRE),
        "132": ("Airport Security Delay", _EXC),
        "133": ("Return Label Left With Customer", _INFO),
        "134": ("Cleared Import Customs", _MOVE),
        "135": ("Second Pickup Attempted", _PRE),
        "136": ("Delivery Rescheduled for Saturday", _INFO),
        "137": ("Transferred to UPS Delivery Partner", _MOVE),
        "138": ("Awaiting Scheduled Departure", _MOVE),
        "139": ("Security Access Required", _EXC),
        "140": ("Claim Paid", _EXC),
        "141": ("Incomplete Documentation Received", _EXC),
        "142": ("Claim Voided", _INFO),
        "143": ("Delivered to Agent", S.DELIVERED),
        "144": ("Delivered to Post Office for Pickup", S.READY_FOR_PICKUP),
        "145": ("Delivery Attempted", _EXC),
        "146": ("Out for Delivery", _OUT),
        "147": ("Seized by Law Enforcement", _EXC),
        "148": ("Package Information Unavailable", S.UNKNOWN),
        "149": ("Prohibited Contents, Package Destroyed", _EXC),
        "153": ("Updated Delivery Time", _INFO),
        "154": ("Updated Delivery Date", _INFO),
        "155": ("Delivery Photo", _INFO),
        "156": ("Commercial Inside Release", _INFO),
        "157": ("Shipment Ready for UPS", _PRE),
        "158": ("On the Way", _MOVE),
        "159": ("On the Way", _MOVE),
        "160": ("We Have Your Package", _MOVE),
        "161": ("Delivered to UPS Access Point", S.DELIVERED_TO_LOCKER),
        "162": ("Out for Delivery", _OUT),
        "163": ("Package Information Unavailable", S.UNKNOWN),
        "164": ("On the Way", _MOVE),
        "165": ("On the Way", _MOVE),
        "166": ("Shipment Ready for Roadie", _PRE),
        "167": ("Dropped off at UPS Store by Customer", _MOVE),
        "168": ("Dropped off at Retail Location by Customer", _MOVE),
        "169": ("Dropped off at a UPS Access Point by Customer", _MOVE),
    }
)

# Activity status type, the coarse fallback when a code is missing or new.
ACTIVITY_TYPES: Mapping[str, tuple[str, S]] = MappingProxyType(
    {
        "M": ("Billing Information Received", _PRE),
        "MV": ("Billing Information Voided", S.CANCELLED),
        "I": ("In Transit, Out for Delivery", _MOVE),
        "D": ("Delivered", S.DELIVERED),
        "X": ("Exception", _EXC),
        "DO": ("Delivered Origin CFS (Freight Only)", _MOVE),
        "DD": ("Delivered Destination CFS (Freight Only)", _MOVE),
        "W": ("Warehousing (Freight Only)", _MOVE),
        "NA": ("Not Available", S.UNKNOWN),
        "U": ("Updates (Track Alert API Only)", _INFO),
    }
)


def _code_key(code: str | int | None) -> str:
    # UPS pads the code ("011", "003"); the published table does not.
    text = str(code).strip() if code is not None else ""
    return text.lstrip("0") or ("0" if text else "")


def status_for(status_code: str | int | None, activity_type: str | None) -> S:
    """Status from the description code, else (unknown or informational code) the activity type."""
    entry = STATUS_CODES.get(_code_key(status_code))
    if entry is not None and entry[1] is not S.UNKNOWN:
        return entry[1]
    fallback = ACTIVITY_TYPES.get((activity_type or "").strip().upper())
    return fallback[1] if fallback else S.UNKNOWN
