"""Enrolling a node: the operator's one-time token, then the node's key and layout for its bank."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from central.banks import repository as banks_repository
from central.errors import ApiError, NotFound, Unprocessable
from central.keys import ServiceKeys
from central.models import Alert, Compartment, EnrollmentToken, Node
from central.nodes import repository as repo
from central.nodes.commands import signing_key
from central.nodes.errors import NodeError
from central.nodes.seals import sealing_key
from locker_wire import signing
from locker_wire.schemas import (
    CompartmentInfo,
    EnrollmentRequest,
    EnrollmentResponse,
    NodePolicy,
    ReportedCompartment,
)
from locker_wire.sealing import sealing_public_key_text

ENROLLMENT_TOKEN_TTL = timedelta(hours=24)


def _token_hash(token: str) -> str:
    # The token carries 256 random bits, so a fast hash is enough: there is nothing to guess.
    return hashlib.sha256(token.encode()).hexdigest()


def issue_enrollment_token(session: Session, bank_id: str, now: datetime) -> str:
    if banks_repository.get_bank(session, bank_id) is None:
        raise NodeError(f"no bank {bank_id!r}")
    token = f"enr_{secrets.token_urlsafe(32)}"
    repo.add(
        session,
        EnrollmentToken(
            bank_id=bank_id,
            token_hash=_token_hash(token),
            created_at=now,
            expires_at=now + ENROLLMENT_TOKEN_TTL,
        ),
    )
    session.flush()
    return token


def _token_error(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail)


def enroll(
    session: Session, keys: ServiceKeys, body: EnrollmentRequest, now: datetime
) -> EnrollmentResponse:
    token = repo.token_by_hash(session, _token_hash(body.token))
    if token is None:
        raise _token_error("invalid_token", "this enrollment token is not known")
    if token.used_at is not None:
        raise _token_error("token_used", "this enrollment token was used already")
    if token.expires_at <= now:
        raise _token_error("token_expired", "this enrollment token has expired; issue a new one")
    if body.bank_id is not None and body.bank_id != token.bank_id:
        raise ApiError(403, "wrong_bank", f"this token enrolls bank {token.bank_id}, not that one")
    try:
        signing.load_public_key(body.public_key)
    except ValueError as exc:
        raise Unprocessable("invalid_public_key", "public_key is not an Ed25519 key") from exc
    bank = repo.lock_bank(session, token.bank_id)
    if bank is None:
        raise NotFound(f"bank {token.bank_id}", code="unknown_bank")
    if not repo.use_token(session, token.id, now):
        raise _token_error("token_used", "this enrollment token was used already")
    # One node per bank: the new enrollment is the bank's node from now on.
    repo.revoke_nodes_of_bank(session, bank.id, now)
    node = Node(
        id=f"node_{secrets.token_hex(12)}",
        bank_id=bank.id,
        public_key=body.public_key,
        version=body.node_version,
        enrolled_at=now,
        last_seen_at=now,
        online=True,
    )
    repo.add(session, node)
    compartments = repo.compartments_of(session, bank.id)
    mismatch = _layout_mismatch(
        {c.label: c.size for c in compartments}, {c.label: c.size for c in body.compartments}
    )
    if mismatch and body.compartments:
        _alert(session, bank.id, "layout_mismatch", {"node_id": node.id, **mismatch}, now)
    if body.compartments and _adopt_accessible(compartments, body.compartments):
        banks_repository.recount_accessible_units(session, bank.id)
    session.flush()
    return EnrollmentResponse(
        node_id=node.id,
        bank_id=bank.id,
        timezone=bank.timezone,
        compartments=[
            CompartmentInfo(
                label=c.label,
                size=c.size,
                length_mm=c.length_mm,
                width_mm=c.width_mm,
                height_mm=c.height_mm,
                state=c.state,
                accessible=c.accessible,
            )
            for c in compartments
        ],
        policy=NodePolicy(
            hold_hours=bank.hold_hours,
            pickup_hours=bank.pickup_hours,
            reminder_hours=bank.reminder_hours,
            max_extension_hours=bank.max_extension_hours,
            allow_upsize=bank.allow_upsize,
        ),
        layout_matches=not mismatch or not body.compartments,
        central_signing_public_key=signing.public_key_text(signing_key(keys)),
        central_sealing_public_key=sealing_public_key_text(sealing_key(keys)),
    )


def _adopt_accessible(
    compartments: Sequence[Compartment], reported: Sequence[ReportedCompartment]
) -> bool:
    """Take the node's word on which of its doors are within reach from a wheelchair: the
    installer who wired the bank knows. A label central does not know is left to the layout
    alert; one the node does not report keeps central's flag. True when a flag changed.

    A node reports only the accessible doors as such (the flag travels only when true), so a
    node that knows of none, or predates the flag, reports every door as not accessible: central
    then keeps no unit for wheelchair users that the node would not keep either.
    """
    flags = {c.label: c.accessible for c in reported}
    changed = False
    for compartment in compartments:
        flag = flags.get(compartment.label)
        if flag is not None and flag != compartment.accessible:
            compartment.accessible = flag
            changed = True
    return changed


def _layout_mismatch(central: dict[str, str], reported: dict[str, str]) -> dict[str, Any]:
    missing = sorted(set(central) - set(reported))
    unknown = sorted(set(reported) - set(central))
    resized = {
        label: {"central": central[label], "node": reported[label]}
        for label in sorted(set(central) & set(reported))
        if central[label] != reported[label]
    }
    if not (missing or unknown or resized):
        return {}
    return {"missing_on_node": missing, "unknown_to_central": unknown, "size_differs": resized}


def _alert(
    session: Session, bank_id: str, alert_type: str, detail: dict[str, Any], now: datetime
) -> None:
    repo.add(session, Alert(bank_id=bank_id, type=alert_type, detail=detail, created_at=now))
