"""Drop-offs, parcel groups and accessible compartments

- reservations.kind: `delivery` or `dropoff`; a drop-off's code hash and QR hash for the feed.
- reservations.accessible / accessible_unit, bank_capacity.accessible_total /
  accessible_available, compartments.accessible: ADA-height compartments that allocation keeps
  for the reservations asking for one.
- reservations.group_id: parcels for one recipient at one bank share a pickup code.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="delivery")
        )
        batch.add_column(
            sa.Column("accessible", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("accessible_unit", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("group_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("dropoff_code_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("dropoff_qr_hash", sa.String(64), nullable=True))
        batch.create_index("ix_reservations_group", ["group_id"])
    with op.batch_alter_table("bank_capacity") as batch:
        batch.add_column(
            sa.Column("accessible_total", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("accessible_available", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("compartments") as batch:
        batch.add_column(
            sa.Column("accessible", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("compartments") as batch:
        batch.drop_column("accessible")
    with op.batch_alter_table("bank_capacity") as batch:
        batch.drop_column("accessible_available")
        batch.drop_column("accessible_total")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_index("ix_reservations_group")
        batch.drop_column("dropoff_qr_hash")
        batch.drop_column("dropoff_code_hash")
        batch.drop_column("group_id")
        batch.drop_column("accessible_unit")
        batch.drop_column("accessible")
        batch.drop_column("kind")
