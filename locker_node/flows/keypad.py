"""Wrong codes at the kiosk: each one counted, growing lockouts, and a usage event for central.

The pickup keypad and the courier login share this; each has its own scope and policy.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection

from locker_node.domain.lockout import KeypadVerdict, LockoutPolicy, judge_failure
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
