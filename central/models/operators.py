"""Operator accounts, their sessions, failed sign-ins and the append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class OperatorAccount(Base):
    """A person who runs the network from the dashboard; the password is kept only as argon2id."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # always lower-cased
    # None until the operator sets one through an invitation or a password-reset link: such an
    # account cannot sign in (an invited operator, or one whose password an admin reset).
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | viewer
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OperatorSession(Base):
    """A signed-in browser. The id is the SHA-256 of the cookie's random token, never the token.

    The CSRF token is derived from the cookie's token with a keyed hash, so it is not stored.
    """

    __tablename__ = "operator_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OperatorLoginFailure(Base):
    """One failed sign-in, keyed by a hash of (email, client): the throttle counts these."""

    __tablename__ = "operator_login_failures"
    __table_args__ = (Index("ix_operator_login_failures_key_at", "throttle_key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    throttle_key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class OperatorAuditEntry(Base):
    """Who did what to what, why, and how it ended; the database refuses updates and deletes."""

    __tablename__ = "operator_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    operator_id: Mapped[int | None] = mapped_column(
        ForeignKey("operators.id"), nullable=True, index=True
    )
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    outcome: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class OperatorLink(Base):
    """A one-time link to set an operator's password: an invitation or a password reset.

    Only the SHA-256 of the link's random token is kept, never the token. A link is used once,
    runs out at `expires_at`, and is revoked when a newer one is issued for the same operator or
    the operator is disabled.
    """

    __tablename__ = "operator_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))  # invite | reset
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    # The admin who issued it; None when it came from the command line.
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
