"""The node secret: made once with mode 0600, refused when others can read it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from locker_node.store.keys import SECRET_FILE, NodeKeys, SecretFileError, load_or_create_secret


def test_the_secret_is_made_once_owner_only(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "data")
    second = load_or_create_secret(tmp_path / "data")

    assert first == second and len(first) == 32
    assert (tmp_path / "data" / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "data").iterdir()] == [SECRET_FILE]


def test_a_secret_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_secret(tmp_path)
    os.chmod(tmp_path / SECRET_FILE, 0o644)

    with pytest.raises(SecretFileError, match="chmod 600"):
        load_or_create_secret(tmp_path)


def test_a_malformed_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE
    path.write_text("short\n")
    os.chmod(path, 0o600)

    with pytest.raises(SecretFileError):
        load_or_create_secret(tmp_path)


def test_each_purpose_has_its_own_key() -> None:
    keys = NodeKeys(b"k" * 32)
    other = NodeKeys(b"j" * 32)

    digests = {
        keys.pickup_codes.digest("12345678"),
        keys.qr_tokens.digest("12345678"),
        keys.session_tokens.digest("12345678"),
        other.pickup_codes.digest("12345678"),
    }
    assert len(digests) == 4
    assert keys.pickup_codes.matches("12345678", keys.pickup_codes.digest("12345678"))
    assert not keys.pickup_codes.matches("12345679", keys.pickup_codes.digest("12345678"))


def test_sealed_secrets_open_only_with_the_same_node_key() -> None:
    keys = NodeKeys(b"k" * 32)
    sealed = keys.seal("12345678")

    assert "12345678" not in sealed
    assert keys.unseal(sealed) == "12345678"
    with pytest.raises(ValueError, match="does not open"):
        NodeKeys(b"j" * 32).unseal(sealed)
