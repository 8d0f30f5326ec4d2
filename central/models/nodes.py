"""Locker nodes: enrollment tokens, nodes, seen nonces, applied events, commands and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class EnrollmentToken(Base):
    """A one-time enrollment token, kept only as its SHA-256."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enrolled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    online: Mapped[bool] = mapped_column(default=True)
    # The last heartbeat's doors, boards and outbox depth.
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class NodeNonce(Base):
    """Nonces a node used recently; a signed request is accepted once."""

    __tablename__ = "node_nonces"

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class NodeEventRecord(Base):
    """Each node event once, with the decision taken; sealed fields stay sealed here."""

    __tablename__ = "node_events"
    __table_args__ = (
        # Reports and charts read a bank's events by time; the analytics filler reads them in
        # (received_at, id) order.
        Index("ix_node_events_bank_occurred", "bank_id", "occurred_at"),
        Index("ix_node_events_received_at_id", "received_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))  # applied | rejected
    error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class NodeCommand(Base):
    __tablename__ = "node_commands"
    __table_args__ = (Index("ix_node_commands_node_status", "node_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    signature: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_bank_type", "bank_id", "type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # None for network-wide alerts (a carrier's failing webhook endpoint).
    bank_id: Mapped[str | None] = mapped_column(ForeignKey("banks.id"), nullable=True)
    type: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # What the alert is about within its bank and type (a compartment, an endpoint): one open
    # alert per (bank, type, subject). Operator columns: None when the system acted.
    subject: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)
