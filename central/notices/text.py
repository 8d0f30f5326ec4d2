"""The clean-ups a notice's values go through before they stand in a sentence.

A name or address with a line break in it must stay on one line: otherwise it could start a line
of an email's text part of its own (and forge the code line). And an SMS must fit, so long
names are shortened.
"""

from __future__ import annotations

import re

__all__ = ["address_line", "has_blanks", "one_line", "shorten", "sms_length"]

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_BLANKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


def one_line(value: str) -> str:
    """`value` with every run of blanks and control characters folded into one space."""
    return _BLANKS.sub(" ", value).strip()


def has_blanks(value: str) -> bool:
    """Whether `value` holds a blank or a control character anywhere."""
    return _BLANKS.search(value) is not None


def address_line(address: str) -> str:
    """An address written over several lines, as one line: its lines joined by commas."""
    parts = (one_line(part).strip(" ,") for part in _LINE_BREAKS.split(address))
    return ", ".join(part for part in parts if part)


def shorten(value: str, width: int | None) -> str:
    """`value` cut to `width` characters, ending in three dots; None: as it is."""
    if width is None or len(value) <= width:
        return value
    return value[: width - 3].rstrip(" ,.;:-") + "..."  # three dots: "…" is not in GSM-7


def sms_length(text: str) -> int:
    """The length of `text` as the phone network counts it: in UTF-16 units."""
    return len(text.encode("utf-16-le")) // 2
