"""operator accounts sessions and audit

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("email", name=op.f("uq_operators_email")),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_sessions_operator_id_operators"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_sessions")),
    )
    op.create_index(
        op.f("ix_operator_sessions_operator_id"), "operator_sessions", ["operator_id"], unique=False
    )
    op.create_table(
        "operator_login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("throttle_key", sa.String(length=64), nullable=False),
        sa.Column("at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_login_failures")),
    )
    op.create_index(
        "ix_operator_login_failures_key_at",
        "operator_login_failures",
        ["throttle_key", "at"],
        unique=False,
    )
    op.create_table(
        "operator_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_operator_audit_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_audit")),
    )
    op.create_index(op.f("ix_operator_audit_at"), "operator_audit", ["at"], unique=False)
    op.create_index(
        op.f("ix_operator_audit_operator_id"), "operator_audit", ["operator_id"], unique=False
    )
    # Alerts learn who acknowledged and resolved them, what they are about (one open alert per
    # bank, type and subject) and may be network-wide (no bank). Batch mode: SQLite rebuilds the
    # table to change a column's nullability or add a foreign key.
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("bank_id", existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("subject", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("resolved_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("note", sa.String(length=500), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_alerts_acknowledged_by_operators"),
            "operators",
            ["acknowledged_by"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_alerts_resolved_by_operators"), "operators", ["resolved_by"], ["id"]
        )
    _forbid_audit_changes()


def _forbid_audit_changes() -> None:
    """The audit log is append-only, like the reservation history: the database refuses changes."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION operator_audit_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'operator_audit is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER operator_audit_append_only BEFORE UPDATE OR DELETE "
            "ON operator_audit FOR EACH ROW EXECUTE FUNCTION operator_audit_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER operator_audit_no_{action.lower()} BEFORE {action} "
                "ON operator_audit BEGIN "
                "SELECT RAISE(ABORT, 'operator_audit is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER operator_audit_append_only ON operator_audit")
        op.execute("DROP FUNCTION operator_audit_append_only()")
    else:
        op.execute("DROP TRIGGER operator_audit_no_update")
        op.execute("DROP TRIGGER operator_audit_no_delete")
    # Network-wide alerts have no bank to keep once bank_id is required again.
    op.execute("DELETE FROM alerts WHERE bank_id IS NULL")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_alerts_resolved_by_operators"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_alerts_acknowledged_by_operators"), type_="foreignkey"
        )
        batch_op.drop_column("note")
        batch_op.drop_column("resolved_by")
        batch_op.drop_column("acknowledged_by")
        batch_op.drop_column("subject")
        batch_op.alter_column("bank_id", existing_type=sa.String(length=64), nullable=False)
    op.drop_index(op.f("ix_operator_audit_operator_id"), table_name="operator_audit")
    op.drop_index(op.f("ix_operator_audit_at"), table_name="operator_audit")
    op.drop_table("operator_audit")
    op.drop_index("ix_operator_login_failures_key_at", table_name="operator_login_failures")
    op.drop_table("operator_login_failures")
    op.drop_index(op.f("ix_operator_sessions_operator_id"), table_name="operator_sessions")
    op.drop_table("operator_sessions")
    op.drop_table("operators")
