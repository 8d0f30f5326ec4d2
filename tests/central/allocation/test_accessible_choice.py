"""The allocation choice with accessible units, as a pure function: no database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.allocation.choice import (
    BankOption,
    Candidate,
    ClassOption,
    Need,
    NoFit,
    choose_candidates,
)
from central.allocation.sizing import DEFAULT_CLASS_DIMENSIONS
from central.models import SizeClass

ACCESSIBLE_M = Need(size=SizeClass.M, accessible=True)
PLAIN_M = Need(size=SizeClass.M)


def bank(
    bank_id: str,
    distance: float,
    free: dict[str, tuple[int, int]],
    *,
    allow_upsize: bool = False,
) -> BankOption:
    """`free`: per class, (free units, of which accessible)."""
    return BankOption(
        bank_id=bank_id,
        distance_km=distance,
        classes={
            SizeClass(s): ClassOption(DEFAULT_CLASS_DIMENSIONS[SizeClass(s)], n, a)
            for s, (n, a) in free.items()
        },
        max_weight_g=25_000,
        allow_upsize=allow_upsize,
    )


def test_an_accessible_need_skips_a_nearer_bank_without_a_free_accessible_unit() -> None:
    near = bank("NEAR", 0.5, {"M": (5, 0)})
    far = bank("FAR", 3.0, {"M": (1, 1)})
    assert choose_candidates(ACCESSIBLE_M, [near, far]) == [Candidate("FAR", SizeClass.M)]


def test_an_accessible_need_takes_the_nearest_bank_that_has_one() -> None:
    near = bank("NEAR", 0.5, {"M": (2, 1)})
    far = bank("FAR", 3.0, {"M": (1, 1)})
    assert choose_candidates(ACCESSIBLE_M, [far, near]) == [
        Candidate("NEAR", SizeClass.M),
        Candidate("FAR", SizeClass.M),
    ]


def test_an_accessible_need_with_none_free_anywhere_has_no_candidate() -> None:
    # Fits everywhere, so not a NoFit (422): waiting, or another place, may help (409).
    banks = [bank("A", 1.0, {"M": (4, 0)}), bank("B", 2.0, {"M": (3, 0), "L": (2, 2)})]
    assert choose_candidates(ACCESSIBLE_M, banks) == []


def test_upsizing_for_an_accessible_need_moves_to_a_larger_accessible_unit() -> None:
    option = bank("UP", 1.0, {"M": (3, 0), "L": (1, 1)}, allow_upsize=True)
    assert choose_candidates(ACCESSIBLE_M, [option]) == [Candidate("UP", SizeClass.L)]
    fixed = bank("FIXED", 1.0, {"M": (3, 0), "L": (1, 1)})
    assert choose_candidates(ACCESSIBLE_M, [fixed]) == []


def test_a_plain_need_keeps_the_last_accessible_units_for_last() -> None:
    """A bank whose only free units are accessible comes after every place with another unit,
    and is still offered: the parcel goes there rather than nowhere."""
    near = bank("NEAR", 0.5, {"M": (1, 1)})
    far = bank("FAR", 3.0, {"M": (2, 0)})
    assert choose_candidates(PLAIN_M, [near, far]) == [
        Candidate("FAR", SizeClass.M),
        Candidate("NEAR", SizeClass.M),
    ]
    assert choose_candidates(PLAIN_M, [near]) == [Candidate("NEAR", SizeClass.M)]


def test_a_plain_need_with_plain_units_free_keeps_distance_order() -> None:
    near = bank("NEAR", 0.5, {"M": (3, 1)})
    far = bank("FAR", 3.0, {"M": (2, 0)})
    assert choose_candidates(PLAIN_M, [far, near]) == [
        Candidate("NEAR", SizeClass.M),
        Candidate("FAR", SizeClass.M),
    ]


def test_a_plain_need_upsizes_before_it_takes_an_accessible_unit() -> None:
    option = bank("UP", 1.0, {"M": (1, 1), "L": (2, 0)}, allow_upsize=True)
    assert choose_candidates(PLAIN_M, [option]) == [
        Candidate("UP", SizeClass.L),
        Candidate("UP", SizeClass.M),
    ]


def test_counts_below_zero_free_nothing() -> None:
    """More holds than units (units went out of service): the class offers nothing it lacks."""
    over = ClassOption(DEFAULT_CLASS_DIMENSIONS[SizeClass.M], available=2, accessible_available=-1)
    assert (over.plain_free, over.accessible_free) == (2, 0)
    short = ClassOption(DEFAULT_CLASS_DIMENSIONS[SizeClass.M], available=-1, accessible_available=1)
    assert (short.plain_free, short.accessible_free) == (-2, 0)
    assert (
        choose_candidates(
            ACCESSIBLE_M,
            [BankOption("X", 1.0, {SizeClass.M: short}, 25_000)],
        )
        == []
    )


def test_a_parcel_that_fits_nowhere_is_still_a_no_fit_for_an_accessible_need() -> None:
    with pytest.raises(NoFit) as raised:
        choose_candidates(Need(size=SizeClass.XL, accessible=True), [bank("A", 1.0, {"M": (2, 2)})])
    assert raised.value.code == "size_unavailable"


def test_free_for_counts_what_the_need_may_take() -> None:
    option = ClassOption(DEFAULT_CLASS_DIMENSIONS[SizeClass.M], available=5, accessible_available=2)
    assert option.free_for(ACCESSIBLE_M) == 2
    assert option.free_for(PLAIN_M) == 5
    assert option.plain_free == 3


counts = st.integers(min_value=-3, max_value=6)


@given(st.lists(st.tuples(counts, counts), min_size=1, max_size=6), st.booleans())
def test_candidates_are_exactly_the_classes_the_need_could_take(
    free: list[tuple[int, int]], accessible: bool
) -> None:
    """Every bank with a unit the need may take is offered once; none without one is."""
    banks = [bank(f"B{i}", float(i), {"M": pair}) for i, pair in enumerate(free)]
    need = Need(size=SizeClass.M, accessible=accessible)
    chosen = [c.bank_id for c in choose_candidates(need, banks)]
    assert len(chosen) == len(set(chosen))
    for i, (available, accessible_available) in enumerate(free):
        takeable = min(available, accessible_available) > 0 if accessible else available > 0
        assert (f"B{i}" in chosen) == takeable
    if not accessible:
        # Banks with a unit that is not accessible come first.
        plain = [f"B{i}" for i, (n, a) in enumerate(free) if n > max(a, 0)]
        assert chosen[: len(plain)] == plain
