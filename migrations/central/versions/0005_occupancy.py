"""occupancy history for the dashboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "occupancy_samples",
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("taken_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("size", sa.String(length=4), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("free", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("occupied", sa.Integer(), nullable=False),
        sa.Column("out_of_service", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_occupancy_samples_bank_id_banks")
        ),
        sa.PrimaryKeyConstraint("bank_id", "taken_at", "size", name=op.f("pk_occupancy_samples")),
    )
    op.create_index(
        "ix_occupancy_samples_taken_at", "occupancy_samples", ["taken_at"], unique=False
    )
    # The daily report and the charts read a bank's (or every bank's) history by time.
    op.create_index("ix_node_events_bank_occurred", "node_events", ["bank_id", "occurred_at"])
    op.create_index("ix_reservation_events_at", "reservation_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_reservation_events_at", table_name="reservation_events")
    op.drop_index("ix_node_events_bank_occurred", table_name="node_events")
    op.drop_index("ix_occupancy_samples_taken_at", table_name="occupancy_samples")
    op.drop_table("occupancy_samples")
