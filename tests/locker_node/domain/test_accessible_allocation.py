"""Choosing a compartment with accessible doors: kept for who needs one, given last to others."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from locker_node.domain.allocation import (
    SIZE_CLASSES,
    Candidate,
    choose_compartment,
    choose_larger,
)

FREE = [
    Candidate("A01", "S", accessible=True),
    Candidate("A02", "S"),
    Candidate("B01", "M", accessible=True),
    Candidate("B02", "M"),
    Candidate("C01", "L"),
]


def test_a_recipient_who_needs_one_gets_an_accessible_compartment() -> None:
    assert choose_compartment(FREE, "S", allow_upsize=False, accessible=True) == FREE[0]
    assert choose_compartment(FREE, "M", allow_upsize=False, accessible=True) == FREE[2]


def test_when_none_of_the_class_is_free_only_upsizing_to_an_accessible_one_helps() -> None:
    small_taken = FREE[1:]
    assert choose_compartment(small_taken, "S", allow_upsize=False, accessible=True) is None
    assert choose_compartment(small_taken, "S", allow_upsize=True, accessible=True) == FREE[2]
    # Never a compartment the recipient could not reach, however well it fits.
    assert choose_compartment(FREE, "L", allow_upsize=True, accessible=True) is None


def test_other_parcels_take_accessible_compartments_last() -> None:
    assert choose_compartment(FREE, "S", allow_upsize=False) == FREE[1]
    only_accessible_small = [FREE[0], *FREE[2:]]
    # A larger compartment that is not accessible comes before an accessible one that fits.
    assert choose_compartment(only_accessible_small, "S", allow_upsize=True) == FREE[3]
    assert choose_compartment(only_accessible_small, "S", allow_upsize=False) == FREE[0]
    assert choose_compartment([FREE[0], FREE[2]], "S", allow_upsize=True) == FREE[0]


def test_too_small_moves_to_a_larger_compartment_of_the_same_kind_first() -> None:
    assert choose_larger(FREE, "S", accessible=True) == FREE[2]
    assert choose_larger(FREE, "S") == FREE[3]
    assert choose_larger(FREE, "M", accessible=True) is None
    assert choose_larger(FREE, "M") == FREE[4]
    assert choose_larger([FREE[2]], "S") == FREE[2]


labels = (f"{column}{row:02d}" for column, row in itertools.product("ABCD", range(1, 13)))
free_sets = st.lists(
    st.tuples(st.sampled_from(SIZE_CLASSES), st.booleans()), min_size=0, max_size=12
).map(lambda drawn: [Candidate(label, s, a) for label, (s, a) in zip(labels, drawn, strict=False)])


@given(free_sets, st.sampled_from(SIZE_CLASSES), st.booleans(), st.booleans())
def test_the_choice_fits_and_honours_the_need(
    free: list[Candidate], size: str, upsize: bool, accessible: bool
) -> None:
    chosen = choose_compartment(free, size, allow_upsize=upsize, accessible=accessible)
    rank = SIZE_CLASSES.index(size)

    def fits(c: Candidate) -> bool:
        rank_c = SIZE_CLASSES.index(c.size)
        return rank_c == rank or (upsize and rank_c > rank)

    usable = [c for c in free if fits(c) and (c.accessible or not accessible)]
    if not usable:
        assert chosen is None
        return
    assert chosen in usable
    if accessible:
        assert chosen.accessible
    elif chosen.accessible:
        assert all(c.accessible for c in usable)  # only when nothing else fits
