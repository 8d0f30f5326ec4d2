"""recipient notices: the notice outbox, each carrier's choice, the sealed pickup secret

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from central.models.base import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("destination_hint", sa.String(length=64), nullable=False),
        sa.Column("payload_sealed", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("key", name=op.f("uq_notices_key")),
    )
    op.create_index("ix_notices_due", "notices", ["status", "next_attempt_at"], unique=False)
    op.create_index("ix_notices_reservation", "notices", ["reservation_id", "id"], unique=False)
    with op.batch_alter_table("carriers") as batch:
        batch.add_column(
            sa.Column(
                "recipient_notices",
                sa.String(length=16),
                nullable=False,
                server_default="network",
            )
        )
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("pickup_secret_sealed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("pickup_secret_sealed")
    with op.batch_alter_table("carriers") as batch:
        batch.drop_column("recipient_notices")
    op.drop_index("ix_notices_reservation", table_name="notices")
    op.drop_index("ix_notices_due", table_name="notices")
    op.drop_table("notices")
