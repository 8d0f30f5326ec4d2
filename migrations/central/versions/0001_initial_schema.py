"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-20 23:09:10.787686
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "banks",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("opening_hours", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hold_hours", sa.Integer(), nullable=False),
        sa.Column("pickup_hours", sa.Integer(), nullable=False),
        sa.Column("reminder_hours", sa.Integer(), nullable=False),
        sa.Column("max_extension_hours", sa.Integer(), nullable=False),
        sa.Column("max_weight_g", sa.Integer(), nullable=False),
        sa.Column("allow_upsize", sa.Boolean(), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_banks")),
    )
    op.create_table(
        "carriers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carriers")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("carrier_id", sa.String(length=32), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name=op.f("fk_api_keys_carrier_id_carriers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_carrier_id"), ["carrier_id"], unique=False)

    op.create_table(
        "bank_capacity",
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.String(length=4), nullable=False),
        sa.Column("length_mm", sa.Integer(), nullable=False),
        sa.Column("width_mm", sa.Integer(), nullable=False),
        sa.Column("height_mm", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("available", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_bank_capacity_bank_id_banks")
        ),
        sa.PrimaryKeyConstraint("bank_id", "size", name=op.f("pk_bank_capacity")),
    )
    op.create_table(
        "compartments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("size", sa.String(length=4), nullable=False),
        sa.Column("length_mm", sa.Integer(), nullable=False),
        sa.Column("width_mm", sa.Integer(), nullable=False),
        sa.Column("height_mm", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_compartments_bank_id_banks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compartments")),
        sa.UniqueConstraint("bank_id", "label", name=op.f("uq_compartments_bank_id")),
    )
    with op.batch_alter_table("compartments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compartments_bank_id"), ["bank_id"], unique=False)

    op.create_table(
        "reservations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("carrier_id", sa.String(length=32), nullable=False),
        sa.Column("tracking_number", sa.String(length=64), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("compartment_label", sa.String(length=16), nullable=True),
        sa.Column("length_mm", sa.Integer(), nullable=True),
        sa.Column("width_mm", sa.Integer(), nullable=True),
        sa.Column("height_mm", sa.Integer(), nullable=True),
        sa.Column("weight_g", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.JSON(), nullable=True),
        sa.Column("reserved_until", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("pickup_deadline", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("deposited_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_reservations_bank_id_banks")
        ),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name=op.f("fk_reservations_carrier_id_carriers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reservations_bank_id"), ["bank_id"], unique=False)
        batch_op.create_index(
            "ix_reservations_carrier_tracking", ["carrier_id", "tracking_number"], unique=False
        )
        batch_op.create_index(
            "ix_reservations_status_pickup_deadline", ["status", "pickup_deadline"], unique=False
        )
        batch_op.create_index(
            "ix_reservations_status_reserved_until", ["status", "reserved_until"], unique=False
        )
        batch_op.create_index(
            "uq_reservations_active_tracking",
            ["carrier_id", "tracking_number"],
            unique=True,
            postgresql_where=sa.text("status IN ('reserved', 'deposited')"),
            sqlite_where=sa.text("status IN ('reserved', 'deposited')"),
        )

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("carrier_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name=op.f("fk_webhook_endpoints_carrier_id_carriers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_carrier_id"), ["carrier_id"], unique=False
        )

    op.create_table(
        "reservation_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            name=op.f("fk_reservation_events_reservation_id_reservations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation_events")),
    )
    with op.batch_alter_table("reservation_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reservation_events_reservation_id"), ["reservation_id"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("body_sealed", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", central.models.base.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_endpoint_id"), ["endpoint_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_event_id"), ["event_id"], unique=False
        )

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("attempted_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_attempts_delivery_id"), ["delivery_id"], unique=False
        )

    _forbid_history_changes()


def _forbid_history_changes() -> None:
    """The reservation history is append-only: the database itself refuses updates and deletes."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION reservation_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'reservation_events is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER reservation_events_append_only BEFORE UPDATE OR DELETE "
            "ON reservation_events FOR EACH ROW EXECUTE FUNCTION reservation_events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER reservation_events_no_{action.lower()} BEFORE {action} "
                "ON reservation_events BEGIN "
                "SELECT RAISE(ABORT, 'reservation_events is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER reservation_events_append_only ON reservation_events")
        op.execute("DROP FUNCTION reservation_events_append_only()")
    else:
        op.execute("DROP TRIGGER reservation_events_no_update")
        op.execute("DROP TRIGGER reservation_events_no_delete")
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_delivery_id"))

    op.drop_table("webhook_attempts")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_event_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_endpoint_id"))
        batch_op.drop_index("ix_webhook_deliveries_due")

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("reservation_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reservation_events_reservation_id"))

    op.drop_table("reservation_events")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_carrier_id"))

    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_reservations_active_tracking",
            postgresql_where=sa.text("status IN ('reserved', 'deposited')"),
            sqlite_where=sa.text("status IN ('reserved', 'deposited')"),
        )
        batch_op.drop_index("ix_reservations_status_reserved_until")
        batch_op.drop_index("ix_reservations_status_pickup_deadline")
        batch_op.drop_index("ix_reservations_carrier_tracking")
        batch_op.drop_index(batch_op.f("ix_reservations_bank_id"))

    op.drop_table("reservations")
    with op.batch_alter_table("compartments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compartments_bank_id"))

    op.drop_table("compartments")
    op.drop_table("bank_capacity")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_carrier_id"))

    op.drop_table("api_keys")
    op.drop_table("leases")
    op.drop_table("carriers")
    op.drop_table("banks")
