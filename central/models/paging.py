"""Paging: operators' alert subscriptions, outgoing webhook targets and the page outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime
from central.models.nodes import Alert

# The paging scan reads alerts raised or resolved lately, every few seconds: by these indexes,
# not by a walk through every alert ever raised.
Index("ix_alerts_created_at", Alert.__table__.c.created_at)
Index("ix_alerts_resolved_at", Alert.__table__.c.resolved_at)


class PageTarget(Base):
    """An outgoing webhook (Slack-compatible) that pages go to. Its URL carries the receiver's
    token (Slack's incoming-webhook URLs do), so it is kept sealed with the service key; the
    dashboard and the logs show `url_hint`, the scheme and host alone."""

    __tablename__ = "page_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url_sealed: Mapped[str] = mapped_column(Text)
    url_hint: Mapped[str] = mapped_column(String(300))
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)


class PageSubscription(Base):
    """What an operator is paged for: alert types and banks (None: all of them), and where to
    (their own email, a webhook target, or both); `on_resolve` pages the resolution too."""

    __tablename__ = "page_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    alert_types: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    bank_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    email: Mapped[bool] = mapped_column(Boolean)
    target_id: Mapped[int | None] = mapped_column(
        ForeignKey("page_targets.id"), nullable=True, index=True
    )
    on_resolve: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PageScan(Base):
    """An alert transition (raised or resolved) the paging scan has handled: whoever was
    subscribed then has their page in the outbox. Kept while the scan could still see it."""

    __tablename__ = "page_scans"

    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), primary_key=True)
    transition: Mapped[str] = mapped_column(String(8), primary_key=True)  # raised | resolved
    scanned_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class PageOutbox(Base):
    """One page: an alert's transition for one destination, sent once.

    `destination` is `email:<operator id>` or `webhook:<target id>`; the unique constraint is
    what pages a transition once per destination, however many subscriptions match it and
    however many scans (hosts) see it. Nothing of the message is stored: it is written from
    the alert when sent. `destination_hint` is what an admin sees of where it goes (a masked
    address, a target's name and host).
    """

    __tablename__ = "page_outbox"
    __table_args__ = (
        UniqueConstraint("alert_id", "transition", "destination"),
        Index("ix_page_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    transition: Mapped[str] = mapped_column(String(8))
    destination: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))  # email | webhook
    destination_hint: Mapped[str] = mapped_column(String(200))
    # pending | sent | failed | cancelled | unsent (its channel is not configured)
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Sent within a digest of this many pages; None when it went on its own.
    digest_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
