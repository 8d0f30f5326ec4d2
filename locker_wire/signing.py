"""Ed25519 signatures on node requests and on central's commands, and the key files they need."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEADER_NODE = "X-Locker-Node"
HEADER_TIMESTAMP = "X-Locker-Timestamp"
HEADER_NONCE = "X-Locker-Nonce"
HEADER_SIGNATURE = "X-Locker-Signature"
MAX_SKEW_S = 300
COMMAND_FIELDS = ("id", "node_id", "bank_id", "type", "payload", "issued_at", "expires_at")
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_TIMESTAMP = re.compile(r"^\d{1,12}$")


class WireError(Exception):
    """Base of every error the wire module raises."""

    code = "wire_error"


class MissingSignature(WireError, ValueError):
    code = "missing_signature"


class InvalidRequestSignature(WireError, ValueError):
    code = "invalid_signature"


class ClockSkew(WireError, ValueError):
    code = "clock_skew"

    def __init__(self, timestamp: int, now: int) -> None:
        super().__init__(f"request time {timestamp} is {abs(now - timestamp)} s from {now}")
        self.timestamp = timestamp
        self.server_time = now


class InvalidCommand(WireError, ValueError):
    code = "invalid_command"


class CommandSignatureInvalid(InvalidCommand):
    code = "invalid_signature"


class CommandExpired(InvalidCommand):
    code = "command_expired"


class CommandForAnotherNode(InvalidCommand):
    code = "wrong_node"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url, padding optional; raises ValueError on anything else."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


# Keys -------------------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as base64url of its raw 32 bytes: what enrollment registers."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return b64url_encode(
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def load_public_key(text: str) -> Ed25519PublicKey:
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS8 PEM, unencrypted: the file is protected by its mode (0600), not a passphrase."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


# Requests ---------------------------------------------------------------------------------------


def canonical_request(method: str, path: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    """`METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nSHA256_HEX(BODY)` as UTF-8."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{digest}".encode()


def sign_request(
    private_key: Ed25519PrivateKey,
    node_id: str,
    method: str,
    path: str,
    body: bytes,
    now: int,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers to send with one request; `path` includes the query string exactly as sent."""
    nonce = nonce or secrets.token_hex(16)
    signature = private_key.sign(canonical_request(method, path, now, nonce, body))
    return {
        HEADER_NODE: node_id,
        HEADER_TIMESTAMP: str(now),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: b64url_encode(signature),
    }


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    node_id: str
    timestamp: int
    nonce: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    node_id: str
    timestamp: int
    nonce: str


def read_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The signature headers, well-formed, or MissingSignature; says which node claims to sign."""
    lowered = {key.lower(): value for key, value in headers.items()}
    values = [
        lowered.get(name.lower(), "")
        for name in (HEADER_NODE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
    ]
    node_id, timestamp, nonce, signature = values
    if not all(values):
        raise MissingSignature("the request is not signed")
    if not _TIMESTAMP.match(timestamp) or not _NONCE.match(nonce):
        raise MissingSignature("malformed timestamp or nonce header")
    try:
        raw = b64url_decode(signature)
    except ValueError as exc:
        raise InvalidRequestSignature("the signature is not base64url") from exc
    return SignedHeaders(node_id=node_id, timestamp=int(timestamp), nonce=nonce, signature=raw)


def verify_request(
    public_key: Ed25519PublicKey,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    now: int,
    max_skew_s: int = MAX_SKEW_S,
) -> VerifiedRequest:
    """Check signature and time; replay (the nonce) is the receiver's to check, it has the store.

    The signature is checked first, so a changed timestamp reads as tampering, not as skew.
    """
    signed = read_headers(headers)
    message = canonical_request(method, path, signed.timestamp, signed.nonce, body)
    try:
        public_key.verify(signed.signature, message)
    except InvalidSignature as exc:
        raise InvalidRequestSignature("the signature does not match the request") from exc
    if abs(now - signed.timestamp) > max_skew_s:
        raise ClockSkew(signed.timestamp, now)
    return VerifiedRequest(node_id=signed.node_id, timestamp=signed.timestamp, nonce=signed.nonce)


# Commands ---------------------------------------------------------------------------------------


def canonical_command(command: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8) of the command's signed fields."""
    missing = [name for name in COMMAND_FIELDS if name not in command]
    if missing:
        raise InvalidCommand(f"command lacks {', '.join(missing)}")
    signed = {name: command[name] for name in COMMAND_FIELDS}
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_command(private_key: Ed25519PrivateKey, command: Mapping[str, Any]) -> str:
    return b64url_encode(private_key.sign(canonical_command(command)))


def verify_command(
    public_key: Ed25519PublicKey,
    command: Mapping[str, Any],
    signature: str,
    now: int,
    node_id: str,
) -> None:
    """Refuse a command central did not sign, one that expired, or one for another node.

    `issued_at` and `expires_at` are unix seconds; `now` too.
    """
    try:
        raw = b64url_decode(signature)
        public_key.verify(raw, canonical_command(command))
    except (ValueError, InvalidSignature) as exc:
        if isinstance(exc, InvalidCommand):
            raise
        raise CommandSignatureInvalid("the command's signature does not verify") from exc
    if not hmac.compare_digest(str(command["node_id"]), node_id):
        raise CommandForAnotherNode(f"command {command['id']} is for another node")
    expires_at = command["expires_at"]
    if not isinstance(expires_at, int) or now >= expires_at:
        raise CommandExpired(f"command {command['id']} expired")
