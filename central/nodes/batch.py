"""What the handlers of one event batch share: the batch's state and the shape of a handler."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from central.context import Ctx
from central.models import Actor, Bank, CompartmentState, Node, Reservation, ReservationStatus
from central.nodes import repository as repo
from central.nodes.batch_writes import BatchWrites
from central.nodes.errors import EventRejected
from central.notices import outbox as notices_outbox
from central.reservations import transitions
from locker_wire.schemas import NodeEvent

M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class BatchNotices:
    """The batch's recipient notices, written in one statement at its end (`Ctx.notices`).

    An event's notices are kept only once its handler succeeded (`settle`): a refused event,
    whose writes its savepoint undid, leaves none.
    """

    choices: dict[str, bool] = field(default_factory=dict)
    kept: list[dict[str, Any]] = field(default_factory=list)
    current: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.current.extend(rows)

    def settle(self, *, applied: bool) -> None:
        if applied:
            self.kept.extend(self.current)
        self.current.clear()


@dataclass(slots=True)
class BatchState:
    """What the events of one batch share: rows read once up front, writes made once at the end.

    `compartments` is kept current as handlers change states, so a later event of the batch
    sees what an earlier one did; the changed states are written by `finish`, with the alerts.
    The reservations named by the batch's events (any event data with a `reservation_id`, and
    the code holder a deposit `shares_code_with`) are locked and loaded up front; a handler
    takes one with `own_reservation` and moves it with `transition`, which `writes` keeps for
    `finish` (`batch_writes`).
    """

    compartments: dict[str, repo.CompartmentRow]
    reservations: dict[str, Reservation] = field(default_factory=dict)
    in_session: list[Reservation] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    changed_states: dict[int, str] = field(default_factory=dict)
    working_units: dict[str, int] = field(default_factory=dict)  # size class -> change
    accessible_units: dict[str, int] = field(default_factory=dict)  # of those, accessible
    resolved: set[tuple[str, str]] = field(default_factory=set)  # (alert type, subject)
    bank: Bank | None = None
    notices: BatchNotices = field(default_factory=BatchNotices)
    writes: BatchWrites = field(default_factory=BatchWrites)
    # When given, the reservations stay out of this session between events (`set_aside`).
    session: Session | None = None

    def compartment(self, label: str) -> repo.CompartmentRow:
        found = self.compartments.get(label)
        if found is None:
            raise EventRejected("unknown_compartment", f"no compartment {label}")
        return found

    def set_state(self, row: repo.CompartmentRow, state: CompartmentState) -> None:
        self.compartments[row.label] = row._replace(state=state.value)
        self.changed_states[row.id] = state.value
        # A compartment leaving or returning to service takes its unit out of, or back into,
        # what allocation can give for its class.
        leaving = state == CompartmentState.OUT_OF_SERVICE
        if leaving != (row.state == CompartmentState.OUT_OF_SERVICE):
            self.working_units[row.size] = self.working_units.get(row.size, 0) + (
                -1 if leaving else 1
            )
            if row.accessible:
                self.accessible_units[row.size] = self.accessible_units.get(row.size, 0) + (
                    -1 if leaving else 1
                )

    def add_alert(
        self, alert_type: str, subject: str | None, detail: dict[str, Any], now: datetime
    ) -> None:
        self.alerts.append(
            {"type": alert_type, "subject": subject, "detail": detail, "created_at": now}
        )
        self.resolved.discard((alert_type, subject))

    def resolve_alert(self, alert_type: str, subject: str) -> None:
        """The trouble is over: its open alert (or one raised earlier in the batch) resolves."""
        self.alerts = [a for a in self.alerts if (a["type"], a["subject"]) != (alert_type, subject)]
        self.resolved.add((alert_type, subject))

    def own_reservation(self, reservation_id: str) -> Reservation:
        # Locked by `apply_events` (in id order, for the whole batch), so a carrier's change
        # racing this batch waits instead of failing either side. Another bank's reservation
        # was not loaded, and reads exactly like a missing one.
        # It stays out of the session: its changes are the batch's to write (`writes`).
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise EventRejected(
                "unknown_reservation", f"no reservation {reservation_id} at this bank"
            )
        return reservation

    def transition(
        self,
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
    ) -> None:
        """`transitions.transition` for an event of the batch: a reservation the batch locked
        moves in memory and is written at the end with the others (refused as the immediate
        path would be, before anything is kept); another (a walk-up the batch adopted) is
        written at once, after the batch's writes so far."""
        if self.writes.holds(reservation):
            step = transitions.plan_transition(
                ctx,
                reservation,
                target,
                actor=actor,
                actor_id=actor_id,
                reason=reason,
                changes=changes,
                event_data=event_data,
            )
            self.writes.apply(ctx, reservation, step, webhook_extra)
            return
        self.writes.flush(ctx.session)
        try:
            transitions.transition(
                ctx,
                reservation,
                target,
                actor=actor,
                actor_id=actor_id,
                reason=reason,
                changes=changes,
                event_data=event_data,
                webhook_extra=webhook_extra,
            )
        finally:
            self.writes.forget(ctx.session)

    @contextmanager
    def at_once(self, ctx: Ctx, reservation: Reservation | None = None) -> Iterator[None]:
        """Writes a handler makes itself, at once and all or none (a savepoint), beside the
        batch's deferred ones: those go in first, and what the batch read is read again after.
        `reservation`, one the batch holds, is put back as it was when the savepoint is undone.
        """
        self.writes.flush(ctx.session)
        before = (
            {attr.key: getattr(reservation, attr.key) for attr in inspect(Reservation).column_attrs}
            if reservation is not None
            else {}
        )
        try:
            with ctx.session.begin_nested():
                yield
        except BaseException:
            for name, value in before.items():
                setattr(reservation, name, value)
            raise
        finally:
            self.writes.forget(ctx.session)

    @contextmanager
    def all_or_none(self, ctx: Ctx, reservation: Reservation) -> Iterator[None]:
        """Several transitions of one reservation, all kept or none: a held one's are undone
        in memory with its event (`settle`); another's are written at once, in a savepoint."""
        if self.writes.holds(reservation):
            yield
            return
        self.writes.flush(ctx.session)
        with ctx.session.begin_nested():
            yield

    def holds_parcel(self, ctx: Ctx, bank_id: str, label: str) -> bool:
        """Whether a parcel is bound to the compartment, the batch's moves so far included."""
        return self.writes.holds_parcel(ctx.session, bank_id, label)

    def settle(self, *, applied: bool) -> None:
        """An event's handler is done: its notices and writes kept, or dropped when refused."""
        self.notices.settle(applied=applied)
        self.writes.settle(applied=applied)

    def track(self, reservation: Reservation, *, own: bool) -> None:
        """A reservation a handler read or made itself, after the batch's were locked (a walk-up
        adopted, the reservation it replaced): set aside between events like the others and,
        when `own` (of this batch's bank), taken by later events of the batch with
        `own_reservation` (a walk-up deposited and collected while central was unreachable
        arrives in one batch). Its row is locked already: the handler wrote it."""
        if own:
            self.reservations[reservation.id] = reservation
        if self.session is not None and reservation in self.session:
            self.in_session.append(reservation)

    def set_aside(self) -> None:
        """Take the batch's reservations out of the session between events.

        The ORM keeps every loaded object in step with each UPDATE it runs, by checking the
        UPDATE's criteria against each object of that class in the session: with a batch's
        hundreds of reservations in it, each transition would cost a pass over all of them.
        They stay out: a handler moves them in memory, and the batch writes them (`writes`).
        """
        if self.session is None:
            return
        for reservation in self.in_session:
            if reservation in self.session:
                self.session.expunge(reservation)
        self.in_session.clear()

    def finish(self, ctx: Ctx, bank_id: str) -> None:
        self.writes.flush(ctx.session)
        repo.set_compartment_states(ctx.session, self.changed_states)
        repo.change_working_units(ctx.session, bank_id, self.working_units, self.accessible_units)
        repo.raise_bank_alerts(ctx.session, bank_id, self.alerts)
        repo.resolve_subject_alerts(ctx.session, bank_id, sorted(self.resolved), ctx.now)
        notices_outbox.write(ctx.session, self.notices.kept)


@dataclass(frozen=True, slots=True)
class Handler:
    """How central applies one event type, once its data passed validation against the model
    its type registers (`events._DATA_MODELS`)."""

    apply: Callable[[Ctx, Node, NodeEvent, BaseModel, BatchState], None]
    # For handlers that can still be refused (EventRejected, ApiError) after their first write:
    # a savepoint undoes the partial work. A handler that makes all its checks before writing
    # anything, or writes only through `BatchState`, does without one (two round trips saved).
    savepoint: bool = False
    # Writes only through `BatchState` (its moves through `BatchState.transition`, its own
    # writes in `BatchState.at_once`) and reads nothing the batch's deferred writes would hide.
    # Any other handler runs after those writes went in, and the batch's reads are made again
    # after it.
    batched: bool = False


def require_data(data: BaseModel, model: type[M]) -> M:
    """An event's data as the model its type registers: a handler given another is a bug."""
    if not isinstance(data, model):
        raise TypeError(f"{model.__name__} expected, got {type(data).__name__}")
    return data
