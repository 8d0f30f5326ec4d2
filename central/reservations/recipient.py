"""The recipient's contact details, set or replaced by the carrier while its parcel is active."""

from __future__ import annotations

from typing import Any

from central.context import Ctx
from central.db import scrub_after_commit
from central.errors import Conflict
from central.models import ACTIVE_STATUSES, Actor, Reservation, ReservationEvent
from central.models.base import ReservationKind
from central.notices.service import recipient_added
from central.reservations import repository as repo
from central.reservations.groups import group_id_for
from central.reservations.schemas import Recipient, ReservationOut
from central.reservations.views import describe, require_own

HISTORY_TYPE = "recipient_updated"


def set_recipient(
    ctx: Ctx, carrier_id: str, reservation_id: str, recipient: Recipient
) -> ReservationOut:
    """Give the caller's active reservation these contact details, replacing any it had.

    A recipient with no field at all removes them. A closed reservation's details were wiped
    when it closed and stay so: 409 `not_active`. The history records that they changed and
    which fields are set, never a value.
    """
    reservation = require_own(ctx.session, carrier_id, reservation_id)
    if reservation.status not in ACTIVE_STATUSES:
        raise Conflict(
            "not_active",
            f"a {reservation.status} reservation keeps no contact details",
            status=reservation.status,
        )
    contact: dict[str, Any] | None = recipient.model_dump(exclude_none=True) or None
    replaced = reservation.recipient is not None
    values: dict[str, Any] = {"recipient": contact, "updated_at": ctx.now}
    if reservation.kind == ReservationKind.DELIVERY:
        # The parcel's group follows its contact (and the node hears of it with the change).
        values["group_id"] = group_id_for(
            ctx.keys, reservation.bank_id, reservation.carrier_id, contact
        )
    # Compare-and-set on the status (unchanged by this write): a transition that closes the
    # reservation meanwhile, and wipes its details, makes this refuse instead of writing them
    # back onto a closed reservation.
    if not repo.set_status(ctx.session, reservation.id, reservation.status, values):
        raise Conflict("concurrent_update", "the reservation changed meanwhile; fetch it again")
    for key, value in values.items():
        setattr(reservation, key, value)
    if replaced:
        # The details given before are personal data nobody needs any more: out of the files too.
        scrub_after_commit(ctx.session, [Reservation.__tablename__])
    entry = ReservationEvent.note(
        reservation,
        HISTORY_TYPE,
        actor=Actor.CARRIER.value,
        actor_id=carrier_id,
        reason=_reason(replaced, contact),
        data={"fields": sorted(contact or {})},
        at=ctx.now,
    )
    repo.add(ctx.session, entry)
    ctx.session.flush()
    out = describe(ctx.session, reservation, history=repo.history_of(ctx.session, reservation.id))
    # A parcel already in the locker (a walk-up, a carrier late with the details): the
    # recipient hears of it now; before the deposit, the deposit's own notice reaches them.
    recipient_added(ctx, reservation, entry.id)
    return out


def _reason(replaced: bool, contact: dict[str, Any] | None) -> str:
    if contact is None:
        return "recipient contact details removed by carrier"
    return f"recipient contact details {'replaced' if replaced else 'set'} by carrier"
