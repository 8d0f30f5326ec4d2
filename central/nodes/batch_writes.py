"""A node batch's reservation transitions, decided in memory and written together at its end.

The batch's reservations are locked up front (`repository.lock_reservations`), so inside the
batch their in-memory state is the truth: a transition is decided and applied to the object
(`transitions.plan_transition`, the same rules as `transitions.transition`), and what it writes
is kept here. `flush` writes it all with a fixed number of statements whatever the batch's size
(`batch_repository`): one UPDATE of the reservations (each row its state at the flush, checked
against the status the database holds), one UPDATE of the units given back, one INSERT of the
history entries, one of the webhook deliveries. The recipient notices go in with the batch's
others (`batch.BatchNotices`).

A webhook body shows the reservation with its history and its group as they stand right after
the move, as `transitions.transition` builds it: the history of the batch's reservations is
read once and the new entries appended in memory, and the active members of their groups are
read once and counted with the batch's statuses. An event's writes are kept only once its
handler succeeded (`settle`); a refused event leaves its reservation as it found it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from central.banks import repository as banks_repository
from central.context import Ctx
from central.db import scrub_after_commit
from central.models import Bank, Reservation, ReservationStatus
from central.nodes import batch_repository as rows_repo
from central.nodes.batch_repository import SOMETIMES, WRITTEN, HistoryRow
from central.reservations.groups import MAX_LISTED
from central.reservations.transitions import Step, notify, webhook_body
from central.reservations.views import describe
from central.webhooks import repository as webhooks_repository
from central.webhooks.service import Subscriptions, delivery_rows

_ACTIVE = (ReservationStatus.RESERVED.value, ReservationStatus.DEPOSITED.value)
# A parcel in its compartment: deposited, or expired and not yet taken back.
_IN_COMPARTMENT = (ReservationStatus.DEPOSITED.value, ReservationStatus.EXPIRED.value)


@dataclass(slots=True)
class _Pending:
    """Rows and changes waiting for the flush: the batch's, or the current event's."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    releases: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    changed: dict[str, set[str]] = field(default_factory=dict)  # reservation -> columns set

    def take(self, other: _Pending) -> None:
        self.entries.extend(other.entries)
        self.deliveries.extend(other.deliveries)
        self.releases.update(other.releases)
        for rid, columns in other.changed.items():
            self.changed.setdefault(rid, set()).update(columns)


@dataclass(slots=True)
class _Undo:
    """How to put a reservation back as an event found it, should the event be refused."""

    reservation: Reservation
    values: dict[str, Any]
    history: list[HistoryRow]


class BatchWrites:
    """The deferred transitions of one batch of node events, and what they read once.

    `hold` names the reservations the batch locked; `holds` says whether a reservation is one of
    them, as the batch holds it (only those are deferred: another is written at once by
    `transitions.transition`, after `flush`). Once the database changed beside the batch (a
    handler that writes at once), `forget` drops what was read, to be read again when needed.
    """

    def __init__(self) -> None:
        self._held: dict[str, Reservation] = {}
        self._batch: Mapping[str, Reservation] = {}
        self._was: dict[str, str] = {}  # status in the database, of held reservations
        self._kept = _Pending()
        self._event = _Pending()
        self._undo: list[_Undo] = []
        self._subscriptions = Subscriptions()
        self._bank: Bank | None = None
        self._history: dict[str, list[HistoryRow]] | None = None
        self._groups: dict[str, list[tuple[str, str]]] | None = None
        self._parcels: dict[str, set[str]] | None = None  # label -> stored parcels' ids
        # label -> the batch's reservations bound to it at some point of the batch
        self._labels: dict[str, set[str]] | None = None

    def hold(self, batch: Mapping[str, Reservation]) -> None:
        """The reservations the batch locked, by id (`batch` is the batch's own mapping: the
        reservations a handler adds to it later are not held, and are written at once)."""
        self._batch = batch
        self._held = dict(batch)
        self._was = {rid: reservation.status for rid, reservation in batch.items()}

    def holds(self, reservation: Reservation) -> bool:
        return self._held.get(reservation.id) is reservation

    def apply(
        self,
        ctx: Ctx,
        reservation: Reservation,
        step: Step,
        webhook_extra: dict[str, Any] | None,
    ) -> None:
        """Carry out a planned transition of a held reservation in memory, keeping its rows."""
        if not step.values.keys() <= set(WRITTEN):
            raise ValueError(f"a batch does not write {sorted(set(step.values) - set(WRITTEN))}")
        if step.closes:
            scrub_after_commit(ctx.session, [Reservation.__tablename__])
        history = self._history_of(ctx.session, reservation.id)
        before = {name: getattr(reservation, name) for name in step.values}
        self._undo.append(_Undo(reservation, before, history))
        for name, value in step.values.items():
            setattr(reservation, name, value)
        if self._labels is not None and reservation.compartment_label is not None:
            self._labels.setdefault(reservation.compartment_label, set()).add(reservation.id)
        self._event.changed.setdefault(reservation.id, set()).update(step.values)
        if step.rule.frees_capacity:
            unit = (reservation.bank_id, reservation.size, reservation.accessible_unit)
            self._event.releases[unit] += 1
        entry = step.entry
        self._event.entries.append(entry)
        history.append(
            HistoryRow(
                entry["type"],
                entry["from_status"],
                entry["to_status"],
                entry["actor"],
                entry["reason"],
                entry["at"],
                entry["data"],
            )
        )
        endpoint_ids = self._subscriptions.endpoint_ids(
            ctx.session, reservation.carrier_id, step.rule.webhook
        )
        if endpoint_ids:
            out = describe(
                ctx.session,
                reservation,
                bank=self._bank_of(ctx.session, reservation.bank_id),
                history=history,
                group_mates=self._group_mates(ctx.session, reservation),
            )
            self._event.deliveries.extend(
                delivery_rows(
                    ctx.keys,
                    step.rule.webhook,
                    endpoint_ids,
                    webhook_body(reservation, out, webhook_extra),
                    ctx.now,
                )
            )
        notify(ctx, reservation, step)

    def settle(self, *, applied: bool) -> None:
        """The current event is over: its writes kept when it applied, undone when refused."""
        if applied:
            self._kept.take(self._event)
        else:
            for undo in reversed(self._undo):
                for name, value in undo.values.items():
                    setattr(undo.reservation, name, value)
                undo.history.pop()
        self._event = _Pending()
        self._undo.clear()

    def flush(self, session: Session) -> None:
        """Write what the events so far kept, a fixed handful of statements whatever their
        number. The current event's writes, not yet kept, wait."""
        kept = self._kept
        rows = []
        for rid, columns in sorted(kept.changed.items()):  # in id order, as they were locked
            reservation = self._held[rid]
            row = {name: getattr(reservation, name) for name in WRITTEN}
            row |= {f"s_{name}": name in columns for name in SOMETIMES}
            rows.append({"id": rid, "was": self._was[rid], **row})
        written = rows_repo.write_reservations(session, rows)
        if written != len(rows):
            raise RuntimeError(f"{len(rows) - written} locked reservations changed under the batch")
        self._was.update((row["id"], row["status"]) for row in rows)
        rows_repo.release_units(session, kept.releases)
        rows_repo.insert_history(session, kept.entries)
        webhooks_repository.insert_deliveries(session, kept.deliveries)
        self._kept = _Pending()

    def forget(self, session: Session) -> None:
        """Drop what was read for the batch, once the database changed beside it (a handler
        that writes at once): the kept writes go in first, and the reads are made again when
        next needed. The held reservations are then in memory as the database holds them."""
        if self._event.changed:
            raise RuntimeError("the batch's reads dropped with an event's writes pending")
        self.flush(session)
        self._was = {rid: reservation.status for rid, reservation in self._held.items()}
        self._history = self._groups = self._parcels = self._labels = None

    def holds_parcel(self, session: Session, bank_id: str, label: str) -> bool:
        """Whether a parcel (deposited, or expired and not yet taken back) is bound to the
        label: the batch's reservations as they stand in memory, the others as stored."""
        if self._parcels is None:
            self._parcels = rows_repo.parcels_by_label(session, bank_id, _IN_COMPARTMENT)
        if any(rid not in self._batch for rid in self._parcels.get(label, ())):
            return True
        if self._labels is None:
            self._labels = {}
            for r in self._batch.values():
                if r.compartment_label is not None:
                    self._labels.setdefault(r.compartment_label, set()).add(r.id)
        batch = self._batch
        return any(
            batch[rid].compartment_label == label and batch[rid].status in _IN_COMPARTMENT
            for rid in self._labels.get(label, ())
        )

    def _bank_of(self, session: Session, bank_id: str) -> Bank:
        if self._bank is None or self._bank.id != bank_id:
            self._bank = banks_repository.get_referenced_bank(session, bank_id)
        return self._bank

    def _history_of(self, session: Session, reservation_id: str) -> list[HistoryRow]:
        """The reservation's history as it stands, entries of this batch included: the held
        reservations' read in one statement when first needed."""
        if self._history is None:
            self._history = rows_repo.histories(session, self._held)
        return self._history[reservation_id]

    def _group_mates(self, session: Session, reservation: Reservation) -> list[str] | None:
        """The active reservations of the reservation's group, oldest first, as
        `groups.active_members` would read them now; None without a group."""
        group_id = reservation.group_id
        if group_id is None:
            return None
        if self._groups is None:
            group_ids = {r.group_id for r in self._batch.values() if r.group_id is not None}
            self._groups = rows_repo.group_members(session, group_ids, self._batch)
        mates: list[str] = []
        for rid, stored in self._groups.get(group_id, ()):
            batch_copy = self._batch.get(rid)
            status = batch_copy.status if batch_copy is not None else stored
            if status in _ACTIVE:
                mates.append(rid)
                if len(mates) == MAX_LISTED:
                    break
        return mates
