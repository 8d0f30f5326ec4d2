"""tracking events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Adding nullable columns is a plain ALTER TABLE on SQLite too: batch mode copies no table.
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tracking_status", sa.String(length=24), nullable=True))
        batch_op.add_column(
            sa.Column(
                "tracking_checked_at",
                central.models.base.UtcDateTime(timezone=True),
                nullable=True,
            )
        )

    op.create_table(
        "tracking_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("carrier_code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("location", sa.String(length=300), nullable=True),
        sa.Column("occurred_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("received_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            name=op.f("fk_tracking_events_reservation_id_reservations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
        sa.UniqueConstraint(
            "reservation_id",
            "occurred_at",
            "carrier_code",
            "status",
            name=op.f("uq_tracking_events_reservation_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("tracking_events")
    # Copying `reservations` (batch mode's way of dropping a column on SQLite) would have to drop
    # the table that the append-only history references; SQLite 3.35+ drops plain columns in place.
    with op.batch_alter_table("reservations", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("tracking_checked_at")
        batch_op.drop_column("tracking_status")
