"""Operator accounts: invitations and password resets from the dashboard

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.models.base

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What an account without a password gets on the way down: not an argon2 hash, so it matches
# no password and the account cannot sign in, as before.
_NO_PASSWORD = "!"  # noqa: S105  (a marker that is no hash, not a password)


def upgrade() -> None:
    # Invited operators have no password until they set one. Batch mode: SQLite rebuilds the
    # table to change a column's nullability.
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=True)
    op.create_table(
        "operator_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", central.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", central.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_operator_links_operator_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_operator_links_created_by_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_operator_links_token_hash")),
    )
    op.create_index(
        op.f("ix_operator_links_operator_id"), "operator_links", ["operator_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_links_operator_id"), table_name="operator_links")
    op.drop_table("operator_links")
    op.execute(
        sa.text(
            "UPDATE operators SET password_hash = :none WHERE password_hash IS NULL"
        ).bindparams(none=_NO_PASSWORD)
    )
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=False)
