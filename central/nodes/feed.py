"""The feed a node pulls: reservations changed since its cursor, pending commands, courier codes."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from central.banks import repository as banks_repository
from central.banks import settings as bank_settings
from central.context import Ctx
from central.errors import ApiError
from central.models import Bank, Node, Reservation
from central.models.base import ReservationKind, ReservationStatus
from central.nodes import repository as repo
from central.nodes.commands import describe_command
from locker_wire.schemas import CourierCodeHash, DropoffCodeHash, FeedReservation, FeedResponse

# A change is delivered again for this long after it was made: a transaction that took its
# `updated_at` before a feed read but committed after it is still picked up by the next read.
FEED_OVERLAP = timedelta(minutes=5)
# scrypt cost for courier code hashes: ~60 ms per hash here, so an 8-digit code's 1e8 candidates
# take CPU-months, while a code lives one day.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
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
class CourierCodeDue:
    """A courier code to send, still in clear: hashed by `hash_courier_codes`, never stored."""

    carrier: str
    valid_from: datetime
    valid_until: datetime
    code: str


def feed(
    ctx: Ctx,
    node: Node,
    cursor: str | None,
    limit: int,
    *,
    courier_codes: bool = True,
    settings_version: int | None = None,
) -> tuple[FeedResponse, list[CourierCodeDue]]:
    """Reservations changed after the cursor, pending commands and courier code hashes.

    Positions are (updated_at, id). A full page moves the cursor to its last row (`more`); a
    caught-up read moves it to the last row or to now minus FEED_OVERLAP, whichever is earlier,
    so the next read sees again every change of the last few minutes, including one whose
    transaction stamped it before this read but committed after. The node applies a reservation
    only when its `updated_at` is newer than the copy it has, so seeing one twice is harmless.

    Courier codes come back unhashed, for `hash_courier_codes` to hash once the transaction is
    over: scrypt takes a while, and no database lock should wait for it.

    The bank's settings (`bank`) come when the node's `settings_version` is not the bank's: a
    node that sends none (an earlier version) gets them every time, and ignores them.
    """
    after = decode_cursor(cursor) if cursor else (_EPOCH, "")
    rows = repo.changed_reservations(ctx.session, node.bank_id, after, limit)
    more = len(rows) == limit
    last = (rows[-1].updated_at, rows[-1].id) if rows else after
    position = last if more else min(last, (ctx.now - FEED_OVERLAP, ""))
    response = FeedResponse(
        reservations=[
            FeedReservation(
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
            for r in rows
        ],
        commands=[
            describe_command(c) for c in repo.pending_commands(ctx.session, node.id, ctx.now)
        ],
        courier_codes=[],
        cursor=encode_cursor(position),
        more=more,
    )
    bank = banks_repository.get_referenced_bank(ctx.session, node.bank_id)
    if settings_version is None or settings_version != bank.settings_version:
        response.bank = bank_settings.feed_bank(ctx.session, bank)
    if not courier_codes:
        return response, []
    return response, _courier_codes(ctx, bank)


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


def hash_courier_code(code: str, salt: bytes) -> str:
    return hashlib.scrypt(
        code.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    ).hex()


def _courier_codes(ctx: Ctx, bank: Bank) -> list[CourierCodeDue]:
    zone = ZoneInfo(bank.timezone)
    today = ctx.now.astimezone(zone).date()
    return [
        CourierCodeDue(
            carrier=carrier_id,
            valid_from=datetime.combine(day, time(0), zone),
            valid_until=datetime.combine(day + timedelta(days=1), time(0), zone),
            code=ctx.keys.courier_code(carrier_id, bank.id, day),
        )
        for carrier_id in repo.carrier_ids(ctx.session)
        for day in (today, today + timedelta(days=1))
    ]


class _CodeHashes:
    """Hashed codes by (carrier, bank, day), kept so each is hashed once a process, not per pull.

    scrypt costs ~28 ms of CPU on purpose; nodes pull their codes every few minutes, so without
    this a fleet of 5,000 banks and four carriers would spend about two cores on hashing the
    same codes again. Entries live in this process's memory only (like the key the codes are
    derived from), keyed by the code too, so a different key can never be served an old hash.
    Least recently used entries go first beyond `limit`.
    """

    def __init__(self, limit: int = 65_536) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._hashes: OrderedDict[tuple[str, str, datetime, str], CourierCodeHash] = OrderedDict()

    def get(self, bank_id: str, item: CourierCodeDue) -> CourierCodeHash:
        key = (item.carrier, bank_id, item.valid_from, item.code)
        with self._lock:
            found = self._hashes.get(key)
            if found is not None:
                self._hashes.move_to_end(key)
                return found
        salt = secrets.token_bytes(16)
        made = CourierCodeHash(
            carrier=item.carrier,
            valid_from=item.valid_from,
            valid_until=item.valid_until,
            code_hash=hash_courier_code(item.code, salt),
            salt=salt.hex(),
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
        )
        with self._lock:
            self._hashes[key] = made
            while len(self._hashes) > self._limit:
                self._hashes.popitem(last=False)
        return made


_CODE_HASHES = _CodeHashes()


def hash_courier_codes(bank_id: str, due: Sequence[CourierCodeDue]) -> list[CourierCodeHash]:
    """Each code as scrypt with a random salt: the node can check a PIN, not recover it."""
    return [_CODE_HASHES.get(bank_id, item) for item in due]
