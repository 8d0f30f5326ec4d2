"""Alerts for operators: raising without duplicates, listing, acknowledging and resolving.

Types: `bank_offline`, `door_left_open`, `door_fault` (a jammed door), `door_forced_open`,
`compartment_out_of_service`, `layout_mismatch` (raised by central.nodes.events and .enrollment),
`parcel_past_deadline` (the pickup-expiry job), `webhook_failing` (the webhook dispatcher, no bank)
and `manual` (raised by an operator). Fleet health (central.nodes.health) raises `power_lost`,
`battery_low`, `overheating` and `disk_low` from heartbeats and resolves them the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound
from central.models import Alert, ReservationStatus
from central.ops import repository as repo
from central.ops.schemas import AlertCreate, AlertList, AlertOut

ALERT_TYPES: tuple[str, ...] = (
    "bank_offline",
    "door_left_open",
    "door_fault",
    "door_forced_open",
    "compartment_out_of_service",
    "layout_mismatch",
    "parcel_past_deadline",
    "webhook_failing",
    "recipient_problem",
    "maintenance_overdue",  # a bank or compartment in maintenance past its expected end
    "manual",
    # Guarded opens (central.ops.open_requests): waiting for a second admin; approved, until the
    # node answers.
    "mass_open_requested",
    "mass_open_approved",
    # Fleet health (central.nodes.health), from each node's heartbeat: the UPS runs on its
    # battery, the battery runs low, the CPU or the enclosure (subject) too hot, the disk full.
    "power_lost",
    "battery_low",
    "overheating",
    "disk_low",
    # Raised elsewhere: the fleet's remote opens at their budget (central.ops.actions) and a
    # node update that failed or rolled back (central.nodes.updates).
    "remote_open_budget_exhausted",
    "update_failed",
)
# An endpoint counts as failing after this many failed attempts in a row (about 15 minutes of
# the dispatcher's backoff for one delivery).
WEBHOOK_FAILURES_TO_ALERT = 5
# A past-deadline alert lists this many parcels at most; `count` has them all.
MAX_LISTED_PARCELS = 50


def raise_alert(
    session: Session,
    *,
    bank_id: str | None,
    alert_type: str,
    subject: str | None,
    detail: dict[str, Any],
    now: datetime,
) -> tuple[Alert, bool]:
    """One open alert per (bank, type, subject): refresh the open one's detail, or add one.

    Returns the alert and whether it is new.
    """
    existing = repo.open_alert(session, bank_id, alert_type, subject)
    if existing is not None:
        existing.detail = detail
        session.flush()
        return existing, False
    alert = Alert(bank_id=bank_id, type=alert_type, subject=subject, detail=detail, created_at=now)
    repo.add(session, alert)
    session.flush()
    return alert, True


def describe(
    alert: Alert,
    *,
    bank_name: str | None,
    acknowledged_by: str | None,
    resolved_by: str | None,
) -> AlertOut:
    return AlertOut(
        id=alert.id,
        bank_id=alert.bank_id,
        bank_name=bank_name,
        type=alert.type,
        subject=alert.subject,
        detail=alert.detail,
        created_at=alert.created_at,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=acknowledged_by,
        resolved_at=alert.resolved_at,
        resolved_by=resolved_by,
        note=alert.note,
    )


def _describe_one(session: Session, alert: Alert) -> AlertOut:
    emails = repo.emails_of(session, (alert.acknowledged_by, alert.resolved_by))
    return describe(
        alert,
        bank_name=repo.bank_name(session, alert.bank_id) if alert.bank_id else None,
        acknowledged_by=emails.get(alert.acknowledged_by) if alert.acknowledged_by else None,
        resolved_by=emails.get(alert.resolved_by) if alert.resolved_by else None,
    )


def list_alerts(
    session: Session,
    *,
    status: str,
    bank_id: str | None,
    alert_type: str | None,
    limit: int,
) -> AlertList:
    rows = repo.list_alerts(
        session, status=status, bank_id=bank_id, alert_type=alert_type, limit=limit
    )
    return AlertList(
        alerts=[
            describe(alert, bank_name=name, acknowledged_by=acker, resolved_by=resolver)
            for alert, name, acker, resolver in rows
        ]
    )


def _require(session: Session, alert_id: int) -> Alert:
    alert = repo.get_alert(session, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id}", code="unknown_alert")
    return alert


def create_manual(
    session: Session, operator_email: str, body: AlertCreate, now: datetime
) -> AlertOut:
    if repo.bank_name(session, body.bank_id) is None:
        raise NotFound(f"bank {body.bank_id}", code="unknown_bank")
    # Each manual alert stands on its own: two notes about one bank are two alerts.
    alert = Alert(
        bank_id=body.bank_id,
        type="manual",
        subject=None,
        detail={"note": body.detail.note, "raised_by": operator_email},
        created_at=now,
    )
    repo.add(session, alert)
    session.flush()
    return _describe_one(session, alert)


def acknowledge(
    session: Session, alert_id: int, operator_id: int, reason: str | None, now: datetime
) -> AlertOut:
    """Acknowledge once; acknowledging again changes nothing. A resolved alert is finished."""
    alert = _require(session, alert_id)
    if alert.resolved_at is not None:
        raise Conflict("alert_resolved", f"alert {alert_id} is resolved already")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
        alert.acknowledged_by = operator_id
        if reason:
            alert.note = reason
        session.flush()
    return _describe_one(session, alert)


def resolve(
    session: Session, alert_id: int, operator_id: int, reason: str | None, now: datetime
) -> AlertOut:
    """Resolve once; resolving again changes nothing."""
    alert = _require(session, alert_id)
    if alert.resolved_at is None:
        alert.resolved_at = now
        alert.resolved_by = operator_id
        if reason:
            alert.note = reason
        session.flush()
    return _describe_one(session, alert)


# Sources ------------------------------------------------------------------------------------------


def alert_parcels_past_deadline(session: Session, expired_ids: Sequence[str], now: datetime) -> int:
    """After the pickup-expiry job: one open alert per bank listing parcels awaiting return.

    `expired_ids` are the reservations the job found due; those it expired in this run (status
    expired after a deposit, changed now) are added to their bank's alert. Alerts of banks whose
    parcels have all gone back to the carrier are resolved. Returns the number of alerts touched.
    """
    by_bank: dict[str, list[dict[str, Any]]] = {}
    for reservation in repo.reservations_by_id(session, expired_ids):
        if (
            reservation.status == ReservationStatus.EXPIRED
            and reservation.deposited_at is not None
            and reservation.updated_at == now
        ):
            by_bank.setdefault(reservation.bank_id, []).append(
                {
                    "reservation_id": reservation.id,
                    "carrier": reservation.carrier_id,
                    "tracking_number": reservation.tracking_number,
                    "compartment": reservation.compartment_label,
                    "pickup_deadline": reservation.pickup_deadline.isoformat()
                    if reservation.pickup_deadline
                    else None,
                }
            )
    touched = 0
    for bank_id, parcels in sorted(by_bank.items()):
        existing = repo.open_alert(session, bank_id, "parcel_past_deadline", None)
        listed = list((existing.detail or {}).get("parcels", [])) if existing else []
        seen = {p.get("reservation_id") for p in listed}
        listed.extend(p for p in parcels if p["reservation_id"] not in seen)
        raise_alert(
            session,
            bank_id=bank_id,
            alert_type="parcel_past_deadline",
            subject=None,
            detail={
                "count": repo.parcels_awaiting_return(session, bank_id),
                "parcels": listed[-MAX_LISTED_PARCELS:],
            },
            now=now,
        )
        touched += 1
    return touched + resolve_returned_parcels(session, now, skip=by_bank.keys())


def resolve_returned_parcels(session: Session, now: datetime, *, skip: Collection[str] = ()) -> int:
    """Resolve the past-deadline alerts of banks with no expired parcel left in a compartment."""
    resolved = 0
    for alert in repo.open_alerts_of_type(session, "parcel_past_deadline"):
        if alert.bank_id is None or alert.bank_id in skip:
            continue
        if repo.parcels_awaiting_return(session, alert.bank_id) == 0:
            alert.resolved_at = now
            resolved += 1
    session.flush()
    return resolved


def record_webhook_results(
    session: Session, *, succeeded: Collection[str], failed: Collection[str], now: datetime
) -> None:
    """After a dispatcher round: endpoints that took a delivery are fine again; endpoints whose
    last WEBHOOK_FAILURES_TO_ALERT attempts all failed get (or keep) a `webhook_failing` alert."""
    session.flush()  # the round's attempts count
    if succeeded:
        repo.resolve_open(
            session,
            bank_id=None,
            alert_type="webhook_failing",
            subjects=sorted(succeeded),
            now=now,
        )
    for endpoint_id in sorted(set(failed) - set(succeeded)):
        attempts = repo.last_attempts(session, endpoint_id, WEBHOOK_FAILURES_TO_ALERT)
        if len(attempts) < WEBHOOK_FAILURES_TO_ALERT or any(
            status is not None and 200 <= status < 300 for _, status, _ in attempts
        ):
            continue
        endpoint = repo.webhook_endpoint(session, endpoint_id)
        if endpoint is None:
            continue
        latest_at, _, latest_error = attempts[0]
        existing = repo.open_alert(session, None, "webhook_failing", endpoint_id)
        since = (existing.detail or {}).get("failing_since") if existing else None
        raise_alert(
            session,
            bank_id=None,
            alert_type="webhook_failing",
            subject=endpoint_id,
            detail={
                "endpoint_id": endpoint_id,
                "carrier": endpoint.carrier_id,
                # The host only: a URL's path or query may carry a token of the carrier's.
                "host": urlsplit(endpoint.url).hostname,
                "failing_since": since or attempts[-1][0].isoformat(),
                "last_attempt_at": latest_at.isoformat(),
                "last_error": latest_error,
            },
            now=now,
        )
