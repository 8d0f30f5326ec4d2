"""The feed a node pulls: reservations changed since its cursor, pending commands, courier codes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from central.banks import repository as banks_repository
from central.banks import settings as bank_settings
from central.context import Ctx
from central.errors import ApiError
from central.models import Node, Reservation
from central.models.base import ReservationKind, ReservationStatus
from central.nodes import courier_codes
from central.nodes import repository as repo
from central.nodes import sync_repository as sync_repo
from central.nodes.commands import describe_command
from central.nodes.courier_codes import CourierCodeDue
from locker_wire.schemas import DropoffCodeHash, FeedHeld, FeedReservation, FeedResponse

# A change is delivered again for this long after it was made: a transaction that took its
# `updated_at` before a feed read but committed after it is still picked up by the next read.
FEED_OVERLAP = timedelta(minutes=5)
# Part of every tag: changing what a tag is made of changes this, so old tags match nothing.
TAG_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(position: tuple[datetime, str]) -> str:
    raw = json.dumps({"t": position[0].astimezone(UTC).isoformat(), "id": position[1]})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = datetime.fromisoformat(raw["t"])
        rid = raw["id"]
        if at.tzinfo is None or not isinstance(rid, str):
            raise ValueError("bad cursor")
        return at, rid
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from exc


@dataclass(frozen=True, slots=True)
class FeedQuery:
    """What a node asks for: the feed after `cursor`, and `known`, the tag of the answer it
    already has for that cursor (None: no condition, the full feed)."""

    cursor: str | None = None
    limit: int = 200
    courier_codes: bool = True
    settings_version: int | None = None
    known: str | None = None


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The node's answer is still current: nothing to send (`tag` is the node's own)."""

    tag: str


@dataclass(slots=True)
class FeedAnswer:
    """A full feed answer. `due`: courier codes still to hash and store before it is sent
    (`courier_codes.hash_codes` and `store_codes`, after the transaction); `tagged`: what its
    tag is made of, None when it gets none (more pages follow, or the cursor was moved back)."""

    response: FeedResponse
    due: list[CourierCodeDue]
    tagged: TagParts | None


@dataclass(frozen=True, slots=True)
class TagParts:
    """What a feed answer's tag is made of, but for its courier codes (`feed_tag`)."""

    cursor: str
    limit: int
    settings_version: int
    reservations: list[tuple[Any, ...]]  # sync_repository.FEED_FIELDS of each
    commands: list[str]
    with_codes: bool


def feed(ctx: Ctx, node: Node, query: FeedQuery) -> FeedAnswer | Unchanged:
    """The node's feed, or `Unchanged` when `query.known` is the tag of what it would hold.

    The condition costs one statement (`sync_repository.feed_state`) and no serialisation; any
    difference, or a node whose bank settings are not the bank's, gets the full feed.
    """
    after = decode_cursor(query.cursor) if query.cursor else (_EPOCH, "")
    if query.known is not None and query.cursor and query.settings_version is not None:
        tag = current_tag(ctx, node, query, after)
        if tag is not None and tag == query.known:
            return Unchanged(tag)
    return full_feed(ctx, node, query, after)


def held_is_current(ctx: Ctx, node: Node, held: FeedHeld) -> bool:
    """Whether the answer a node holds (sent with its heartbeat) is what a pull would bring
    now: the same condition as a conditional pull's, without the pull."""
    try:
        after = decode_cursor(held.cursor)
    except ApiError:
        return False  # its pull will be told what is wrong with its cursor
    query = FeedQuery(
        held.cursor, held.limit, held.courier_codes, held.settings_version, known=held.tag
    )
    return current_tag(ctx, node, query, after) == held.tag


def current_tag(ctx: Ctx, node: Node, query: FeedQuery, after: tuple[datetime, str]) -> str | None:
    """The tag a full answer to `query` would carry now (None: one it would not match)."""
    window = None
    if query.courier_codes:
        zone_days = (ctx.now - timedelta(days=2), ctx.now + timedelta(days=3))
        window = (*zone_days, courier_codes.key_id(ctx.keys))
    state = sync_repo.feed_state(
        ctx.session,
        bank_id=node.bank_id,
        node_id=node.id,
        after=after,
        limit=query.limit,
        now=ctx.now,
        codes_window=window,
    )
    if state is None or state.settings_version != query.settings_version or query.cursor is None:
        return None
    codes = None
    if query.courier_codes:
        codes = [
            (carrier, start, state.codes.get((carrier, start), ""))
            for carrier in state.carriers
            for start, _ in courier_codes.code_days(state.timezone, ctx.now)
        ]
    parts = TagParts(
        query.cursor,
        query.limit,
        state.settings_version,
        state.reservations,
        state.commands,
        query.courier_codes,
    )
    return feed_tag(parts, codes)


def feed_tag(parts: TagParts, codes: Sequence[tuple[str, datetime, str]] | None) -> str:
    """Names one feed answer: its cursor, the reservations after it (every field of theirs),
    the pending commands, the bank's settings version and, when asked, the courier codes.

    Made again from the database for a conditional request, never kept anywhere, so every
    worker and host agrees on it. A change committed late, with an `updated_at` after the
    cursor, changes it like any other; one stamped before the cursor is the overlap's matter
    (FEED_OVERLAP), as for the full feed.
    """
    material = [
        TAG_VERSION,
        parts.cursor,
        parts.limit,
        parts.settings_version,
        [[_plain(value) for value in fields] for fields in parts.reservations],
        sorted(parts.commands),
        None
        if codes is None
        else sorted([carrier, _micros(start), digest] for carrier, start, digest in codes),
    ]
    raw = json.dumps(material, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:18]).decode()


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _plain(value: Any) -> Any:
    """A column's value as the tag's JSON holds it: times as microseconds, whatever their zone."""
    return _micros(value) if isinstance(value, datetime) else value


def full_feed(ctx: Ctx, node: Node, query: FeedQuery, after: tuple[datetime, str]) -> FeedAnswer:
    """Reservations changed after the cursor, pending commands and courier code hashes.

    Positions are (updated_at, id). A full page moves the cursor to its last row (`more`); a
    caught-up read moves it to the last row or to now minus FEED_OVERLAP, whichever is earlier,
    so the next read sees again every change of the last few minutes, including one whose
    transaction stamped it before this read but committed after. The node applies a reservation
    only when its `updated_at` is newer than the copy it has, so seeing one twice is harmless.

    Courier codes not stored yet come back unhashed (`due`), for `courier_codes.hash_codes` to
    hash once the transaction is over: scrypt takes a while, and no lock should wait for it.

    The bank's settings (`bank`) come when the node's `settings_version` is not the bank's: a
    node that sends none (an earlier version) gets them every time, and ignores them.

    The answer's tag is made of exactly what it holds, each part from the statement that read
    it, so a change committed between two of them is in both or in neither.
    """
    rows = repo.changed_reservations(ctx.session, node.bank_id, after, query.limit)
    more = len(rows) == query.limit
    last = (rows[-1].updated_at, rows[-1].id) if rows else after
    position = last if more else min(last, (ctx.now - FEED_OVERLAP, ""))
    commands = repo.pending_commands(ctx.session, node.id, ctx.now)
    response = FeedResponse(
        reservations=[_feed_reservation(r) for r in rows],
        commands=[describe_command(c) for c in commands],
        courier_codes=[],
        cursor=encode_cursor(position),
        more=more,
    )
    bank = banks_repository.get_referenced_bank(ctx.session, node.bank_id)
    if query.settings_version is None or query.settings_version != bank.settings_version:
        response.bank = bank_settings.feed_bank(ctx.session, bank)
    due: list[CourierCodeDue] = []
    if query.courier_codes:
        carriers = repo.carrier_ids(ctx.session)
        response.courier_codes, due = courier_codes.stored_for_feed(
            ctx.session, ctx.keys, bank.id, bank.timezone, carriers, ctx.now
        )
    tagged = None
    # Tagged only when the rows after the new cursor are all among those read.
    if not more and position >= after:
        tagged = TagParts(
            response.cursor,
            query.limit,
            bank.settings_version,
            [
                tuple(getattr(r, name) for name in sync_repo.FEED_FIELDS)
                for r in rows
                if (r.updated_at, r.id) > position
            ],
            [c.id for c in commands],
            query.courier_codes,
        )
    return FeedAnswer(response, due, tagged)


def answer_tag(answer: FeedAnswer) -> str | None:
    """The tag of a full answer once its courier codes are all in (None: it has none)."""
    if answer.tagged is None:
        return None
    codes = None
    if answer.tagged.with_codes:
        codes = [(c.carrier, c.valid_from, c.code_hash) for c in answer.response.courier_codes]
    return feed_tag(answer.tagged, codes)


def _feed_reservation(r: Reservation) -> FeedReservation:
    return FeedReservation(
        id=r.id,
        carrier=r.carrier_id,
        tracking_number=r.tracking_number,
        size=r.size,
        status=r.status,
        compartment=r.compartment_label,
        reserved_until=r.reserved_until,
        pickup_deadline=r.pickup_deadline,
        updated_at=r.updated_at,
        kind=r.kind,
        accessible=r.accessible,
        group_id=r.group_id,
        dropoff_code=_dropoff_code(r),
    )


def _dropoff_code(reservation: Reservation) -> DropoffCodeHash | None:
    """A waiting drop-off's code hashes, stored at creation as `$scrypt$n=,r=,p=$salt$hash`."""
    if (
        reservation.kind != ReservationKind.DROPOFF
        or reservation.status != ReservationStatus.RESERVED
        or reservation.dropoff_code_hash is None
        or reservation.dropoff_qr_hash is None
    ):
        return None
    _, _, params, salt, digest = reservation.dropoff_code_hash.split("$")
    cost = dict(item.split("=", 1) for item in params.split(","))
    return DropoffCodeHash(
        code_hash=digest,
        salt=salt,
        n=int(cost["n"]),
        r=int(cost["r"]),
        p=int(cost["p"]),
        qr_hash=reservation.dropoff_qr_hash,
    )
