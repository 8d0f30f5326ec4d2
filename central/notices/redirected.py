"""The wording of the `redirected` notice (a reserved parcel on its way to another locker), read
from its template files, one per language: `templates/redirected.<language>.txt`.

A file holds one `name: text` a line (`subject`, `heading`, `sms` once each, `paragraph` once
or more, in order); lines starting with `#` are comments. The sentences are format strings over
the same fields as every other notice's (`content._fields`), so `content` lays them out like
the rest; a file that names any other field, or lacks a part, fails when it is read, at import.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import NamedTuple

TEMPLATES = Path(__file__).parent / "templates"
# What the sentences may name: `content._fields`, and in the SMS also the page's address.
_FIELDS = frozenset({"carrier", "tracking", "bank", "address", "deadline", "at"})
_SMS_FIELDS = _FIELDS | {"code", "url"}
_ONCE = ("subject", "heading", "sms")


class RedirectedWording(NamedTuple):
    """In the order of `content._Kind`'s fields."""

    subject: str
    heading: str
    paragraphs: tuple[str, ...]
    sms: str


def redirected_wording(language: str) -> RedirectedWording:
    """The notice's sentences in `language` ("en" or "es")."""
    path = TEMPLATES / f"redirected.{language}.txt"
    return parse_wording(path.read_text(encoding="utf-8"), source=path.name)


def parse_wording(text: str, *, source: str = "<text>") -> RedirectedWording:
    parts: dict[str, str] = {}
    paragraphs: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, sentence = line.partition(":")
        name, sentence = name.strip(), sentence.strip()
        where = f"{source}, line {number}"
        if not colon or not sentence:
            raise ValueError(f"{where}: expected `name: text`")
        _check_fields(sentence, _SMS_FIELDS if name == "sms" else _FIELDS, where)
        if name == "paragraph":
            paragraphs.append(sentence)
        elif name in _ONCE and name not in parts:
            parts[name] = sentence
        else:
            raise ValueError(f"{where}: {name!r} is unknown or given twice")
    missing = [name for name in _ONCE if name not in parts] + ([] if paragraphs else ["paragraph"])
    if missing:
        raise ValueError(f"{source}: missing {', '.join(missing)}")
    if not parts["sms"].endswith("{url}"):
        raise ValueError(f"{source}: the SMS ends with the parcel page's address, {{url}}")
    return RedirectedWording(parts["subject"], parts["heading"], tuple(paragraphs), parts["sms"])


def _check_fields(sentence: str, allowed: frozenset[str], where: str) -> None:
    try:
        named = {field for _, field, _, _ in string.Formatter().parse(sentence) if field}
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    unknown = sorted(named - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field {', '.join(unknown)}")
