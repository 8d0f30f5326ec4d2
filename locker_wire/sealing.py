"""Sealing pickup codes and QR payloads to central's X25519 key, bound to the event they travel in.

Token: base64url( 0x01 || ephemeral X25519 public key (32) || GCM nonce (12) || ciphertext+tag ).
Key: HKDF-SHA256(X25519(ephemeral, central), salt = ephemeral public || central public,
info = b"locker-wire/seal/v1\\x00" + context), 32 bytes, for AES-256-GCM with `context` as the
associated data. A token opened under another context (another event id) fails.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from locker_wire.signing import WireError, b64url_decode, b64url_encode

VERSION = 1
_INFO = b"locker-wire/seal/v1\x00"


class SealError(WireError, ValueError):
    code = "invalid_seal"


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sealing_public_key_text(key: X25519PrivateKey | X25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return b64url_encode(_raw(public))


def load_sealing_public_key(text: str) -> X25519PublicKey:
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def seal_context(event_id: str, field: str) -> bytes:
    """The context a node event's sealed field is bound to, e.g. (event id, "pickup_code")."""
    return f"{event_id}/{field}".encode()


def _key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO + context
    ).derive(shared)


def seal(public_key: X25519PublicKey, plaintext: bytes, context: bytes) -> str:
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(public_key), ephemeral_raw, _raw(public_key), context)
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, context)
    return b64url_encode(bytes([VERSION]) + ephemeral_raw + nonce + ciphertext)


def open_sealed(private_key: X25519PrivateKey, token: str, context: bytes) -> bytes:
    try:
        raw = b64url_decode(token)
    except ValueError as exc:
        raise SealError("the sealed value is not base64url") from exc
    if len(raw) < 1 + 32 + 12 + 16 or raw[0] != VERSION:
        raise SealError("not a sealed value of a known version")
    ephemeral_raw, nonce, ciphertext = raw[1:33], raw[33:45], raw[45:]
    try:
        ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
        shared = private_key.exchange(ephemeral)
    except ValueError as exc:
        raise SealError("the sealed value's key is invalid") from exc
    key = _key(shared, ephemeral_raw, _raw(private_key.public_key()), context)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, context)
    except InvalidTag as exc:
        raise SealError("the sealed value does not open with this key and context") from exc
