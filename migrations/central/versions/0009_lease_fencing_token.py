"""leases.token: a fencing token, one more each time a lease changes holder

A scheduler that stalled past its lease and wakes after another took over has its writes
refused by the token, instead of overlapping the new leader's.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("token", sa.BigInteger(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("token")
