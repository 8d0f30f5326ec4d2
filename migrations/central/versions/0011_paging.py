"""Paging: operators' alert subscriptions and the page outbox

- page_targets: outgoing webhooks (Slack-compatible), their URL sealed with the service key.
- page_subscriptions: which alert types and banks an operator is paged for, and where to.
- page_scans: alert transitions the paging scan has handled.
- page_outbox: one page per (alert, transition, destination), sent once.
- alerts.created_at and alerts.resolved_at are indexed for the scan.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from central.models.base import UtcDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "page_targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url_sealed", sa.Text(), nullable=False),
        sa.Column("url_hint", sa.String(length=300), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_page_targets_created_by_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_page_targets")),
        sa.UniqueConstraint("name", name=op.f("uq_page_targets_name")),
    )
    op.create_table(
        "page_subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("alert_types", sa.JSON(), nullable=True),
        sa.Column("bank_ids", sa.JSON(), nullable=True),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("on_resolve", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_page_subscriptions_operator_id_operators"),
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["page_targets.id"],
            name=op.f("fk_page_subscriptions_target_id_page_targets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_page_subscriptions")),
    )
    op.create_index(
        op.f("ix_page_subscriptions_operator_id"), "page_subscriptions", ["operator_id"]
    )
    op.create_index(op.f("ix_page_subscriptions_target_id"), "page_subscriptions", ["target_id"])
    op.create_table(
        "page_scans",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("transition", sa.String(length=8), nullable=False),
        sa.Column("scanned_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_page_scans_alert_id_alerts")
        ),
        sa.PrimaryKeyConstraint("alert_id", "transition", name=op.f("pk_page_scans")),
    )
    op.create_index(op.f("ix_page_scans_scanned_at"), "page_scans", ["scanned_at"])
    op.create_table(
        "page_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("transition", sa.String(length=8), nullable=False),
        sa.Column("destination", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("destination_hint", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("digest_size", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_page_outbox_alert_id_alerts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_page_outbox")),
        sa.UniqueConstraint(
            "alert_id",
            "transition",
            "destination",
            name=op.f("uq_page_outbox_alert_id"),
        ),
    )
    op.create_index("ix_page_outbox_due", "page_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])
    op.create_index("ix_alerts_resolved_at", "alerts", ["resolved_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_resolved_at", table_name="alerts")
    op.drop_index("ix_alerts_created_at", table_name="alerts")
    op.drop_index("ix_page_outbox_due", table_name="page_outbox")
    op.drop_table("page_outbox")
    op.drop_index(op.f("ix_page_scans_scanned_at"), table_name="page_scans")
    op.drop_table("page_scans")
    op.drop_index(op.f("ix_page_subscriptions_target_id"), table_name="page_subscriptions")
    op.drop_index(op.f("ix_page_subscriptions_operator_id"), table_name="page_subscriptions")
    op.drop_table("page_subscriptions")
    op.drop_table("page_targets")
