"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-20 23:53:45.163587
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import locker_node.store.schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("compartment", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("parcel_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "compartments",
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("size", sa.String(length=2), nullable=False),
        sa.Column("board", sa.String(length=64), nullable=False),
        sa.Column("lock", sa.Integer(), nullable=False),
        sa.Column("occupancy", sa.String(length=16), nullable=False),
        sa.Column("in_service", sa.Boolean(), nullable=False),
        sa.Column("service_note", sa.String(length=200), nullable=False),
        sa.Column("configured", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("label", name=op.f("pk_compartments")),
    )
    op.create_table(
        "courier_credentials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("carrier_id", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "valid_from", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "valid_until", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_courier_credentials")),
        sa.UniqueConstraint("carrier_id", "valid_from", name="uq_courier_credentials_carrier_from"),
    )
    op.create_table(
        "courier_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_seen_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("ended_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_courier_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_courier_sessions_token_hash")),
    )
    op.create_table(
        "keypad_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "locked_until", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keypad_failures")),
    )
    with op.batch_alter_table("keypad_failures", schema=None) as batch_op:
        batch_op.create_index("ix_keypad_failures_scope_at", ["scope", "at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("sent_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=64), nullable=False),
        sa.Column("tracking_number", sa.String(length=64), nullable=False),
        sa.Column("size", sa.String(length=2), nullable=False),
        sa.Column(
            "reserved_until", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("walk_up", sa.Boolean(), nullable=False),
        sa.Column(
            "pickup_deadline", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reservations_carrier_tracking", ["carrier_id", "tracking_number"], unique=False
        )

    op.create_table(
        "unlock_commands",
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("board", sa.String(length=64), nullable=False),
        sa.Column("lock", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column(
            "requested_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column(
            "finished_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_unlock_commands")),
    )
    with op.batch_alter_table("unlock_commands", schema=None) as batch_op:
        batch_op.create_index("ix_unlock_commands_outcome", ["outcome"], unique=False)

    op.create_table(
        "deposits",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("compartment", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["compartment"],
            ["compartments.label"],
            name=op.f("fk_deposits_compartment_compartments"),
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            name=op.f("fk_deposits_reservation_id_reservations"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["courier_sessions.id"],
            name=op.f("fk_deposits_session_id_courier_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposits")),
    )
    with op.batch_alter_table("deposits", schema=None) as batch_op:
        batch_op.create_index("ix_deposits_reservation_id", ["reservation_id"], unique=False)

    op.create_table(
        "parcels",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("reservation_id", sa.String(length=64), nullable=False),
        sa.Column("deposit_id", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=64), nullable=False),
        sa.Column("tracking_number", sa.String(length=64), nullable=False),
        sa.Column("compartment", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "deposited_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "pickup_deadline", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "finished_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["compartment"],
            ["compartments.label"],
            name=op.f("fk_parcels_compartment_compartments"),
        ),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposits.id"], name=op.f("fk_parcels_deposit_id_deposits")
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            name=op.f("fk_parcels_reservation_id_reservations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parcels")),
        sa.UniqueConstraint("deposit_id", name=op.f("uq_parcels_deposit_id")),
    )
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.create_index(
            "ix_parcels_status_deadline", ["status", "pickup_deadline"], unique=False
        )

    op.create_table(
        "door_operations",
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("compartment", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("deposit_id", sa.String(length=64), nullable=True),
        sa.Column("parcel_id", sa.String(length=64), nullable=True),
        sa.Column("via", sa.String(length=8), nullable=True),
        sa.Column(
            "started_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column(
            "finished_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["compartment"],
            ["compartments.label"],
            name=op.f("fk_door_operations_compartment_compartments"),
        ),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposits.id"], name=op.f("fk_door_operations_deposit_id_deposits")
        ),
        sa.ForeignKeyConstraint(
            ["parcel_id"], ["parcels.id"], name=op.f("fk_door_operations_parcel_id_parcels")
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_door_operations")),
    )
    with op.batch_alter_table("door_operations", schema=None) as batch_op:
        batch_op.create_index("ix_door_operations_result", ["result"], unique=False)

    op.create_table(
        "pickup_codes",
        sa.Column("parcel_id", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("qr_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "expires_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "finished_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["parcel_id"], ["parcels.id"], name=op.f("fk_pickup_codes_parcel_id_parcels")
        ),
        sa.PrimaryKeyConstraint("parcel_id", name=op.f("pk_pickup_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_pickup_codes_code_hash")),
        sa.UniqueConstraint("qr_hash", name=op.f("uq_pickup_codes_qr_hash")),
    )
    # The audit log is append-only: SQLite itself refuses to change or delete an entry.
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def downgrade() -> None:
    op.drop_table("pickup_codes")
    with op.batch_alter_table("door_operations", schema=None) as batch_op:
        batch_op.drop_index("ix_door_operations_result")

    op.drop_table("door_operations")
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.drop_index("ix_parcels_status_deadline")

    op.drop_table("parcels")
    with op.batch_alter_table("deposits", schema=None) as batch_op:
        batch_op.drop_index("ix_deposits_reservation_id")

    op.drop_table("deposits")
    with op.batch_alter_table("unlock_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_unlock_commands_outcome")

    op.drop_table("unlock_commands")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_carrier_tracking")

    op.drop_table("reservations")
    op.drop_table("outbox")
    with op.batch_alter_table("keypad_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_keypad_failures_scope_at")

    op.drop_table("keypad_failures")
    op.drop_table("courier_sessions")
    op.drop_table("courier_credentials")
    op.drop_table("compartments")
    op.drop_table("audit_log")
