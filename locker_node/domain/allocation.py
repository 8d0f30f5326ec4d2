"""Which compartment a parcel goes into: pure choices over plain data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SIZE_CLASSES: tuple[str, ...] = ("S", "M", "L", "XL")


def size_rank(size: str) -> int:
    try:
        return SIZE_CLASSES.index(size)
    except ValueError:
        raise ValueError(f"unknown size class {size!r}") from None


@dataclass(frozen=True)
class Candidate:
    """A free, working compartment; `accessible`: within reach from a wheelchair."""

    label: str
    size: str
    accessible: bool = False


def _order(candidate: Candidate) -> tuple[bool, int, str]:
    # Accessible compartments last: kept for the parcels whose recipient needs one while any
    # other compartment fits, even a larger one.
    return candidate.accessible, size_rank(candidate.size), candidate.label


def _usable(free: Iterable[Candidate], accessible: bool) -> list[Candidate]:
    """What a parcel may take: only accessible compartments when its recipient needs one."""
    return [c for c in free if c.accessible or not accessible]


def choose_compartment(
    free: Iterable[Candidate], size: str, *, allow_upsize: bool, accessible: bool = False
) -> Candidate | None:
    """A compartment of exactly `size`, else (when allowed) of the smallest larger class.

    `accessible`: the recipient needs an accessible compartment, and only those are chosen.
    Otherwise compartments that are not accessible come first, larger ones included, and an
    accessible one only when nothing else fits. Lowest label first, so the choice is
    predictable for couriers and tests alike.
    """
    rank = size_rank(size)
    fitting = [
        c
        for c in _usable(free, accessible)
        if size_rank(c.size) == rank or (allow_upsize and size_rank(c.size) > rank)
    ]
    return min(fitting, key=_order, default=None)


def choose_larger(
    free: Iterable[Candidate], than: str, *, accessible: bool = False
) -> Candidate | None:
    """For a parcel that did not fit: the smallest compartment of a strictly larger class (an
    accessible one when the recipient needs it; otherwise accessible ones last)."""
    rank = size_rank(than)
    larger = (c for c in _usable(free, accessible) if size_rank(c.size) > rank)
    return min(larger, key=_order, default=None)
