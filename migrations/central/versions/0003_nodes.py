"""nodes: enrollment, signed requests, events, commands, alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 00:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_reservations_bank_updated", "reservations", ["bank_id", "updated_at", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["bank_id"], ["banks.id"], name=op.f("fk_alerts_bank_id_banks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_bank_type", "alerts", ["bank_id", "type"], unique=False)
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_enrollment_tokens_bank_id_banks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_enrollment_tokens_bank_id"), "enrollment_tokens", ["bank_id"], unique=False
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("enrolled_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("health", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["bank_id"], ["banks.id"], name=op.f("fk_nodes_bank_id_banks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    op.create_index(op.f("ix_nodes_bank_id"), "nodes", ["bank_id"], unique=False)
    op.create_table(
        "node_commands",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("issued_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("acknowledged_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_node_commands_bank_id_banks")
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_commands_node_id_nodes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_commands")),
    )
    op.create_index(op.f("ix_node_commands_bank_id"), "node_commands", ["bank_id"], unique=False)
    op.create_index(
        "ix_node_commands_node_status", "node_commands", ["node_id", "status"], unique=False
    )
    op.create_table(
        "node_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("bank_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_node_events_bank_id_banks")
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_events_node_id_nodes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_events")),
    )
    op.create_index(op.f("ix_node_events_node_id"), "node_events", ["node_id"], unique=False)
    op.create_table(
        "node_nonces",
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("seen_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_nonces_node_id_nodes")
        ),
        sa.PrimaryKeyConstraint("node_id", "nonce", name=op.f("pk_node_nonces")),
    )
    op.create_index(op.f("ix_node_nonces_seen_at"), "node_nonces", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reservations_bank_updated", table_name="reservations")
    op.drop_index(op.f("ix_node_nonces_seen_at"), table_name="node_nonces")
    op.drop_table("node_nonces")
    op.drop_index(op.f("ix_node_events_node_id"), table_name="node_events")
    op.drop_table("node_events")
    op.drop_index("ix_node_commands_node_status", table_name="node_commands")
    op.drop_index(op.f("ix_node_commands_bank_id"), table_name="node_commands")
    op.drop_table("node_commands")
    op.drop_index(op.f("ix_nodes_bank_id"), table_name="nodes")
    op.drop_table("nodes")
    op.drop_index(op.f("ix_enrollment_tokens_bank_id"), table_name="enrollment_tokens")
    op.drop_table("enrollment_tokens")
    op.drop_index("ix_alerts_bank_type", table_name="alerts")
    op.drop_table("alerts")
