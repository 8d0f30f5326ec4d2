"""Bank settings: maintenance of banks and compartments, policy edits, opening hours

- banks.maintenance_reason / maintenance_since / maintenance_until: a bank an admin took out of
  service for work (its status stays `active`; `maintenance_since` set means in maintenance).
- compartments.maintenance_reason / maintenance_since / maintenance_until: one compartment so.
- banks.settings_version: grows with every change of policy or maintenance; a node's feed
  carries the bank's settings when the version it has differs.
- banks.allow_walk_up, banks.max_extensions: policy the dashboard edits besides the hours.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _maintenance_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("maintenance_reason", sa.String(500), nullable=True),
        sa.Column("maintenance_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("maintenance_until", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("banks") as batch:
        for column in _maintenance_columns():
            batch.add_column(column)
        batch.add_column(
            sa.Column("settings_version", sa.Integer(), nullable=False, server_default="1")
        )
        batch.add_column(
            sa.Column("allow_walk_up", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("max_extensions", sa.Integer(), nullable=True))
    with op.batch_alter_table("compartments") as batch:
        for column in _maintenance_columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("compartments") as batch:
        batch.drop_column("maintenance_until")
        batch.drop_column("maintenance_since")
        batch.drop_column("maintenance_reason")
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("max_extensions")
        batch.drop_column("allow_walk_up")
        batch.drop_column("settings_version")
        batch.drop_column("maintenance_until")
        batch.drop_column("maintenance_since")
        batch.drop_column("maintenance_reason")
