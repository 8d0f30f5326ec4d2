"""Paging in the dashboard: operators' own subscriptions and the admins' webhook targets.

The request owns the transaction; nothing here commits. Refusals are ApiErrors with codes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound, Unprocessable
from central.keys import ServiceKeys
from central.models import PageSubscription, PageTarget
from central.paging import repository as repo
from central.paging.messages import SUBJECT_PREFIX, Message
from central.paging.schemas import (
    AlertKindOut,
    BankChoiceOut,
    PageList,
    PageOut,
    PagingOptions,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
    TargetIn,
    TargetList,
    TargetOut,
)
from central.paging.senders import TargetUrlError, check_target_url
from central.paging.words import ALERT_KINDS


def options(session: Session, *, email_configured: bool, digest_threshold: int) -> PagingOptions:
    return PagingOptions(
        alert_kinds=[AlertKindOut(type=t, label=label) for t, label in ALERT_KINDS.items()],
        banks=[BankChoiceOut(id=row.id, name=row.name) for row in repo.all_banks(session)],
        email_configured=email_configured,
        digest_threshold=digest_threshold,
    )


# Subscriptions ------------------------------------------------------------------------------------


def _describe(sub: PageSubscription, email: str, target_name: str | None) -> SubscriptionOut:
    return SubscriptionOut(
        id=sub.id,
        operator=email,
        alert_types=sub.alert_types,
        bank_ids=sub.bank_ids,
        email=sub.email,
        target_id=sub.target_id,
        target_name=target_name,
        on_resolve=sub.on_resolve,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )


def list_subscriptions(session: Session, operator_id: int | None) -> SubscriptionList:
    """One operator's subscriptions, or everyone's (None; for admins)."""
    return SubscriptionList(
        subscriptions=[
            _describe(sub, email, name)
            for sub, email, name in repo.subscriptions_of(session, operator_id)
        ]
    )


def _checked(session: Session, body: SubscriptionIn) -> dict[str, Any]:
    """The subscription's columns, or a 422 saying what is wrong with it."""
    if not body.email and body.target_id is None:
        raise Unprocessable("no_channel", "choose email, a webhook target, or both")
    types = None if body.alert_types is None else sorted(set(body.alert_types))
    if types is not None:
        if not types:
            raise Unprocessable("no_alert_types", "choose at least one alert type, or all")
        unknown = [t for t in types if t not in ALERT_KINDS]
        if unknown:
            raise Unprocessable(
                "unknown_alert_type", f"no alert type {', '.join(unknown)}", types=unknown
            )
    banks = None if body.bank_ids is None else sorted(set(body.bank_ids))
    if banks is not None:
        if not banks:
            raise Unprocessable("no_banks", "choose at least one bank, or all")
        missing = sorted(set(banks) - repo.existing_banks(session, banks))
        if missing:
            raise Unprocessable("unknown_bank", f"no bank {', '.join(missing)}", banks=missing)
    if body.target_id is not None:
        target = repo.target(session, body.target_id)
        if target is None:
            raise Unprocessable("unknown_target", f"no webhook target {body.target_id}")
        if not target.enabled:
            raise Unprocessable("target_disabled", f"webhook target {target.name} is disabled")
    return {
        "alert_types": types,
        "bank_ids": banks,
        "email": body.email,
        "target_id": body.target_id,
        "on_resolve": body.on_resolve,
    }


def _one(session: Session, sub: PageSubscription) -> SubscriptionOut:
    session.flush()
    for row, email, name in repo.subscriptions_of(session, sub.operator_id):
        if row.id == sub.id:
            return _describe(row, email, name)
    raise NotFound(f"subscription {sub.id}", code="unknown_subscription")


def create_subscription(
    session: Session, operator_id: int, body: SubscriptionIn, now: datetime
) -> SubscriptionOut:
    sub = PageSubscription(
        operator_id=operator_id, created_at=now, updated_at=now, **_checked(session, body)
    )
    session.add(sub)
    return _one(session, sub)


def _own(session: Session, operator_id: int, subscription_id: int) -> PageSubscription:
    """The operator's own subscription; another's is as unknown as a missing one."""
    sub = repo.subscription(session, subscription_id)
    if sub is None or sub.operator_id != operator_id:
        raise NotFound(f"subscription {subscription_id}", code="unknown_subscription")
    return sub


def update_subscription(
    session: Session, operator_id: int, subscription_id: int, body: SubscriptionIn, now: datetime
) -> SubscriptionOut:
    sub = _own(session, operator_id, subscription_id)
    for column, value in _checked(session, body).items():
        setattr(sub, column, value)
    sub.updated_at = now
    return _one(session, sub)


def delete_subscription(session: Session, operator_id: int, subscription_id: int) -> None:
    session.delete(_own(session, operator_id, subscription_id))
    session.flush()


def audit_detail(out: SubscriptionOut) -> dict[str, Any]:
    return {
        "alert_types": out.alert_types or "all",
        "bank_ids": out.bank_ids or "all",
        "email": out.email,
        "target": out.target_name,
        "on_resolve": out.on_resolve,
    }


# Webhook targets ----------------------------------------------------------------------------------


def describe_target(target: PageTarget) -> TargetOut:
    return TargetOut(
        id=target.id,
        name=target.name,
        host=target.url_hint,
        enabled=target.enabled,
        created_at=target.created_at,
    )


def list_targets(session: Session, *, include_disabled: bool) -> TargetList:
    return TargetList(
        targets=[describe_target(t) for t in repo.targets(session) if t.enabled or include_disabled]
    )


def create_target(
    session: Session, keys: ServiceKeys, operator_id: int, body: TargetIn, now: datetime
) -> TargetOut:
    try:
        hint = check_target_url(body.url)
    except TargetUrlError as exc:
        raise Unprocessable("invalid_url", str(exc)) from exc
    if repo.target_named(session, body.name) is not None:
        raise Conflict("target_exists", f"a webhook target named {body.name} exists already")
    target = PageTarget(
        name=body.name,
        url_sealed=keys.encrypt(body.url),
        url_hint=hint,
        enabled=True,
        created_at=now,
        created_by=operator_id,
    )
    session.add(target)
    session.flush()
    return describe_target(target)


def require_target(session: Session, target_id: int, *, for_update: bool = False) -> PageTarget:
    target = repo.target(session, target_id, for_update=for_update)
    if target is None:
        raise NotFound(f"webhook target {target_id}", code="unknown_target")
    return target


def set_target_enabled(session: Session, target_id: int, enabled: bool) -> TargetOut:
    """A disabled target is paged no more: its pending pages end when next claimed."""
    target = require_target(session, target_id, for_update=True)
    target.enabled = enabled
    session.flush()
    return describe_target(target)


def delete_target(session: Session, target_id: int, now: datetime) -> dict[str, Any]:
    """The target goes, with its pending pages; subscriptions that paged it keep their email,
    or go when they had nothing else. Returns the audit's detail."""
    target = require_target(session, target_id, for_update=True)
    detail: dict[str, Any] = {"name": target.name, "host": target.url_hint}
    detail["cancelled_pages"] = repo.end_pending(
        session, "cancelled", "webhook target deleted", destination=f"webhook:{target_id}"
    )
    repo.detach_target(session, target_id, now)
    session.delete(target)
    session.flush()
    return detail


def trial_message(target_name: str, public_url: str) -> Message:
    title = "Test page"
    sentence = f"Paging from the locker network reaches {target_name}."
    link = f"{public_url.rstrip('/')}/ops/paging"
    return Message(
        subject=f"{SUBJECT_PREFIX} {title}",
        text=f"{title}\n\n{sentence}\n\n{link}\n",
        slack={
            "text": f"*{title}*: {sentence} <{link}|Paging settings>",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{sentence}"}}
            ],
        },
    )


# Outbox -------------------------------------------------------------------------------------------


def recent_pages(session: Session, *, status: str | None, limit: int) -> PageList:
    return PageList(
        pages=[
            PageOut(
                id=page.id,
                alert_id=page.alert_id,
                alert_type=alert_type,
                bank_id=bank_id,
                transition=page.transition,
                channel=page.channel,
                destination=page.destination_hint,
                status=page.status,
                attempts=page.attempts,
                created_at=page.created_at,
                next_attempt_at=page.next_attempt_at if page.status == "pending" else None,
                sent_at=page.sent_at,
                digest_size=page.digest_size,
                last_error=page.last_error,
            )
            for page, alert_type, bank_id in repo.recent_pages(session, status=status, limit=limit)
        ]
    )
