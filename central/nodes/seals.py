"""Central's key for what nodes seal to it (pickup codes, QR payloads), and opening those seals."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central.keys import ServiceKeys
from locker_wire.schemas import DepositedData
from locker_wire.sealing import SealError, open_sealed, seal_context


def sealing_key(keys: ServiceKeys) -> X25519PrivateKey:
    key = _SEALING_KEYS.get(keys)
    if key is None:
        # Derived once per service key: a batch opens two seals for each of its deposits.
        key = _SEALING_KEYS[keys] = X25519PrivateKey.from_private_bytes(
            keys.derive("pickup-sealing")
        )
    return key


_SEALING_KEYS: WeakKeyDictionary[ServiceKeys, X25519PrivateKey] = WeakKeyDictionary()


def open_pickup_seals(
    keys: ServiceKeys, event_id: str, data: DepositedData
) -> tuple[str, str] | None:
    """The pickup code and QR payload an event carries, or None when a seal does not open.

    Each seal opens only in its own event's context, so one copied from another event fails.
    """
    key = sealing_key(keys)
    try:
        code = open_sealed(key, data.sealed_pickup_code, seal_context(event_id, "pickup_code"))
        qr = open_sealed(key, data.sealed_qr_payload, seal_context(event_id, "qr_payload"))
        return code.decode(), qr.decode()
    except (SealError, UnicodeDecodeError):
        return None
