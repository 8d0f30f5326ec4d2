"""A drop-off's code and QR payload: drawn with a CSPRNG, kept only as the hashes a node checks.

The code is 10 decimal digits; the node hashes what a sender types once, with its bank's salt,
and looks the hash up among its waiting drop-offs. So every drop-off of a bank shares one salt
(derived from the service key and the bank id: nothing to store), and the scrypt cost stands
in for a per-code salt against a stolen database: 10^10 candidates at tens of milliseconds
each. The QR payload has the shape of the node's pickup QR tokens (128 random bits, URL-safe),
too many to guess, so its plain SHA-256 is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from central.keys import ServiceKeys

CODE_DIGITS = 10
QR_TOKEN_BYTES = 16  # as the node's `locker_node.domain.codes.QR_TOKEN_BYTES`
SALT_BYTES = 16
SALT_PURPOSE = "dropoff-salt"
# scrypt cost, as for courier codes (central.nodes.feed): the node reads it from the hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_DKLEN = 32


@dataclass(frozen=True, slots=True)
class DropoffSecret:
    """A new drop-off's code and QR payload in clear (for the 201 and the sealed copy), and the
    hashes that are stored and sent to the node."""

    code: str
    qr_payload: str
    code_hash: str  # `$scrypt$n=..,r=..,p=..$<salt hex>$<hash hex>`
    qr_hash: str  # hex SHA-256 of the QR payload

    def __repr__(self) -> str:  # a log line or a traceback never shows the code
        return f"DropoffSecret(code_hash={self.code_hash!r})"


def bank_salt(keys: ServiceKeys, bank_id: str) -> bytes:
    """The salt of every drop-off code at this bank."""
    key = keys.derive(SALT_PURPOSE)
    return hmac.new(key, bank_id.encode(), hashlib.sha256).digest()[:SALT_BYTES]


def hash_code(code: str, salt: bytes) -> str:
    """The code as stored and as the node checks it, a `$scrypt$` string."""
    digest = hashlib.scrypt(
        code.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=_DKLEN
    )
    return f"$scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${salt.hex()}${digest.hex()}"


def hash_qr(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def draw_code() -> str:
    """A uniformly random code of `CODE_DIGITS` digits, leading zeros kept."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def draw_secret(keys: ServiceKeys, bank_id: str) -> DropoffSecret:
    """A new code and QR payload for a drop-off at `bank_id`, with their hashes.

    Hashing takes tens of milliseconds of CPU on purpose: call this outside any transaction.
    """
    code = draw_code()
    payload = secrets.token_urlsafe(QR_TOKEN_BYTES)
    return DropoffSecret(
        code=code,
        qr_payload=payload,
        code_hash=hash_code(code, bank_salt(keys, bank_id)),
        qr_hash=hash_qr(payload),
    )
