"""Sealed pickup codes open only with central's key and only for the event they were sealed for."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from locker_wire.sealing import (
    SealError,
    load_sealing_public_key,
    open_sealed,
    seal,
    seal_context,
    sealing_public_key_text,
)
from locker_wire.signing import b64url_decode, b64url_encode


@pytest.fixture
def central() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def test_a_sealed_value_opens_with_the_key_and_context(central: X25519PrivateKey) -> None:
    public = load_sealing_public_key(sealing_public_key_text(central))
    context = seal_context("evt-1", "pickup_code")
    token = seal(public, b"48213377", context)
    assert b"48213377" not in b64url_decode(token)
    assert "48213377" not in token
    assert open_sealed(central, token, context) == b"48213377"


def test_sealing_twice_gives_different_tokens(central: X25519PrivateKey) -> None:
    context = seal_context("evt-1", "pickup_code")
    assert seal(central.public_key(), b"1", context) != seal(central.public_key(), b"1", context)


@pytest.mark.parametrize(
    "context", [seal_context("evt-2", "pickup_code"), seal_context("evt-1", "qr_payload"), b""]
)
def test_a_token_replayed_into_another_context_does_not_open(
    central: X25519PrivateKey, context: bytes
) -> None:
    token = seal(central.public_key(), b"48213377", seal_context("evt-1", "pickup_code"))
    with pytest.raises(SealError):
        open_sealed(central, token, context)


def test_another_key_cannot_open(central: X25519PrivateKey) -> None:
    context = seal_context("evt-1", "pickup_code")
    token = seal(central.public_key(), b"48213377", context)
    with pytest.raises(SealError):
        open_sealed(X25519PrivateKey.generate(), token, context)


@pytest.mark.parametrize("position", [0, 1, 40, 50, -1])
def test_a_tampered_token_does_not_open(central: X25519PrivateKey, position: int) -> None:
    context = seal_context("evt-1", "pickup_code")
    raw = bytearray(b64url_decode(seal(central.public_key(), b"48213377", context)))
    raw[position] ^= 0x01
    with pytest.raises(SealError):
        open_sealed(central, b64url_encode(bytes(raw)), context)


@pytest.mark.parametrize("token", ["", "not base64!", b64url_encode(b"\x01" + b"x" * 20)])
def test_garbage_does_not_open(central: X25519PrivateKey, token: str) -> None:
    with pytest.raises(SealError):
        open_sealed(central, token, b"ctx")
