"""Operator actions: each becomes a command signed by central for the bank's node.

Remote open, disable and enable of a compartment; extending a reservation's deadline (central's
deadline moves first, with an entry in the reservation's history); invalidating a parcel's
pickup code. Auditing happens around these, in the endpoints, so refusals are recorded too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select

from central.context import Ctx
from central.errors import ApiError, Conflict, NotFound
from central.models import Actor, ReservationStatus
from central.models.base import ReservationKind
from central.nodes.commands import extension_payload, issue_command
from central.nodes.errors import NodeError
from central.ops import repository as repo
from central.ops.alerts import raise_alert
from central.ops.auth import Operator
from central.ops.schemas import CommandAccepted, CommandOut, ExtendOut, ReservationDeadlines
from central.reservations import transitions

CompartmentAction = Literal["open_compartment", "disable_compartment", "enable_compartment"]
# The refusal and the alert when the fleet's remote opens reach their budget.
OPEN_BUDGET_EXHAUSTED = "remote_open_budget_exhausted"
# Any constant shared by every host: the advisory lock that serialises counting remote opens.
_OPEN_BUDGET_LOCK = 0x6C6F636B6F70656E  # "lockopen"
# reservation_events.actor_id holds at most 64 characters.
_ACTOR_ID_LENGTH = 64
# What the carrier reads in the reservation's history; the operator's own reason is in the audit.
EXTENDED_BY_OPERATOR = "extended by the network operator"


def _require_node(ctx: Ctx, bank_id: str) -> None:
    if not repo.has_active_node(ctx.session, bank_id):
        raise Conflict("no_node", f"bank {bank_id} has no enrolled node to send the command to")


def _issue(ctx: Ctx, bank_id: str, command_type: str, payload: dict[str, Any]) -> CommandAccepted:
    try:
        command = issue_command(ctx.session, ctx.keys, bank_id, command_type, payload, ctx.now)
    except NodeError as exc:
        # Checked before already; a node revoked meanwhile lands here.
        raise Conflict("no_node", str(exc)) from exc
    return CommandAccepted(command_id=command.id, status="pending")


@dataclass(frozen=True, slots=True)
class OpenBudget:
    """How many remote opens the whole fleet may have in a sliding window."""

    opens: int
    window: timedelta


def compartment_command(
    ctx: Ctx,
    bank_id: str,
    label: str,
    command_type: CompartmentAction,
    reason: str,
    *,
    budget: OpenBudget | None = None,
) -> CommandAccepted:
    if repo.bank_name(ctx.session, bank_id) is None:
        raise NotFound(f"bank {bank_id}", code="unknown_bank")
    if not repo.compartment_exists(ctx.session, bank_id, label):
        raise NotFound(f"compartment {label} at bank {bank_id}", code="unknown_compartment")
    _require_node(ctx, bank_id)
    if command_type == "open_compartment" and budget is not None:
        _within_budget(ctx, budget)
    return _issue(ctx, bank_id, command_type, {"compartment": label, "reason": reason})


def _within_budget(ctx: Ctx, budget: OpenBudget) -> None:
    """Refuse a remote open when the fleet has had `budget.opens` in the window already.

    On PostgreSQL a transaction-scoped advisory lock makes concurrent opens (from any host)
    count one after the other, so the budget is never overrun; SQLite has one writer.
    """
    if ctx.session.get_bind().dialect.name == "postgresql":
        ctx.session.execute(select(func.pg_advisory_xact_lock(_OPEN_BUDGET_LOCK)))
    opens = repo.remote_opens_since(ctx.session, ctx.now - budget.window)
    if len(opens) < budget.opens:
        return
    free_again = opens[len(opens) - budget.opens] + budget.window
    retry_after_s = max(1, math.ceil((free_again - ctx.now).total_seconds()))
    raise ApiError(
        429,
        OPEN_BUDGET_EXHAUSTED,
        f"the fleet has had {len(opens)} remote opens in the last "
        f"{budget.window.total_seconds() / 60:g} minutes, its budget; no more until one ages out",
        headers={"Retry-After": str(retry_after_s)},
        retry_after_s=retry_after_s,
        budget=budget.opens,
    )


def alert_open_budget(ctx: Ctx, operator: Operator, bank_id: str, label: str) -> None:
    """The fleet-wide alert that remote opens hit their budget: who tried to open what, last."""
    raise_alert(
        ctx.session,
        bank_id=None,
        alert_type=OPEN_BUDGET_EXHAUSTED,
        subject=None,
        detail={"operator": operator.email, "bank_id": bank_id, "compartment": label},
        now=ctx.now,
    )


def _actor_id(operator: Operator) -> str:
    if len(operator.email) <= _ACTOR_ID_LENGTH:
        return operator.email
    return f"operator:{operator.id}"


def extend_deadline(
    ctx: Ctx, operator: Operator, reservation_id: str, hours: int
) -> tuple[ExtendOut, str]:
    """Move the deadline in central (bank policy applies), then tell the node if it holds the
    parcel. Returns the answer and the bank's id (for the audit)."""
    reservation = repo.reservation_for_update(ctx.session, reservation_id)
    if reservation is None:
        raise NotFound(f"reservation {reservation_id}", code="unknown_reservation")
    deposited = reservation.status == ReservationStatus.DEPOSITED
    if deposited:
        _require_node(ctx, reservation.bank_id)
    out = transitions.extend(
        ctx,
        reservation,
        hours,
        actor=Actor.OPERATOR,
        actor_id=_actor_id(operator),
        reason=EXTENDED_BY_OPERATOR,
    )
    # Before deposit the node keeps no deadline of its own to move: it reads the new hold from
    # its feed. A parcel in a compartment has a pickup deadline on the node too.
    command = (
        _issue(
            ctx,
            reservation.bank_id,
            "extend_deadline",
            extension_payload(reservation.id, hours, out.pickup_deadline),
        )
        if deposited
        else None
    )
    return (
        ExtendOut(
            reservation=ReservationDeadlines(
                id=out.id,
                status=out.status,
                reserved_until=out.reserved_until,
                pickup_deadline=out.pickup_deadline,
            ),
            command_id=command.command_id if command else None,
            status=command.status if command else None,
        ),
        reservation.bank_id,
    )


def reissue_code(ctx: Ctx, reservation_id: str, reason: str) -> tuple[CommandAccepted, str]:
    """Have the node replace the parcel's pickup code and QR with new ones.

    The node kills the old pair, issues a new one and sends it sealed in `parcel.code_reissued`,
    which central forwards to the carrier's webhook. Returns the answer and the bank id.
    """
    reservation = repo.reservation_for_update(ctx.session, reservation_id)
    if reservation is None:
        raise NotFound(f"reservation {reservation_id}", code="unknown_reservation")
    if reservation.kind == ReservationKind.DROPOFF:
        # Nobody picks a drop-off up: the carrier's courier collects it with a courier code.
        raise Conflict("not_a_delivery", "a drop-off has no pickup code to reissue")
    if reservation.status != ReservationStatus.DEPOSITED:
        raise Conflict(
            "not_deposited",
            f"a {reservation.status} reservation has no pickup code to reissue",
            status=reservation.status,
        )
    _require_node(ctx, reservation.bank_id)
    accepted = _issue(
        ctx,
        reservation.bank_id,
        "invalidate_code",
        {"reservation_id": reservation.id, "reissue": True, "reason": reason},
    )
    return accepted, reservation.bank_id


def command_status(ctx: Ctx, command_id: str) -> CommandOut:
    row = repo.get_command(ctx.session, command_id)
    if row is None:
        raise NotFound(f"command {command_id}", code="unknown_command")
    return CommandOut(
        id=row.id,
        type=row.type,
        bank_id=row.bank_id,
        status=row.status,
        issued_at=row.issued_at,
        acknowledged_at=row.acknowledged_at,
        result=row.result,
    )
