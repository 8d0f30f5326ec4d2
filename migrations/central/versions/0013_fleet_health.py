"""Fleet health: what heartbeats report about each node's computer

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 22:30:00.000000
"""

from collections.abc import Sequence

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
