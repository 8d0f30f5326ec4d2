"""Rows of the node's store as frozen dataclasses, and the small helpers every repository uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Row

T = TypeVar("T")


def one(kind: type[T], row: Row[Any] | None) -> T | None:
    return None if row is None else kind(**row._mapping)


def every(kind: type[T], rows: Iterable[Row[Any]]) -> list[T]:
    return [kind(**row._mapping) for row in rows]


def changed(result: Any) -> int:
    """Rows an UPDATE or DELETE touched."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the result of an UPDATE or DELETE, got {type(result).__name__}")
    return result.rowcount


def new_id() -> str:
    return uuid.uuid4().hex
