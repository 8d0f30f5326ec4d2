"""Parcel groups: a recipient's parcels at one bank, from one carrier, open with one pickup code.

A delivery reservation that carries the recipient's email or phone number gets a group id made
from the bank, the carrier and a keyed hash of the contact (`group_id_for`): the same for every
such reservation, made without a query and without a race between concurrent requests, and
with nothing of the contact readable in it. A group means something only among active
reservations: the node lets a parcel join the live pickup code of a group-mate already in the
locker, and the carrier API lists the group's active reservations with each of them.

A parcel that joined a group-mate's code reaches central as a `parcel.deposited` with
`shares_code_with` and no sealed code of its own (the node never has the code in clear a second
time): it is given the holder's sealed code here (`joined_secret`), so that its webhook, its
recipient's notice and its parcel page show the same code.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.context import Ctx
from central.errors import Conflict
from central.keys import ServiceKeys
from central.models import ACTIVE_STATUSES, Reservation
from central.notices.errors import PermanentSendError
from central.notices.pickup import open_pickup, seal_pickup
from central.notices.sms import normalize_phone
from central.reservations.schemas import GroupRef

GROUP_PREFIX = "grp_"
_KEY_PURPOSE = "parcel-group"
_DIGEST_HEX = 24  # 96 bits: collisions between one carrier's recipients at one bank are moot
# A group lists at most this many reservations (a recipient with more is an odd case; the list
# is there to show what shares a code, not to page through a carrier's parcels).
MAX_LISTED = 50
_ACTIVE = [status.value for status in ACTIVE_STATUSES]
# Why central asks the node for a code of the parcel's own (`joined_secret`): in the history.
OWN_CODE_REASON = "the group-mate's code could not be passed on: a code of its own"


def contact_key(recipient: Mapping[str, Any] | None) -> str | None:
    """The contact a group is keyed on: the email lower-cased, else the phone number as E.164
    (its digits alone when it is not one); None without either."""
    if not recipient:
        return None
    email = recipient.get("email")
    if isinstance(email, str) and email.strip():
        return "email:" + email.strip().lower()
    phone = recipient.get("phone")
    if not isinstance(phone, str) or not phone.strip():
        return None
    try:
        return "phone:" + normalize_phone(phone)
    except PermanentSendError:
        digits = "".join(ch for ch in phone if ch.isdigit())
        return "phone:" + digits if digits else None


def group_id_for(
    keys: ServiceKeys, bank_id: str, carrier_id: str, recipient: Mapping[str, Any] | None
) -> str | None:
    """`grp_` and 24 hex characters of HMAC(parcel-group key, bank, carrier, contact); None for
    a reservation without an email or phone number, which has no group."""
    contact = contact_key(recipient)
    if contact is None:
        return None
    message = "\x1f".join((bank_id, carrier_id, contact)).encode()
    digest = hmac.new(keys.derive(_KEY_PURPOSE), message, hashlib.sha256).hexdigest()
    return GROUP_PREFIX + digest[:_DIGEST_HEX]


def active_members(session: Session, group_id: str) -> list[str]:
    """The group's active reservations, oldest first: one query on `ix_reservations_group`."""
    return list(
        session.scalars(
            select(Reservation.id)
            .where(Reservation.group_id == group_id, Reservation.status.in_(_ACTIVE))
            .order_by(Reservation.created_at, Reservation.id)
            .limit(MAX_LISTED)
        )
    )


def group_of(
    session: Session, reservation_id: str, group_id: str | None, mates: Sequence[str] | None
) -> GroupRef | None:
    """A reservation's group as the API shows it: its id and the active reservations in it,
    this one included whatever its status; None without a group. `mates`: the reservations
    known to be in it already (no query then), for a reservation being made."""
    if group_id is None:
        return None
    members = active_members(session, group_id) if mates is None else list(mates)
    if reservation_id not in members:
        members.append(reservation_id)
    return GroupRef.model_construct(id=group_id, reservations=members)


class _Holder(Protocol):
    """What `joined_secret` reads of the code's holder: a stored row or the batch's copy."""

    @property
    def bank_id(self) -> str: ...
    @property
    def carrier_id(self) -> str: ...
    @property
    def group_id(self) -> str | None: ...
    @property
    def pickup_secret_sealed(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class DepositSecret:
    """What a `parcel.deposited` gives its reservation: the sealed pickup code and QR payload it
    keeps (None: none to keep), what the webhook adds to the reservation, what the history
    notes, and whether the node is to give the parcel a code of its own."""

    sealed: str | None
    webhook: dict[str, Any]
    history: dict[str, Any] = field(default_factory=dict)
    own_code_needed: bool = False


def own_secret(keys: ServiceKeys, pickup_code: str, qr_payload: str) -> DepositSecret:
    """A parcel with a code of its own: the one its event carried sealed."""
    return DepositSecret(
        seal_pickup(keys, pickup_code, qr_payload),
        {"pickup_code": pickup_code, "qr_payload": qr_payload},
    )


def joined_secret(
    ctx: Ctx,
    bank_id: str,
    reservation: Reservation,
    holder_id: str,
    holders: Mapping[str, Reservation] | None = None,
) -> DepositSecret:
    """The code of the group-mate (`holder_id`) whose code a parcel joined on the node.

    The holder must be a reservation of this bank and carrier (another's is refused: its code
    is never handed on). When central holds no code for it, or counts it in another group now
    (its contact changed after its deposit, which the node does not hear of), the parcel is
    recorded without a code and the node is asked (by `central.nodes.events`) for one of the
    parcel's own: the recipient hears of it then.

    `holders`: the bank's reservations as the caller holds them, the holder among them if it is
    one (a node's batch locks them up front, and its deposits are written at its end): no
    query then, and a holder deposited earlier in the batch is seen with its code.
    """
    holder: _Holder | None
    if holders is not None:
        holder = holders.get(holder_id)
    else:
        holder = ctx.session.execute(
            select(
                Reservation.bank_id,
                Reservation.carrier_id,
                Reservation.group_id,
                Reservation.pickup_secret_sealed,
            ).where(Reservation.id == holder_id)
        ).first()
    if holder is None or holder.bank_id != bank_id or holder.carrier_id != reservation.carrier_id:
        raise Conflict(
            "unknown_code_holder", f"no reservation {holder_id} of this carrier at this bank"
        )
    same_group = reservation.group_id is not None and holder.group_id == reservation.group_id
    secret = open_pickup(ctx.keys, holder.pickup_secret_sealed) if same_group else None
    history: dict[str, Any] = {"shares_code_with": holder_id}
    if secret is None:
        return DepositSecret(
            None,
            {"shares_code_with": holder_id, "pickup_code": None, "qr_payload": None},
            history | {"own_code_requested": True},
            own_code_needed=True,
        )
    return DepositSecret(
        seal_pickup(ctx.keys, secret.code, secret.qr_payload, shared=True),
        {
            "shares_code_with": holder_id,
            "pickup_code": secret.code,
            "qr_payload": secret.qr_payload,
        },
        history,
    )
