"""Queries for carriers and API keys."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from central.db import rowcount
from central.models import ApiKey, Carrier


def get_carrier(session: Session, carrier_id: str) -> Carrier | None:
    return session.get(Carrier, carrier_id)


def add_carrier(session: Session, carrier: Carrier) -> None:
    session.add(carrier)
    session.flush()


def add_api_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    carrier_id: str
    prefix: str
    key_hash: str
    last_used_at: datetime | None
    revoked_at: datetime | None


_KEYS = ApiKey.__table__
# Core rather than ORM: this runs on every API request.
_FIND_KEY = select(
    _KEYS.c.id,
    _KEYS.c.carrier_id,
    _KEYS.c.prefix,
    _KEYS.c.key_hash,
    _KEYS.c.last_used_at,
    _KEYS.c.revoked_at,
).where(_KEYS.c.prefix == bindparam("p_prefix"))


def find_api_key(session: Session, prefix: str) -> KeyRecord | None:
    row = session.connection().execute(_FIND_KEY, {"p_prefix": prefix}).first()
    return None if row is None else KeyRecord(*row)


def touch_api_key(
    session: Session, key_id: int, now: datetime, *, unless_since: datetime | None = None
) -> None:
    """Record the key's use; with `unless_since`, only if it was last recorded before that."""
    statement = update(ApiKey).where(ApiKey.id == key_id)
    if unless_since is not None:
        statement = statement.where(
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < unless_since)
        )
    session.execute(statement.values(last_used_at=now))


def revoked_among(session: Session, key_ids: Collection[int]) -> set[int]:
    """Which of these keys have been revoked."""
    if not key_ids:
        return set()
    return set(
        session.scalars(
            select(ApiKey.id).where(ApiKey.id.in_(key_ids), ApiKey.revoked_at.is_not(None))
        )
    )


def revoke_api_key(session: Session, prefix: str, now: datetime) -> bool:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return rowcount(result) > 0
