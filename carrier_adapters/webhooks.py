"""Pure verification of inbound carrier pushes; every comparison is constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = [
    "fedex_signature",
    "verify_bearer_credential",
    "verify_fedex_signature",
    "verify_static_token",
]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def fedex_signature(body: bytes, secret: str) -> str:
    """Base64 of HMAC-SHA256 over the raw body, as FedEx sends it in `fdx-signature`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_fedex_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """Whether `signature` (the fdx-signature header) signs exactly `body` with `secret`."""
    if not signature or not secret:
        return False
    return _same(signature.strip(), fedex_signature(body, secret))


def verify_bearer_credential(authorization: str | None, credential: str) -> bool:
    """Whether an Authorization header carries `Bearer <credential>` (UPS Track Alert)."""
    if not authorization or not credential:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return _same(value.strip(), credential)


def verify_static_token(value: str | None, token: str) -> bool:
    """Whether a header holds the shared static token (DHL push)."""
    if not value or not token:
        return False
    return _same(value.strip(), token)
