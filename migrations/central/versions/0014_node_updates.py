"""Node updates: the wanted node version per bank and each node's progress

- node_rollouts: an admin's wanted node version, for every bank or for the banks in
  node_rollout_banks; the latest active one covering a bank decides.
- node_update_status: each node's last update report (written when it changes).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_rollouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("all_banks", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.Integer(), nullable=True),
        sa.Column("set_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("stopped_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["set_by"], ["operators.id"], name=op.f("fk_node_rollouts_set_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["stopped_by"], ["operators.id"], name=op.f("fk_node_rollouts_stopped_by_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_rollouts")),
    )
    op.create_index(
        op.f("ix_node_rollouts_stopped_at"), "node_rollouts", ["stopped_at"], unique=False
    )
    op.create_table(
        "node_rollout_banks",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_node_rollout_banks_bank_id_banks")
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["node_rollouts.id"],
            name=op.f("fk_node_rollout_banks_rollout_id_node_rollouts"),
        ),
        sa.PrimaryKeyConstraint("rollout_id", "bank_id", name=op.f("pk_node_rollout_banks")),
    )
    op.create_index(
        op.f("ix_node_rollout_banks_bank_id"), "node_rollout_banks", ["bank_id"], unique=False
    )
    op.create_table(
        "node_update_status",
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("running", sa.String(length=64), nullable=False),
        sa.Column("wanted", sa.String(length=64), nullable=True),
        sa.Column("previous", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("rollout_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_node_update_status_bank_id_banks")
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_update_status_node_id_nodes")
        ),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_update_status")),
    )
    op.create_index(
        op.f("ix_node_update_status_bank_id"), "node_update_status", ["bank_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_node_update_status_bank_id"), table_name="node_update_status")
    op.drop_table("node_update_status")
    op.drop_index(op.f("ix_node_rollout_banks_bank_id"), table_name="node_rollout_banks")
    op.drop_table("node_rollout_banks")
    op.drop_index(op.f("ix_node_rollouts_stopped_at"), table_name="node_rollouts")
    op.drop_table("node_rollouts")
