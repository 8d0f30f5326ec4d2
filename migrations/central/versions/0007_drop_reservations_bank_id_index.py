"""drop ix_reservations_bank_id: ix_reservations_bank_updated leads with bank_id

Every reservation insert maintained both; any query by bank alone can use the second.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 05:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_reservations_bank_id", table_name="reservations")


def downgrade() -> None:
    op.create_index("ix_reservations_bank_id", "reservations", ["bank_id"], unique=False)
