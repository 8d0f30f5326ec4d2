"""The bank as the kiosk draws it: columns of doors, from the compartment labels.

Labels are printed on the doors as a column's letters and a row number counted from the top
(`A01`..`A12` is column A; see central's `banks.service.compartment_labels`). A door's height
on the screen follows its size class, so an XL door looks bigger than an S one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Relative height on screen of each size class; an unknown size is drawn as an S door.
SIZE_HEIGHTS: Mapping[str, int] = {"S": 1, "M": 2, "L": 3, "XL": 4}

_LABEL = re.compile(r"^([A-Za-z]+)0*(\d+)$")


@dataclass(frozen=True)
class Door:
    label: str
    size: str | None
    height: int
    row: int


@dataclass(frozen=True)
class Column:
    name: str
    doors: tuple[Door, ...]


def bank_columns(labels: Iterable[str], sizes: Mapping[str, str]) -> list[Column]:
    """Group labels into columns (left to right) with their doors from top to bottom.

    A label that is not letters-then-digits gets a column of its own, after the others.
    """
    grouped: dict[str, list[Door]] = {}
    odd: list[Door] = []
    for label in labels:
        size = sizes.get(label)
        height = SIZE_HEIGHTS.get(size or "", 1)
        match = _LABEL.match(label)
        if match is None:
            odd.append(Door(label=label, size=size, height=height, row=len(odd) + 1))
            continue
        column, row = match.group(1).upper(), int(match.group(2))
        grouped.setdefault(column, []).append(Door(label=label, size=size, height=height, row=row))
    columns = [
        Column(name=name, doors=tuple(sorted(doors, key=lambda door: door.row)))
        for name, doors in sorted(grouped.items(), key=lambda item: (len(item[0]), item[0]))
    ]
    if odd:
        columns.append(Column(name="", doors=tuple(odd)))
    return columns
