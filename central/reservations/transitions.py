"""A stored reservation moved along its lifecycle, with the history entry, capacity change,
webhook and recipient notice each move brings: cancelling, extending a deadline, expiring,
reminding.

`plan_transition` decides a move and what it writes, without writing; `transition` writes it at
once. A node's event batch writes the moves of the reservations it has locked together at its
end (`central.nodes.batch_writes`), from the same plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from central.banks import repository as banks_repository
from central.banks import settings as bank_settings
from central.context import Ctx
from central.db import scrub_after_commit
from central.errors import Conflict
from central.models import Actor, Reservation, ReservationEvent, ReservationStatus
from central.models.base import ReservationKind
from central.notices import outbox as notices
from central.notices.outbox import Fact, NoticeKind
from central.reservations import lifecycle
from central.reservations import repository as repo
from central.reservations.schemas import DROPOFF_WEBHOOK_FIELDS, ReservationOut
from central.reservations.views import describe, require_own
from central.webhooks.service import enqueue_event


@dataclass(frozen=True, slots=True)
class Step:
    """One transition decided and not yet written: its rule, the columns it sets, its history
    entry (a `reservation_events` row) and who its notice goes to."""

    rule: lifecycle.Transition
    values: dict[str, Any]
    entry: dict[str, Any]
    # Read before a move that ends the reservation wipes them: its notice still reaches them.
    recipient: dict[str, Any] | None
    closes: bool

    @property
    def notice(self) -> NoticeKind | None:
        return _NOTICE_OF.get(self.rule.target)


def plan_transition(
    ctx: Ctx,
    reservation: Reservation,
    target: ReservationStatus,
    *,
    actor: Actor,
    actor_id: str | None = None,
    reason: str | None = None,
    changes: dict[str, Any] | None = None,
    event_data: dict[str, Any] | None = None,
) -> Step:
    """The move to `target` as the reservation stands now; refused (`invalid_transition`)
    before anything is written when the lifecycle has no such move."""
    try:
        rule = lifecycle.transition_for(
            reservation.status,
            target.value,
            was_deposited=reservation.deposited_at is not None,
            kind=reservation.kind,
        )
    except lifecycle.InvalidTransition as exc:
        raise Conflict(
            "invalid_transition", str(exc), status=reservation.status, requested=target.value
        ) from exc
    now = ctx.now
    values: dict[str, Any] = {"status": target.value, "updated_at": now, **(changes or {})}
    closes = lifecycle.is_closed(target.value, was_deposited=reservation.deposited_at is not None)
    if closes:
        # Whether the recipient asked for an accessible door says something of their health:
        # kept only while it serves (the unit it held is released by `accessible_unit`).
        values.update(recipient=None, pickup_secret_sealed=None, accessible=False, closed_at=now)
        if reservation.kind == ReservationKind.DROPOFF:  # its code can open nothing any more
            values.update(dropoff_code_hash=None, dropoff_qr_hash=None)
    entry = {
        "reservation_id": reservation.id,
        "type": target.value,
        "from_status": rule.source.value,
        "to_status": target.value,
        "actor": actor.value,
        "actor_id": actor_id,
        "reason": reason,
        "data": event_data,
        "at": now,
    }
    return Step(rule, values, entry, reservation.recipient, closes)


def webhook_body(
    reservation: Reservation, out: ReservationOut, webhook_extra: dict[str, Any] | None
) -> Callable[[], dict[str, Any]]:
    """The data of a transition's webhook event, built only when an endpoint wants it."""
    if reservation.kind == ReservationKind.DROPOFF:
        # A drop-off's events carry the drop-off as its API shows it, without its code.
        return lambda: out.model_dump(mode="json", include=set(DROPOFF_WEBHOOK_FIELDS))
    return lambda: out.model_dump(mode="json") | (webhook_extra or {})


def notify(ctx: Ctx, reservation: Reservation, step: Step) -> None:
    """The recipient's notice of the move, if it is one they hear of."""
    notice = step.notice
    if notice is not None:
        # Each of these happens once to a reservation: its name is the notice's reference, so
        # the notice is written once even if the transition were somehow recorded twice.
        target = step.rule.target.value
        fact = Fact(notice, target, ctx.now)
        notices.enqueue(ctx, reservation, fact, recipient=step.recipient)


def transition(
    ctx: Ctx,
    reservation: Reservation,
    target: ReservationStatus,
    *,
    actor: Actor,
    actor_id: str | None = None,
    reason: str | None = None,
    changes: dict[str, Any] | None = None,
    event_data: dict[str, Any] | None = None,
    webhook_extra: dict[str, Any] | None = None,
) -> ReservationOut:
    """Apply one lifecycle transition with its history entry, capacity change and webhook."""
    step = plan_transition(
        ctx,
        reservation,
        target,
        actor=actor,
        actor_id=actor_id,
        reason=reason,
        changes=changes,
        event_data=event_data,
    )
    if step.closes:
        scrub_after_commit(ctx.session, [Reservation.__tablename__])
    if not repo.set_status(ctx.session, reservation.id, reservation.status, step.values):
        raise Conflict("concurrent_update", "the reservation changed meanwhile; fetch it again")
    for key, value in step.values.items():
        setattr(reservation, key, value)
    if step.rule.frees_capacity:
        banks_repository.release_unit(
            ctx.session,
            reservation.bank_id,
            reservation.size,
            accessible_unit=reservation.accessible_unit,
        )
    repo.add(ctx.session, ReservationEvent(**step.entry))
    ctx.session.flush()
    out = describe(ctx.session, reservation, history=repo.history_of(ctx.session, reservation.id))
    enqueue_event(
        ctx.session,
        ctx.keys,
        reservation.carrier_id,
        step.rule.webhook,
        webhook_body(reservation, out, webhook_extra),
        ctx.now,
    )
    notify(ctx, reservation, step)
    return out


# What a recipient hears of, among the transitions (the rest is the carrier's business).
_NOTICE_OF: dict[ReservationStatus, NoticeKind] = {
    ReservationStatus.DEPOSITED: "ready",
    ReservationStatus.PICKED_UP: "collected",
    ReservationStatus.RETURNED: "returned",
}


def cancel(ctx: Ctx, carrier_id: str, reservation_id: str, reason: str | None) -> ReservationOut:
    reservation = require_own(ctx.session, carrier_id, reservation_id)
    if reservation.status == ReservationStatus.CANCELLED:
        return describe(ctx.session, reservation)  # cancelling twice is the same as once
    if reservation.status != ReservationStatus.RESERVED:
        raise Conflict(
            "not_cancellable",
            f"a {reservation.status} reservation cannot be cancelled",
            status=reservation.status,
        )
    return transition(
        ctx,
        reservation,
        ReservationStatus.CANCELLED,
        actor=Actor.CARRIER,
        actor_id=carrier_id,
        reason=reason or "cancelled by carrier",
    )


def extend(
    ctx: Ctx,
    reservation: Reservation,
    hours: int,
    *,
    actor: Actor,
    actor_id: str | None,
    reason: str | None,
) -> ReservationOut:
    """Move the deadline that applies now: the hold before deposit, the pickup deadline after.

    Bounded by the bank's policy: at most `max_extension_hours` beyond the original deadline,
    and at most `max_extensions` times for each deadline when the bank sets a count.
    """
    bank = banks_repository.get_referenced_bank(ctx.session, reservation.bank_id)
    limit = timedelta(hours=bank.max_extension_hours)
    if reservation.status == ReservationStatus.RESERVED:
        field, current = "reserved_until", reservation.reserved_until
        original = reservation.created_at + timedelta(hours=bank.hold_hours)
    elif reservation.status == ReservationStatus.DEPOSITED and reservation.pickup_deadline:
        if reservation.deposited_at is None:  # the deposit sets both
            raise ValueError(f"reservation {reservation.id} has a pickup deadline, no deposit")
        field, current = "pickup_deadline", reservation.pickup_deadline
        original = reservation.deposited_at + timedelta(hours=bank.pickup_hours)
    else:
        raise Conflict(
            "not_extendable",
            f"a {reservation.status} reservation has no deadline to extend",
            status=reservation.status,
        )
    ceiling = original + limit
    if current + timedelta(hours=hours) > ceiling:
        raise Conflict(
            "extension_limit",
            f"the deadline can move to {ceiling.isoformat()} at the latest",
            max_deadline=ceiling.isoformat(),
        )
    done = sum(
        1
        for entry in repo.history_of(ctx.session, reservation.id)
        if entry.type == "extended" and (entry.data or {}).get("field") == field
    )
    bank_settings.check_extensions(bank, done)
    # Not while the bank is closed either: then to the end of its next open period.
    new_deadline = bank_settings.deadline(bank, current, hours)
    repo.update_fields(ctx.session, reservation.id, {field: new_deadline, "updated_at": ctx.now})
    setattr(reservation, field, new_deadline)
    reservation.updated_at = ctx.now
    entry = ReservationEvent.note(
        reservation,
        "extended",
        actor=actor.value,
        actor_id=actor_id,
        reason=reason,
        data={"field": field, "from": current.isoformat(), "to": new_deadline.isoformat()},
        at=ctx.now,
    )
    repo.add(ctx.session, entry)
    ctx.session.flush()
    if field == "pickup_deadline":  # a hold's end is the courier's deadline, not the recipient's
        notices.enqueue(ctx, reservation, Fact("extended", f"h{entry.id}", ctx.now))
    return describe(ctx.session, reservation, history=repo.history_of(ctx.session, reservation.id))


def expire_holds(ctx: Ctx, *, limit: int = 500) -> int:
    """Expire reservations whose courier never came; frees their capacity. Returns the count."""
    due = repo.expired_holds(ctx.session, ctx.now, limit)
    return _expire_each(ctx, due, ReservationStatus.RESERVED, "not deposited before reserved_until")


def expire_pickups(ctx: Ctx, *, limit: int = 500) -> int:
    """Expire deposited parcels past their pickup deadline: the courier takes them back."""
    due = repo.expired_pickups(ctx.session, ctx.now, limit)
    return _expire_each(
        ctx, due, ReservationStatus.DEPOSITED, "not picked up before pickup_deadline"
    )


def _expire_each(
    ctx: Ctx, reservation_ids: Sequence[str], source: ReservationStatus, reason: str
) -> int:
    count = 0
    for reservation_id in reservation_ids:
        reservation = repo.get(ctx.session, reservation_id)
        if reservation is None or reservation.status != source:
            continue  # changed since it was found due (a deposit, a pickup): nothing to expire
        transition(ctx, reservation, ReservationStatus.EXPIRED, actor=Actor.SYSTEM, reason=reason)
        count += 1
    if count:
        # The expiry jobs, not each request, also VACUUM on PostgreSQL: once a run, taking the
        # dead row versions that every wipe since the last one left (cancels, pickups too).
        scrub_after_commit(ctx.session, [Reservation.__tablename__], vacuum=True)
    return count


def send_reminders(ctx: Ctx, *, limit: int = 500) -> int:
    """One `parcel.reminder` per parcel, `reminder_hours` before its pickup deadline."""
    count = 0
    for reservation in repo.due_reminders(ctx.session, ctx.now, limit):
        bank = banks_repository.get_referenced_bank(ctx.session, reservation.bank_id)
        if reservation.pickup_deadline is None:  # `due_reminders` reads only parcels with one
            raise ValueError(f"reservation {reservation.id} has no pickup deadline")
        if reservation.pickup_deadline - timedelta(hours=bank.reminder_hours) > ctx.now:
            continue
        entry = ReservationEvent.note(
            reservation,
            "reminder",
            actor=Actor.SYSTEM.value,
            reason=f"{bank.reminder_hours} h before the pickup deadline",
            at=ctx.now,
        )
        repo.add(ctx.session, entry)
        ctx.session.flush()
        notices.enqueue(ctx, reservation, Fact("reminder", "once", ctx.now))
        out = describe(
            ctx.session,
            reservation,
            bank=bank,
            history=repo.history_of(ctx.session, reservation.id),
        )
        enqueue_event(
            ctx.session,
            ctx.keys,
            reservation.carrier_id,
            "parcel.reminder",
            partial(out.model_dump, mode="json"),
            ctx.now,
        )
        count += 1
    return count
