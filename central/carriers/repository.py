"""Queries for carriers and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
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


def find_api_key(session: Session, prefix: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()


def touch_api_key(session: Session, key_id: int, now: datetime) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def revoke_api_key(session: Session, prefix: str, now: datetime) -> bool:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return rowcount(result) > 0
