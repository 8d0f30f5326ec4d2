"""The allocation choice: which bank and size class to try, in order. Pure, no database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from central.allocation.sizing import Dimensions, fits
from central.models.base import SizeClass


@dataclass(frozen=True, slots=True)
class ClassOption:
    """One size class of a bank: `available` counts every free unit, `accessible_available`
    the free accessible ones among them (either may be below zero for a while, see
    `banks.repository`)."""

    dimensions: Dimensions
    available: int
    accessible_available: int = 0

    @property
    def plain_free(self) -> int:
        """Free units that are not accessible: what a request without the need takes first."""
        return min(self.available, self.available - self.accessible_available)

    @property
    def accessible_free(self) -> int:
        """Free accessible units (a unit is free only while the class has one free at all)."""
        return max(0, min(self.available, self.accessible_available))

    def free_for(self, need: Need) -> int:
        """The units of this class that the need could take now."""
        return self.accessible_free if need.accessible else max(0, self.available)


@dataclass(frozen=True, slots=True)
class BankOption:
    bank_id: str
    distance_km: float
    classes: Mapping[SizeClass, ClassOption]
    max_weight_g: int
    allow_upsize: bool = False


@dataclass(frozen=True, slots=True)
class Need:
    """What the parcel needs: a named class, or dimensions (and maybe weight) to fit; and
    whether its recipient needs an accessible (wheelchair height) compartment."""

    size: SizeClass | None = None
    parcel: Dimensions | None = None
    weight_g: int | None = None
    accessible: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    bank_id: str
    size: SizeClass


class NoFit(Exception):
    """No bank among the options can ever hold this parcel (size or weight), free or not."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def classes_for(need: Need, bank: BankOption) -> list[SizeClass]:
    """Size classes of this bank that can hold the parcel, smallest first (empty if none)."""
    if need.weight_g is not None and need.weight_g > bank.max_weight_g:
        return []
    ordered = sorted(bank.classes, key=lambda s: s.rank)
    if need.size is not None:
        fitting = [s for s in ordered if s.rank >= need.size.rank]
        if need.parcel is not None:
            fitting = [s for s in fitting if fits(need.parcel, bank.classes[s].dimensions)]
    elif need.parcel is not None:
        fitting = [s for s in ordered if fits(need.parcel, bank.classes[s].dimensions)]
    else:
        raise ValueError("a need names a size or gives parcel dimensions")
    if not fitting:
        return []
    if need.size is not None and fitting[0] != need.size:
        return []  # the named class is not at this bank, or the parcel does not fit in it
    return fitting if bank.allow_upsize else fitting[:1]


def choose_candidates(need: Need, banks: Sequence[BankOption]) -> list[Candidate]:
    """Every (bank, class) with a free unit that fits, nearest bank first, smallest class first.

    An accessible need comes before any other choice: only classes with a free accessible unit
    count, so a farther bank with one wins over a nearer bank without. Any other need takes the
    (bank, class) pairs with a free unit that is not accessible first, in that order, and only
    then those whose last free units are accessible: those are kept for who needs them while
    there is another place, within the range the carrier asked for, to put the parcel.

    The caller takes the first candidate it can decrement atomically; a race lost on one simply
    moves on to the next. Raises `NoFit` when the parcel fits no class at any bank at all, which is
    a 422 rather than a 409: waiting will not help.
    """
    fit_anywhere = False
    plain: list[Candidate] = []
    last_resort: list[Candidate] = []
    for bank in sorted(banks, key=lambda b: (b.distance_km, b.bank_id)):
        sizes = classes_for(need, bank)
        fit_anywhere = fit_anywhere or bool(sizes)
        for size in sizes:
            option = bank.classes[size]
            if need.accessible:
                if option.accessible_free > 0:
                    plain.append(Candidate(bank.bank_id, size))
            elif option.plain_free > 0:
                plain.append(Candidate(bank.bank_id, size))
            elif option.accessible_free > 0:
                last_resort.append(Candidate(bank.bank_id, size))
    if not fit_anywhere and banks:
        if need.weight_g is not None and all(need.weight_g > b.max_weight_g for b in banks):
            raise NoFit("parcel_too_heavy", "the parcel is heavier than any locker accepts")
        if need.parcel is not None and need.size is not None:
            raise NoFit("parcel_too_large", f"the parcel does not fit a size {need.size} locker")
        if need.parcel is not None:
            raise NoFit("parcel_too_large", "the parcel fits no locker size class")
        raise NoFit("size_unavailable", f"no bank in range has size {need.size} lockers")
    return plain + last_resort
