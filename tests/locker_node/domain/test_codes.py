"""Pickup codes and tokens: well formed, uniformly random, hashed under a key; input checks."""

from __future__ import annotations

from collections import Counter

import pytest

from locker_node.domain.codes import (
    KeyedHasher,
    generate_pickup_code,
    generate_qr_token,
    is_well_formed_code,
    is_well_formed_token,
)
from locker_node.domain.crashpoints import CrashPoints
from locker_node.domain.inputs import (
    is_node_id,
    is_well_formed_pin,
    normalise_carrier,
    normalise_tracking_number,
)


def test_codes_have_the_digits_asked_for_leading_zeros_included() -> None:
    codes = [generate_pickup_code(8) for _ in range(2000)]

    assert all(len(code) == 8 and code.isdigit() for code in codes)
    # 2,000 draws from 10^8 repeat one with probability 2% (the birthday bound), so a repeat is
    # no failure; three would be (probability about 1e-6), as would a generator that repeats.
    assert len(codes) - len(set(codes)) <= 2
    first_digits = Counter(code[0] for code in codes)
    assert set(first_digits) == set("0123456789")  # zero included, nothing skipped
    assert max(first_digits.values()) < 2000 / 10 * 1.5


def test_qr_tokens_carry_128_bits() -> None:
    tokens = {generate_qr_token() for _ in range(100)}

    assert len(tokens) == 100
    assert all(len(token) == 22 and is_well_formed_token(token) for token in tokens)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("12345678", True), ("1234567", False), ("123456789", False), ("1234567a", False),
     ("\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", False), ("", False)],
)  # fmt: skip
def test_code_shape(text: str, ok: bool) -> None:
    assert is_well_formed_code(text, 8) is ok


def test_keyed_hashes_need_the_key() -> None:
    with pytest.raises(ValueError):
        KeyedHasher(b"short")
    hasher = KeyedHasher(b"k" * 32)
    assert hasher.digest("12345678") != KeyedHasher(b"j" * 32).digest("12345678")
    assert len(hasher.digest("12345678")) == 64


def test_tracking_numbers_and_carriers_are_normalised() -> None:
    assert normalise_tracking_number(" 1z 999-aa1 ") == "1Z999AA1"
    assert normalise_tracking_number("1Z") is None
    assert normalise_tracking_number("1Z99<9") is None
    assert normalise_carrier(" UPS ") == "ups"
    assert normalise_carrier("u p s") is None
    assert is_well_formed_pin("24681357") and not is_well_formed_pin("2468 357")
    assert is_node_id("0" * 32) and not is_node_id("0" * 31) and not is_node_id("G" * 32)


def test_crash_points_fire_at_the_armed_occurrence_only() -> None:
    fired: list[str] = []
    points = CrashPoints("pickup.claimed#2", kill=lambda: fired.append("killed"))

    points.reach("deposit.bound")
    points.reach("pickup.claimed")
    assert fired == []
    points.reach("pickup.claimed")
    assert fired == ["killed"]
    points.reach("pickup.claimed")
    assert fired == ["killed"]
    assert CrashPoints().armed is None
    with pytest.raises(ValueError):
        CrashPoints("x")
