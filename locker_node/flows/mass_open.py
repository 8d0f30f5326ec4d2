"""Guarded opens on the node: several doors at once ("open all"), only with a second admin's
approval named in the signed command, and only a few times a day whatever central says.

The command is counted (audit action `mass_open`) before any door fires, so a crash part-way
uses up its turn; a command found counted but never answered (the node died while opening) is
not run again: the doors it opened may have been emptied and closed since. Each door gets an
audit entry of its own (`mass_open_door`) with the command id and the approval id.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from locker_node.domain.doors import (
    CompartmentUnavailable,
    DoorOpened,
    UnknownCompartment,
)
from locker_node.flows.ports import Ports
from locker_node.store.outbox import append_audit, audit_for_command, count_audit_since
from locker_wire.commands import OpenCompartments
from locker_wire.schemas import CommandAck

logger = logging.getLogger(__name__)

ACTOR = "central"
COMMAND_ACTION = "mass_open"
DOOR_ACTION = "mass_open_door"
# CommandAck.detail holds at most this many characters.
DETAIL_LIMIT = 2000


def open_many(
    ports: Ports, command_id: str, payload: OpenCompartments, now: datetime
) -> CommandAck:
    """Check the two-person approval and the node's own limit, then open each door in turn.

    Acked `ok` when at least one door opened, with a JSON summary of the doors opened and
    failed; `failed` when the command is refused or no door opened.
    """
    refusal = _refusal(payload)
    if refusal is not None:
        logger.error("mass open %s refused: %s", command_id, refusal)
        return CommandAck(outcome="failed", detail=f"refused: {refusal}")
    labels = list(dict.fromkeys(payload.labels))
    policy = ports.policy
    with ports.unit_of_work() as conn:
        if audit_for_command(conn, COMMAND_ACTION, command_id) is not None:
            return CommandAck(
                outcome="failed", detail="interrupted: started before and not run again"
            )
        recent = count_audit_since(conn, COMMAND_ACTION, now - policy.mass_open_window)
        if recent >= policy.mass_open_limit:
            window_s = int(policy.mass_open_window.total_seconds())
            logger.error("mass open %s refused: %d in the last %d s", command_id, recent, window_s)
            return CommandAck(
                outcome="failed",
                detail=f"rate limited: {recent} mass opens in the last {window_s} s",
            )
        append_audit(
            conn,
            at=now,
            actor=ACTOR,
            action=COMMAND_ACTION,
            reason=payload.reason,
            command_id=command_id,
            detail=_approval(payload) | {"doors": len(labels)},
        )
    opened, failed = _open_each(ports, command_id, payload, labels)
    summary = _summary(payload.approval_id, opened, failed)
    return CommandAck(outcome="ok" if opened else "failed", detail=summary)


def _refusal(payload: OpenCompartments) -> str | None:
    """Central checks these too; the node does not take its word for it."""
    if not payload.approval_id.strip():
        return "no approval id"
    requested = payload.requested_by.strip().lower()
    approved = payload.approved_by.strip().lower()
    if not requested or not approved or requested == approved:
        return "a mass open needs two different admins"
    return None


def _approval(payload: OpenCompartments) -> dict[str, Any]:
    return {
        "approval_id": payload.approval_id,
        "requested_by": payload.requested_by,
        "approved_by": payload.approved_by,
    }


def _open_each(
    ports: Ports, command_id: str, payload: OpenCompartments, labels: list[str]
) -> tuple[list[str], dict[str, str]]:
    """Every door, out-of-service ones included (as a single remote open); one door failing
    does not stop the others."""
    opened: list[str] = []
    failed: dict[str, str] = {}
    for label in labels:
        try:
            outcome = ports.doors.open_door(
                label,
                reason=f"mass open {command_id} ({payload.approval_id})",
                allow_out_of_service=True,
            )
            result = "opened" if isinstance(outcome, DoorOpened) else type(outcome).__name__
        except (UnknownCompartment, CompartmentUnavailable) as exc:
            result = type(exc).__name__
        if result == "opened":
            opened.append(label)
        else:
            failed[label] = result
        with ports.unit_of_work() as conn:
            append_audit(
                conn,
                at=ports.now(),
                actor=ACTOR,
                action=DOOR_ACTION,
                reason=result,
                compartment=label[:16],
                command_id=command_id,
                detail=_approval(payload) | {"outcome": result},
            )
    return opened, failed


def _summary(approval_id: str, opened: list[str], failed: dict[str, str]) -> str:
    """The doors opened and failed as JSON, within the ack's limit: the full lists when they fit,
    else counts with as many failed doors as fit (the node's audit has every door)."""
    full = {"approval_id": approval_id, "opened": opened, "failed": failed}
    text = json.dumps(full, separators=(",", ":"))
    if len(text) <= DETAIL_LIMIT:
        return text
    short: dict[str, Any] = {
        "approval_id": approval_id,
        "opened_count": len(opened),
        "failed_count": len(failed),
        "failed": {},
    }
    for label, why in failed.items():
        short["failed"][label] = why
        if len(json.dumps(short, separators=(",", ":"))) > DETAIL_LIMIT:
            del short["failed"][label]
            break
    return json.dumps(short, separators=(",", ":"))
