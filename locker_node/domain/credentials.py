"""Courier access codes: the carriers' daily codes reach the node only as scrypt hashes.

Central sends each code as `scrypt(code, salt, n, r, p, dklen=32)` with a fresh salt (the
node-central wire's `CourierCodeHash`); the node keeps it as one self-describing string,
`$scrypt$n=<n>,r=<r>,p=<p>$<salt hex>$<hash hex>`, so that the cost travels with the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

# Central's cost (about 60 ms per check): an 8-digit code's 10^8 candidates take CPU-months,
# and a code lives one day.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# A hash asking for more than this is refused rather than run: about 130 MB of memory at most.
_MAX_N, _MAX_R, _MAX_P = 2**17, 8, 4

_FORMAT = re.compile(
    r"\$scrypt\$n=(?P<n>\d+),r=(?P<r>\d+),p=(?P<p>\d+)\$(?P<salt>[0-9a-f]{16,128})"
    r"\$(?P<hash>[0-9a-f]{64})"
)


class CredentialFormatError(ValueError):
    """Not a courier code hash this node can check."""


def format_courier_hash(code_hash_hex: str, salt_hex: str, n: int, r: int, p: int) -> str:
    """The stored form of a hash as the wire carries it (hex hash, hex salt, parameters)."""
    text = f"$scrypt$n={n},r={r},p={p}${salt_hex.lower()}${code_hash_hex.lower()}"
    _parse(text)
    return text


def hash_courier_code(code: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """Hash a code as central does (for `seed-demo` and tests)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(code, salt, n, r, p)
    return format_courier_hash(digest.hex(), salt.hex(), n, r, p)


def verify_courier_code(stored: str, code: str) -> bool:
    try:
        n, r, p, salt, expected = _parse(stored)
    except CredentialFormatError:
        return False
    return hmac.compare_digest(_scrypt(code, salt, n, r, p), expected)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    match = _FORMAT.fullmatch(stored)
    if match is None:
        raise CredentialFormatError("not a $scrypt$ courier code hash")
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    if n < 2 or n & (n - 1) or n > _MAX_N or not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P:
        raise CredentialFormatError(f"scrypt parameters out of range: n={n} r={r} p={p}")
    return n, r, p, bytes.fromhex(match["salt"]), bytes.fromhex(match["hash"])


def _scrypt(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        code.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=129 * r * n * p + 2**20
    )
