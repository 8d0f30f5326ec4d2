"""A carrier's own reservations a page at a time, newest first, as `GET /v1/reservations` and
`GET /v1/dropoffs` list them: the query both take, and the opaque cursor that carries the
position of the last row given out."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.orm import Session

from carrier_adapters.tracking_numbers import normalize_tracking_number
from central.errors import ApiError
from central.models import Reservation, ReservationStatus
from central.reservations import repository as repo

__all__ = ["SearchQuery", "SearchQueryDep", "search_page"]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Which of the carrier's reservations to list, and where the page starts."""

    tracking_number: str | None
    status: ReservationStatus | None
    limit: int
    cursor: str | None


def _search_query(
    tracking_number: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status: ReservationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SearchQuery:
    return SearchQuery(tracking_number=tracking_number, status=status, limit=limit, cursor=cursor)


SearchQueryDep = Annotated[SearchQuery, Depends(_search_query)]


def search_page(
    session: Session, carrier_id: str, query: SearchQuery, *, kind: str | None = None
) -> tuple[Sequence[Reservation], str | None]:
    """One page of the carrier's reservations (of `kind` only, if given) and the cursor for the
    next one: None when this page is the last."""
    before = _decode_cursor(query.cursor) if query.cursor else None
    rows = repo.search(
        session,
        carrier_id,
        kind=kind,
        tracking_number=(
            normalize_tracking_number(query.tracking_number) if query.tracking_number else None
        ),
        status=query.status.value if query.status else None,
        before=before,
        limit=query.limit,
    )
    return rows, _encode_cursor(rows[-1]) if len(rows) == query.limit else None


def _encode_cursor(row: Reservation) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        at = datetime.fromisoformat(created)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from exc
    if at.tzinfo is None:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out")
    return at, rid
