"""The soak's invariants as pure functions over a plain snapshot of the network's state: what
central holds, what each node holds, what the carrier's endpoint and the recipients received,
and what the soak's own carrier, couriers and recipients were told."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

ACTIVE = ("reserved", "deposited")
SHOWN = 8  # offending items printed per invariant


@dataclass(frozen=True)
class CentralReservation:
    id: str
    tracking_number: str
    bank_id: str
    size: str
    status: str
    compartment: str | None


@dataclass(frozen=True)
class CentralNodeEvent:
    id: str
    bank_id: str
    type: str
    status: str  # applied | rejected
    reservation_id: str | None


@dataclass(frozen=True)
class Capacity:
    bank_id: str
    size: str
    total: int
    available: int


@dataclass(frozen=True)
class NodeParcel:
    bank_id: str
    id: str
    reservation_id: str
    compartment: str
    deposited_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Webhook:
    event_id: str
    type: str
    reservation_id: str
    deliveries: int
    pickup_code: str | None = None


@dataclass
class State:
    """Everything the invariants look at, gathered once the network has settled."""

    reservations: list[CentralReservation] = field(default_factory=list)
    node_events: list[CentralNodeEvent] = field(default_factory=list)
    capacity: list[Capacity] = field(default_factory=list)
    deliveries_not_delivered: dict[str, int] = field(default_factory=dict)  # status -> count
    delivery_event_ids: set[str] = field(default_factory=set)
    notices_not_sent: dict[str, int] = field(default_factory=dict)
    node_parcels: list[NodeParcel] = field(default_factory=list)
    outbox_unsent: dict[str, int] = field(default_factory=dict)  # bank -> events not sent
    webhooks: list[Webhook] = field(default_factory=list)
    bad_signatures: int = 0
    mail_codes: dict[str, list[str]] = field(default_factory=dict)  # reservation -> codes
    told: dict[str, str] = field(default_factory=dict)  # reservation id -> tracking number
    cancelled: set[str] = field(default_factory=set)
    confirmed: dict[str, tuple[str, str]] = field(default_factory=dict)  # -> (bank, compartment)
    picked_up: set[str] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)
    tracebacks: dict[str, list[str]] = field(default_factory=dict)  # log -> first lines
    anomalies: list[str] = field(default_factory=list)
    answers: int = 0  # answers the soak's clients got, each checked for a 5xx
    logs: int = 0  # logs scanned for tracebacks and 5xx answers
    processes_down: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    name: str
    problems: list[str]
    checked: int  # how many facts were looked at

    @property
    def ok(self) -> bool:
        return not self.problems


def _verdict(name: str, problems: Iterable[str], checked: int) -> Verdict:
    return Verdict(name, list(problems), checked)


def no_double_booking(state: State) -> Verdict:
    """No compartment held two parcels at once (on any node, by the node's own clock); central
    has at most one parcel per compartment and never more holds than units."""
    problems = []
    by_compartment: dict[tuple[str, str], list[NodeParcel]] = defaultdict(list)
    for parcel in state.node_parcels:
        by_compartment[(parcel.bank_id, parcel.compartment)].append(parcel)
    for (bank, label), parcels in sorted(by_compartment.items()):
        parcels.sort(key=lambda p: p.deposited_at)
        for before, after in itertools.pairwise(parcels):
            if before.finished_at is None or before.finished_at > after.deposited_at:
                problems.append(
                    f"{bank} {label}: parcel {after.reservation_id} deposited while "
                    f"{before.reservation_id} was in it"
                )
    in_compartment = Counter(
        (r.bank_id, r.compartment) for r in state.reservations if r.status == "deposited"
    )
    problems += [
        f"central: {n} deposited parcels in {bank} {label}"
        for (bank, label), n in sorted(in_compartment.items(), key=str)
        if n > 1
    ]
    holds = Counter((r.bank_id, r.size) for r in state.reservations if r.status in ACTIVE)
    for c in state.capacity:
        held = holds.get((c.bank_id, c.size), 0)
        if held > c.total:
            problems.append(f"central: {c.bank_id} {c.size} holds {held} of {c.total} units")
        if c.available != c.total - held:
            problems.append(
                f"central: {c.bank_id} {c.size} counts {c.available} free, "
                f"but {c.total} units - {held} holds = {c.total - held}"
            )
    return _verdict("no double booking", problems, len(state.node_parcels) + len(state.capacity))


def told_reservations_exist(state: State) -> Verdict:
    """Every reservation a carrier was told about exists (same tracking number), and every one
    central holds was told to the carrier (a timed-out create was retried until answered)."""
    held = {r.id: r for r in state.reservations}
    problems = []
    for reservation_id, tracking in sorted(state.told.items()):
        found = held.get(reservation_id)
        if found is None:
            problems.append(f"{reservation_id} ({tracking}) was told, central has no such one")
        elif found.tracking_number != tracking:
            problems.append(f"{reservation_id}: told {tracking}, held {found.tracking_number}")
    problems += [
        f"{r.id} ({r.tracking_number}, {r.status}) holds capacity no carrier ever heard of"
        for r in state.reservations
        if r.id not in state.told
    ]
    problems += [
        f"{reservation_id}: cancelled for the carrier, {held[reservation_id].status} at central"
        for reservation_id in sorted(state.cancelled)
        if reservation_id in held and held[reservation_id].status != "cancelled"
    ]
    return _verdict("every reservation told exists, every one held was told", problems, len(held))


def _events_by_reservation(state: State, kind: str) -> Counter[str]:
    return Counter(
        e.reservation_id
        for e in state.node_events
        if e.type == kind and e.status == "applied" and e.reservation_id is not None
    )


def _webhooks_by_reservation(state: State, kind: str) -> Counter[str]:
    return Counter(w.reservation_id for w in state.webhooks if w.type == kind)


def _reached_once(
    state: State, facts: Iterable[str], event: str, statuses: tuple[str, ...]
) -> list[str]:
    """Each fact's reservation: one applied node event at central, one webhook event, and the
    reservation in one of `statuses`."""
    applied = _events_by_reservation(state, event)
    hooks = _webhooks_by_reservation(state, event)
    status = {r.id: r.status for r in state.reservations}
    problems = []
    for reservation_id in sorted(facts):
        if applied[reservation_id] != 1:
            problems.append(f"{reservation_id}: {applied[reservation_id]} applied {event} events")
        if hooks[reservation_id] != 1:
            problems.append(f"{reservation_id}: {hooks[reservation_id]} {event} webhook events")
        if status.get(reservation_id) not in statuses:
            problems.append(f"{reservation_id}: {status.get(reservation_id)} at central")
    return problems


def deposits_reached_central_once(state: State) -> Verdict:
    problems = _reached_once(state, state.confirmed, "parcel.deposited", ("deposited", "picked_up"))
    return _verdict("every confirmed deposit reached central once", problems, len(state.confirmed))


def pickups_reached_central_once(state: State) -> Verdict:
    problems = _reached_once(state, state.picked_up, "parcel.picked_up", ("picked_up",))
    return _verdict("every opened pickup reached central once", problems, len(state.picked_up))


def nothing_applied_twice(state: State) -> Verdict:
    """No fact applied or announced twice, whoever's it was: one applied node event per parcel
    event, one webhook event per reservation transition."""
    problems = []
    for kind in ("parcel.deposited", "parcel.picked_up"):
        problems += [
            f"{reservation_id}: {n} applied {kind} events"
            for reservation_id, n in sorted(_events_by_reservation(state, kind).items())
            if n > 1
        ]
    per_fact = Counter((w.reservation_id, w.type) for w in state.webhooks)
    problems += [
        f"{reservation_id}: {n} distinct {kind} webhook events"
        for (reservation_id, kind), n in sorted(per_fact.items())
        if n > 1
    ]
    created = _webhooks_by_reservation(state, "reservation.created")
    problems += [
        f"{reservation_id}: {created[reservation_id]} reservation.created webhook events"
        for reservation_id in sorted(state.told)
        if created[reservation_id] != 1
    ]
    cancelled = _webhooks_by_reservation(state, "reservation.cancelled")
    problems += [
        f"{reservation_id}: {cancelled[reservation_id]} reservation.cancelled webhook events"
        for reservation_id in sorted(state.cancelled)
        if cancelled[reservation_id] != 1
    ]
    return _verdict("nothing applied or announced twice", problems, len(state.webhooks))


def webhooks_delivered(state: State) -> Verdict:
    """Every delivery central made is delivered and was received, each signature good."""
    problems = [
        f"{n} webhook deliveries {status} at central"
        for status, n in sorted(state.deliveries_not_delivered.items())
    ]
    received = {w.event_id for w in state.webhooks}
    missing = sorted(state.delivery_event_ids - received)
    problems += [f"event {event_id} delivered by central, never received" for event_id in missing]
    if state.bad_signatures:
        problems.append(f"{state.bad_signatures} deliveries with a bad signature")
    return _verdict("every webhook delivered, signature checked", problems, len(received))


def ready_mail_for_every_deposit(state: State) -> Verdict:
    """The recipient of every confirmed deposit got its "ready" mail, with the code the
    carrier's parcel.deposited webhook carried; no notice left unsent."""
    hooked = {
        w.reservation_id: w.pickup_code for w in state.webhooks if w.type == "parcel.deposited"
    }
    problems = []
    for reservation_id in sorted(state.confirmed):
        codes = state.mail_codes.get(reservation_id, [])
        if not codes:
            problems.append(f"{reservation_id}: no ready mail")
        elif reservation_id in hooked and hooked[reservation_id] not in codes:
            problems.append(f"{reservation_id}: the mail's code is not the webhook's")
    problems += [
        f"{n} notices {status} at central" for status, n in sorted(state.notices_not_sent.items())
    ]
    return _verdict("a ready mail for every deposit", problems, len(state.confirmed))


def outboxes_empty(state: State) -> Verdict:
    problems = [
        f"{bank}: {n} events not sent" for bank, n in sorted(state.outbox_unsent.items()) if n
    ]
    return _verdict("node outboxes empty", problems, len(state.outbox_unsent))


def no_server_errors(state: State) -> Verdict:
    return _verdict("no 5xx", state.server_errors, state.answers)


def no_tracebacks(state: State) -> Verdict:
    problems = [
        f"{log}: {line}" for log, lines in sorted(state.tracebacks.items()) for line in lines
    ]
    return _verdict("no traceback in any log", problems, state.logs)


def load_as_promised(state: State) -> Verdict:
    """Every answer was one the APIs promise, every parcel's story ended, every process is up."""
    problems = state.anomalies + [f"{name} is not running" for name in state.processes_down]
    return _verdict("every answer as the APIs promise", problems, len(state.told))


INVARIANTS: tuple[Callable[[State], Verdict], ...] = (
    no_double_booking,
    told_reservations_exist,
    deposits_reached_central_once,
    pickups_reached_central_once,
    nothing_applied_twice,
    webhooks_delivered,
    ready_mail_for_every_deposit,
    outboxes_empty,
    no_server_errors,
    no_tracebacks,
    load_as_promised,
)


def check_all(state: State) -> list[Verdict]:
    return [invariant(state) for invariant in INVARIANTS]


def describe(verdict: Verdict) -> list[str]:
    mark = "ok  " if verdict.ok else "FAIL"
    lines = [f"  {mark} {verdict.name} ({verdict.checked} checked)"]
    for problem in verdict.problems[:SHOWN]:
        lines.append(f"         {problem}")
    if len(verdict.problems) > SHOWN:
        lines.append(f"         ... and {len(verdict.problems) - SHOWN} more")
    return lines
