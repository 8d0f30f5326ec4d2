"""analytics outbox

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("insert_id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("distinct_id", sa.String(length=64), nullable=False),
        sa.Column("reservation_id", sa.String(length=32), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("occurred_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", central.models.base.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("sent_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_outbox")),
        sa.UniqueConstraint("insert_id", name=op.f("uq_analytics_outbox_insert_id")),
    )
    op.create_index(
        "ix_analytics_outbox_due", "analytics_outbox", ["status", "next_attempt_at"], unique=False
    )
    op.create_index(
        op.f("ix_analytics_outbox_reservation_id"),
        "analytics_outbox",
        ["reservation_id"],
        unique=False,
    )
    op.create_table(
        "analytics_cursors",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=True),
        sa.Column("last_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_key", sa.String(length=40), nullable=True),
        sa.Column("updated_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_analytics_cursors")),
    )
    op.create_table(
        "analytics_subjects",
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("distinct_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_analytics_subjects")),
    )
    op.create_index(
        op.f("ix_analytics_subjects_created_at"),
        "analytics_subjects",
        ["created_at"],
        unique=False,
    )
    op.create_index(
        "ix_node_events_received_at_id", "node_events", ["received_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_node_events_received_at_id", table_name="node_events")
    op.drop_index(op.f("ix_analytics_subjects_created_at"), table_name="analytics_subjects")
    op.drop_table("analytics_subjects")
    op.drop_table("analytics_cursors")
    op.drop_index(op.f("ix_analytics_outbox_reservation_id"), table_name="analytics_outbox")
    op.drop_index("ix_analytics_outbox_due", table_name="analytics_outbox")
    op.drop_table("analytics_outbox")
