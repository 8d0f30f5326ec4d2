"""What an alert means, in the words the dashboard uses (central/ops/static/words.js), for pages.

A page leaves central for mailboxes and chat channels, so it says what happened and where,
never who: no recipient's message or tracking number, no operator's address, no code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Every alert type an operator can subscribe to by name, with its label; a subscription to all
# types gets the ones added later too.
ALERT_KINDS: dict[str, str] = {
    "bank_offline": "Bank offline",
    "door_left_open": "Door left open",
    "door_fault": "Door faulty",
    "door_forced_open": "Door forced open",
    "compartment_out_of_service": "Compartment out of service",
    "layout_mismatch": "Layout mismatch",
    "parcel_past_deadline": "Parcels past the pickup deadline",
    "webhook_failing": "Carrier webhook failing",
    "recipient_problem": "Problem reported by a recipient",
    "manual": "Raised by an operator",
    "remote_open_budget_exhausted": "Remote-open budget used up",
    "power_lost": "Mains power lost",
    "battery_low": "UPS battery low",
    "overheating": "Too hot",
    "disk_low": "Disk nearly full",
    "maintenance_overdue": "Maintenance past its expected end",
    "mass_open_requested": "Mass open waiting for approval",
    "mass_open_approved": "Mass open approved",
    "update_failed": "Node update failed",
}

# The reasons a recipient can give on their parcel's page (central/parcel_page).
_PROBLEMS = {
    "door_did_not_open": "the door did not open",
    "code_does_not_work": "the code does not work",
    "parcel_damaged": "a damaged parcel",
    "parcel_missing": "a missing or wrong parcel",
    "not_me": "a parcel collected by someone else",
}

Detail = Mapping[str, Any]


def kind_label(alert_type: str) -> str:
    return ALERT_KINDS.get(alert_type) or alert_type.replace("_", " ").capitalize()


def _node(detail: Detail) -> Detail:
    inner = detail.get("detail")
    return inner if isinstance(inner, Mapping) else {}


def _compartment(detail: Detail, subject: str | None) -> str:
    return str(detail.get("compartment") or subject or "?")


def _seconds(value: Any) -> str:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return ""
    if s < 120:
        return f"{round(s)} s"
    if s < 7200:
        return f"{round(s / 60)} min"
    return f"{s / 3600:.1f} h"


def _door_left_open(d: Detail, subject: str | None) -> str:
    open_for = _seconds(_node(d).get("open_for_s"))
    return f"Door {_compartment(d, subject)} left open" + (f" for {open_for}" if open_for else "")


def _with_reason(text: str, reason: Any) -> str:
    return f"{text}: {reason}" if isinstance(reason, str) and reason else text


def _past_deadline(d: Detail, subject: str | None) -> str:
    count = d.get("count")
    if not isinstance(count, int):
        count = len(d.get("parcels") or [])
    noun = "parcel" if count == 1 else "parcels"
    return f"{count} {noun} past the pickup deadline, waiting to go back to the carrier"


def _recipient_problem(d: Detail, subject: str | None) -> str:
    what = _PROBLEMS.get(str(d.get("reason")), "a problem")
    where = f" at compartment {d['compartment']}" if d.get("compartment") else ""
    return f"A recipient reports {what}{where}"


def _webhook_failing(d: Detail, subject: str | None) -> str:
    carrier = d.get("carrier") or "a carrier"
    host = f" ({d['host']})" if d.get("host") else ""
    return f"Webhook endpoint of {carrier}{host} keeps failing"


def _open_budget(d: Detail, subject: str | None) -> str:
    where = ""
    if d.get("bank_id"):
        where = f"; the last refused was {d['bank_id']}/{d.get('compartment') or '?'}"
    return f"Remote opens reached the fleet's budget: further opens are refused{where}"


def _manual(d: Detail, subject: str | None) -> str:
    return _with_reason("Raised by an operator", d.get("note"))


def _mass_open(d: Detail, subject: str | None) -> str:
    doors = d.get("doors")
    what = "every door" if doors == "all" else f"{doors} doors" if doors else "several doors"
    return f"A request to open {what} at once waits for a second admin's approval"


_SENTENCES: dict[str, Callable[[Detail, str | None], str]] = {
    "door_left_open": _door_left_open,
    "door_fault": lambda d, s: _with_reason(
        f"Door {_compartment(d, s)} is faulty (jammed or not responding)",
        _node(d).get("reason") or _node(d).get("error"),
    ),
    "door_forced_open": lambda d, s: f"Door {_compartment(d, s)} opened without a command",
    "compartment_out_of_service": lambda d, s: _with_reason(
        f"Compartment {_compartment(d, s)} out of service", _node(d).get("reason")
    ),
    "bank_offline": lambda d, s: "The bank's node stopped reporting (offline)",
    "layout_mismatch": lambda d, s: "The bank's compartments differ from its node's",
    "parcel_past_deadline": _past_deadline,
    "recipient_problem": _recipient_problem,
    "webhook_failing": _webhook_failing,
    "remote_open_budget_exhausted": _open_budget,
    "manual": _manual,
    "mass_open_requested": _mass_open,
    "mass_open_approved": lambda d, s: (
        f"A second admin approved opening {d.get('door_count') or 'several'} doors at once"
    ),
}


def alert_sentence(alert_type: str, subject: str | None, detail: Detail | None) -> str:
    """The alert in one sentence, from its type, subject and detail."""
    words = _SENTENCES.get(alert_type)
    if words is None:
        label = kind_label(alert_type)
        return f"{label} ({subject})" if subject else label
    return words(detail or {}, subject)
