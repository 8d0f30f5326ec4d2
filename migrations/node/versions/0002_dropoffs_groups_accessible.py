"""Drop-offs, parcel groups and accessible compartments

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import locker_node.store.schema

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("compartments") as batch:
        batch.add_column(
            sa.Column("accessible", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="delivery")
        )
        batch.add_column(
            sa.Column("accessible", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("group_id", sa.String(32), nullable=True))
    with op.batch_alter_table("pickup_codes") as batch:
        batch.add_column(sa.Column("joins", sa.String(64), nullable=True))
        batch.create_index("ix_pickup_codes_joins", ["joins"])
    op.create_table(
        "dropoff_codes",
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(255), nullable=True),
        sa.Column("qr_hash", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "created_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "finished_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            name=op.f("fk_dropoff_codes_reservation_id_reservations"),
        ),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_dropoff_codes")),
        sa.UniqueConstraint("qr_hash", name=op.f("uq_dropoff_codes_qr_hash")),
    )
    op.create_index("ix_dropoff_codes_code_hash", "dropoff_codes", ["code_hash"])


def downgrade() -> None:
    op.drop_index("ix_dropoff_codes_code_hash", table_name="dropoff_codes")
    op.drop_table("dropoff_codes")
    with op.batch_alter_table("pickup_codes") as batch:
        batch.drop_index("ix_pickup_codes_joins")
        batch.drop_column("joins")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("group_id")
        batch.drop_column("accessible")
        batch.drop_column("kind")
    with op.batch_alter_table("compartments") as batch:
        batch.drop_column("accessible")
