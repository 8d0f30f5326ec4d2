"""What recipients and carriers ask of notices beyond the lifecycle's own: the code sent again
from the parcel's page, and the "ready" notice for contact details that came after the deposit."""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import func, select

from central.context import Ctx
from central.errors import ApiError, Conflict
from central.models import Actor, Reservation, ReservationEvent, ReservationStatus
from central.notices import outbox
from central.notices.outbox import Fact

RESEND_HISTORY_TYPE = "code_resent"
# A recipient who lost the message asks once or twice; more is someone pressing a button.
RESENDS_PER_DAY = 3
RESEND_WINDOW = timedelta(hours=24)


def resend_code(ctx: Ctx, reservation: Reservation) -> int:
    """Send the "ready" notice again, with the current code; returns how many notices went out.

    Refused when the parcel is not waiting (`not_ready`), when the reservation has no contact
    details or its carrier tells its recipients itself (`no_contact`), and past
    `RESENDS_PER_DAY` in a day (`resend_limit`, 429 with Retry-After).
    """
    if reservation.status != ReservationStatus.DEPOSITED:
        raise Conflict("not_ready", "the parcel is not waiting in the locker")
    if not outbox.contacts(reservation.recipient) or not outbox.network_notifies(
        ctx, reservation.carrier_id
    ):
        raise Conflict("no_contact", "there is no email or phone number to send the code to")
    since = ctx.now - RESEND_WINDOW
    recent = ctx.session.execute(
        select(func.count(), func.min(ReservationEvent.at)).where(
            ReservationEvent.reservation_id == reservation.id,
            ReservationEvent.type == RESEND_HISTORY_TYPE,
            ReservationEvent.at > since,
        )
    ).one()
    if recent[0] >= RESENDS_PER_DAY:
        wait = math.ceil((recent[1] + RESEND_WINDOW - ctx.now).total_seconds())
        raise ApiError(
            429,
            "resend_limit",
            f"the code was sent {RESENDS_PER_DAY} times in the last day; try again later",
            headers={"Retry-After": str(max(1, wait))},
        )
    entry = _history(ctx, reservation, RESEND_HISTORY_TYPE, "the recipient asked for the code")
    return outbox.enqueue(ctx, reservation, Fact("ready", f"resent-h{entry.id}", ctx.now))


def recipient_added(ctx: Ctx, reservation: Reservation, entry_id: int) -> int:
    """Contact details came for a parcel already in the locker (a walk-up, or a carrier late
    with them): the recipient gets the "ready" notice now. `entry_id`: the history entry that
    recorded the change."""
    if reservation.status != ReservationStatus.DEPOSITED:
        return 0  # before the deposit, the deposit's own notice will reach them
    return outbox.enqueue(ctx, reservation, Fact("ready", f"contact-h{entry_id}", ctx.now))


def _history(ctx: Ctx, reservation: Reservation, kind: str, reason: str) -> ReservationEvent:
    entry = ReservationEvent.note(
        reservation,
        kind,
        actor=Actor.RECIPIENT.value,
        reason=reason,
        at=ctx.now,
    )
    ctx.session.add(entry)
    ctx.session.flush()
    return entry
