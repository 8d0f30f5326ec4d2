"""The kiosk's flows: courier deposits and returns, recipient pickups, and settling after a crash.

The service holds no HTTP and no SQL of its own: it drives the door controller and runs each
state change as one store transaction. A door is never opened inside a transaction, and the
business side of every opening (`door_operations`) is committed before the lock fires, so that
after a crash the command journal's outcome tells how to settle it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from locker_node.domain import inputs
from locker_node.domain.allocation import Candidate, choose_compartment, choose_larger
from locker_node.domain.codes import (
    IssuedPickupCode,
    generate_session_token,
    is_well_formed_code,
    is_well_formed_token,
    issue_pickup_code,
)
from locker_node.domain.crashpoints import NO_CRASHES, CrashPoints
from locker_node.domain.credentials import verify_courier_code
from locker_node.domain.doors import (
    CommandOutcome,
    CompartmentUnavailable,
    DoorController,
    DoorOpened,
    UnknownCompartment,
    UnlockOutcome,
)
from locker_node.domain.lifecycle import (
    CodeStatus,
    DepositStatus,
    EventType,
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.domain.lockout import LockoutPolicy, judge_failure
from locker_node.hardware.board import DoorState
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.journal import SqliteCommandJournal
from locker_node.store.keys import NodeKeys

logger = logging.getLogger(__name__)

RECIPIENT = "recipient"
SYSTEM = "system"


# Errors: expected outcomes, each with an HTTP status and a machine-readable code


class KioskError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class BadInput(KioskError):
    status = 422
    code = "bad_input"


class InvalidCode(KioskError):
    status = 401
    code = "invalid_code"


class InvalidQr(KioskError):
    status = 401
    code = "invalid_qr"


class InvalidCredentials(KioskError):
    status = 401
    code = "invalid_credentials"


class NotLoggedIn(KioskError):
    status = 401
    code = "not_logged_in"


class SessionExpired(KioskError):
    status = 401
    code = "session_expired"


class NotFound(KioskError):
    status = 404
    code = "not_found"


class Conflict(KioskError):
    status = 409
    code = "conflict"


class LockedOut(KioskError):
    status = 429
    code = "locked_out"


class DoorFault(KioskError):
    status = 503
    code = "door_fault"


# Settings and answers


@dataclass(frozen=True)
class KioskPolicy:
    bank_id: str
    kiosk_id: str = "kiosk"
    code_digits: int = 8
    pickup_hold: timedelta = timedelta(hours=72)
    keypad: LockoutPolicy = field(default_factory=LockoutPolicy)
    login: LockoutPolicy = field(default_factory=LockoutPolicy)
    session_idle: timedelta = timedelta(minutes=5)
    allow_upsize: bool = True
    allow_walk_up: bool = False
    deposit_timeout: timedelta = timedelta(minutes=15)
    max_moves: int = 3  # compartments tried after the first one's door fails, per request


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


@dataclass(frozen=True)
class DepositView:
    deposit_id: str
    compartment: str
    size: str
    door: str
    status: str
    moved_from: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConfirmedDeposit:
    deposit_id: str
    parcel_id: str
    compartment: str
    pickup_deadline: datetime


@dataclass(frozen=True)
class PickupResult:
    compartment: str
    door: str = "open"


@dataclass(frozen=True)
class ReturnItem:
    parcel_id: str
    tracking_number: str
    compartment: str
    pickup_deadline: datetime


@dataclass(frozen=True)
class KeypadStatus:
    locked: bool
    retry_after_s: int


class KioskService:
    def __init__(
        self,
        engine: Engine,
        doors: DoorController,
        journal: SqliteCommandJournal,
        keys: NodeKeys,
        policy: KioskPolicy,
        *,
        clock: Callable[[], datetime],
        crash: CrashPoints = NO_CRASHES,
    ) -> None:
        self._engine = engine
        self._doors = doors
        self._journal = journal
        self._keys = keys
        self.policy = policy
        self._now = clock
        self._crash = crash
        # One flow at a time: a bank has one kiosk and one person in front of it, and it keeps
        # every check-then-open (throttle, code, binding) free of interleavings.
        self._flow = threading.RLock()
        # Logins are checked one at a time too, or parallel guesses would all pass the
        # lockout check before any failure was written.
        self._login = threading.Lock()

    @property
    def _pickup_scope(self) -> str:
        return f"pickup:{self.policy.kiosk_id}"

    @property
    def _login_scope(self) -> str:
        return f"courier:{self.policy.kiosk_id}"

    # Recipients

    def keypad_status(self) -> KeypadStatus:
        now = self._now()
        with transaction(self._engine) as conn:
            until = repo.keypad_locked_until(conn, self._pickup_scope)
        retry = _seconds_until(until, now)
        return KeypadStatus(locked=retry > 0, retry_after_s=retry)

    def pickup_with_code(self, code: str) -> PickupResult:
        code = code.strip()
        if not is_well_formed_code(code, self.policy.code_digits):
            raise BadInput(f"a pickup code is {self.policy.code_digits} digits")
        digest = self._keys.pickup_codes.digest(code)
        with self._flow:
            now = self._now()
            with transaction(self._engine) as conn:
                retry = _seconds_until(repo.keypad_locked_until(conn, self._pickup_scope), now)
                if retry > 0:
                    raise LockedOut(
                        "too many wrong codes; the keypad is locked", retry_after_s=retry
                    )
                live = repo.find_live_code(conn, now, code_hash=digest)
                claim = None
                # The failure is counted in this transaction; the refusal is raised after it
                # commits, or the rollback would forget the attempt.
                refusal = self._keypad_failure(conn, now) if live is None else None
                if live is not None:
                    claim = self._claim_pickup(conn, live.parcel_id, "code", now)
            if claim is None:
                assert refusal is not None
                raise refusal
            parcel, command_id = claim
            self._crash.reach("pickup.claimed", parcel.tracking_number)
            return self._open_for_pickup(parcel, command_id, "code")

    def pickup_with_qr(self, token: str) -> PickupResult:
        token = token.strip()
        if not is_well_formed_token(token):
            raise BadInput("not a pickup QR code")
        digest = self._keys.qr_tokens.digest(token)
        with self._flow:
            now = self._now()
            with transaction(self._engine) as conn:
                live = repo.find_live_code(conn, now, qr_hash=digest)
                if live is None:
                    raise InvalidQr("this QR code does not open any compartment")
                parcel, command_id = self._claim_pickup(conn, live.parcel_id, "qr", now)
            self._crash.reach("pickup.claimed", parcel.tracking_number)
            return self._open_for_pickup(parcel, command_id, "qr")

    def _keypad_failure(self, conn: Connection, now: datetime) -> KioskError:
        policy = self.policy.keypad
        since = now - timedelta(seconds=policy.window_s)
        failures = repo.count_keypad_failures(conn, self._pickup_scope, since) + 1
        verdict = judge_failure(policy, failures, now)
        repo.record_keypad_failure(conn, self._pickup_scope, now, verdict.locked_until)
        repo.append_audit(
            conn,
            at=now,
            actor=RECIPIENT,
            action="pickup_code_refused",
            detail={"failures_in_window": failures},
        )
        retry = verdict.retry_after_s(now)
        self._report_code_failure(conn, "pickup", verdict.attempts_left, retry, now)
        if retry:
            return InvalidCode(
                "wrong code; the keypad is now locked",
                attempts_left=0,
                retry_after_s=retry,
            )
        return InvalidCode("wrong code", attempts_left=verdict.attempts_left)

    def _claim_pickup(
        self, conn: Connection, parcel_id: str, via: str, now: datetime
    ) -> tuple[repo.Parcel, str]:
        parcel = repo.get_parcel(conn, parcel_id)
        assert parcel is not None and parcel.status == ParcelStatus.IN_LOCKER
        command_id = self._plan_open(
            conn,
            Purpose.PICKUP,
            parcel.compartment,
            actor=RECIPIENT,
            reason=f"pickup by {via}",
            now=now,
            parcel_id=parcel.id,
            via=via,
        )
        return parcel, command_id

    def _open_for_pickup(self, parcel: repo.Parcel, command_id: str, via: str) -> PickupResult:
        label = parcel.compartment
        # A compartment marked faulty still holds the parcel: trying its door again is
        # harmless, and the only way the recipient gets the parcel without an operator.
        subject = parcel.tracking_number
        outcome = self._fire(
            label, command_id, f"pickup {subject} parcel {parcel.id}", allow_out_of_service=True
        )
        if isinstance(outcome, DoorOpened):
            self._crash.reach("pickup.door_opened", subject)
            now = self._now()
            with transaction(self._engine) as conn:
                self._complete_pickup(conn, parcel.id, command_id, via, now, reason="door opened")
                self._crash.reach("pickup.before_commit", subject)
            self._crash.reach("pickup.done", subject)
            logger.info("pickup: compartment %s opened (parcel %s)", label, parcel.id)
            return PickupResult(compartment=label)
        what = "not fired (unknown compartment)" if outcome is None else type(outcome).__name__
        now = self._now()
        with transaction(self._engine) as conn:
            repo.finish_operation(conn, command_id, OperationResult.NOT_OPENED, now)
            repo.append_audit(
                conn,
                at=now,
                actor=RECIPIENT,
                action="pickup_door_fault",
                compartment=label,
                command_id=command_id,
                parcel_id=parcel.id,
                reason=what,
            )
        logger.warning("pickup: compartment %s did not open (%s)", label, what)
        raise DoorFault(f"door {label} did not open; the code stays valid", compartment=label)

    def _complete_pickup(
        self,
        conn: Connection,
        parcel_id: str,
        command_id: str,
        via: str | None,
        now: datetime,
        *,
        reason: str,
    ) -> None:
        repo.finish_operation(conn, command_id, OperationResult.OPENED, now)
        parcel = repo.get_parcel(conn, parcel_id)
        assert parcel is not None
        if parcel.status != ParcelStatus.IN_LOCKER:
            return
        repo.kill_pickup_code(conn, parcel.id, CodeStatus.USED, now)
        repo.set_parcel_status(
            conn, parcel.id, ParcelStatus.PICKED_UP, expect=ParcelStatus.IN_LOCKER, now=now
        )
        repo.set_occupancy(conn, parcel.compartment, Occupancy.FREE, now, expect=Occupancy.OCCUPIED)
        repo.update_reservation(
            conn, parcel.reservation_id, now, status=ReservationStatus.PICKED_UP
        )
        repo.append_audit(
            conn,
            at=now,
            actor=RECIPIENT,
            action="picked_up",
            compartment=parcel.compartment,
            command_id=command_id,
            parcel_id=parcel.id,
            reason=reason,
        )
        repo.append_event(
            conn,
            EventType.PARCEL_PICKED_UP,
            {
                "reservation_id": parcel.reservation_id,
                "parcel_id": parcel.id,
                "carrier_id": parcel.carrier_id,
                "tracking_number": parcel.tracking_number,
                "compartment": parcel.compartment,
                "picked_up_at": now.isoformat(),
                "via": via,
            },
            bank_id=self.policy.bank_id,
            now=now,
        )

    # Couriers: sessions

    def carriers(self) -> list[str]:
        with transaction(self._engine) as conn:
            return repo.carriers_with_credentials(conn, self._now())

    def login(self, carrier: str, pin: str) -> LoginResult:
        carrier_id = inputs.normalise_carrier(carrier)
        if carrier_id is None:
            raise BadInput("not a carrier")
        pin = pin.strip()
        if not inputs.is_well_formed_pin(pin):
            raise BadInput("the courier code is 4-12 digits")
        with self._login:
            now = self._now()
            with transaction(self._engine) as conn:
                retry = _seconds_until(repo.keypad_locked_until(conn, self._login_scope), now)
                if retry > 0:
                    raise LockedOut("too many wrong courier codes", retry_after_s=retry)
                hashes = repo.valid_credential_hashes(conn, carrier_id, now)
            # scrypt takes tens of milliseconds: outside the transaction, inside the login lock.
            accepted = any(verify_courier_code(code_hash, pin) for code_hash in hashes)
            now = self._now()
            if not accepted:
                with transaction(self._engine) as conn:
                    policy = self.policy.login
                    since = now - timedelta(seconds=policy.window_s)
                    failures = repo.count_keypad_failures(conn, self._login_scope, since) + 1
                    verdict = judge_failure(policy, failures, now)
                    repo.record_keypad_failure(conn, self._login_scope, now, verdict.locked_until)
                    repo.append_audit(
                        conn, at=now, actor=f"courier:{carrier_id}", action="courier_login_refused"
                    )
                    retry = verdict.retry_after_s(now)
                    self._report_code_failure(
                        conn, "courier_login", verdict.attempts_left, retry, now
                    )
                extra: dict[str, Any] = {"retry_after_s": retry} if retry else {}
                raise InvalidCredentials(
                    "wrong carrier or courier code", attempts_left=verdict.attempts_left, **extra
                )
            token = generate_session_token()
            session = repo.CourierSession(
                id=repo.new_id(),
                token_hash=self._keys.session_tokens.digest(token),
                carrier_id=carrier_id,
                created_at=now,
                last_seen_at=now,
                ended_at=None,
            )
            with transaction(self._engine) as conn:
                repo.insert_session(conn, session)
                repo.append_audit(
                    conn,
                    at=now,
                    actor=Courier(session.id, carrier_id).actor,
                    action="courier_login",
                )
        return LoginResult(
            token=token,
            carrier=carrier_id,
            expires_in_s=int(self.policy.session_idle.total_seconds()),
        )

    def authenticate(self, token: str | None) -> Courier:
        if not token:
            raise NotLoggedIn("log in as a courier first")
        if len(token) > 128:
            raise NotLoggedIn("not a courier session")
        now = self._now()
        with transaction(self._engine) as conn:
            session = repo.find_session(conn, self._keys.session_tokens.digest(token))
            if session is None:
                raise NotLoggedIn("not a courier session")
            if session.ended_at is not None:
                raise SessionExpired("the courier session has ended; log in again")
            if session.last_seen_at < now - self.policy.session_idle:
                # Refused without a write; housekeeping ends idle sessions for the record.
                raise SessionExpired("the courier session timed out; log in again")
            repo.touch_session(conn, session.id, now)
        return Courier(session_id=session.id, carrier_id=session.carrier_id)

    def logout(self, courier: Courier) -> None:
        now = self._now()
        with transaction(self._engine) as conn:
            session = repo.get_session(conn, courier.session_id)
            repo.end_session(conn, courier.session_id, now)
            repo.append_audit(conn, at=now, actor=courier.actor, action="courier_logout")
            if session is not None and session.ended_at is None:
                self._report_session(conn, session, now, ended_by="logout", now=now)

    # Usage events for central's analytics: counts and durations only, never a code or a token.

    def _report_code_failure(
        self, conn: Connection, kind: str, attempts_left: int, retry_after_s: int, now: datetime
    ) -> None:
        bank = self.policy.bank_id
        repo.append_event(
            conn,
            "kiosk.code_failed",
            {"kind": kind, "attempts_left": max(0, attempts_left)},
            bank_id=bank,
            now=now,
        )
        if retry_after_s:
            repo.append_event(
                conn,
                "kiosk.locked_out",
                {"kind": kind, "retry_after_s": retry_after_s},
                bank_id=bank,
                now=now,
            )

    def _report_session(
        self,
        conn: Connection,
        session: repo.CourierSession,
        ended_at: datetime,
        *,
        ended_by: str,
        now: datetime,
    ) -> None:
        repo.append_event(
            conn,
            "kiosk.session",
            {
                "carrier_id": session.carrier_id,
                "started_at": session.created_at.isoformat(),
                "duration_s": max(0, int((ended_at - session.created_at).total_seconds())),
                "deposits": repo.count_session_deposits(conn, session.id),
                "ended_by": ended_by,
            },
            bank_id=self.policy.bank_id,
            now=now,
        )

    # Couriers: deposits

    def start_deposit(
        self, courier: Courier, tracking_number: str, size: str | None = None
    ) -> DepositView:
        tracking = inputs.normalise_tracking_number(tracking_number)
        if tracking is None:
            raise BadInput("not a tracking number (4-40 letters and digits)")
        if size is not None and not inputs.is_size_class(size):
            raise BadInput("size must be S, M, L or XL")
        with self._flow:
            now = self._now()
            with transaction(self._engine) as conn:
                reservation = self._deposit_reservation(conn, courier, tracking, size, now)
                deposit = repo.active_deposit(conn, reservation.id)
                if deposit is not None:
                    # The same parcel scanned again (the first answer was lost, or the node
                    # restarted): open the compartment it is already bound to.
                    repo.update_deposit(
                        conn,
                        deposit.id,
                        now,
                        status=DepositStatus.OPENING,
                        session_id=courier.session_id,
                    )
                    label = deposit.compartment
                    deposit_id = deposit.id
                else:
                    candidate = choose_compartment(
                        repo.free_candidates(conn),
                        reservation.size,
                        allow_upsize=self.policy.allow_upsize,
                    )
                    if candidate is None:
                        raise Conflict(
                            f"no free compartment of size {reservation.size}", code="no_capacity"
                        )
                    deposit_id = repo.new_id()
                    label = candidate.label
                    repo.set_occupancy(conn, label, Occupancy.BOUND, now, expect=Occupancy.FREE)
                    repo.insert_deposit(
                        conn,
                        repo.Deposit(
                            id=deposit_id,
                            reservation_id=reservation.id,
                            carrier_id=courier.carrier_id,
                            session_id=courier.session_id,
                            compartment=label,
                            status=DepositStatus.OPENING,
                            created_at=now,
                            updated_at=now,
                        ),
                    )
                command_id = self._plan_open(
                    conn,
                    Purpose.DEPOSIT,
                    label,
                    actor=courier.actor,
                    reason=f"deposit {tracking}",
                    now=now,
                    deposit_id=deposit_id,
                )
            self._crash.reach("deposit.bound", tracking)
            return self._open_for_deposit(courier, deposit_id, label, command_id, tracking)

    def _deposit_reservation(
        self, conn: Connection, courier: Courier, tracking: str, size: str | None, now: datetime
    ) -> repo.Reservation:
        reservation = repo.find_reservation(conn, courier.carrier_id, tracking)
        if reservation is None:
            if not self.policy.allow_walk_up:
                raise NotFound("no reservation for this parcel at this bank", code="no_reservation")
            if size is None:
                raise BadInput("a parcel without a reservation needs a size", code="size_required")
            if not self._walk_up_capacity(conn, size, now):
                raise Conflict(f"no free compartment of size {size}", code="no_capacity")
            reservation = repo.Reservation(
                # 31 characters: the wire allows reservation ids of up to 32.
                id=f"walkup-{repo.new_id()[:24]}",
                carrier_id=courier.carrier_id,
                tracking_number=tracking,
                size=size,
                reserved_until=now + self.policy.deposit_timeout,
                status=ReservationStatus.RESERVED,
                walk_up=True,
                pickup_deadline=None,
                created_at=now,
                updated_at=now,
            )
            repo.insert_reservation(conn, reservation)
            repo.append_audit(
                conn,
                at=now,
                actor=courier.actor,
                action="walk_up_accepted",
                detail={"reservation_id": reservation.id, "size": size},
            )
            return reservation
        if reservation.status == ReservationStatus.CANCELLED:
            raise Conflict("the reservation was cancelled", code="reservation_cancelled")
        if reservation.status != ReservationStatus.RESERVED:
            raise Conflict("this parcel is already in the locker", code="already_deposited")
        if reservation.reserved_until <= now and repo.active_deposit(conn, reservation.id) is None:
            raise Conflict("the reservation has expired", code="reservation_expired")
        return reservation

    def _walk_up_capacity(self, conn: Connection, size: str, now: datetime) -> bool:
        """Free compartments of the class beyond those that live reservations still need."""
        free = sum(1 for c in repo.free_candidates(conn) if c.size == size)
        return free > repo.count_waiting_reservations(conn, size, now)

    def _open_for_deposit(
        self, courier: Courier, deposit_id: str, label: str, command_id: str, tracking: str
    ) -> DepositView:
        """Open the bound compartment; when its door fails, move to another one and try that."""
        moved_from: list[str] = []
        while True:
            outcome = self._fire(label, command_id, f"deposit {tracking} deposit {deposit_id}")
            if isinstance(outcome, DoorOpened):
                self._crash.reach("deposit.door_opened", tracking)
                now = self._now()
                with transaction(self._engine) as conn:
                    repo.finish_operation(conn, command_id, OperationResult.OPENED, now)
                    repo.update_deposit(conn, deposit_id, now, status=DepositStatus.OPEN)
                    size = _size_of(conn, label)
                self._crash.reach("deposit.opened_recorded", tracking)
                return DepositView(
                    deposit_id=deposit_id,
                    compartment=label,
                    size=size,
                    door="open",
                    status=DepositStatus.OPEN,
                    moved_from=moved_from,
                )
            if outcome is not None:
                self._take_out_of_service(label, outcome)
            moved_from.append(label)
            now = self._now()
            with transaction(self._engine) as conn:
                repo.finish_operation(conn, command_id, OperationResult.NOT_OPENED, now)
                moved = self._move_deposit(
                    conn,
                    courier,
                    deposit_id,
                    label,
                    now,
                    reason=f"door {label} did not open",
                    give_up=len(moved_from) > self.policy.max_moves,
                )
            if moved is None:
                raise DoorFault(
                    f"door {label} did not open and no other compartment is free",
                    compartment=label,
                    moved_from=moved_from,
                )
            label, command_id = moved

    def _take_out_of_service(self, label: str, outcome: UnlockOutcome) -> None:
        # A jam already took the compartment out of service inside the controller; an unknown
        # outcome did not, but nobody should be sent to that door before someone looks at it.
        if self._doors.status(label).in_service:
            self._doors.mark_out_of_service(
                label, f"door did not open ({type(outcome).__name__}); inspect"
            )

    def _move_deposit(
        self,
        conn: Connection,
        courier: Courier,
        deposit_id: str,
        old_label: str,
        now: datetime,
        *,
        reason: str,
        give_up: bool = False,
        larger: bool = False,
    ) -> tuple[str, str] | None:
        """Rebind a deposit from `old_label` to another compartment, planning its opening;
        None (and the deposit cancelled) when there is none."""
        old = repo.get_compartment(conn, old_label)
        assert old is not None
        free = [c for c in repo.free_candidates(conn) if c.label != old_label]
        candidate: Candidate | None
        if give_up:
            candidate = None
        elif larger:
            candidate = choose_larger(free, old.size)
        else:
            candidate = choose_compartment(free, old.size, allow_upsize=self.policy.allow_upsize)
        if candidate is None and larger:
            return None
        repo.set_occupancy(conn, old_label, Occupancy.FREE, now, expect=Occupancy.BOUND)
        if candidate is None:
            repo.update_deposit(conn, deposit_id, now, status=DepositStatus.CANCELLED)
            repo.append_audit(
                conn,
                at=now,
                actor=courier.actor,
                action="deposit_cancelled",
                compartment=old_label,
                reason=reason + "; no other compartment",
            )
            return None
        repo.set_occupancy(conn, candidate.label, Occupancy.BOUND, now, expect=Occupancy.FREE)
        repo.update_deposit(
            conn, deposit_id, now, compartment=candidate.label, status=DepositStatus.OPENING
        )
        repo.append_audit(
            conn,
            at=now,
            actor=courier.actor,
            action="deposit_moved",
            compartment=candidate.label,
            reason=reason,
            detail={"from": old_label},
        )
        command_id = self._plan_open(
            conn,
            Purpose.DEPOSIT,
            candidate.label,
            actor=courier.actor,
            reason=reason,
            now=now,
            deposit_id=deposit_id,
        )
        return candidate.label, command_id

    def too_small(self, courier: Courier, deposit_id: str) -> DepositView:
        with self._flow:
            now = self._now()
            with transaction(self._engine) as conn:
                deposit = self._own_active_deposit(conn, courier, deposit_id)
                moved = self._move_deposit(
                    conn,
                    courier,
                    deposit.id,
                    deposit.compartment,
                    now,
                    reason=f"parcel too small for {deposit.compartment}",
                    larger=True,
                )
                if moved is None:
                    raise Conflict(
                        "no larger compartment is free",
                        code="no_larger_compartment",
                        compartment=deposit.compartment,
                    )
            tracking = self._tracking_of(deposit)
            self._crash.reach("deposit.too_small_bound", tracking)
            label, command_id = moved
            view = self._open_for_deposit(courier, deposit.id, label, command_id, tracking)
            return DepositView(
                deposit_id=view.deposit_id,
                compartment=view.compartment,
                size=view.size,
                door=view.door,
                status=view.status,
                moved_from=[deposit.compartment, *view.moved_from],
            )

    def report_door_problem(self, courier: Courier, deposit_id: str) -> DepositView:
        """The courier says the door did not open although the sensor read it open."""
        with self._flow:
            with transaction(self._engine) as conn:
                deposit = self._own_active_deposit(conn, courier, deposit_id)
            label = deposit.compartment
            self._doors.mark_out_of_service(label, "courier reported the door did not open")
            now = self._now()
            with transaction(self._engine) as conn:
                moved = self._move_deposit(
                    conn,
                    courier,
                    deposit.id,
                    label,
                    now,
                    reason=f"courier reported door {label} did not open",
                )
            if moved is None:
                raise DoorFault(
                    f"door {label} did not open and no other compartment is free",
                    compartment=label,
                    moved_from=[label],
                )
            view = self._open_for_deposit(courier, deposit.id, *moved, self._tracking_of(deposit))
            return DepositView(
                deposit_id=view.deposit_id,
                compartment=view.compartment,
                size=view.size,
                door=view.door,
                status=view.status,
                moved_from=[label, *view.moved_from],
            )

    def confirm_deposit(self, courier: Courier, deposit_id: str) -> ConfirmedDeposit:
        with self._flow:
            with transaction(self._engine) as conn:
                deposit = self._own_deposit(conn, courier, deposit_id)
                if deposit.status == DepositStatus.CONFIRMED:
                    parcel = repo.parcel_for_deposit(conn, deposit.id)
                    assert parcel is not None
                    return ConfirmedDeposit(
                        deposit_id=deposit.id,
                        parcel_id=parcel.id,
                        compartment=parcel.compartment,
                        pickup_deadline=parcel.pickup_deadline,
                    )
                self._require_active(deposit)
                if deposit.status == DepositStatus.OPENING:
                    raise Conflict(
                        "the door was never seen open; scan the parcel again",
                        code="door_not_opened",
                        compartment=deposit.compartment,
                    )
            self._require_closed(deposit.compartment)
            now = self._now()
            with transaction(self._engine) as conn:
                current = repo.get_deposit(conn, deposit.id)
                assert current is not None and current.status == DepositStatus.OPEN
                issued = issue_pickup_code(
                    self._keys.pickup_codes,
                    self._keys.qr_tokens,
                    digits=self.policy.code_digits,
                    in_use=lambda digest: repo.code_hash_in_use(conn, digest),
                )
                parcel = self._store_parcel(conn, courier, current, issued, now)
                self._crash.reach("deposit.confirm_before_commit", parcel.tracking_number)
            self._crash.reach("deposit.confirmed", parcel.tracking_number)
            logger.info("deposit: parcel %s in compartment %s", parcel.id, parcel.compartment)
            return ConfirmedDeposit(
                deposit_id=deposit.id,
                parcel_id=parcel.id,
                compartment=parcel.compartment,
                pickup_deadline=parcel.pickup_deadline,
            )

    def _store_parcel(
        self,
        conn: Connection,
        courier: Courier,
        deposit: repo.Deposit,
        issued: IssuedPickupCode,
        now: datetime,
    ) -> repo.Parcel:
        reservation = repo.get_reservation(conn, deposit.reservation_id)
        assert reservation is not None
        deadline = now + self.policy.pickup_hold
        parcel = repo.Parcel(
            id=repo.new_id(),
            reservation_id=reservation.id,
            deposit_id=deposit.id,
            carrier_id=reservation.carrier_id,
            tracking_number=reservation.tracking_number,
            compartment=deposit.compartment,
            status=ParcelStatus.IN_LOCKER,
            deposited_at=now,
            pickup_deadline=deadline,
            finished_at=None,
        )
        repo.insert_parcel(conn, parcel)
        repo.insert_pickup_code(conn, repo.active_pickup_code(parcel.id, issued, deadline, now))
        repo.set_occupancy(
            conn, deposit.compartment, Occupancy.OCCUPIED, now, expect=Occupancy.BOUND
        )
        repo.update_deposit(conn, deposit.id, now, status=DepositStatus.CONFIRMED)
        repo.update_reservation(
            conn, reservation.id, now, status=ReservationStatus.DEPOSITED, pickup_deadline=deadline
        )
        repo.append_audit(
            conn,
            at=now,
            actor=courier.actor,
            action="deposited",
            compartment=parcel.compartment,
            parcel_id=parcel.id,
        )
        size = _size_of(conn, parcel.compartment)
        repo.append_event(
            conn,
            EventType.PARCEL_DEPOSITED,
            {
                "reservation_id": reservation.id,
                "parcel_id": parcel.id,
                "carrier_id": reservation.carrier_id,
                "tracking_number": reservation.tracking_number,
                "walk_up": reservation.walk_up,
                "reserved_size": reservation.size,
                "compartment": parcel.compartment,
                "compartment_size": size,
                "deposited_at": now.isoformat(),
                "pickup_deadline": deadline.isoformat(),
                # Sealed under a node key at rest; sync re-seals them to central's key on delivery.
                "sealed_pickup_code": self._keys.seal(issued.code),
                "sealed_qr_payload": self._keys.seal(issued.qr_token),
            },
            bank_id=self.policy.bank_id,
            now=now,
        )
        return parcel

    def cancel_deposit(self, courier: Courier, deposit_id: str) -> None:
        with self._flow:
            with transaction(self._engine) as conn:
                deposit = self._own_active_deposit(conn, courier, deposit_id)
            if deposit.status == DepositStatus.OPEN:
                self._require_closed(deposit.compartment)
            now = self._now()
            with transaction(self._engine) as conn:
                current = self._own_active_deposit(conn, courier, deposit_id)
                repo.set_occupancy(
                    conn, current.compartment, Occupancy.FREE, now, expect=Occupancy.BOUND
                )
                repo.update_deposit(conn, current.id, now, status=DepositStatus.CANCELLED)
                repo.append_audit(
                    conn,
                    at=now,
                    actor=courier.actor,
                    action="deposit_cancelled",
                    compartment=current.compartment,
                    reason="by the courier",
                )

    def _tracking_of(self, deposit: repo.Deposit) -> str:
        with transaction(self._engine) as conn:
            reservation = repo.get_reservation(conn, deposit.reservation_id)
        assert reservation is not None
        return reservation.tracking_number

    def _own_deposit(self, conn: Connection, courier: Courier, deposit_id: str) -> repo.Deposit:
        if not inputs.is_node_id(deposit_id):
            raise BadInput("not a deposit id")
        deposit = repo.get_deposit(conn, deposit_id)
        if deposit is None or deposit.carrier_id != courier.carrier_id:
            raise NotFound("no such deposit", code="unknown_deposit")
        return deposit

    def _own_active_deposit(
        self, conn: Connection, courier: Courier, deposit_id: str
    ) -> repo.Deposit:
        deposit = self._own_deposit(conn, courier, deposit_id)
        self._require_active(deposit)
        return deposit

    @staticmethod
    def _require_active(deposit: repo.Deposit) -> None:
        if not DepositStatus(deposit.status).active:
            raise Conflict(f"the deposit is {deposit.status}", code="deposit_closed")

    def _require_closed(self, label: str) -> None:
        """Read the doors now: a confirmation stands on what the sensor says at this moment."""
        self._doors.poll()
        door = self._doors.status(label).door
        if door is DoorState.OPEN:
            raise Conflict(f"close door {label} first", code="door_open", compartment=label)
        if door is None:
            raise DoorFault(f"door {label} cannot be read", compartment=label)

    # Couriers: returns

    def list_returns(self, courier: Courier) -> list[ReturnItem]:
        with self._flow:
            self.expire_due()
            with transaction(self._engine) as conn:
                rows = repo.parcels_to_return(conn, courier.carrier_id)
        return [
            ReturnItem(
                parcel_id=p.id,
                tracking_number=p.tracking_number,
                compartment=p.compartment,
                pickup_deadline=p.pickup_deadline,
            )
            for p in rows
        ]

    def open_return(self, courier: Courier, parcel_id: str) -> PickupResult:
        with self._flow:
            now = self._now()
            with transaction(self._engine) as conn:
                parcel = self._own_return(conn, courier, parcel_id)
                command_id = self._plan_open(
                    conn,
                    Purpose.RETURN,
                    parcel.compartment,
                    actor=courier.actor,
                    reason=f"return {parcel.tracking_number}",
                    now=now,
                    parcel_id=parcel.id,
                )
            self._crash.reach("return.claimed", parcel.tracking_number)
            outcome = self._fire(
                parcel.compartment, command_id, f"return {parcel.id}", allow_out_of_service=True
            )
            now = self._now()
            opened = isinstance(outcome, DoorOpened)
            with transaction(self._engine) as conn:
                repo.finish_operation(
                    conn,
                    command_id,
                    OperationResult.OPENED if opened else OperationResult.NOT_OPENED,
                    now,
                )
            if not opened:
                raise DoorFault(
                    f"door {parcel.compartment} did not open", compartment=parcel.compartment
                )
            return PickupResult(compartment=parcel.compartment)

    def confirm_return(self, courier: Courier, parcel_id: str) -> PickupResult:
        with self._flow:
            with transaction(self._engine) as conn:
                if not inputs.is_node_id(parcel_id):
                    raise BadInput("not a parcel id")
                parcel = repo.get_parcel(conn, parcel_id)
                if parcel is None or parcel.carrier_id != courier.carrier_id:
                    raise NotFound("no such parcel to return", code="unknown_parcel")
                if parcel.status == ParcelStatus.RETURNED:
                    return PickupResult(compartment=parcel.compartment, door="closed")
                parcel = self._own_return(conn, courier, parcel_id)
                if repo.last_opened_operation(conn, Purpose.RETURN, parcel_id=parcel.id) is None:
                    raise Conflict(
                        "open the compartment first",
                        code="door_not_opened",
                        compartment=parcel.compartment,
                    )
            self._require_closed(parcel.compartment)
            now = self._now()
            with transaction(self._engine) as conn:
                repo.set_parcel_status(
                    conn, parcel.id, ParcelStatus.RETURNED, expect=ParcelStatus.EXPIRED, now=now
                )
                repo.set_occupancy(
                    conn, parcel.compartment, Occupancy.FREE, now, expect=Occupancy.OCCUPIED
                )
                repo.update_reservation(
                    conn, parcel.reservation_id, now, status=ReservationStatus.RETURNED
                )
                repo.append_audit(
                    conn,
                    at=now,
                    actor=courier.actor,
                    action="returned",
                    compartment=parcel.compartment,
                    parcel_id=parcel.id,
                )
                repo.append_event(
                    conn,
                    EventType.PARCEL_RETURNED,
                    {
                        "reservation_id": parcel.reservation_id,
                        "parcel_id": parcel.id,
                        "carrier_id": parcel.carrier_id,
                        "tracking_number": parcel.tracking_number,
                        "compartment": parcel.compartment,
                        "returned_at": now.isoformat(),
                    },
                    bank_id=self.policy.bank_id,
                    now=now,
                )
            return PickupResult(compartment=parcel.compartment, door="closed")

    def _own_return(self, conn: Connection, courier: Courier, parcel_id: str) -> repo.Parcel:
        if not inputs.is_node_id(parcel_id):
            raise BadInput("not a parcel id")
        parcel = repo.get_parcel(conn, parcel_id)
        if parcel is None or parcel.carrier_id != courier.carrier_id:
            raise NotFound("no such parcel to return", code="unknown_parcel")
        if parcel.status != ParcelStatus.EXPIRED:
            raise Conflict("this parcel is not waiting for a return", code="not_returnable")
        return parcel

    # Doors

    def _plan_open(
        self,
        conn: Connection,
        purpose: Purpose,
        label: str,
        *,
        actor: str,
        reason: str,
        now: datetime,
        deposit_id: str | None = None,
        parcel_id: str | None = None,
        via: str | None = None,
    ) -> str:
        """Write down who opens which door and why, in the caller's transaction."""
        command_id = repo.new_id()
        repo.insert_operation(
            conn,
            repo.DoorOperation(
                command_id=command_id,
                purpose=purpose,
                compartment=label,
                actor=actor,
                deposit_id=deposit_id,
                parcel_id=parcel_id,
                via=via,
                started_at=now,
                result=None,
                finished_at=None,
            ),
        )
        repo.append_audit(
            conn,
            at=now,
            actor=actor,
            action="door_open",
            compartment=label,
            reason=reason,
            command_id=command_id,
            parcel_id=parcel_id,
            detail={"purpose": str(purpose), **({"deposit_id": deposit_id} if deposit_id else {})},
        )
        return command_id

    def _fire(
        self, label: str, command_id: str, reason: str, *, allow_out_of_service: bool = False
    ) -> UnlockOutcome | None:
        """Open a door; None if the controller refused to (unknown or out-of-service label)."""
        try:
            return self._doors.open_door(
                label,
                reason=reason,
                command_id=command_id,
                allow_out_of_service=allow_out_of_service,
            )
        except (CompartmentUnavailable, UnknownCompartment) as exc:
            logger.warning("door %s not opened: %s", label, exc)
            return None

    # Start-up and housekeeping

    def recover(self) -> int:
        """Settle door operations a crash left open, from the journal and the doors as read at
        start; call after `DoorController.start()`. Returns how many were settled."""
        with transaction(self._engine) as conn:
            pending = repo.unfinished_operations(conn)
        for operation in pending:
            outcome = self._journal.outcome(operation.command_id)
            try:
                door = self._doors.status(operation.compartment).door
            except UnknownCompartment:
                door = None
            opened = outcome is CommandOutcome.OPENED or (
                outcome is CommandOutcome.UNKNOWN and door is DoorState.OPEN
            )
            self._settle(operation, outcome, opened)
        return len(pending)

    def _settle(
        self, operation: repo.DoorOperation, outcome: CommandOutcome | None, opened: bool
    ) -> None:
        label = operation.compartment
        reason = f"settled after a restart (unlock {outcome or 'never sent'})"
        if operation.purpose == Purpose.DEPOSIT and not opened and outcome is not None:
            # Jammed, or fired with nobody left to see it: keep couriers away until inspected.
            try:
                if self._doors.status(label).in_service:
                    self._doors.mark_out_of_service(label, f"deposit interrupted: {reason}")
            except UnknownCompartment:
                pass
        now = self._now()
        with transaction(self._engine) as conn:
            if operation.purpose == Purpose.PICKUP and operation.parcel_id is not None:
                if opened:
                    self._complete_pickup(
                        conn,
                        operation.parcel_id,
                        operation.command_id,
                        operation.via,
                        now,
                        reason=reason,
                    )
                else:
                    repo.finish_operation(
                        conn, operation.command_id, OperationResult.NOT_OPENED, now
                    )
            elif operation.purpose == Purpose.DEPOSIT and operation.deposit_id is not None:
                deposit = repo.get_deposit(conn, operation.deposit_id)
                assert deposit is not None
                result = OperationResult.OPENED if opened else OperationResult.NOT_OPENED
                repo.finish_operation(conn, operation.command_id, result, now)
                if deposit.status == DepositStatus.OPENING and deposit.compartment == label:
                    if opened:
                        repo.update_deposit(conn, deposit.id, now, status=DepositStatus.OPEN)
                    else:
                        repo.set_occupancy(conn, label, Occupancy.FREE, now, expect=Occupancy.BOUND)
                        repo.update_deposit(conn, deposit.id, now, status=DepositStatus.CANCELLED)
            else:
                result = OperationResult.OPENED if opened else OperationResult.NOT_OPENED
                repo.finish_operation(conn, operation.command_id, result, now)
            repo.append_audit(
                conn,
                at=now,
                actor=SYSTEM,
                action="operation_settled",
                compartment=label,
                command_id=operation.command_id,
                parcel_id=operation.parcel_id,
                reason=reason,
                detail={"purpose": operation.purpose, "opened": opened},
            )
        self._crash.reach("recover.settled", operation.command_id)

    def expire_due(self) -> int:
        """Parcels past their pickup deadline: codes die, the carrier is to take them back."""
        now = self._now()
        with transaction(self._engine) as conn:
            due = repo.parcels_past_deadline(conn, now)
            for parcel in due:
                repo.kill_pickup_code(conn, parcel.id, CodeStatus.EXPIRED, now)
                repo.set_parcel_status(
                    conn, parcel.id, ParcelStatus.EXPIRED, expect=ParcelStatus.IN_LOCKER, now=now
                )
                repo.update_reservation(
                    conn, parcel.reservation_id, now, status=ReservationStatus.EXPIRED
                )
                repo.append_audit(
                    conn,
                    at=now,
                    actor=SYSTEM,
                    action="parcel_expired",
                    compartment=parcel.compartment,
                    parcel_id=parcel.id,
                )
                repo.append_event(
                    conn,
                    EventType.PARCEL_EXPIRED,
                    {
                        "reservation_id": parcel.reservation_id,
                        "parcel_id": parcel.id,
                        "carrier_id": parcel.carrier_id,
                        "tracking_number": parcel.tracking_number,
                        "compartment": parcel.compartment,
                        "expired_at": now.isoformat(),
                    },
                    bank_id=self.policy.bank_id,
                    now=now,
                )
        return len(due)

    def housekeeping(self) -> None:
        """Periodic upkeep: expiries, idle sessions, deposits nobody confirmed, old rows."""
        with self._flow:
            self.expire_due()
            now = self._now()
            with transaction(self._engine) as conn:
                for session in repo.idle_sessions(conn, now - self.policy.session_idle):
                    repo.end_session(conn, session.id, now)
                    # The session's activity ended when it was last used, not at this pass.
                    self._report_session(
                        conn, session, session.last_seen_at, ended_by="idle", now=now
                    )
                stale = repo.stale_deposits(conn, now - self.policy.deposit_timeout)
                window = max(self.policy.keypad.window_s, self.policy.login.window_s)
                repo.prune_keypad_failures(conn, now - timedelta(seconds=2 * window))
                repo.prune_courier_credentials(conn, now - timedelta(days=7))
            for deposit in stale:
                self._abandon(deposit)

    def _abandon(self, deposit: repo.Deposit) -> None:
        label = deposit.compartment
        if deposit.status == DepositStatus.OPEN:
            # The door was opened for a parcel that nobody confirmed: it may be inside.
            self._doors.mark_out_of_service(label, "deposit never confirmed; inspect")
        now = self._now()
        with transaction(self._engine) as conn:
            current = repo.get_deposit(conn, deposit.id)
            if current is None or not DepositStatus(current.status).active:
                return
            repo.set_occupancy(conn, label, Occupancy.FREE, now, expect=Occupancy.BOUND)
            status = (
                DepositStatus.ABANDONED
                if current.status == DepositStatus.OPEN
                else DepositStatus.CANCELLED
            )
            repo.update_deposit(conn, current.id, now, status=status)
            repo.append_audit(
                conn,
                at=now,
                actor=SYSTEM,
                action=f"deposit_{status}",
                compartment=label,
                reason="not confirmed in time",
            )


def _seconds_until(until: datetime | None, now: datetime) -> int:
    if until is None or until <= now:
        return 0
    return max(1, math.ceil((until - now).total_seconds()))


def _size_of(conn: Connection, label: str) -> str:
    compartment = repo.get_compartment(conn, label)
    assert compartment is not None
    return compartment.size
