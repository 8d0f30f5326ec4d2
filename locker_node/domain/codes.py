"""Pickup codes, QR tokens and session tokens: made with a CSPRNG, kept only as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_CODE_DIGITS = 10
QR_TOKEN_BYTES = 16  # 128 bits: far beyond guessing, so QR pickups need no keypad lockout
MAX_CODE_LENGTH = 32
MAX_TOKEN_LENGTH = 128

_QR_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def generate_pickup_code(digits: int = DEFAULT_CODE_DIGITS) -> str:
    """A uniformly random code of `digits` decimal digits (leading zeros kept)."""
    if digits < 4:
        raise ValueError("pickup codes have at least 4 digits")
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def generate_qr_token() -> str:
    """The payload of a pickup QR code: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(QR_TOKEN_BYTES)


def generate_session_token() -> str:
    return secrets.token_urlsafe(32)


def is_well_formed_code(text: str, digits: int) -> bool:
    return len(text) == digits and text.isascii() and text.isdigit()


def is_well_formed_token(text: str) -> bool:
    return _QR_TOKEN.fullmatch(text) is not None


class KeyedHasher:
    """HMAC-SHA256 under a secret key: a stolen database alone cannot test candidate codes.

    An unkeyed hash of an 8-digit code falls to 10^8 trial hashes in seconds; with the key kept
    in a separate 0600 file, the table is useless without the node's secret as well.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("hash keys are at least 256 bits")
        self._key = key

    def digest(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).hexdigest()

    def matches(self, secret: str, digest: str) -> bool:
        return hmac.compare_digest(self.digest(secret), digest)


@dataclass(frozen=True)
class IssuedPickupCode:
    """A new pickup code and QR token, in clear for the event that seals them, and their hashes."""

    code: str
    qr_token: str
    code_hash: str
    qr_hash: str


def issue_pickup_code(
    code_hasher: KeyedHasher,
    qr_hasher: KeyedHasher,
    *,
    digits: int,
    in_use: Callable[[str], bool],
) -> IssuedPickupCode:
    """Draw a pickup code and a QR token; a code whose hash `in_use` reports taken is drawn again.

    Keypad entry looks a code up by its hash alone, so two live parcels must never share one.
    """
    code = generate_pickup_code(digits)
    while in_use(code_hasher.digest(code)):
        code = generate_pickup_code(digits)
    token = generate_qr_token()
    return IssuedPickupCode(
        code=code,
        qr_token=token,
        code_hash=code_hasher.digest(code),
        qr_hash=qr_hasher.digest(token),
    )
