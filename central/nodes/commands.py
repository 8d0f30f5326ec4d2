"""Commands to a bank's node: signed by central, delivered by the feed, acknowledged by the node."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from central.errors import NotFound
from central.keys import ServiceKeys
from central.models import Node, NodeCommand
from central.nodes import repository as repo
from central.nodes.errors import NodeError
from central.reservations import repository as reservations_repository
from locker_wire import signing
from locker_wire.commands import OpenCompartments
from locker_wire.schemas import Command, CommandAck, CommandAckResult, CommandType

COMMAND_TTL_LIMITS = (timedelta(minutes=1), timedelta(days=7))
COMMAND_TYPES: tuple[str, ...] = get_args(CommandType)
_COMPARTMENT_COMMANDS = {"open_compartment", "disable_compartment", "enable_compartment"}


def signing_key(keys: ServiceKeys) -> Ed25519PrivateKey:
    """Derived from the service key: no other secret to keep, and stable across restarts."""
    return Ed25519PrivateKey.from_private_bytes(keys.derive("node-commands"))


def describe_command(row: NodeCommand) -> Command:
    return Command(
        id=row.id,
        node_id=row.node_id,
        bank_id=row.bank_id,
        type=row.type,
        payload=row.payload,
        issued_at=int(row.issued_at.timestamp()),
        expires_at=int(row.expires_at.timestamp()),
        signature=row.signature,
    )


def issue_command(
    session: Session,
    keys: ServiceKeys,
    bank_id: str,
    command_type: str,
    payload: dict[str, Any],
    now: datetime,
    ttl: timedelta = timedelta(minutes=15),
) -> Command:
    """Sign and queue a command for the bank's node; the feed delivers it until it expires."""
    if command_type not in COMMAND_TYPES:
        raise NodeError(f"unknown command type {command_type!r}; one of {', '.join(COMMAND_TYPES)}")
    if not COMMAND_TTL_LIMITS[0] <= ttl <= COMMAND_TTL_LIMITS[1]:
        raise NodeError("a command lives between one minute and seven days")
    node = repo.active_node_of_bank(session, bank_id)
    if node is None:
        raise NodeError(f"bank {bank_id!r} has no enrolled node")
    _check_payload(session, bank_id, command_type, payload)
    # Whole seconds: the signed form carries unix seconds, and the stored times must give them back.
    issued = now.astimezone(UTC).replace(microsecond=0)
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "node_id": node.id,
        "bank_id": bank_id,
        "type": command_type,
        "payload": payload,
        "issued_at": int(issued.timestamp()),
        "expires_at": int((issued + ttl).timestamp()),
    }
    signature = signing.sign_command(signing_key(keys), fields)
    row = NodeCommand(
        id=fields["id"],
        node_id=node.id,
        bank_id=bank_id,
        type=command_type,
        payload=payload,
        issued_at=issued,
        expires_at=issued + ttl,
        signature=signature,
        status="pending",
    )
    repo.add(session, row)
    session.flush()
    return describe_command(row)


def _check_payload(
    session: Session, bank_id: str, command_type: str, payload: dict[str, Any]
) -> None:
    if command_type in _COMPARTMENT_COMMANDS:
        label = payload.get("compartment")
        if not isinstance(label, str) or repo.compartment(session, bank_id, label) is None:
            raise NodeError(f"{command_type} needs the label of one of the bank's compartments")
        return
    if command_type == "open_compartments":
        _check_open_many(session, bank_id, payload)
        return
    reservation_id = payload.get("reservation_id")
    reservation = (
        reservations_repository.get(session, reservation_id)
        if isinstance(reservation_id, str)
        else None
    )
    if reservation is None or reservation.bank_id != bank_id:
        raise NodeError(f"{command_type} needs the id of one of the bank's reservations")
    if command_type == "extend_deadline":
        hours = payload.get("hours")
        if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 168:
            raise NodeError("extend_deadline needs hours between 1 and 168")


def _check_open_many(session: Session, bank_id: str, payload: dict[str, Any]) -> None:
    """A mass open names doors of this bank, its approval and two different admins."""
    try:
        parsed = OpenCompartments.model_validate(payload)
    except ValueError as exc:
        raise NodeError(f"open_compartments: {exc}") from exc
    if parsed.requested_by == parsed.approved_by:
        raise NodeError("open_compartments needs two different admins")
    if any(repo.compartment(session, bank_id, label) is None for label in parsed.labels):
        raise NodeError("open_compartments needs labels of the bank's compartments")


def ack_command(
    session: Session, node: Node, command_id: str, ack: CommandAck, now: datetime
) -> CommandAckResult:
    """Record the node's outcome once; acknowledging again answers the recorded status."""
    row = repo.get_command(session, command_id)
    if row is None or row.node_id != node.id:
        raise NotFound(f"command {command_id}", code="unknown_command")
    if row.status in ("pending", "expired"):
        status = "acknowledged" if ack.outcome == "ok" else "failed"
        result = {"outcome": ack.outcome, "detail": ack.detail}
        if repo.finish_command(session, row.id, status, result, now):
            row.status = status
    return CommandAckResult(id=row.id, status=row.status)


def expire_commands(session: Session, now: datetime) -> int:
    """Commands no node acknowledged in time; the feed stopped offering them at expiry already."""
    return repo.expire_commands(session, now)


def extension_payload(reservation_id: str, hours: int, until: datetime | None) -> dict[str, Any]:
    """An `extend_deadline` payload: `until`, the deadline central now holds, for nodes that
    follow it (the feed carries it too, and the two must not add up); `hours` for nodes that
    predate it."""
    payload: dict[str, Any] = {"reservation_id": reservation_id, "hours": hours}
    if until is not None:
        payload["until"] = until.isoformat()
    return payload
