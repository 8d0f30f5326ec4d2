"""Queries for reservations and their history."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import Table, and_, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from central.banks import repository as banks_repository
from central.carriers import repository as carriers_repository
from central.db import rowcount
from central.models import ACTIVE_STATUSES, Reservation, ReservationEvent
from central.reservations import unit_choice
from central.reservations.json_parameter import json_parameter
from central.webhooks import repository as webhooks_repository


def add(session: Session, row: Reservation | ReservationEvent) -> None:
    session.add(row)


_ACTIVE = text("status IN ('reserved', 'deposited')")
_RESERVATIONS = cast(Table, Reservation.__table__)
# Built once, on the tables, and run on the connection: constructing an INSERT with twenty literal
# values, or passing it through the ORM's bulk-insert machinery, costs more than running it.
_INSERT_UNLESS_TWIN = {
    name: dialect.insert(_RESERVATIONS)
    .on_conflict_do_nothing(index_elements=["carrier_id", "tracking_number"], index_where=_ACTIVE)
    .returning(_RESERVATIONS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_EVENT = insert(cast(Table, ReservationEvent.__table__))


def insert_if_no_active_twin(session: Session, values: dict[str, Any]) -> bool:
    """Insert a reservation unless the carrier has an active one for the same tracking number.

    One statement against the partial unique index: under a race the loser waits for the
    winner's commit and then inserts nothing, instead of failing the whole transaction.
    RETURNING, not rowcount, says which: drivers disagree on the count of ON CONFLICT DO NOTHING.
    """
    connection = session.connection()
    stmt = _INSERT_UNLESS_TWIN[connection.dialect.name]
    return connection.execute(stmt, values).first() is not None


def insert_event(session: Session, values: dict[str, Any]) -> None:
    session.connection().execute(_INSERT_EVENT, values)


ReserveOutcome = Literal["created", "twin", "full", "unsealed"]
EVENT_CREATED = "reservation.created"


class Notice(NamedTuple):
    """A new reservation's `reservation.created` webhook event, sealed as the outbox keeps it."""

    event_id: str
    sealed: str


def reserve_unit(
    session: Session,
    bank_id: str,
    size: str,
    reservation: dict[str, Any],
    event: dict[str, Any],
    notice: Notice | None = None,
) -> ReserveOutcome:
    """Take one unit of `size` at `bank_id` and insert the reservation, its first event and, for
    each of the carrier's endpoints that wants it, its `notice` in the webhook outbox.

    "full": no free unit, nothing written. "twin": the carrier already has an active reservation
    for this tracking number (a concurrent identical request won); no unit is kept.
    "unsealed": the carrier has endpoints wanting the event and no `notice` was given; nothing
    written. On PostgreSQL all of it is one statement, atomic without a transaction around it.

    A reservation with `accessible` takes only an accessible unit; any other takes a unit that
    is not accessible first, and an accessible one only when no other unit of the class is free
    (the row's `accessible_unit` says which it took).
    """
    request = UnitRequest(bank_id, size, reservation, event, notice=notice)
    if session.connection().dialect.name == "postgresql":
        if not reservation.get("accessible"):
            outcome = _reserve_in_one_statement(session, [request], [])[0][0]
            if outcome == "revoked":  # no key was given to check
                raise RuntimeError("a reservation without a key to check was refused for its key")
            if outcome != "choose_unit":
                return outcome
        return _reserve_choosing_unit(session, request)
    endpoint_ids = webhooks_repository.subscribed_endpoint_ids(
        session, reservation["carrier_id"], EVENT_CREATED
    )
    if endpoint_ids and notice is None:
        return "unsealed"
    taken = banks_repository.take_unit(
        session, bank_id, size, accessible=bool(reservation.get("accessible"))
    )
    if taken is None:
        return "full"
    reservation = reservation | {"accessible_unit": taken == "accessible"}
    if not insert_if_no_active_twin(session, reservation):
        banks_repository.release_unit(
            session, bank_id, size, accessible_unit=reservation["accessible_unit"]
        )
        return "twin"
    insert_event(session, event)
    if notice is not None:
        webhooks_repository.add_deliveries(
            session, notice.event_id, EVENT_CREATED, endpoint_ids, notice.sealed, event["at"]
        )
    return "created"


def _reserve_choosing_unit(session: Session, request: UnitRequest) -> ReserveOutcome:
    """PostgreSQL: `reserve_unit` for a request that needs an accessible unit, or one that only
    an accessible unit can serve now (`unit_choice`)."""
    if not _is_first_event(request.reservation, request.event, request):
        reservation_id = request.reservation["id"]
        raise ValueError(f"not a new reservation and its created event: {reservation_id}")
    return unit_choice.reserve_one(
        session.connection(),
        request.reservation,
        request.event["data"],
        request.notice,
        EVENT_CREATED,
    )


class UnitRequest(NamedTuple):
    """One `reserve_unit` call's arguments, and the key it relies on if that is still to check."""

    bank_id: str
    size: str
    reservation: dict[str, Any]
    event: dict[str, Any]
    key_id: int | None = None
    notice: Notice | None = None


# Endpoints with the event types each wants, by carrier (`webhooks.repository.subscriptions`).
Subscribed = dict[str, list[tuple[str, list[str]]]]


@dataclass(frozen=True, slots=True)
class Reserved:
    """What `reserve_units` did: an outcome per request ("revoked": its key is, nothing tried),
    the revoked keys among those it was asked to check, and, on PostgreSQL, read in the same
    statement, the webhook subscriptions of the requests' carriers (else None)."""

    outcomes: list[ReserveOutcome | Literal["revoked"]]
    revoked_keys: set[int]
    subscriptions: Subscribed | None


def reserve_units(
    session: Session, requests: Sequence[UnitRequest], *, check_keys: Collection[int] = ()
) -> Reserved:
    """`reserve_unit` for each request, in the order given, with the same outcomes, after checking
    that none of the keys given (`check_keys` and the requests' `key_id`) has been revoked; a
    request whose key has been is not tried.

    On PostgreSQL the lot is one statement (`_RESERVE_MANY`, which also serves `reserve_unit`):
    one round trip and one plan for a whole batch instead of one of each per request, with the
    key check and the subscriptions read in the same round trip. Each request's writes are
    atomic in that statement, so it needs no transaction around it. That statement gives only
    units that are not accessible: a request for an accessible unit, and one refused there while
    accessible units of its class are free, is then made alone (`_reserve_choosing_unit`).
    """
    keys = set(check_keys) | {r.key_id for r in requests if r.key_id is not None}
    if session.connection().dialect.name != "postgresql" or not requests:
        revoked = carriers_repository.revoked_among(session, keys)
        outcomes: list[ReserveOutcome | Literal["revoked"]] = [
            "revoked"
            if r.key_id in revoked
            else reserve_unit(session, r.bank_id, r.size, r.reservation, r.event, r.notice)
            for r in requests
        ]
        return Reserved(outcomes, revoked, None)
    made, revoked, subscriptions = _reserve_in_one_statement(session, requests, keys)
    # A twin's unit was granted but not taken: a later request of the same class refused for
    # want of it tries again, as it would have had the requests gone one by one.
    given_back = {(r.bank_id, r.size) for r, o in zip(requests, made, strict=True) if o == "twin"}
    answers: list[ReserveOutcome | Literal["revoked"]] = []
    for r, outcome in zip(requests, made, strict=True):
        if outcome == "choose_unit":
            answers.append(_reserve_choosing_unit(session, r))
        elif outcome == "full" and (r.bank_id, r.size) in given_back:
            answers.append(
                reserve_unit(session, r.bank_id, r.size, r.reservation, r.event, r.notice)
            )
        else:
            answers.append(outcome)
    return Reserved(answers, revoked, subscriptions)


# What `_RESERVE_MANY` answers a request: a `reserve_unit` outcome, "revoked" (its key), or
# "choose_unit": left to `_reserve_choosing_unit` (it asks for an accessible unit, or only
# accessible units of its class were free).
_ManyOutcome = ReserveOutcome | Literal["revoked", "choose_unit"]


def _reserve_in_one_statement(
    session: Session, requests: Sequence[UnitRequest], keys: Collection[int]
) -> tuple[list[_ManyOutcome], set[int], Subscribed]:
    """PostgreSQL: `_RESERVE_MANY` for the requests."""
    batch: list[dict[str, Any]] = []
    for order, request in enumerate(requests):
        reservation, event = request.reservation, request.event
        if not _is_first_event(reservation, event, request):
            raise ValueError(f"not a new reservation and its created event: {reservation['id']}")
        # A field without a value is left out, read as NULL: less JSON for the server to parse.
        row = {name: value for name in _MANY_FIELDS if (value := reservation[name]) is not None}
        row["ord"] = order
        row["accessible"] = bool(reservation.get("accessible"))
        if request.key_id is not None:
            row["key_id"] = request.key_id
        row["data"] = event["data"]
        if request.notice is not None:
            row["event_id"], row["sealed"] = request.notice
        batch.append(row)
    # One JSON document for the lot: psycopg dumps Python lists into array literals element by
    # element in Python, `json_parameter` does the whole batch in compiled code.
    parameters = {
        "requests": json_parameter(batch),
        "keys": json.dumps(sorted(keys)),
        "event_type": EVENT_CREATED,
    }
    rows = session.connection().exec_driver_sql(_RESERVE_MANY, parameters).all()
    outcomes: list[_ManyOutcome] = []
    for result in rows:
        if result.ord != len(outcomes):
            raise RuntimeError(f"_RESERVE_MANY answered request {result.ord} out of order")
        if result.revoked:
            outcomes.append("revoked")
        elif result.unsealed:
            outcomes.append("unsealed")
        elif not result.granted:
            outcomes.append("choose_unit" if result.accessible or result.spare else "full")
        else:
            outcomes.append("created" if result.created else "twin")
    if len(outcomes) != len(requests):
        raise RuntimeError(f"_RESERVE_MANY answered {len(outcomes)} of {len(requests)} requests")
    subscriptions: Subscribed = {request.reservation["carrier_id"]: [] for request in requests}
    for carrier_id, endpoint_id, event_types in rows[0].endpoints:
        subscriptions[carrier_id].append((endpoint_id, list(event_types)))
    return outcomes, set(rows[0].revoked_keys), subscriptions


def _is_first_event(reservation: dict[str, Any], event: dict[str, Any], at: UnitRequest) -> bool:
    """`_RESERVE_MANY` writes the fixed columns of a new reservation and its `created` event."""
    return (
        reservation["bank_id"] == at.bank_id
        and reservation["size"] == at.size
        and reservation["status"] == "reserved"
        and reservation["updated_at"] == reservation["created_at"]
        and event["reservation_id"] == reservation["id"]
        and event["type"] == "created"
        and event["actor"] == "carrier"
        and event["actor_id"] == reservation["carrier_id"]
        and event["at"] == reservation["created_at"]
        and all(
            reservation[name] is None
            for name in (
                "compartment_label",
                "pickup_deadline",
                "deposited_at",
                "closed_at",
                "tracking_status",
                "tracking_checked_at",
            )
        )
    )


# The fields of each request in `_RESERVE_MANY`'s JSON parameter (the reservation's, then the
# created event's `data`).
_MANY_FIELDS = (
    "id",
    "carrier_id",
    "tracking_number",
    "bank_id",
    "size",
    "length_mm",
    "width_mm",
    "height_mm",
    "weight_g",
    "recipient",
    "reserved_until",
    "created_at",
    "group_id",
)


# PostgreSQL: many reservations in one statement, each with the outcome `reserve_unit` gives it.
# Every write of a request (its unit, its reservation, its first event, its webhook deliveries)
# happens here or not at all, so the statement needs no transaction around it.
#
# - `revoked`: the keys to check that have been revoked. `endpoints`: the live webhook endpoints
#   of the batch's carriers; `notify`, those that want `reservation.created`. `req` leaves out
#   the requests of revoked keys, and those without a sealed notice whose carrier has endpoints
#   to notify ("unsealed": the caller seals one and tries again), and those that ask for an
#   accessible unit (made afterwards, one by one: `unit_choice`).
# - `locked` locks the capacity rows the batch needs, in (bank, class) order so that concurrent
#   batches cannot deadlock, and reads their current free count (a row updated meanwhile is
#   read as committed) of units that are not accessible, `available` less the free accessible
#   ones: each (bank, class) grants min(free, wanted) of those, to its requests in the order
#   given. A request refused while accessible units of its class are free (`spare`, as the
#   statement's snapshot saw them) may take one of those afterwards, alone. Each row is found
#   by its key, in the order of the sorted classes wanted (a lateral lookup, a nested loop):
#   joined as two tables, the planner scanned the whole of `bank_capacity` for every batch
#   (dead row versions and all, as it is updated constantly), a quarter of the statement's
#   fixed cost with 100 banks, and more with every bank added.
# - `created` inserts the granted reservations, unless the carrier already has an active one for
#   the tracking number (the partial unique index; an earlier request of the same batch counts).
#   `taken` takes from the locked rows as many units as were inserted: a twin keeps none.
#   `logged` inserts the first history event of each, `queued` its deliveries.
# - One row per request: its outcome's facts, and with the first the revoked keys and the
#   endpoints, as the statement saw them (the batch needs both; reading them here saves round
#   trips; on every row, the driver parsed them again for each request).
_RESERVE_MANY = """
WITH input AS (
    SELECT * FROM json_to_recordset(%(requests)s::json) AS r(
        ord int, key_id int, id varchar, carrier_id varchar, tracking_number varchar,
        bank_id varchar, size varchar, length_mm int, width_mm int, height_mm int, weight_g int,
        recipient json, reserved_until timestamptz, created_at timestamptz, group_id varchar,
        accessible boolean, data json, event_id varchar, sealed text
    )
),
revoked AS MATERIALIZED (
    SELECT k.id FROM api_keys k
    WHERE k.id IN (SELECT value::int FROM json_array_elements_text(%(keys)s::json))
      AND k.revoked_at IS NOT NULL
),
endpoints AS MATERIALIZED (
    SELECT e.carrier_id, e.id, e.event_types FROM webhook_endpoints e
    WHERE e.carrier_id IN (SELECT carrier_id FROM input) AND e.deleted_at IS NULL
),
notify AS MATERIALIZED (
    SELECT e.carrier_id, e.id FROM endpoints e
    WHERE EXISTS (
        SELECT 1 FROM json_array_elements_text(e.event_types) t WHERE t.value = %(event_type)s
    )
),
req AS MATERIALIZED (
    SELECT * FROM input i
    WHERE (i.key_id IS NULL OR i.key_id NOT IN (SELECT id FROM revoked))
      AND (i.sealed IS NOT NULL OR i.carrier_id NOT IN (SELECT carrier_id FROM notify))
      AND NOT i.accessible
),
locked AS MATERIALIZED (
    SELECT c.bank_id, c.size, least(c.free, w.n) AS granted
    FROM (
        SELECT bank_id, size, count(*) AS n FROM req GROUP BY bank_id, size
        ORDER BY bank_id, size
    ) w
    CROSS JOIN LATERAL (
        SELECT c.bank_id, c.size, c.available - greatest(c.accessible_available, 0) AS free
        FROM bank_capacity c
        WHERE c.bank_id = w.bank_id AND c.size = w.size
          AND c.available > greatest(c.accessible_available, 0)
        FOR UPDATE
    ) c
),
granted AS MATERIALIZED (
    SELECT r.* FROM (
        SELECT req.*, row_number() OVER (PARTITION BY bank_id, size ORDER BY ord) AS k FROM req
    ) r JOIN locked l ON r.bank_id = l.bank_id AND r.size = l.size
    WHERE r.k <= l.granted
),
created AS (
    INSERT INTO reservations (
        id, carrier_id, tracking_number, bank_id, size, status, compartment_label, length_mm,
        width_mm, height_mm, weight_g, recipient, reserved_until, pickup_deadline, deposited_at,
        closed_at, created_at, updated_at, tracking_status, tracking_checked_at, group_id
    )
    SELECT id, carrier_id, tracking_number, bank_id, size, 'reserved', NULL, length_mm,
           width_mm, height_mm, weight_g, recipient, reserved_until, NULL, NULL,
           NULL, created_at, created_at, NULL, NULL, group_id
    FROM granted ORDER BY ord
    ON CONFLICT (carrier_id, tracking_number) WHERE status IN ('reserved', 'deposited')
    DO NOTHING
    RETURNING id, bank_id, size
),
taken AS (
    UPDATE bank_capacity c SET available = c.available - t.n
    FROM (SELECT bank_id, size, count(*) AS n FROM created GROUP BY bank_id, size) t
    WHERE c.bank_id = t.bank_id AND c.size = t.size
    RETURNING c.bank_id
),
logged AS (
    INSERT INTO reservation_events (
        reservation_id, type, from_status, to_status, actor, actor_id, reason, data, at
    )
    SELECT g.id, 'created', NULL, 'reserved', 'carrier', g.carrier_id, NULL, g.data,
           g.created_at
    FROM granted g JOIN created c ON c.id = g.id ORDER BY g.ord
    RETURNING id
),
queued AS (
    INSERT INTO webhook_deliveries (
        event_id, event_type, endpoint_id, body_sealed, status, attempts, next_attempt_at,
        created_at
    )
    SELECT g.event_id, %(event_type)s, n.id, g.sealed, 'pending', 0, g.created_at, g.created_at
    FROM granted g JOIN created c ON c.id = g.id JOIN notify n ON n.carrier_id = g.carrier_id
    WHERE g.sealed IS NOT NULL
    ORDER BY g.ord, n.id
    RETURNING id
)
SELECT i.ord,
    coalesce(i.key_id IN (SELECT id FROM revoked), false) AS revoked,
    (i.sealed IS NULL AND i.carrier_id IN (SELECT carrier_id FROM notify)) AS unsealed,
    g.id IS NOT NULL AS granted,
    c.id IS NOT NULL AS created,
    i.accessible,
    (g.id IS NULL AND EXISTS (
        SELECT 1 FROM bank_capacity s
        WHERE s.bank_id = i.bank_id AND s.size = i.size
          AND s.accessible_available > 0 AND s.available > 0
    )) AS spare,
    CASE WHEN i.ord = 0 THEN
        (SELECT coalesce(json_agg(id ORDER BY id), '[]') FROM revoked)
    END AS revoked_keys,
    CASE WHEN i.ord = 0 THEN
        (SELECT coalesce(json_agg(json_build_array(carrier_id, id, event_types) ORDER BY id),
                         '[]')
         FROM endpoints)
    END AS endpoints
FROM input i LEFT JOIN granted g ON g.ord = i.ord LEFT JOIN created c ON c.id = i.id
ORDER BY i.ord
"""


def find_active(session: Session, carrier_id: str, tracking_number: str) -> Reservation | None:
    return session.scalars(
        select(Reservation)
        .where(
            Reservation.carrier_id == carrier_id,
            Reservation.tracking_number == tracking_number,
            Reservation.status.in_([s.value for s in ACTIVE_STATUSES]),
        )
        .options(selectinload(Reservation.history))
    ).one_or_none()


def get(session: Session, reservation_id: str, *, for_update: bool = False) -> Reservation | None:
    stmt = (
        select(Reservation)
        .where(Reservation.id == reservation_id)
        .options(selectinload(Reservation.history))
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def history_of(session: Session, reservation_id: str) -> Sequence[ReservationEvent]:
    return session.scalars(
        select(ReservationEvent)
        .where(ReservationEvent.reservation_id == reservation_id)
        .order_by(ReservationEvent.id)
    ).all()


def search(
    session: Session,
    carrier_id: str,
    *,
    kind: str | None,
    tracking_number: str | None,
    status: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Reservation]:
    """The carrier's reservations (of `kind` only, if given), newest first, after the `before`
    position if given."""
    stmt = (
        select(Reservation)
        .where(Reservation.carrier_id == carrier_id)
        .options(selectinload(Reservation.history))
        .order_by(Reservation.created_at.desc(), Reservation.id.desc())
        .limit(limit)
    )
    if kind:
        stmt = stmt.where(Reservation.kind == kind)
    if tracking_number:
        stmt = stmt.where(Reservation.tracking_number == tracking_number)
    if status:
        stmt = stmt.where(Reservation.status == status)
    if before is not None:
        created, rid = before
        stmt = stmt.where(
            or_(
                Reservation.created_at < created,
                and_(Reservation.created_at == created, Reservation.id < rid),
            )
        )
    return session.scalars(stmt).all()


def set_status(session: Session, reservation_id: str, source: str, values: dict[str, Any]) -> bool:
    """Compare-and-set on the status, so two racing transitions cannot both apply."""
    result = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation_id, Reservation.status == source)
        .values(**values)
    )
    return rowcount(result) == 1


def update_fields(session: Session, reservation_id: str, values: dict[str, Any]) -> None:
    session.execute(update(Reservation).where(Reservation.id == reservation_id).values(**values))


def expired_holds(session: Session, now: datetime, limit: int) -> Sequence[str]:
    return session.scalars(
        select(Reservation.id)
        .where(Reservation.status == "reserved", Reservation.reserved_until <= now)
        .order_by(Reservation.reserved_until)
        .limit(limit)
    ).all()


def expired_pickups(session: Session, now: datetime, limit: int) -> Sequence[str]:
    return session.scalars(
        select(Reservation.id)
        .where(Reservation.status == "deposited", Reservation.pickup_deadline <= now)
        .order_by(Reservation.pickup_deadline)
        .limit(limit)
    ).all()


def due_reminders(session: Session, now: datetime, limit: int) -> Sequence[Reservation]:
    """Deposited parcels whose bank's reminder time has come and that have had no reminder yet.

    The reminder's history entry is the record that it went out, so none is ever sent twice.
    Earliest deadlines come first; the caller checks each bank's reminder offset.
    """
    reminded = (
        select(ReservationEvent.id)
        .where(
            ReservationEvent.reservation_id == Reservation.id,
            ReservationEvent.type == "reminder",
        )
        .exists()
    )
    return session.scalars(
        select(Reservation)
        .where(
            Reservation.status == "deposited",
            Reservation.pickup_deadline > now,
            ~reminded,
        )
        .order_by(Reservation.pickup_deadline)
        .options(selectinload(Reservation.history))
        .limit(limit)
    ).all()
