"""Choosing a compartment: the reserved class first, lowest label first, larger only if allowed."""

from __future__ import annotations

import pytest

from locker_node.domain.allocation import Candidate, choose_compartment, choose_larger

FREE = [
    Candidate("B02", "M"),
    Candidate("A02", "S"),
    Candidate("C01", "L"),
    Candidate("B01", "M"),
]


def test_the_reserved_class_comes_first_lowest_label_first() -> None:
    assert choose_compartment(FREE, "M", allow_upsize=True) == Candidate("B01", "M")
    assert choose_compartment(FREE, "S", allow_upsize=True) == Candidate("A02", "S")


def test_a_full_class_takes_the_next_larger_only_when_allowed() -> None:
    only_large = [Candidate("C01", "L"), Candidate("D01", "XL")]

    assert choose_compartment(only_large, "M", allow_upsize=True) == Candidate("C01", "L")
    assert choose_compartment(only_large, "M", allow_upsize=False) is None
    assert choose_compartment([], "S", allow_upsize=True) is None


def test_too_small_takes_the_smallest_strictly_larger_class() -> None:
    assert choose_larger(FREE, "S") == Candidate("B01", "M")
    assert choose_larger(FREE, "M") == Candidate("C01", "L")
    assert choose_larger(FREE, "L") is None


def test_unknown_sizes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="size class"):
        choose_compartment(FREE, "XXL", allow_upsize=True)
