"""Queries for a node batch's deferred writes (`batch_writes`): each a fixed handful of statements
for the whole batch, whatever its size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Boolean, Integer, Table, bindparam, case, or_, select, text, update
from sqlalchemy.orm import Session

from central.bulk import BulkInsert, document, recordset, value_of
from central.models import ACTIVE_STATUSES, BankCapacity, Reservation, ReservationEvent
from central.nodes.repository import among

_RESERVATIONS = cast(Table, Reservation.__table__)
_EVENTS = cast(Table, ReservationEvent.__table__)
_CAPACITY = cast(Table, BankCapacity.__table__)
_ACTIVE = [status.value for status in ACTIVE_STATUSES]

# Every column a transition sets (`transitions.plan_transition`): the status and time always, and
# those of a deposit and of an end. A row writes only the columns its moves set (`s_<column>`),
# the others stay as stored.
ALWAYS = ("status", "updated_at")
SOMETIMES = (
    "compartment_label",
    "deposited_at",
    "pickup_deadline",
    "pickup_secret_sealed",
    "recipient",
    "accessible",
    "closed_at",
    "dropoff_code_hash",
    "dropoff_qr_hash",
)
WRITTEN = ALWAYS + SOMETIMES


def _set(name: str) -> str:
    if name in ALWAYS:
        return f"{name} = {value_of(_RESERVATIONS, name)}"
    return f"{name} = CASE WHEN r.s_{name} THEN {value_of(_RESERVATIONS, name)} ELSE t.{name} END"


_READ = recordset(
    _RESERVATIONS, ("id", *WRITTEN), ("was varchar", *(f"s_{name} boolean" for name in SOMETIMES))
)
_SETS = ", ".join(_set(name) for name in WRITTEN)
# Locked by the batch: each row still has the status the batch read, or last wrote (`was`).
_WRITE_RESERVATIONS_JSON = text(
    f"UPDATE reservations AS t SET {_SETS} FROM {_READ} "  # noqa: S608 - the table's own names
    "WHERE t.id = r.id AND t.status = r.was"
)
_WRITE_RESERVATIONS = (
    update(_RESERVATIONS)
    .where(_RESERVATIONS.c.id == bindparam("b_id"), _RESERVATIONS.c.status == bindparam("b_was"))
    .values(
        {
            name: bindparam(f"b_{name}", type_=_RESERVATIONS.c[name].type)
            if name in ALWAYS
            else case(
                (
                    bindparam(f"b_s_{name}", type_=Boolean),
                    bindparam(f"b_{name}", type_=_RESERVATIONS.c[name].type),
                ),
                else_=_RESERVATIONS.c[name],
            )
            for name in WRITTEN
        }
    )
)


def write_reservations(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Reservations in their state at the flush, each row `id`, `was` (the status stored now),
    the `WRITTEN` columns and `s_<column>` for the others; how many rows it updated."""
    if not rows:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        result = connection.execute(_WRITE_RESERVATIONS_JSON, {"p_rows": document(rows)})
    else:
        params = [{f"b_{key}": value for key, value in row.items()} for row in rows]
        result = connection.execute(_WRITE_RESERVATIONS, params)
    return result.rowcount


_INSERT_HISTORY = BulkInsert(
    _EVENTS,
    (
        "reservation_id",
        "type",
        "from_status",
        "to_status",
        "actor",
        "actor_id",
        "reason",
        "data",
        "at",
    ),
)


def insert_history(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """History entries, in the order given (their ids in that order)."""
    _INSERT_HISTORY.run(session, rows)


_RELEASE_UNITS = (
    update(_CAPACITY)
    .where(_CAPACITY.c.bank_id == bindparam("p_bank"), _CAPACITY.c.size == bindparam("p_size"))
    .values(
        available=_CAPACITY.c.available + bindparam("p_units", type_=Integer),
        accessible_available=_CAPACITY.c.accessible_available
        + bindparam("p_accessible", type_=Integer),
    )
)


def release_units(session: Session, releases: Mapping[tuple[str, str, bool], int]) -> None:
    """Units given back, by (bank, size class, whether an accessible unit): one row per class, as
    `banks.repository.release_unit` would leave it after as many calls."""
    per_class: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (bank_id, size, accessible_unit), count in releases.items():
        per_class[(bank_id, size)][0] += count
        per_class[(bank_id, size)][1] += count if accessible_unit else 0
    if per_class:
        session.connection().execute(
            _RELEASE_UNITS,
            [
                {"p_bank": bank_id, "p_size": size, "p_units": units, "p_accessible": accessible}
                for (bank_id, size), (units, accessible) in sorted(per_class.items())
            ],
        )


class HistoryRow(NamedTuple):
    """A history entry as `describe` shows it: read from the database or made in the batch."""

    type: str
    from_status: str | None
    to_status: str | None
    actor: str
    reason: str | None
    at: datetime
    data: dict[str, Any] | None


def histories(session: Session, reservation_ids: Collection[str]) -> dict[str, list[HistoryRow]]:
    """The reservations' histories, in order, in one statement."""
    found: dict[str, list[HistoryRow]] = {rid: [] for rid in reservation_ids}
    if not found:
        return found
    rows = session.execute(
        select(
            _EVENTS.c.reservation_id,
            _EVENTS.c.type,
            _EVENTS.c.from_status,
            _EVENTS.c.to_status,
            _EVENTS.c.actor,
            _EVENTS.c.reason,
            _EVENTS.c.at,
            _EVENTS.c.data,
        )
        .where(among(session, _EVENTS.c.reservation_id, found))
        .order_by(_EVENTS.c.id)
    )
    for row in rows:
        found[row.reservation_id].append(
            HistoryRow(
                row.type, row.from_status, row.to_status, row.actor, row.reason, row.at, row.data
            )
        )
    return found


def group_members(
    session: Session, group_ids: Collection[str], also: Collection[str]
) -> dict[str, list[tuple[str, str]]]:
    """Each group's members that are active, or among `also` (the batch's, whatever their
    stored status), with their stored status, in the order `groups.active_members` lists them."""
    members: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if not group_ids:
        return members
    rows = session.execute(
        select(_RESERVATIONS.c.id, _RESERVATIONS.c.group_id, _RESERVATIONS.c.status)
        .where(
            among(session, _RESERVATIONS.c.group_id, group_ids),
            or_(_RESERVATIONS.c.status.in_(_ACTIVE), among(session, _RESERVATIONS.c.id, also)),
        )
        .order_by(_RESERVATIONS.c.created_at, _RESERVATIONS.c.id)
    )
    for rid, group_id, status in rows:
        members[group_id].append((rid, status))
    return members


def parcels_by_label(
    session: Session, bank_id: str, statuses: Collection[str]
) -> dict[str, set[str]]:
    """The bank's reservations bound to a compartment in one of these statuses, by label."""
    found: dict[str, set[str]] = defaultdict(set)
    rows = session.execute(
        select(_RESERVATIONS.c.id, _RESERVATIONS.c.compartment_label).where(
            _RESERVATIONS.c.bank_id == bank_id,
            _RESERVATIONS.c.status.in_(sorted(statuses)),
            _RESERVATIONS.c.compartment_label.is_not(None),
        )
    )
    for rid, label in rows:
        found[label].add(rid)
    return found
