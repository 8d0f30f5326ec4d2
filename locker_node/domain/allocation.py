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
    """A free, working compartment."""

    label: str
    size: str


def _order(candidate: Candidate) -> tuple[int, str]:
    return size_rank(candidate.size), candidate.label


def choose_compartment(
    free: Iterable[Candidate], size: str, *, allow_upsize: bool
) -> Candidate | None:
    """A compartment of exactly `size`, else (when allowed) of the smallest larger class.

    Lowest label first, so the choice is predictable for couriers and tests alike.
    """
    rank = size_rank(size)
    fitting = [
        c for c in free if size_rank(c.size) == rank or (allow_upsize and size_rank(c.size) > rank)
    ]
    return min(fitting, key=_order, default=None)


def choose_larger(free: Iterable[Candidate], than: str) -> Candidate | None:
    """For a parcel that did not fit: the smallest compartment of a strictly larger class."""
    rank = size_rank(than)
    return min((c for c in free if size_rank(c.size) > rank), key=_order, default=None)
