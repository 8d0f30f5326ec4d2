"""A lease row per job group: whoever holds it runs the jobs; it lapses if the holder dies.

Each change of holder gives the lease a new fencing token (one more than the last). A holder
runs its jobs' transactions through `fenced_sessions`, whose every transaction first checks,
under a row lock, that the lease is still its own with the token it was given: a holder that
stalled past its lease (a long pause, a network cut) and wakes after another took over finds its
writes refused (`LeaseLost`) instead of overlapping the new holder's. On PostgreSQL the check
takes `FOR SHARE` on the lease row, so a takeover waits for a fenced transaction already under
way to end; on SQLite the single writer orders them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, event, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from central.models import Lease


class LeaseLost(RuntimeError):
    """The lease is no longer this holder's with this token: its writes are refused."""


def acquire(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> int | None:
    """Take or renew the lease; the fencing token while it is held, None when another holds it.

    One conditional statement, so two contenders cannot both win; renewing keeps the token,
    taking over from another holder (whose lease lapsed) adds one to it.
    """
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder, Lease.expires_at >= now)
        .values(expires_at=now + ttl)
        .returning(Lease.token)
    ).first()
    if result is not None:
        return int(result[0])
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl, token=Lease.token + 1)
        .returning(Lease.token)
    ).first()
    if result is not None:
        return int(result[0])
    try:
        with session.begin_nested():
            session.execute(
                insert(Lease).values(name=name, holder=holder, expires_at=now + ttl, token=1)
            )
    except IntegrityError:
        return None  # someone else holds a live lease
    return 1


def release(session: Session, name: str, holder: str) -> None:
    session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
    )


_LEASES = Lease.__table__
_FENCE = select(_LEASES.c.token).where(
    _LEASES.c.name == bindparam("p_name"),
    _LEASES.c.holder == bindparam("p_holder"),
    _LEASES.c.token == bindparam("p_token"),
    _LEASES.c.expires_at > bindparam("p_now"),
)
_FENCE_LOCKED = _FENCE.with_for_update(read=True)


def check_fence(
    connection: Connection,
    name: str,
    holder: str,
    token: int,
    now: datetime,
    *,
    idle_limit: timedelta | None = None,
) -> None:
    """Raise LeaseLost unless `holder` holds the lease `name` with `token`, unexpired.

    `idle_limit` (PostgreSQL): the longest this transaction may sit idle while it holds the
    lease row's lock. A holder frozen or cut off inside a fenced transaction would otherwise
    block every takeover until the server notices the connection is gone (hours, with TCP's
    defaults); past the limit PostgreSQL ends the transaction and its lock.
    """
    postgresql = connection.dialect.name == "postgresql"
    if postgresql and idle_limit is not None:
        limit_ms = max(1000, int(idle_limit.total_seconds() * 1000))
        connection.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {limit_ms}")
    stmt = _FENCE_LOCKED if postgresql else _FENCE
    params = {"p_name": name, "p_holder": holder, "p_token": token, "p_now": now}
    if connection.execute(stmt, params).first() is None:
        raise LeaseLost(f"the {name} lease is no longer {holder}'s with token {token}")


def guarded_sessions(
    sessions: sessionmaker[Session], guard: Callable[[Connection], None]
) -> sessionmaker[Session]:
    """Sessions like `sessions` whose every transaction first runs `guard` on its connection
    (a holder's `check_fence`): a guard that raises refuses the transaction before it writes."""
    guarded: sessionmaker[Session] = sessionmaker(class_=sessions.class_, **sessions.kw)

    def on_begin(session: Session, transaction: SessionTransaction, connection: Any) -> None:
        if not transaction.nested:
            guard(connection)

    event.listen(guarded, "after_begin", on_begin)
    return guarded
