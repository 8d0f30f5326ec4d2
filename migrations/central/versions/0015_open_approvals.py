"""Guarded opens: mass opens wait for a second admin's approval

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from central.models.base import UtcDateTime

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "open_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("all_doors", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("decision_reason", sa.String(length=500), nullable=True),
        sa.Column("command_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_open_requests_bank_id_banks")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["operators.id"], name=op.f("fk_open_requests_requested_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["operators.id"], name=op.f("fk_open_requests_decided_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["command_id"],
            ["node_commands.id"],
            name=op.f("fk_open_requests_command_id_node_commands"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open_requests")),
    )
    op.create_index(
        "ix_open_requests_status_expires", "open_requests", ["status", "expires_at"], unique=False
    )
    op.create_index(
        "ix_open_requests_bank_status", "open_requests", ["bank_id", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_open_requests_bank_status", table_name="open_requests")
    op.drop_index("ix_open_requests_status_expires", table_name="open_requests")
    op.drop_table("open_requests")
