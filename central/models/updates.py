"""Node updates: rollouts of a wanted node version, and each node's last update report."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class NodeRollout(Base):
    """An admin's "run this node version" for every bank or for the banks listed beside it.

    The latest active rollout that covers a bank decides its wanted version; a stopped one
    decides nothing (its nodes keep what they run).
    """

    __tablename__ = "node_rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64))
    all_banks: Mapped[bool] = mapped_column(default=False)
    set_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    stopped_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)


class NodeRolloutBank(Base):
    """A bank a rollout names (none for a rollout to every bank)."""

    __tablename__ = "node_rollout_banks"

    rollout_id: Mapped[int] = mapped_column(ForeignKey("node_rollouts.id"), primary_key=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), primary_key=True, index=True)


class NodeUpdateStatus(Base):
    """A node's last update report, written only when it changes (heartbeats repeat it)."""

    __tablename__ = "node_update_status"

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    running: Mapped[str] = mapped_column(String(64))
    wanted: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    rollout_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When the node says the state changed (its clock), and when central stored it.
    changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
