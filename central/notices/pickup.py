"""The pickup code and QR payload central keeps while a parcel waits, sealed with the service key.

The recipient's page shows them and notices carry them; nothing keeps them in clear, and the
reservation's sealed copy is wiped with its contact details when the reservation ends.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from central.keys import ServiceKeys

# What a recipient's notice adds when the parcel joined the code of another of theirs.
SHARED_CODE = {
    "en": "One more parcel for you here: the same pickup code opens it.",
    "es": "Un paquete más para usted aquí: el mismo código de recogida lo abre.",
}


class PickupSecret(NamedTuple):
    code: str
    qr_payload: str
    shared: bool = False  # a group-mate's code, which this parcel joined (reservations.groups)


def seal_pickup(keys: ServiceKeys, code: str, qr_payload: str, *, shared: bool = False) -> str:
    secret: dict[str, str | bool] = {"code": code, "qr": qr_payload}
    if shared:
        secret["shared"] = True
    return keys.encrypt(json.dumps(secret, separators=(",", ":")))


def open_pickup(keys: ServiceKeys, sealed: str | None) -> PickupSecret | None:
    """The sealed pair, or None when there is none (before deposit, after the end) or it does
    not open (sealed under another service key)."""
    if not sealed:
        return None
    try:
        data = json.loads(keys.decrypt(sealed))
    except ValueError:
        return None
    return PickupSecret(str(data["code"]), str(data["qr"]), data.get("shared") is True)
