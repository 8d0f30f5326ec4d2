"""Courier codes as nodes get them: salted scrypt hashes of today's and tomorrow's codes.

scrypt costs ~30 ms of CPU on purpose, so each (carrier, bank, day) is hashed once for the whole
deployment and kept in `courier_code_hashes` (the hash only: the code is derived again from the
service key whenever it is needed). A scheduled job makes the next day's hashes ahead of time,
spread over the day; a feed that finds one missing makes it and stores it (INSERT ... ON
CONFLICT), so a restart of central, or a new host, costs no hashing at all.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from central.keys import ServiceKeys
from central.nodes import sync_repository as sync_repo
from locker_wire.schemas import CourierCodeHash

# scrypt cost for courier code hashes: ~30 ms per hash here, so an 8-digit code's 1e8 candidates
# take CPU-months, while a code lives one day.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
DAYS_SENT = 2  # today's and tomorrow's code
# The job: how often it runs, the fewest hashes a run makes while any are missing, and the most
# (a bound on the CPU one run takes on the leader: 200 x 30 ms).
JOB_INTERVAL_S = 60
JOB_MIN_PER_RUN = 10
JOB_MAX_PER_RUN = 200
# Hashes are kept this long after their day ended (a node's clock a little behind still
# finds yesterday's), then pruned.
KEEP_AFTER_END = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CourierCodeDue:
    """A courier code to send, still in clear: hashed by `make_codes`, never stored."""

    carrier: str
    valid_from: datetime
    valid_until: datetime
    code: str


def key_id(keys: ServiceKeys) -> str:
    """Names the service key the codes come from (a key of its own purpose: it tells nothing of
    the codes), so a hash made under an earlier key is never served."""
    return keys.derive("courier-code-hashes/key-id")[:6].hex()


def code_days(timezone: str, now: datetime) -> list[tuple[datetime, datetime]]:
    """(start, end) of the bank's local days whose codes its node gets: today and tomorrow."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    days = [today + timedelta(days=n) for n in range(DAYS_SENT)]
    return [
        (
            datetime.combine(day, time(0), zone),
            datetime.combine(day + timedelta(days=1), time(0), zone),
        )
        for day in days
    ]


def due_codes(
    keys: ServiceKeys, bank_id: str, timezone: str, carriers: Sequence[str], now: datetime
) -> list[CourierCodeDue]:
    """Every carrier's code for today and tomorrow at the bank, in (carrier, day) order."""
    return [
        CourierCodeDue(
            carrier=carrier_id,
            valid_from=start,
            valid_until=end,
            code=keys.courier_code(carrier_id, bank_id, start.date()),
        )
        for carrier_id in carriers
        for start, end in code_days(timezone, now)
    ]


def hash_courier_code(code: str, salt: bytes) -> str:
    return hashlib.scrypt(
        code.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    ).hex()


def _wire(item: CourierCodeDue, row: Any) -> CourierCodeHash:
    """The stored hash of a due code, its day in the bank's own time as the node is sent it."""
    return CourierCodeHash(
        carrier=item.carrier,
        valid_from=item.valid_from,
        valid_until=item.valid_until,
        code_hash=row.code_hash,
        salt=row.salt,
        n=row.n,
        r=row.r,
        p=row.p,
    )


def stored_for_feed(
    session: Session,
    keys: ServiceKeys,
    bank_id: str,
    timezone: str,
    carriers: Sequence[str],
    now: datetime,
) -> tuple[list[CourierCodeHash], list[CourierCodeDue]]:
    """The bank's codes for its feed: those stored (as the wire has them), and those still to
    make, in clear (`make_codes`, after the transaction: no lock should wait for scrypt)."""
    due = due_codes(keys, bank_id, timezone, carriers, now)
    stored = sync_repo.stored_codes(
        session, bank_id, key_id(keys), sorted({item.valid_from for item in due})
    )
    found = [
        _wire(d, stored[(d.carrier, d.valid_from)])
        for d in due
        if (d.carrier, d.valid_from) in stored
    ]
    missing = [d for d in due if (d.carrier, d.valid_from) not in stored]
    return found, missing


def _hash_row(
    keys: ServiceKeys, bank_id: str, item: CourierCodeDue, now: datetime
) -> dict[str, Any]:
    salt = secrets.token_bytes(16)
    return {
        "bank_id": bank_id,
        "carrier_id": item.carrier,
        "valid_from": item.valid_from,
        "valid_until": item.valid_until,
        "key_id": key_id(keys),
        "code_hash": hash_courier_code(item.code, salt),
        "salt": salt.hex(),
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "created_at": now,
    }


def hash_codes(
    keys: ServiceKeys, bank_id: str, missing: Sequence[CourierCodeDue], now: datetime
) -> list[dict[str, Any]]:
    """The missing codes hashed, as rows to store (`store_codes`); outside any transaction."""
    return [_hash_row(keys, bank_id, item, now) for item in missing]


def store_codes(
    sessions: sessionmaker[Session],
    keys: ServiceKeys,
    bank_id: str,
    rows: Sequence[dict[str, Any]],
) -> list[CourierCodeHash]:
    """Store hashed codes and give back what is stored: when another worker or host stored
    one first, its hash, so that all serve the same."""
    if not rows:
        return []
    with sessions() as session, session.begin():
        sync_repo.store_codes(session, rows)
        stored = sync_repo.stored_codes(
            session, bank_id, key_id(keys), sorted({row["valid_from"] for row in rows})
        )
    return [
        _wire(
            CourierCodeDue(row["carrier_id"], row["valid_from"], row["valid_until"], ""),
            stored[(row["carrier_id"], row["valid_from"])],
        )
        for row in rows
    ]


def make_codes(
    sessions: sessionmaker[Session],
    keys: ServiceKeys,
    bank_id: str,
    missing: Sequence[CourierCodeDue],
    now: datetime,
) -> list[CourierCodeHash]:
    """Hash the missing codes and store them (`hash_codes`, then `store_codes`)."""
    return store_codes(sessions, keys, bank_id, hash_codes(keys, bank_id, missing, now))


def in_due_order(codes: Sequence[CourierCodeHash]) -> list[CourierCodeHash]:
    return sorted(codes, key=lambda code: (code.carrier, code.valid_from))


# The job ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Day:
    zone: str
    start: datetime
    end: datetime
    missing: int


def prepare_codes(
    sessions: sessionmaker[Session],
    keys: ServiceKeys,
    now: datetime,
    *,
    interval_s: float = JOB_INTERVAL_S,
    max_per_run: int = JOB_MAX_PER_RUN,
) -> int:
    """One run of the job: make some of the missing hashes for today and tomorrow; how many.

    Today's missing ones (a new bank or carrier, the first run after the upgrade) come first,
    up to `max_per_run`. Tomorrow's are spread evenly over the time left until the earliest of
    those days starts, aiming to be done half-way, so they are ready long before a node asks;
    a feed still makes any that are missing. Hashing happens outside the transactions.
    """
    kid = key_id(keys)
    with sessions() as session, session.begin():
        days = [
            _Day(zone, start, end, sync_repo.count_missing(session, zone, start, kid))
            for zone in sync_repo.bank_zones(session)
            for start, end in code_days(zone, now)
        ]
        budget = _budget(days, now, interval_s, max_per_run)
        slots: list[sync_repo.CodeSlot] = []
        for day in sorted(days, key=lambda d: d.start):
            if day.missing and len(slots) < budget:
                slots += sync_repo.missing_slots(
                    session, day.zone, (day.start, day.end), kid, budget - len(slots)
                )
    rows = [
        _hash_row(
            keys,
            slot.bank_id,
            CourierCodeDue(
                slot.carrier_id,
                slot.valid_from,
                slot.valid_until,
                keys.courier_code(slot.carrier_id, slot.bank_id, slot.valid_from.date()),
            ),
            now,
        )
        for slot in slots
    ]
    with sessions() as session, session.begin():
        sync_repo.store_codes(session, rows)
        sync_repo.prune_codes(session, now - KEEP_AFTER_END)
    return len(rows)


def _budget(days: Sequence[_Day], now: datetime, interval_s: float, max_per_run: int) -> int:
    """How many hashes this run makes: every missing one of a day already begun (up to the
    cap), and tomorrow's spread over the runs left before half the time to it is gone."""
    started = sum(day.missing for day in days if day.start <= now)
    ahead = [day for day in days if day.start > now and day.missing]
    spread = 0
    if ahead:
        first = min(day.start for day in ahead)
        runs_left = max(1.0, (first - now).total_seconds() / 2 / interval_s)
        spread = max(JOB_MIN_PER_RUN, math.ceil(sum(d.missing for d in ahead) / runs_left))
    return min(max_per_run, started + spread)
