"""Checks on what people type or scan at the kiosk, before anything is looked up."""

from __future__ import annotations

import re

from locker_node.domain.allocation import SIZE_CLASSES

_TRACKING = re.compile(r"[A-Z0-9]{4,40}")
_CARRIER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_NODE_ID = re.compile(r"[0-9a-f]{32}")


def normalise_tracking_number(text: str) -> str | None:
    """Upper case without spaces or dashes (as printed on labels); None if it cannot be one."""
    cleaned = re.sub(r"[\s-]", "", text).upper()
    return cleaned if _TRACKING.fullmatch(cleaned) else None


def normalise_carrier(text: str) -> str | None:
    cleaned = text.strip().lower()
    return cleaned if _CARRIER.fullmatch(cleaned) else None


def is_well_formed_pin(text: str) -> bool:
    return 4 <= len(text) <= 12 and text.isascii() and text.isdigit()


def is_size_class(text: str) -> bool:
    return text in SIZE_CLASSES


def is_node_id(text: str) -> bool:
    """Deposit and parcel ids are made on the node: 32 lowercase hex digits."""
    return _NODE_ID.fullmatch(text) is not None
