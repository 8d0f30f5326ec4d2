"""Courier sessions: a carrier's courier access code opens a short session at the kiosk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection

from locker_node.domain import inputs
from locker_node.domain.codes import generate_session_token
from locker_node.domain.credentials import verify_courier_code
from locker_node.flows import keypad
from locker_node.flows.errors import (
    BadInput,
    InvalidCredentials,
    LockedOut,
    NotLoggedIn,
    SessionExpired,
)
from locker_node.flows.ports import Ports
from locker_node.store import couriers
from locker_node.store.outbox import append_audit, record
from locker_node.store.rows import new_id
from locker_wire.events import KioskSession


@dataclass(frozen=True)
class Courier:
    session_id: str
    carrier_id: str

    @property
    def actor(self) -> str:
        return f"courier:{self.carrier_id}:{self.session_id[:8]}"


@dataclass(frozen=True)
class LoginResult:
    token: str
    carrier: str
    expires_in_s: int


def carriers(ports: Ports) -> list[str]:
    """Carriers whose couriers can log in here now."""
    with ports.unit_of_work() as conn:
        return couriers.carriers_with_credentials(conn, ports.now())


def login(ports: Ports, carrier: str, pin: str) -> LoginResult:
    carrier_id = inputs.normalise_carrier(carrier)
    if carrier_id is None:
        raise BadInput("not a carrier")
    pin = pin.strip()
    if not inputs.is_well_formed_pin(pin):
        raise BadInput("the courier code is 4-12 digits")
    scope = ports.policy.login_scope
    with ports.login_lock:
        now = ports.now()
        with ports.unit_of_work() as conn:
            retry = keypad.retry_after(conn, scope, now)
            if retry > 0:
                raise LockedOut("too many wrong courier codes", retry_after_s=retry)
            hashes = couriers.valid_credential_hashes(conn, carrier_id, now)
        # scrypt takes tens of milliseconds: outside the transaction, inside the login lock.
        accepted = any(verify_courier_code(code_hash, pin) for code_hash in hashes)
        now = ports.now()
        if not accepted:
            with ports.unit_of_work() as conn:
                verdict, retry = keypad.count_failure(
                    conn,
                    ports,
                    scope=scope,
                    policy=ports.policy.login,
                    kind="courier_login",
                    actor=f"courier:{carrier_id}",
                    action="courier_login_refused",
                    now=now,
                )
            extra: dict[str, Any] = {"retry_after_s": retry} if retry else {}
            raise InvalidCredentials(
                "wrong carrier or courier code", attempts_left=verdict.attempts_left, **extra
            )
        token = generate_session_token()
        session = couriers.CourierSession(
            id=new_id(),
            token_hash=ports.keys.session_tokens.digest(token),
            carrier_id=carrier_id,
            created_at=now,
            last_seen_at=now,
            ended_at=None,
        )
        with ports.unit_of_work() as conn:
            couriers.insert_session(conn, session)
            actor = Courier(session.id, carrier_id).actor
            append_audit(conn, at=now, actor=actor, action="courier_login")
    return LoginResult(
        token=token,
        carrier=carrier_id,
        expires_in_s=int(ports.policy.session_idle.total_seconds()),
    )


def authenticate(ports: Ports, token: str | None) -> Courier:
    if not token:
        raise NotLoggedIn("log in as a courier first")
    if len(token) > 128:
        raise NotLoggedIn("not a courier session")
    now = ports.now()
    with ports.unit_of_work() as conn:
        session = couriers.find_session(conn, ports.keys.session_tokens.digest(token))
        if session is None:
            raise NotLoggedIn("not a courier session")
        if session.ended_at is not None:
            raise SessionExpired("the courier session has ended; log in again")
        if session.last_seen_at < now - ports.policy.session_idle:
            # Refused without a write; housekeeping ends idle sessions for the record.
            raise SessionExpired("the courier session timed out; log in again")
        couriers.touch_session(conn, session.id, now)
    return Courier(session_id=session.id, carrier_id=session.carrier_id)


def logout(ports: Ports, courier: Courier) -> None:
    now = ports.now()
    with ports.unit_of_work() as conn:
        session = couriers.get_session(conn, courier.session_id)
        couriers.end_session(conn, courier.session_id, now)
        append_audit(conn, at=now, actor=courier.actor, action="courier_logout")
        if session is not None and session.ended_at is None:
            report_session(conn, ports, session, now, ended_by="logout", now=now)


def end_idle_sessions(conn: Connection, ports: Ports, now: datetime) -> None:
    for session in couriers.idle_sessions(conn, now - ports.policy.session_idle):
        couriers.end_session(conn, session.id, now)
        # The session's activity ended when it was last used, not at this pass.
        report_session(conn, ports, session, session.last_seen_at, ended_by="idle", now=now)


def report_session(
    conn: Connection,
    ports: Ports,
    session: couriers.CourierSession,
    ended_at: datetime,
    *,
    ended_by: Literal["logout", "idle"],
    now: datetime,
) -> None:
    """A usage event for central's analytics: counts and durations only, never a token."""
    event = KioskSession(
        carrier_id=session.carrier_id,
        started_at=session.created_at,
        duration_s=max(0, int((ended_at - session.created_at).total_seconds())),
        deposits=couriers.count_session_deposits(conn, session.id),
        ended_by=ended_by,
    )
    record(conn, event, at=now, bank_id=ports.policy.bank_id)
