"""Courier code hashes kept for every web worker and host, made ahead of time by a job

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "courier_code_hashes",
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=32), nullable=False),
        sa.Column("valid_from", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("r", sa.Integer(), nullable=False),
        sa.Column("p", sa.Integer(), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_courier_code_hashes_bank_id_banks")
        ),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name=op.f("fk_courier_code_hashes_carrier_id_carriers")
        ),
        sa.PrimaryKeyConstraint(
            "bank_id", "carrier_id", "valid_from", name=op.f("pk_courier_code_hashes")
        ),
    )
    op.create_index(
        "ix_courier_code_hashes_valid_until", "courier_code_hashes", ["valid_until"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_courier_code_hashes_valid_until", table_name="courier_code_hashes")
    op.drop_table("courier_code_hashes")
