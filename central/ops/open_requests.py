"""Guarded opens: one admin asks to open several doors of a bank; a different admin approves
within ten minutes, and only then does central sign the `open_compartments` command.

The two-person rule governs these opens instead of the fleet's budget of single remote opens:
an approved mass open does not count against `remote_open_budget` (nor is it refused by it); it
is written to the audit with its door count and raises a `mass_open_approved` alert, resolved
once the node has answered. Each node also refuses more than a few mass opens a day of its own.
Auditing happens around these functions, in `central.ops.approvals`, so refusals are recorded.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from central.context import Ctx
from central.errors import ApiError, Conflict, NotFound, Unprocessable
from central.models import Alert, Bank, Compartment, NodeCommand, OpenRequest, OperatorAccount
from central.nodes.commands import issue_command
from central.nodes.errors import NodeError
from central.ops import repository as repo
from central.ops.alerts import raise_alert
from central.ops.auth import Operator
from central.ops.schemas import ReasonText, _In

# How long a request waits for its second admin.
APPROVAL_WINDOW = timedelta(minutes=10)
REQUESTED_ALERT = "mass_open_requested"
APPROVED_ALERT = "mass_open_approved"
APPROVAL_EXPIRED = "approval_expired"
PENDING = "pending"
RequestStatus = Literal["pending", "approved", "refused", "expired", "cancelled"]
StatusFilter = Literal["pending", "approved", "refused", "expired", "cancelled", "all"]
Label = Annotated[str, Field(min_length=1, max_length=16)]
# Labels the audit keeps of one mass open; `door_count` has them all.
AUDITED_LABELS = 100


# Bodies -------------------------------------------------------------------------------------------


class OpenRequestIn(_In):
    """Either `labels` (two or more doors) or `all`; a reason either way."""

    labels: list[Label] | None = Field(default=None, max_length=2000)
    all: bool = False
    reason: ReasonText


class DecisionIn(_In):
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class OpenRequestOut(BaseModel):
    id: str
    bank_id: str
    bank_name: str | None
    labels: list[str] | None  # None for all doors
    all: bool
    reason: str
    status: RequestStatus
    requested_by: str | None
    requested_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    command_id: str | None
    command_status: str | None
    # What the node answered: the doors it opened and those it could not.
    command_result: dict[str, Any] | None
    door_count: int | None  # doors in the command, once approved


class OpenRequestList(BaseModel):
    requests: list[OpenRequestOut]


# Refusals -----------------------------------------------------------------------------------------


def _unknown(request_id: str) -> ApiError:
    return NotFound(f"open request {request_id}", code="unknown_open_request")


def _not_pending(row: OpenRequest) -> ApiError:
    return Conflict("not_pending", f"open request {row.id} is {row.status}", status=row.status)


def _expired(row: OpenRequest) -> ApiError:
    return ApiError(
        410,
        APPROVAL_EXPIRED,
        f"open request {row.id} waited more than {APPROVAL_WINDOW.total_seconds() / 60:g} "
        "minutes for a second admin; ask again",
        expires_at=row.expires_at.isoformat(),
    )


# Use cases ----------------------------------------------------------------------------------------


def request_open(
    ctx: Ctx, operator: Operator, bank_id: str, body: OpenRequestIn
) -> tuple[OpenRequestOut, dict[str, Any]]:
    """Record the request and alert the other admins; nothing opens until one approves."""
    session = ctx.session
    if not _lock_bank(session, bank_id):
        raise NotFound(f"bank {bank_id}", code="unknown_bank")
    labels = _requested_labels(session, bank_id, body)
    if not repo.has_active_node(session, bank_id):
        raise Conflict("no_node", f"bank {bank_id} has no enrolled node to send the command to")
    waiting = _pending_of_bank(session, bank_id)
    if waiting is not None:
        raise Conflict(
            "request_pending",
            f"open request {waiting.id} for bank {bank_id} is waiting for a second admin already",
            request_id=waiting.id,
        )
    row = OpenRequest(
        id=f"opr_{secrets.token_urlsafe(12)}",
        bank_id=bank_id,
        labels=labels,
        all_doors=labels is None,
        reason=body.reason,
        requested_by=operator.id,
        requested_at=ctx.now,
        expires_at=ctx.now + APPROVAL_WINDOW,
        status=PENDING,
    )
    session.add(row)
    session.flush()
    raise_alert(
        session,
        bank_id=bank_id,
        alert_type=REQUESTED_ALERT,
        subject=row.id,
        detail={
            "request_id": row.id,
            "requested_by": operator.email,
            "doors": "all" if labels is None else len(labels),
            "labels": labels,
            "reason": body.reason,
            "expires_at": row.expires_at.isoformat(),
        },
        now=ctx.now,
    )
    out = _describe(session, row)
    return out, {"request_id": row.id, "doors": "all" if labels is None else len(labels)}


def approve(
    ctx: Ctx, operator: Operator, request_id: str, reason: str | None
) -> tuple[OpenRequestOut, dict[str, Any]]:
    """The second admin's approval: in this one transaction, sign ONE `open_compartments`
    command for the bank's node, mark the request approved and settle its alerts."""
    session = ctx.session
    row = _decidable(ctx, request_id)
    if row.requested_by == operator.id:
        raise ApiError(
            403,
            "second_admin_required",
            "a mass open needs a second admin: the requester cannot approve it",
        )
    labels = row.labels if row.labels is not None else _bank_labels(session, row.bank_id)
    if not labels:
        raise Conflict("no_compartments", f"bank {row.bank_id} has no compartments to open")
    if not repo.has_active_node(session, row.bank_id):
        raise Conflict("no_node", f"bank {row.bank_id} has no enrolled node to send the command to")
    requester = _current_admin(session, row.requested_by)
    payload = {
        "labels": labels,
        "approval_id": row.id,
        "requested_by": requester,
        "approved_by": operator.email,
        "reason": row.reason,
    }
    try:
        command = issue_command(
            session, ctx.keys, row.bank_id, "open_compartments", payload, ctx.now
        )
    except NodeError as exc:
        raise Conflict("command_refused", str(exc)) from exc
    _decide(row, "approved", operator, reason, ctx.now)
    row.command_id = command.id
    _resolve_requested(session, row, operator.id, ctx.now)
    raise_alert(
        session,
        bank_id=row.bank_id,
        alert_type=APPROVED_ALERT,
        subject=row.id,
        detail={
            "request_id": row.id,
            "command_id": command.id,
            "requested_by": requester,
            "approved_by": operator.email,
            "door_count": len(labels),
        },
        now=ctx.now,
    )
    session.flush()
    detail = {
        "request_id": row.id,
        "bank_id": row.bank_id,
        "command_id": command.id,
        "requested_by": requester,
        "door_count": len(labels),
        "labels": labels[:AUDITED_LABELS],
    }
    return _describe(session, row), detail


def refuse(
    ctx: Ctx, operator: Operator, request_id: str, reason: str | None
) -> tuple[OpenRequestOut, dict[str, Any]]:
    """Another admin says no: nothing opens."""
    row = _decidable(ctx, request_id)
    if row.requested_by == operator.id:
        raise ApiError(
            403,
            "second_admin_required",
            "another admin refuses a request; its requester cancels it instead",
        )
    return _close(ctx, row, "refused", operator, reason)


def cancel(
    ctx: Ctx, operator: Operator, request_id: str, reason: str | None
) -> tuple[OpenRequestOut, dict[str, Any]]:
    """The requester takes the request back: nothing opens."""
    row = _decidable(ctx, request_id)
    if row.requested_by != operator.id:
        raise ApiError(
            403, "not_requester", "only the admin who asked cancels a request; others refuse it"
        )
    return _close(ctx, row, "cancelled", operator, reason)


def list_requests(
    ctx: Ctx, *, status: StatusFilter, bank_id: str | None, limit: int
) -> OpenRequestList:
    """Newest first; pending ones past their ten minutes are marked expired first."""
    settle(ctx.session, ctx.now)
    query = select(OpenRequest).order_by(OpenRequest.requested_at.desc(), OpenRequest.id)
    if status != "all":
        query = query.where(OpenRequest.status == status)
    if bank_id is not None:
        query = query.where(OpenRequest.bank_id == bank_id)
    rows = ctx.session.scalars(query.limit(limit)).all()
    return OpenRequestList(requests=_describe_all(ctx.session, rows))


def get_request(ctx: Ctx, request_id: str) -> OpenRequestOut:
    settle(ctx.session, ctx.now)
    row = ctx.session.get(OpenRequest, request_id)
    if row is None:
        raise _unknown(request_id)
    return _describe(ctx.session, row)


def settle(session: Session, now: datetime) -> int:
    """Mark pending requests past their ten minutes expired (their alert resolved: nothing
    opens), and resolve the `mass_open_approved` alerts whose command the node has answered
    (or that expired). Run by the scheduler and before each read. Returns the rows changed."""
    due = session.scalars(
        select(OpenRequest)
        .where(OpenRequest.status == PENDING, OpenRequest.expires_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    for row in due:
        row.status = "expired"
        row.decided_at = now
        _resolve_requested(session, row, None, now)
    finished = session.execute(
        select(Alert, NodeCommand.status)
        .join(OpenRequest, OpenRequest.id == Alert.subject)
        .join(NodeCommand, NodeCommand.id == OpenRequest.command_id)
        .where(
            Alert.type == APPROVED_ALERT,
            Alert.resolved_at.is_(None),
            NodeCommand.status != PENDING,
        )
    ).all()
    for alert, command_status in finished:
        alert.detail = {**(alert.detail or {}), "command_status": command_status}
        alert.resolved_at = now
    session.flush()
    return len(due) + len(finished)


# Steps --------------------------------------------------------------------------------------------


def _requested_labels(session: Session, bank_id: str, body: OpenRequestIn) -> list[str] | None:
    """The doors asked for, in order without repeats; None for all of them."""
    if body.all == (body.labels is not None):
        raise Unprocessable("labels_or_all", "give either `labels` (two or more) or `all: true`")
    if body.labels is None:
        return None
    labels = list(dict.fromkeys(body.labels))
    if len(labels) < 2:
        raise Unprocessable(
            "use_single_open",
            "one door is a single remote open (POST .../compartments/{label}/open), "
            "under the fleet's budget of remote opens",
        )
    known = set(_bank_labels(session, bank_id))
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ApiError(
            404,
            "unknown_compartment",
            f"bank {bank_id} has no compartment {', '.join(unknown[:20])}",
            labels=unknown[:100],
        )
    return labels


def _decidable(ctx: Ctx, request_id: str) -> OpenRequest:
    """The request, locked, still pending and within its ten minutes."""
    row = ctx.session.scalars(
        select(OpenRequest).where(OpenRequest.id == request_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise _unknown(request_id)
    if row.status != PENDING:
        raise _not_pending(row)
    if ctx.now >= row.expires_at:
        # The caller's transaction rolls back with this refusal; `settle` marks it expired.
        raise _expired(row)
    return row


def _decide(
    row: OpenRequest, status: RequestStatus, operator: Operator, reason: str | None, now: datetime
) -> None:
    row.status = status
    row.decided_by = operator.id
    row.decided_at = now
    row.decision_reason = reason


def _close(
    ctx: Ctx, row: OpenRequest, status: RequestStatus, operator: Operator, reason: str | None
) -> tuple[OpenRequestOut, dict[str, Any]]:
    _decide(row, status, operator, reason, ctx.now)
    _resolve_requested(ctx.session, row, operator.id, ctx.now)
    ctx.session.flush()
    return _describe(ctx.session, row), {"request_id": row.id, "bank_id": row.bank_id}


def _resolve_requested(
    session: Session, row: OpenRequest, operator_id: int | None, now: datetime
) -> None:
    """The request's alert is done with: decided by an admin, or expired (by the system)."""
    session.execute(
        update(Alert)
        .where(
            Alert.bank_id == row.bank_id,
            Alert.type == REQUESTED_ALERT,
            Alert.subject == row.id,
            Alert.resolved_at.is_(None),
        )
        .values(resolved_at=now, resolved_by=operator_id, note=f"request {row.status}")
        .execution_options(synchronize_session=False)
    )


# Queries ------------------------------------------------------------------------------------------


def _lock_bank(session: Session, bank_id: str) -> bool:
    """Lock the bank's row: two admins asking at once queue, and one request waits at a time."""
    return session.scalar(select(Bank.id).where(Bank.id == bank_id).with_for_update()) is not None


def _pending_of_bank(session: Session, bank_id: str) -> OpenRequest | None:
    return session.scalars(
        select(OpenRequest)
        .where(OpenRequest.bank_id == bank_id, OpenRequest.status == PENDING)
        .order_by(OpenRequest.requested_at)
        .limit(1)
    ).first()


def _bank_labels(session: Session, bank_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Compartment.label)
            .where(Compartment.bank_id == bank_id)
            .order_by(Compartment.label)
        ).all()
    )


def _current_admin(session: Session, operator_id: int) -> str:
    """The requester's email, if they are still an enabled admin: two people must stand behind
    a mass open when it happens, not only when it was asked for."""
    account = session.get(OperatorAccount, operator_id)
    if account is None or account.disabled_at is not None or account.role != "admin":
        raise Conflict(
            "requester_not_admin",
            "the admin who asked is no longer an enabled admin; ask again",
        )
    return account.email


def _describe(session: Session, row: OpenRequest) -> OpenRequestOut:
    [out] = _describe_all(session, [row])
    return out


def _describe_all(session: Session, rows: Sequence[OpenRequest]) -> list[OpenRequestOut]:
    """Each request with its admins' emails, its bank's name and its command's state."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    requester, decider = aliased(OperatorAccount), aliased(OperatorAccount)
    facts = {
        request_id: (bank_name, requested_by, decided_by, command)
        for request_id, bank_name, requested_by, decided_by, command in session.execute(
            select(OpenRequest.id, Bank.name, requester.email, decider.email, NodeCommand)
            .join(Bank, Bank.id == OpenRequest.bank_id)
            .join(requester, requester.id == OpenRequest.requested_by)
            .outerjoin(decider, decider.id == OpenRequest.decided_by)
            .outerjoin(NodeCommand, NodeCommand.id == OpenRequest.command_id)
            .where(OpenRequest.id.in_(ids))
        ).all()
    }
    described = []
    for row in rows:
        bank_name, requested_by, decided_by, command = facts.get(row.id, (None, None, None, None))
        command_labels = command.payload.get("labels") if command is not None else None
        described.append(
            OpenRequestOut(
                id=row.id,
                bank_id=row.bank_id,
                bank_name=bank_name,
                labels=row.labels,
                all=row.all_doors,
                reason=row.reason,
                status=cast(RequestStatus, row.status),
                requested_by=requested_by,
                requested_at=row.requested_at,
                expires_at=row.expires_at,
                decided_by=decided_by,
                decided_at=row.decided_at,
                decision_reason=row.decision_reason,
                command_id=row.command_id,
                command_status=command.status if command is not None else None,
                command_result=command.result if command is not None else None,
                door_count=len(command_labels) if isinstance(command_labels, list) else None,
            )
        )
    return described
