"""Putting notices to a recipient in the outbox, in the transaction of what they tell of.

`enqueue` writes one row per channel the recipient can be reached on (email, SMS), keyed by the
fact it tells of, so that however often a fact is handled (a retried batch, a second central
process) its notice is written once. Nothing is rendered here: the row seals who it goes to and
the facts that change per notice (the code, the deadline, a link to the parcel's page), and the
sending job renders it with the bank's and carrier's current details. Without contact details,
or for a carrier that tells its recipients itself, nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from central.bulk import BulkInsert
from central.context import Ctx
from central.models import Carrier, Notice, Reservation
from central.models.base import ReservationKind
from central.notices.pickup import open_pickup
from central.notices.sms import mask_phone
from central.notices.tokens import make_page_token

NoticeKind = Literal[
    "ready",
    "reminder",
    "extended",
    "reissued",
    "collected",
    "returned",
    "dropoff_code",
    "redirected",  # a reserved parcel moved to another bank (`reservations.redirect`)
]
Channel = Literal["email", "sms"]
# The kinds that carry the pickup code: without the sealed code (a parcel deposited before
# central kept it) they are not sent, rather than sent without what they are for.
CODE_KINDS: frozenset[str] = frozenset({"ready", "reminder", "reissued", "dropoff_code"})
# A drop-off's sender hears only of its code (`central.dropoffs`), never a delivery's notices.
DROPOFF_KINDS: frozenset[str] = frozenset({"dropoff_code"})
NETWORK = "network"
CARRIER = "carrier"
RECIPIENT_NOTICE_CHOICES = (NETWORK, CARRIER)

_NOTICES = cast(Table, Notice.__table__)
_INSERT_ONCE = BulkInsert(
    _NOTICES,
    (
        "key",
        "reservation_id",
        "bank_id",
        "carrier_id",
        "kind",
        "channel",
        "language",
        "destination_hint",
        "payload_sealed",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
    ),
    unique="key",
)
_CARRIERS = cast(Table, Carrier.__table__)
_CHOICE = select(_CARRIERS.c.recipient_notices).where(_CARRIERS.c.id == bindparam("p_id"))


@dataclass(frozen=True, slots=True)
class Fact:
    """What the recipient hears of: its kind, a reference unique within the reservation (the
    history entry or node event that recorded it) and when it happened."""

    kind: NoticeKind
    ref: str
    at: datetime


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"[:64]


def contacts(recipient: dict[str, Any] | None) -> list[tuple[Channel, str]]:
    """The channels a recipient can be reached on, email first."""
    if not recipient:
        return []
    found: list[tuple[Channel, str]] = []
    if recipient.get("email"):
        found.append(("email", str(recipient["email"])))
    if recipient.get("phone"):
        found.append(("sms", str(recipient["phone"])))
    return found


def network_notifies(ctx: Ctx, carrier_id: str) -> bool:
    """Whether the network tells this carrier's recipients (not the carrier itself); read once
    per transaction where the caller collects its notices."""
    known = ctx.notices.choices if ctx.notices is not None else None
    if known is not None and carrier_id in known:
        return known[carrier_id]
    choice = ctx.session.connection().execute(_CHOICE, {"p_id": carrier_id}).scalar()
    notifies = choice != CARRIER
    if known is not None:
        known[carrier_id] = notifies
    return notifies


def write(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert notice rows in one statement; a row whose key exists already is left out."""
    _INSERT_ONCE.run(session, rows)


def enqueue(
    ctx: Ctx,
    reservation: Reservation,
    fact: Fact,
    *,
    recipient: dict[str, Any] | None = None,
) -> int:
    """Write the fact's notices to `recipient` (by default the reservation's), one per channel;
    returns the number of channels. A fact written before is not written again.

    `recipient` is given by a transition that ends the reservation, which wipes the contact
    details in the same transaction: they are read before, and kept only sealed in the notice
    until it is sent.
    """
    who = recipient if recipient is not None else reservation.recipient
    reachable = contacts(who)
    dropoff = reservation.kind == ReservationKind.DROPOFF
    if dropoff != (fact.kind in DROPOFF_KINDS):
        return 0
    if not reachable or not network_notifies(ctx, reservation.carrier_id):
        return 0
    facts: dict[str, Any] = {
        "tracking_number": reservation.tracking_number,
        "compartment": reservation.compartment_label,
        # A drop-off's deadline is the sender's: the code works until then.
        "deadline": _iso(reservation.reserved_until if dropoff else reservation.pickup_deadline),
        "at": fact.at.isoformat(),
        "token": make_page_token(ctx.keys, reservation.id, ctx.now),
        "name": (who or {}).get("name"),
    }
    if fact.kind in CODE_KINDS or fact.kind == "extended":
        secret = open_pickup(ctx.keys, reservation.pickup_secret_sealed)
        if secret is None and fact.kind in CODE_KINDS:
            return 0
        if secret is not None:
            facts.update(code=secret.code, qr=secret.qr_payload)
            if secret.shared:  # one more parcel under a code the recipient has (parcel groups)
                facts["shared"] = True
    language = str((who or {}).get("language") or "en")
    rows = [
        {
            "key": f"{reservation.id}/{fact.kind}/{fact.ref}/{channel}",
            "reservation_id": reservation.id,
            "bank_id": reservation.bank_id,
            "carrier_id": reservation.carrier_id,
            "kind": fact.kind,
            "channel": channel,
            "language": language,
            "destination_hint": mask_email(to) if channel == "email" else mask_phone(to),
            "payload_sealed": ctx.keys.encrypt(
                json.dumps(facts | {"to": to}, separators=(",", ":"))
            ),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": ctx.now,
            "created_at": ctx.now,
        }
        for channel, to in reachable
    ]
    if ctx.notices is not None:
        ctx.notices.add(rows)
    else:
        write(ctx.session, rows)
    return len(rows)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
