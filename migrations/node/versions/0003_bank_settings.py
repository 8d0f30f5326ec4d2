"""Bank settings from central's feed: policy, opening hours and maintenance

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import locker_node.store.schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bank_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column(
            "updated_at", locker_node.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_bank_settings_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_settings")),
    )


def downgrade() -> None:
    op.drop_table("bank_settings")
