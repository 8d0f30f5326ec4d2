"""Drop-off codes as central makes them: checked here by their scrypt hash and QR digest.

Central hashes a drop-off's 10-digit code with the bank's drop-off salt (one salt for all of a
bank's drop-offs), so a typed code costs the node one scrypt per distinct (salt, n, r, p) among
its live codes, then a lookup, however many drop-offs wait. The hash is kept as the same
self-describing `$scrypt$n=..,r=..,p=..$<salt hex>$<hash hex>` string as courier codes; the QR
payload (a high-entropy token) travels as its hex SHA-256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from locker_node.domain.codes import is_well_formed_token
from locker_node.domain.credentials import format_courier_hash

DROPOFF_CODE_DIGITS = 10
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ScryptParams:
    """What a code is hashed with: the part of a stored hash before the digest."""

    prefix: str  # `$scrypt$n=..,r=..,p=..$<salt hex>$`

    @property
    def salt(self) -> bytes:
        return bytes.fromhex(self.prefix.split("$")[3])

    @property
    def cost(self) -> tuple[int, int, int]:
        fields = dict(item.split("=", 1) for item in self.prefix.split("$")[2].split(","))
        return int(fields["n"]), int(fields["r"]), int(fields["p"])


def stored_code_hash(code_hash_hex: str, salt_hex: str, n: int, r: int, p: int) -> str:
    """The stored form of a drop-off code hash as the wire carries it; `ValueError` if it is
    not one this node can check (the same bounds as courier codes)."""
    return format_courier_hash(code_hash_hex, salt_hex, n, r, p)


def hash_code(code: str, params: ScryptParams) -> str:
    """A typed code hashed as central hashed the bank's drop-off codes, in stored form."""
    n, r, p = params.cost
    digest = hashlib.scrypt(
        code.encode(), salt=params.salt, n=n, r=r, p=p, dklen=32, maxmem=129 * r * n * p + 2**20
    )
    return params.prefix + digest.hex()


def is_well_formed_code(text: str) -> bool:
    return len(text) == DROPOFF_CODE_DIGITS and text.isascii() and text.isdigit()


def is_well_formed_qr_payload(text: str) -> bool:
    """Central draws drop-off QR payloads as the node draws pickup ones (URL-safe tokens)."""
    return is_well_formed_token(text)


def qr_digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def is_qr_digest(text: str) -> bool:
    return _SHA256_HEX.fullmatch(text) is not None
