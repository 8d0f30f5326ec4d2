"""Wrong codes at the kiosk: each one counted, growing lockouts, and a usage event for central.

The pickup keypad and the courier login share this; each has its own scope and policy.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection

from locker_node.domain.lockout import KeypadVerdict, LockoutPolicy, judge_failure
from locker_node.flows.errors import InvalidCode, LockedOut
from locker_node.flows.ports import Ports, seconds_until
from locker_node.store import couriers
from locker_node.store.outbox import append_audit, record
from locker_wire.events import KioskCodeFailed, KioskLockedOut


def retry_after(conn: Connection, scope: str, now: datetime) -> int:
    """Seconds until the keypad of `scope` takes codes again; 0 when it does now."""
    return seconds_until(couriers.keypad_locked_until(conn, scope), now)


def count_failure(
    conn: Connection,
    ports: Ports,
    *,
    scope: str,
    policy: LockoutPolicy,
    kind: Literal["pickup", "courier_login"],
    actor: str,
    action: str,
    now: datetime,
    audit_failures: bool = False,
) -> tuple[KeypadVerdict, int]:
    """Count one wrong code in the caller's transaction; the verdict and the lockout seconds.

    The caller raises its refusal after the transaction commits, or the rollback would forget
    the attempt.
    """
    since = now - timedelta(seconds=policy.window_s)
    failures = couriers.count_keypad_failures(conn, scope, since) + 1
    verdict = judge_failure(policy, failures, now)
    couriers.record_keypad_failure(conn, scope, now, verdict.locked_until)
    detail = {"failures_in_window": failures} if audit_failures else None
    append_audit(conn, at=now, actor=actor, action=action, detail=detail)
    retry = verdict.retry_after_s(now)
    bank = ports.policy.bank_id
    record(
        conn,
        KioskCodeFailed(kind=kind, attempts_left=max(0, verdict.attempts_left)),
        at=now,
        bank_id=bank,
    )
    if retry:
        record(conn, KioskLockedOut(kind=kind, retry_after_s=retry), at=now, bank_id=bank)
    return verdict, retry


# The pickup keypad: recipients' pickup codes and senders' drop-off codes share its count and
# pace, one budget of guesses for both kinds of code.


def refuse_if_locked(conn: Connection, ports: Ports, now: datetime) -> None:
    """LockedOut while the pickup keypad takes no codes."""
    retry = retry_after(conn, ports.policy.pickup_scope, now)
    if retry > 0:
        raise LockedOut("too many wrong codes; the keypad is locked", retry_after_s=retry)


def wrong_pickup_code(
    conn: Connection, ports: Ports, *, actor: str, action: str, now: datetime
) -> InvalidCode:
    """Count a wrong code typed at the pickup keypad, in the caller's transaction; the refusal
    to raise once it commits."""
    verdict, retry = count_failure(
        conn,
        ports,
        scope=ports.policy.pickup_scope,
        policy=ports.policy.keypad,
        kind="pickup",
        actor=actor,
        action=action,
        now=now,
        audit_failures=True,
    )
    if retry:
        return InvalidCode(
            "wrong code; the keypad is now locked", attempts_left=0, retry_after_s=retry
        )
    return InvalidCode("wrong code", attempts_left=verdict.attempts_left)
