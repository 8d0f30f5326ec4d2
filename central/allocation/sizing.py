"""Which size class a parcel fits: pure functions over dimensions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from central.models.base import SizeClass


@dataclass(frozen=True, slots=True)
class Dimensions:
    """Inner or outer dimensions in millimetres; orientation does not matter."""

    length_mm: int
    width_mm: int
    height_mm: int

    def sorted(self) -> tuple[int, int, int]:
        a, b, c = sorted((self.length_mm, self.width_mm, self.height_mm))
        return a, b, c


# Defaults from the design: InPost's lockers (8x38x64, 19x38x64, 41x38x64 cm), 60x50x80 cm for XL.
DEFAULT_CLASS_DIMENSIONS: Mapping[SizeClass, Dimensions] = {
    SizeClass.S: Dimensions(640, 380, 80),
    SizeClass.M: Dimensions(640, 380, 190),
    SizeClass.L: Dimensions(640, 380, 410),
    SizeClass.XL: Dimensions(800, 500, 600),
}


def fits(parcel: Dimensions, space: Dimensions) -> bool:
    """True when the box fits the space in some axis-aligned rotation.

    Sorting both triples pairs the smallest side with the smallest side and so on; if that pairing
    fails, every other rotation fails too.
    """
    return all(p <= s for p, s in zip(parcel.sorted(), space.sorted(), strict=True))


def smallest_fitting_class(
    parcel: Dimensions, classes: Mapping[SizeClass, Dimensions]
) -> SizeClass | None:
    for size in sorted(classes, key=lambda s: s.rank):
        if fits(parcel, classes[size]):
            return size
    return None
