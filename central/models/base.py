"""Declarative base, shared column types and enums of central's data model."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a timestamp column gave {type(value).__name__}, not a datetime")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SizeClass(enum.StrEnum):
    S = "S"
    M = "M"
    L = "L"
    XL = "XL"

    @property
    def rank(self) -> int:
        return _SIZE_RANKS[self]


_SIZE_RANKS = {size: rank for rank, size in enumerate(SizeClass)}


class BankStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class CompartmentState(enum.StrEnum):
    FREE = "free"
    RESERVED = "reserved"  # bound by the node for a deposit in progress
    OCCUPIED = "occupied"
    OUT_OF_SERVICE = "out_of_service"


class ReservationStatus(enum.StrEnum):
    RESERVED = "reserved"
    DEPOSITED = "deposited"
    PICKED_UP = "picked_up"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    RETURNED = "returned"
    COLLECTED = "collected"  # a drop-off taken away by its carrier's courier


class ReservationKind(enum.StrEnum):
    """What a reservation holds a unit for."""

    DELIVERY = "delivery"  # a courier puts a parcel in, its recipient takes it out
    DROPOFF = "dropoff"  # a sender puts a parcel in, the carrier's courier takes it away


ACTIVE_STATUSES = (ReservationStatus.RESERVED, ReservationStatus.DEPOSITED)


class Actor(enum.StrEnum):
    CARRIER = "carrier"
    COURIER = "courier"
    RECIPIENT = "recipient"
    OPERATOR = "operator"
    SYSTEM = "system"
