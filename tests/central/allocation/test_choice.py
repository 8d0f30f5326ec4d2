"""The allocation choice and size fitting, as pure functions: no database."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.allocation.choice import BankOption, ClassOption, Need, NoFit, choose_candidates
from central.allocation.sizing import (
    DEFAULT_CLASS_DIMENSIONS,
    Dimensions,
    fits,
    smallest_fitting_class,
)
from central.models import SizeClass


def bank(bank_id: str, distance: float, free: dict[str, int], **kw: object) -> BankOption:
    return BankOption(
        bank_id=bank_id,
        distance_km=distance,
        classes={
            SizeClass(s): ClassOption(DEFAULT_CLASS_DIMENSIONS[SizeClass(s)], n)
            for s, n in free.items()
        },
        max_weight_g=25_000,
        **kw,  # type: ignore[arg-type]
    )


def test_default_classes_are_the_inpost_sizes() -> None:
    assert DEFAULT_CLASS_DIMENSIONS[SizeClass.S].sorted() == (80, 380, 640)
    assert DEFAULT_CLASS_DIMENSIONS[SizeClass.M].sorted() == (190, 380, 640)
    assert DEFAULT_CLASS_DIMENSIONS[SizeClass.L].sorted() == (380, 410, 640)
    assert DEFAULT_CLASS_DIMENSIONS[SizeClass.XL].sorted() == (500, 600, 800)


@pytest.mark.parametrize(
    ("dims", "expected"),
    [
        ((600, 300, 70), SizeClass.S),
        ((70, 600, 300), SizeClass.S),  # same box on its side
        ((640, 380, 80), SizeClass.S),  # exactly the inner size
        ((600, 380, 81), SizeClass.M),  # a millimetre too thick for S
        ((641, 100, 100), SizeClass.XL),  # longer than S, M and L (640 mm)
        ((300, 400, 600), SizeClass.L),
        ((400, 400, 400), SizeClass.XL),  # wider than L's 380 mm side
        ((700, 450, 450), SizeClass.XL),
        ((900, 100, 100), None),  # longer than every class
    ],
)
def test_smallest_fitting_class(dims: tuple[int, int, int], expected: SizeClass | None) -> None:
    assert smallest_fitting_class(Dimensions(*dims), DEFAULT_CLASS_DIMENSIONS) == expected


side = st.integers(min_value=1, max_value=1000)


@given(side, side, side)
def test_fit_is_rotation_invariant_and_the_class_is_minimal(a: int, b: int, c: int) -> None:
    parcel = Dimensions(a, b, c)
    size = smallest_fitting_class(parcel, DEFAULT_CLASS_DIMENSIONS)
    rotations = [Dimensions(*p) for p in itertools.permutations((a, b, c))]
    for rotated in rotations:
        assert smallest_fitting_class(rotated, DEFAULT_CLASS_DIMENSIONS) == size
    smaller = [s for s in SizeClass if size is None or s.rank < size.rank]
    for s in smaller:
        space = DEFAULT_CLASS_DIMENSIONS[s]
        # No axis-aligned rotation fits any smaller class (brute force over all six).
        assert not any(
            all(p <= q for p, q in zip(r.sorted(), space.sorted(), strict=True))
            and all(
                x <= y
                for x, y in zip(
                    (r.length_mm, r.width_mm, r.height_mm),
                    (space.length_mm, space.width_mm, space.height_mm),
                    strict=True,
                )
            )
            for r in rotations
        )
    if size is not None:
        assert fits(parcel, DEFAULT_CLASS_DIMENSIONS[size])


def test_nearest_bank_first_then_smallest_class() -> None:
    banks = [
        bank("far", 3.0, {"S": 5}),
        bank("near", 1.0, {"S": 0, "M": 2}),
        bank("mid", 2, {"S": 1}),
    ]
    need = Need(size=SizeClass.S)
    assert [(c.bank_id, c.size) for c in choose_candidates(need, banks)] == [
        ("mid", SizeClass.S),
        ("far", SizeClass.S),
    ]


def test_upsize_only_where_the_bank_allows_it() -> None:
    banks = [
        bank("strict", 1.0, {"S": 0, "M": 3}),
        bank("lenient", 2.0, {"S": 0, "M": 3}, allow_upsize=True),
    ]
    got = choose_candidates(Need(size=SizeClass.S), banks)
    assert [(c.bank_id, c.size) for c in got] == [("lenient", SizeClass.M)]


def test_a_full_bank_is_an_empty_choice_not_a_misfit() -> None:
    assert choose_candidates(Need(size=SizeClass.S), [bank("b", 0, {"S": 0})]) == []


@pytest.mark.parametrize(
    ("need", "code"),
    [
        (Need(parcel=Dimensions(900, 900, 900)), "parcel_too_large"),
        (Need(parcel=Dimensions(10, 10, 10), weight_g=30_000), "parcel_too_heavy"),
        (Need(size=SizeClass.XL), "size_unavailable"),
        (Need(size=SizeClass.S, parcel=Dimensions(500, 500, 500)), "parcel_too_large"),
    ],
)
def test_parcels_that_never_fit_raise(need: Need, code: str) -> None:
    with pytest.raises(NoFit) as info:
        choose_candidates(need, [bank("b", 0, {"S": 1, "M": 1, "L": 1})])
    assert info.value.code == code
