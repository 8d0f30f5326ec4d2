"""The node's SQLite schema as SQLAlchemy Core tables (migrations in migrations/node)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect

# Core rather than the ORM: the node runs for months on a small board, and the ORM would add
# several megabytes of resident memory for mapping a handful of plain tables.

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes (SQLite keeps no offset of its own)."""

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
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id(name: str = "id") -> Column[str]:
    return Column(name, String(64), primary_key=True)


def _at(name: str, *, nullable: bool = False) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=nullable)


compartments = Table(
    "compartments",
    metadata,
    Column("label", String(16), primary_key=True),
    Column("size", String(2), nullable=False),
    Column("board", String(64), nullable=False),
    Column("lock", Integer, nullable=False),
    Column("occupancy", String(16), nullable=False),  # free | bound | occupied
    Column("in_service", Boolean, nullable=False),
    Column("service_note", String(200), nullable=False),
    Column("configured", Boolean, nullable=False),  # False: dropped from the config file
    _at("updated_at"),
    # Within reach from a wheelchair (ADA height), from the config file.
    Column("accessible", Boolean, nullable=False, server_default=false()),
)

reservations = Table(
    "reservations",
    metadata,
    _id(),
    Column("carrier_id", String(64), nullable=False),
    Column("tracking_number", String(64), nullable=False),
    Column("size", String(2), nullable=False),
    _at("reserved_until"),
    Column("status", String(16), nullable=False),
    Column("walk_up", Boolean, nullable=False),
    _at("pickup_deadline", nullable=True),
    _at("created_at"),
    _at("updated_at"),
    # `delivery` or `dropoff` (a sender's parcel for the carrier's courier to collect).
    Column("kind", String(16), nullable=False, server_default="delivery"),
    # The recipient asked for an accessible compartment.
    Column("accessible", Boolean, nullable=False, server_default=false()),
    # Parcels of one group (one carrier, one recipient) share a pickup code here.
    Column("group_id", String(32), nullable=True),
    Index("ix_reservations_carrier_tracking", "carrier_id", "tracking_number"),
)

# A drop-off's code as central hashed it: `$scrypt$` with the bank's salt (the node hashes a
# typed code once per salt and looks it up), and the SHA-256 of its QR payload.
dropoff_codes = Table(
    "dropoff_codes",
    metadata,
    Column("reservation_id", String(64), ForeignKey("reservations.id"), primary_key=True),
    Column("code_hash", String(255), nullable=True, index=True),
    Column("qr_hash", String(64), nullable=True, unique=True),
    Column("status", String(16), nullable=False),  # a CodeStatus
    _at("created_at"),
    _at("finished_at", nullable=True),
)

courier_sessions = Table(
    "courier_sessions",
    metadata,
    _id(),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("carrier_id", String(64), nullable=False),
    _at("created_at"),
    _at("last_seen_at"),
    _at("ended_at", nullable=True),
)

deposits = Table(
    "deposits",
    metadata,
    _id(),
    Column("reservation_id", String(64), ForeignKey("reservations.id"), nullable=False),
    Column("carrier_id", String(64), nullable=False),
    Column("session_id", String(64), ForeignKey("courier_sessions.id"), nullable=True),
    Column("compartment", String(16), ForeignKey("compartments.label"), nullable=False),
    Column("status", String(16), nullable=False),
    _at("created_at"),
    _at("updated_at"),
    Index("ix_deposits_reservation_id", "reservation_id"),
)

parcels = Table(
    "parcels",
    metadata,
    _id(),
    Column("reservation_id", String(64), ForeignKey("reservations.id"), nullable=False),
    Column("deposit_id", String(64), ForeignKey("deposits.id"), nullable=False, unique=True),
    Column("carrier_id", String(64), nullable=False),
    Column("tracking_number", String(64), nullable=False),
    Column("compartment", String(16), ForeignKey("compartments.label"), nullable=False),
    Column("status", String(16), nullable=False),
    _at("deposited_at"),
    _at("pickup_deadline"),
    _at("finished_at", nullable=True),
    Index("ix_parcels_status_deadline", "status", "pickup_deadline"),
)

# One row per parcel. A code that dies loses its hashes, so the unique indexes only ever hold
# live codes and a fresh code can never collide with a dead one.
pickup_codes = Table(
    "pickup_codes",
    metadata,
    Column("parcel_id", String(64), ForeignKey("parcels.id"), primary_key=True),
    Column("code_hash", String(64), nullable=True, unique=True),
    Column("qr_hash", String(64), nullable=True, unique=True),
    Column("status", String(16), nullable=False),
    _at("expires_at"),
    _at("created_at"),
    _at("finished_at", nullable=True),
    # A parcel that joined a group-mate's code: the parcel whose row holds the hashes. Such a
    # row has no hashes of its own; the code opens every live parcel that joined it.
    Column("joins", String(64), nullable=True, index=True),
)

# scrypt hashes (`$scrypt$...` strings) of the carriers' daily courier access codes.
courier_credentials = Table(
    "courier_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("carrier_id", String(64), nullable=False),
    Column("code_hash", String(255), nullable=False),
    _at("valid_from"),
    _at("valid_until"),
    _at("created_at"),
    UniqueConstraint("carrier_id", "valid_from", name="uq_courier_credentials_carrier_from"),
)

keypad_failures = Table(
    "keypad_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(64), nullable=False),
    _at("at"),
    _at("locked_until", nullable=True),
    Index("ix_keypad_failures_scope_at", "scope", "at"),
)

# Append-only (the migration adds triggers that refuse UPDATE and DELETE).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _at("at"),
    Column("actor", String(80), nullable=False),
    Column("action", String(40), nullable=False),
    Column("compartment", String(16), nullable=True),
    Column("reason", String(200), nullable=False),
    Column("command_id", String(64), nullable=True),
    Column("parcel_id", String(64), nullable=True),
    Column("detail", Text, nullable=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    _at("created_at"),
    Column("payload", Text, nullable=False),
    _at("sent_at", nullable=True),
)

# The door controller's journal: written before a lock fires, finished with its outcome.
unlock_commands = Table(
    "unlock_commands",
    metadata,
    Column("command_id", String(64), primary_key=True),
    Column("label", String(16), nullable=False),
    Column("board", String(64), nullable=False),
    Column("lock", Integer, nullable=False),
    Column("reason", String(200), nullable=False),
    _at("requested_at"),
    Column("outcome", String(16), nullable=True),
    _at("finished_at", nullable=True),
    Index("ix_unlock_commands_outcome", "outcome"),
)

# The business side of a door opening, written before the command: after a crash, the journal's
# outcome for `command_id` says how to settle it.
door_operations = Table(
    "door_operations",
    metadata,
    Column("command_id", String(64), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("compartment", String(16), ForeignKey("compartments.label"), nullable=False),
    Column("actor", String(80), nullable=False),
    Column("deposit_id", String(64), ForeignKey("deposits.id"), nullable=True),
    Column("parcel_id", String(64), ForeignKey("parcels.id"), nullable=True),
    Column("via", String(8), nullable=True),
    _at("started_at"),
    Column("result", String(16), nullable=True),
    _at("finished_at", nullable=True),
    Index("ix_door_operations_result", "result"),
)

# The bank's settings as central last sent them through the feed (`FeedBank`, as JSON), and
# their version, which the node sends back so that central sends them again only on a change.
# One row: the settings override the node's configuration once received, across restarts.
bank_settings = Table(
    "bank_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    Column("settings", Text, nullable=False),
    _at("updated_at"),
    CheckConstraint("id = 1", name="one_row"),
)
