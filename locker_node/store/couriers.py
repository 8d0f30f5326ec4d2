"""Courier access codes, courier sessions and keypad failures in the node's store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from locker_node.domain.lifecycle import DepositStatus
from locker_node.store.rows import changed, every, one
from locker_node.store.schema import (
    courier_credentials,
    courier_sessions,
    deposits,
    keypad_failures,
)


def upsert_courier_credential(
    conn: Connection,
    *,
    carrier_id: str,
    code_hash: str,
    valid_from: datetime,
    valid_until: datetime,
    now: datetime,
) -> None:
    existing = conn.execute(
        select(courier_credentials.c.id).where(
            courier_credentials.c.carrier_id == carrier_id,
            courier_credentials.c.valid_from == valid_from,
        )
    ).first()
    if existing is None:
        conn.execute(
            insert(courier_credentials).values(
                carrier_id=carrier_id,
                code_hash=code_hash,
                valid_from=valid_from,
                valid_until=valid_until,
                created_at=now,
            )
        )
    else:
        conn.execute(
            update(courier_credentials)
            .where(courier_credentials.c.id == existing.id)
            .values(code_hash=code_hash, valid_until=valid_until, created_at=now)
        )


def valid_credential_hashes(conn: Connection, carrier_id: str, now: datetime) -> list[str]:
    rows = conn.execute(
        select(courier_credentials.c.code_hash).where(
            courier_credentials.c.carrier_id == carrier_id,
            courier_credentials.c.valid_from <= now,
            courier_credentials.c.valid_until > now,
        )
    )
    return [row.code_hash for row in rows]


def carriers_with_credentials(conn: Connection, now: datetime) -> list[str]:
    rows = conn.execute(
        select(courier_credentials.c.carrier_id)
        .where(courier_credentials.c.valid_from <= now, courier_credentials.c.valid_until > now)
        .distinct()
        .order_by(courier_credentials.c.carrier_id)
    )
    return [row.carrier_id for row in rows]


def prune_courier_credentials(conn: Connection, before: datetime) -> int:
    return changed(
        conn.execute(delete(courier_credentials).where(courier_credentials.c.valid_until < before))
    )


@dataclass(frozen=True)
class CourierSession:
    id: str
    token_hash: str
    carrier_id: str
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None


def insert_session(conn: Connection, session: CourierSession) -> None:
    conn.execute(insert(courier_sessions).values(**session.__dict__))


def find_session(conn: Connection, token_hash: str) -> CourierSession | None:
    return one(
        CourierSession,
        conn.execute(
            select(courier_sessions).where(courier_sessions.c.token_hash == token_hash)
        ).first(),
    )


def touch_session(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(
        update(courier_sessions).where(courier_sessions.c.id == session_id).values(last_seen_at=now)
    )


def end_session(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(
        update(courier_sessions)
        .where(courier_sessions.c.id == session_id, courier_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )


def get_session(conn: Connection, session_id: str) -> CourierSession | None:
    return one(
        CourierSession,
        conn.execute(select(courier_sessions).where(courier_sessions.c.id == session_id)).first(),
    )


def idle_sessions(conn: Connection, idle_since: datetime) -> list[CourierSession]:
    """Open sessions with no activity since `idle_since` (housekeeping ends them)."""
    return every(
        CourierSession,
        conn.execute(
            select(courier_sessions).where(
                courier_sessions.c.ended_at.is_(None),
                courier_sessions.c.last_seen_at < idle_since,
            )
        ),
    )


def count_session_deposits(conn: Connection, session_id: str) -> int:
    """Parcels a courier session put into the bank (confirmed deposits)."""
    query = (
        select(func.count())
        .select_from(deposits)
        .where(deposits.c.session_id == session_id, deposits.c.status == DepositStatus.CONFIRMED)
    )
    return int(conn.execute(query).scalar_one())


# Keypad failures


def record_keypad_failure(
    conn: Connection, scope: str, at: datetime, locked_until: datetime | None
) -> None:
    conn.execute(insert(keypad_failures).values(scope=scope, at=at, locked_until=locked_until))


def count_keypad_failures(conn: Connection, scope: str, since: datetime) -> int:
    count = conn.execute(
        select(func.count()).where(keypad_failures.c.scope == scope, keypad_failures.c.at > since)
    ).scalar_one()
    return int(count)


def keypad_locked_until(conn: Connection, scope: str) -> datetime | None:
    row = conn.execute(
        select(keypad_failures.c.locked_until)
        .where(keypad_failures.c.scope == scope, keypad_failures.c.locked_until.is_not(None))
        .order_by(keypad_failures.c.locked_until.desc())
        .limit(1)
    ).first()
    return None if row is None else row.locked_until


def prune_keypad_failures(conn: Connection, before: datetime) -> int:
    return changed(
        conn.execute(
            delete(keypad_failures).where(
                keypad_failures.c.at < before,
                or_(
                    keypad_failures.c.locked_until.is_(None),
                    keypad_failures.c.locked_until < before,
                ),
            )
        )
    )
