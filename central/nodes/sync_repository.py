"""Queries of a node's regular sync: who signed, its heartbeat, what its feed would hold now, and
the stored courier code hashes.

Every node runs these every few tens of seconds, so a fleet runs them hundreds of times a second:
Core statements built once, run on the session's connection, giving rows rather than ORM objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    column,
    delete,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from central.db import rowcount
from central.models import (
    Bank,
    Carrier,
    Node,
    NodeCommand,
    NodeRollout,
    NodeRolloutBank,
    Reservation,
    StoredCourierCode,
)
from central.models.base import UtcDateTime

_NODES = cast(Table, Node.__table__)
_RESERVATIONS = cast(Table, Reservation.__table__)
_COMMANDS = cast(Table, NodeCommand.__table__)
_BANKS = cast(Table, Bank.__table__)
_CARRIERS = cast(Table, Carrier.__table__)
_CODES = cast(Table, StoredCourierCode.__table__)

# The node -----------------------------------------------------------------------------------------

_NODE = select(*_NODES.c).where(_NODES.c.id == bindparam("p_node"))


def node_by_id(session: Session, node_id: str) -> Node | None:
    """The node row as a plain (transient) `Node`: read, never written through."""
    row = session.connection().execute(_NODE, {"p_node": node_id}).first()
    return None if row is None else Node(**row._mapping)


# PostgreSQL, for a node whose key this process has seen: its row, and its nonce recorded when
# the key is still the one given (the request was verified with it) and the node not revoked,
# in one round trip instead of two (`auth.authenticate`).
_NODE_AND_NONCE = (
    text(
        "WITH known AS (SELECT * FROM nodes WHERE id = :p_node), "
        "fresh AS (INSERT INTO node_nonces (node_id, nonce, seen_at) "
        "SELECT id, :p_nonce, :p_now FROM known "
        "WHERE revoked_at IS NULL AND public_key = :p_key "
        "ON CONFLICT DO NOTHING RETURNING 1) "
        "SELECT known.*, EXISTS (SELECT 1 FROM fresh) AS fresh FROM known"
    )
    .bindparams(bindparam("p_now", type_=UtcDateTime()))
    .columns(*_NODES.c, column("fresh", Boolean()))
)


def node_and_nonce(
    session: Session, node_id: str, public_key: str, nonce: str, now: datetime
) -> tuple[Node | None, bool]:
    """The node row, and whether `nonce` was recorded: it is when the node has `public_key`, is
    not revoked and never sent this nonce. PostgreSQL only (SQLite has no INSERT in WITH)."""
    values = {"p_node": node_id, "p_key": public_key, "p_nonce": nonce, "p_now": now}
    row = session.connection().execute(_NODE_AND_NONCE, values).first()
    if row is None:
        return None, False
    fields = dict(row._mapping)
    fresh = bool(fields.pop("fresh"))
    return Node(**fields), fresh


_PENDING = and_(
    _COMMANDS.c.node_id == bindparam("p_node"),
    _COMMANDS.c.status == "pending",
    _COMMANDS.c.expires_at > bindparam("p_now", type_=UtcDateTime()),
)
_ROLLOUTS = cast(Table, NodeRollout.__table__)
_ROLLOUT_BANKS = cast(Table, NodeRolloutBank.__table__)


def _wanted(name: str, bank_id: Any) -> Any:
    """Column `name` of the latest active rollout covering `bank_id`: the rule of
    `updates.wanted_for_bank`, as a subquery of the heartbeat's own statement."""
    rollout = _ROLLOUTS.alias("wanted_rollout")
    named = _ROLLOUT_BANKS.alias("wanted_bank")
    # Correlated by hand: in RETURNING, nothing is correlated for us.
    names_bank = (
        exists()
        .where(named.c.rollout_id == rollout.c.id, named.c.bank_id == bank_id)
        .correlate(_NODES, rollout)
    )
    return (
        select(rollout.c[name])
        .where(rollout.c.stopped_at.is_(None), rollout.c.all_banks | names_bank)
        .order_by(rollout.c.id.desc())
        .limit(1)
        .correlate(_NODES)
        .scalar_subquery()
    )


def _answer(bank_id: Any) -> tuple[Any, ...]:
    return (
        exists().where(_PENDING).correlate(_NODES).label("feed_news"),
        _wanted("id", bank_id).label("rollout_id"),
        _wanted("version", bank_id).label("rollout_version"),
    )


_UPDATE_BEAT = (
    update(_NODES)
    .where(_NODES.c.id == bindparam("p_node"))
    .values(
        last_seen_at=bindparam("p_now", type_=UtcDateTime()),
        online=True,
        health=bindparam("p_health", type_=JSON()),
        version=bindparam("p_version", type_=String()),
    )
)
# PostgreSQL: the answer comes back with the update, in the same round trip. SQLite renders
# RETURNING's columns without their table, which its subqueries need: a SELECT after it (a
# call into the library, not a round trip).
_BEAT_RETURNING = _UPDATE_BEAT.returning(*_answer(_NODES.c.bank_id))
_BEAT_ANSWER = select(*_answer(bindparam("p_bank")))


class Beat(NamedTuple):
    """What a heartbeat's statement tells: a command waits in the feed, the rollout wanting a
    version on the node's bank (None: none does) and that version."""

    feed_news: bool
    rollout_id: int | None
    rollout_version: str | None


def record_heartbeat(
    session: Session, node: Node, now: datetime, health: dict[str, Any], version: str
) -> Beat:
    """Keep the node's heartbeat, and read what its answer says."""
    connection = session.connection()
    values = {"p_node": node.id, "p_now": now, "p_health": health, "p_version": version}
    if connection.dialect.name == "postgresql":
        row = connection.execute(_BEAT_RETURNING, values).one()
    else:
        connection.execute(_UPDATE_BEAT, values)
        row = connection.execute(_BEAT_ANSWER, values | {"p_bank": node.bank_id}).one()
    return Beat(bool(row.feed_news), row.rollout_id, row.rollout_version)


# What the feed would hold -------------------------------------------------------------------------


# Every field of a reservation that its feed row is made of: two answers with the same values
# of these are the same answer, whatever the clock said (two changes stamped alike included).
FEED_FIELDS = (
    "id",
    "carrier_id",
    "tracking_number",
    "size",
    "status",
    "compartment_label",
    "reserved_until",
    "pickup_deadline",
    "updated_at",
    "kind",
    "accessible",
    "group_id",
    "dropoff_code_hash",
    "dropoff_qr_hash",
)


@dataclass(frozen=True, slots=True)
class FeedState:
    """What a node's feed answer is made of, cut down to what identifies it (`feed.feed_tag`)."""

    settings_version: int
    timezone: str
    # FEED_FIELDS of the bank's reservations after the cursor, in feed order.
    reservations: list[tuple[Any, ...]]
    commands: list[str]  # pending command ids
    carriers: list[str] = field(default_factory=list)  # only when courier codes were asked
    # (carrier, valid_from) -> code_hash of the stored hashes made under the current key.
    codes: dict[tuple[str, datetime], str] = field(default_factory=dict)


def _state_query(*, with_codes: bool) -> Select[Any]:
    """One statement, one round trip: rows tagged by `part`, in the reservations' columns.

    r: a reservation after the cursor (its FEED_FIELDS); c: a pending command (id); b: the
    bank (timezone in `status`, settings version in `number`); a: a carrier (id); k: a stored
    code hash (carrier in `id`, valid_from in `updated_at`, the hash in `status`). The first
    branch types the columns.
    """
    r = _RESERVATIONS.c
    after = or_(
        r.updated_at > bindparam("p_at", type_=UtcDateTime()),
        and_(r.updated_at == bindparam("p_at", type_=UtcDateTime()), r.id > bindparam("p_rid")),
    )
    typed = {name: sql_cast(r[name], String) for name in ("id", "status")}
    changed = (
        select(
            literal_column("'r'").label("part"),
            *(typed.get(name, r[name]).label(name) for name in FEED_FIELDS),
            sql_cast(null(), Integer).label("number"),
        )
        .where(r.bank_id == bindparam("p_bank"), after)
        .order_by(r.updated_at, r.id)
        .limit(bindparam("p_limit", type_=Integer()))
        .subquery()
    )

    def row(part: str, id_: Any, *, at: Any = None, text: Any = None, number: Any = None) -> Any:
        values = {"id": id_, "updated_at": at, "status": text}
        return select(
            literal_column(f"'{part}'"),
            *(null() if values.get(name) is None else values[name] for name in FEED_FIELDS),
            null() if number is None else number,
        )

    b, k = _BANKS.c, _CODES.c
    parts: list[Select[Any]] = [
        select(*changed.c),
        row("c", _COMMANDS.c.id).where(_PENDING),
        row("b", b.id, text=b.timezone, number=b.settings_version).where(
            b.id == bindparam("p_bank")
        ),
    ]
    if with_codes:
        parts += [
            row("a", _CARRIERS.c.id),
            row("k", k.carrier_id, at=k.valid_from, text=k.code_hash).where(
                k.bank_id == bindparam("p_bank"),
                k.key_id == bindparam("p_key"),
                k.valid_from >= bindparam("p_from", type_=UtcDateTime()),
                k.valid_from < bindparam("p_until", type_=UtcDateTime()),
            ),
        ]
    compound = union_all(*parts).subquery()
    return select(*compound.c)


_STATE = {False: _state_query(with_codes=False), True: _state_query(with_codes=True)}


def feed_state(
    session: Session,
    *,
    bank_id: str,
    node_id: str,
    after: tuple[datetime, str],
    limit: int,
    now: datetime,
    codes_window: tuple[datetime, datetime, str] | None = None,
) -> FeedState | None:
    """What the feed would hold now after `after` (None: the bank is gone); with courier codes
    when `codes_window` (from, until, key id) says which stored hashes to read."""
    params: dict[str, Any] = {
        "p_bank": bank_id,
        "p_node": node_id,
        "p_at": after[0],
        "p_rid": after[1],
        "p_limit": limit,
        "p_now": now,
    }
    if codes_window is not None:
        params |= {"p_from": codes_window[0], "p_until": codes_window[1], "p_key": codes_window[2]}
    reservations: list[tuple[Any, ...]] = []
    commands: list[str] = []
    carriers: list[str] = []
    codes: dict[tuple[str, datetime], str] = {}
    bank: tuple[str, int] | None = None
    for row in session.connection().execute(_STATE[codes_window is not None], params):
        if row.part == "r":
            reservations.append(tuple(getattr(row, name) for name in FEED_FIELDS))
        elif row.part == "c":
            commands.append(row.id)
        elif row.part == "b":
            bank = (row.status, row.number)
        elif row.part == "a":
            carriers.append(row.id)
        else:
            codes[(row.id, row.updated_at)] = row.status
    if bank is None:
        return None
    # UNION ALL keeps no order of its own: the feed's order is (updated_at, id).
    updated, rid = FEED_FIELDS.index("updated_at"), FEED_FIELDS.index("id")
    reservations.sort(key=lambda values: (values[updated], values[rid]))
    return FeedState(bank[1], bank[0], reservations, sorted(commands), sorted(carriers), codes)


# Courier code hashes ------------------------------------------------------------------------------


class CodeSlot(NamedTuple):
    """One carrier's code for one bank and day, as stored or about to be."""

    bank_id: str
    carrier_id: str
    valid_from: datetime
    valid_until: datetime


_STORED = select(
    _CODES.c.carrier_id,
    _CODES.c.valid_from,
    _CODES.c.valid_until,
    _CODES.c.code_hash,
    _CODES.c.salt,
    _CODES.c.n,
    _CODES.c.r,
    _CODES.c.p,
).where(
    _CODES.c.bank_id == bindparam("p_bank"),
    _CODES.c.key_id == bindparam("p_key"),
    _CODES.c.valid_from.in_(bindparam("p_starts", expanding=True)),
)


def stored_codes(
    session: Session, bank_id: str, key_id: str, starts: Sequence[datetime]
) -> dict[tuple[str, datetime], Any]:
    """The bank's stored hashes made under `key_id` for these day starts, by (carrier, start)."""
    if not starts:
        return {}
    rows = session.connection().execute(
        _STORED, {"p_bank": bank_id, "p_key": key_id, "p_starts": list(starts)}
    )
    return {(row.carrier_id, row.valid_from): row for row in rows}


def _upsert(dialect_name: str) -> Any:
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[dialect_name]
    insert = dialect.insert(_CODES)
    # A hash made under an earlier service key is replaced; one made under this key stays, so
    # every worker and host serves the same hash of a code (whoever stored it first).
    return insert.on_conflict_do_update(
        index_elements=[_CODES.c.bank_id, _CODES.c.carrier_id, _CODES.c.valid_from],
        set_={
            name: insert.excluded[name]
            for name in ("valid_until", "key_id", "code_hash", "salt", "n", "r", "p", "created_at")
        },
        where=_CODES.c.key_id != insert.excluded.key_id,
    )


_UPSERT = {name: _upsert(name) for name in ("postgresql", "sqlite")}


def store_codes(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Keep hashes (the table's columns each); a slot holding one under this key keeps it."""
    if rows:
        connection = session.connection()
        connection.execute(_UPSERT[connection.dialect.name], list(rows))


def _missing(zone: str, start: datetime, key_id: str) -> Select[Any]:
    """(bank, carrier) pairs of banks in `zone` with an enrolled node and no hash under `key_id`
    for the day starting at `start` (a zone's banks share their days' starts)."""
    b, c, k = _BANKS.c, _CARRIERS.c, _CODES.c
    return (
        select(b.id.label("bank_id"), c.id.label("carrier_id"))
        .select_from(_BANKS.join(_CARRIERS, true()))
        .where(
            b.timezone == zone,
            exists().where(_NODES.c.bank_id == b.id, _NODES.c.revoked_at.is_(None)),
            ~exists().where(
                k.bank_id == b.id,
                k.carrier_id == c.id,
                k.valid_from == start,
                k.key_id == key_id,
            ),
        )
    )


def count_missing(session: Session, zone: str, start: datetime, key_id: str) -> int:
    """How many slots of the day starting at `start` in `zone` have no hash yet."""
    missing = _missing(zone, start, key_id).subquery()
    return int(session.execute(select(func.count()).select_from(missing)).scalar_one())


def missing_slots(
    session: Session, zone: str, day: tuple[datetime, datetime], key_id: str, limit: int
) -> list[CodeSlot]:
    """Up to `limit` slots of one day in `zone` that have no hash yet, in bank and carrier order."""
    rows = session.execute(
        _missing(zone, day[0], key_id).order_by(_BANKS.c.id, _CARRIERS.c.id).limit(limit)
    )
    return [CodeSlot(row.bank_id, row.carrier_id, day[0], day[1]) for row in rows]


def bank_zones(session: Session) -> list[str]:
    """The time zones of banks with an enrolled node."""
    return sorted(
        set(
            session.scalars(
                select(_BANKS.c.timezone).where(
                    exists().where(_NODES.c.bank_id == _BANKS.c.id, _NODES.c.revoked_at.is_(None))
                )
            )
        )
    )


def prune_codes(session: Session, ended_before: datetime) -> int:
    """Forget hashes of days that ended before `ended_before`."""
    return rowcount(session.execute(delete(_CODES).where(_CODES.c.valid_until < ended_before)))
