"""Tokens of the parcel page `/p/<token>`: signed by central, expiring, opaque, no account.

A token is base64url of the reservation id, its expiry (unix seconds, 4 bytes) and an
HMAC-SHA256 over both, cut to 128 bits: unguessable, and nothing in it can be changed without
the service key. About 55 characters for a `rsv_` id, short enough for an SMS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from central.keys import ServiceKeys

_PURPOSE = "parcel-page-tokens"
_MAC_BYTES = 16
_EXPIRY_BYTES = 4
# How long a link works after it is made: the hold, the pickup window and the longest
# extension (three days each by default) with room to spare for reading "collected" later.
PAGE_TOKEN_LIFETIME = timedelta(days=21)


class TokenProblem(StrEnum):
    MALFORMED = "malformed"  # not a token at all, or altered: the signature does not match
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class PageToken:
    reservation_id: str
    expires_at: datetime


def _mac(keys: ServiceKeys, body: bytes) -> bytes:
    return hmac.new(keys.derive(_PURPOSE), body, hashlib.sha256).digest()[:_MAC_BYTES]


def make_page_token(
    keys: ServiceKeys, reservation_id: str, now: datetime, lifetime: timedelta = PAGE_TOKEN_LIFETIME
) -> str:
    expires = int((now + lifetime).timestamp())
    body = reservation_id.encode() + expires.to_bytes(_EXPIRY_BYTES, "big")
    return base64.urlsafe_b64encode(body + _mac(keys, body)).rstrip(b"=").decode()


def read_page_token(keys: ServiceKeys, token: str, now: datetime) -> PageToken | TokenProblem:
    """The reservation a token names, or why it names none. Checks the signature first, in
    constant time, so an altered token says nothing about what it was altered from."""
    if not 8 <= len(token) <= 200:
        return TokenProblem.MALFORMED
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return TokenProblem.MALFORMED
    if len(raw) <= _MAC_BYTES + _EXPIRY_BYTES:
        return TokenProblem.MALFORMED
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(keys, body)):
        return TokenProblem.MALFORMED
    try:
        reservation_id = body[:-_EXPIRY_BYTES].decode()
    except UnicodeDecodeError:
        return TokenProblem.MALFORMED
    expires_at = datetime.fromtimestamp(int.from_bytes(body[-_EXPIRY_BYTES:], "big"), UTC)
    if expires_at <= now:
        return TokenProblem.EXPIRED
    return PageToken(reservation_id, expires_at)
