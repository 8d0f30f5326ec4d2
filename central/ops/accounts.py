"""Operator accounts: argon2id passwords, sign-in with a throttle, sessions and the audit log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from central.config import CentralSettings
from central.keys import ServiceKeys
from central.models import OperatorAccount, OperatorAuditEntry, OperatorLink, OperatorSession
from central.ops import repository as repo

Role = Literal["admin", "viewer"]
ROLES: tuple[str, ...] = get_args(Role)
MIN_PASSWORD_LENGTH = 12
# Long enough for any passphrase, short enough that nobody makes the server hash a megabyte.
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 254
# last_seen_at is written at most this often: dashboards poll every few seconds.
TOUCH_INTERVAL = timedelta(minutes=1)


class AccountError(ValueError):
    """An account request that cannot be carried out (CLI, demo set-up)."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The operator behind a valid session."""

    operator_id: int
    email: str
    role: Role
    session_id: str


# Passwords ----------------------------------------------------------------------------------------


class Passwords:
    """argon2id hashing; an unknown account costs as much to check as a known one."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        # Verified against when the email is unknown, so the answer takes the same time.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    @classmethod
    def from_settings(cls, settings: CentralSettings) -> Passwords:
        return cls(
            time_cost=settings.ops_argon2_time_cost,
            memory_kib=settings.ops_argon2_memory_kib,
            parallelism=settings.ops_argon2_parallelism,
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and (
                password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    local, _, domain = email.partition("@")
    if not local or not domain or len(email) > MAX_EMAIL_LENGTH or any(c.isspace() for c in email):
        raise AccountError(f"{raw!r} is not an email address")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"passwords have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"passwords have at most {MAX_PASSWORD_LENGTH} characters")


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]  # checked against the Literal's values just above


# Accounts -----------------------------------------------------------------------------------------


def add_operator(
    session: Session,
    passwords: Passwords,
    email: str,
    role: str,
    password: str,
    now: datetime,
) -> OperatorAccount:
    address = normalize_email(email)
    checked_role = _check_role(role)
    check_password(password)
    if repo.operator_by_email(session, address) is not None:
        raise AccountError(f"an operator {address} exists already")
    account = OperatorAccount(
        email=address,
        password_hash=passwords.hash(password),
        role=checked_role,
        created_at=now,
    )
    repo.add(session, account)
    session.flush()
    return account


def ensure_operator(
    session: Session,
    email: str,
    role: str,
    password: str,
    *,
    now: datetime,
    passwords: Passwords | None = None,
) -> OperatorAccount:
    """Make sure this operator exists, enabled, with this role and password (demo set-up)."""
    passwords = passwords or Passwords.from_settings(CentralSettings())
    address = normalize_email(email)
    account = repo.operator_by_email(session, address)
    if account is None:
        return add_operator(session, passwords, address, role, password, now)
    check_password(password)
    account.role = _check_role(role)
    account.disabled_at = None
    if not passwords.verify(account.password_hash, password):
        account.password_hash = passwords.hash(password)
    session.flush()
    return account


def disable_operator(session: Session, email: str, now: datetime) -> OperatorAccount:
    account = repo.operator_by_email(session, normalize_email(email))
    if account is None:
        raise AccountError(f"no operator {email}")
    if account.disabled_at is None:
        account.disabled_at = now
    repo.revoke_sessions_of(session, account.id, now)
    session.flush()
    return account


def list_operators(session: Session) -> Sequence[OperatorAccount]:
    return repo.list_operators(session)


# Audit --------------------------------------------------------------------------------------------


def audit(
    session: Session,
    *,
    now: datetime,
    operator_id: int | None,
    action: str,
    outcome: str,
    target_type: str | None = None,
    target_id: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    repo.add(
        session,
        OperatorAuditEntry(
            at=now,
            operator_id=operator_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            reason=reason,
            outcome=outcome,
            detail=detail,
        ),
    )
    session.flush()


# Sign-in ------------------------------------------------------------------------------------------


def throttle_key(email: str, client: str) -> str:
    return hashlib.sha256(f"{email}\x00{client}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoginCandidate:
    """What the first, short transaction of a sign-in learns; the hash is checked outside it."""

    email: str
    key: str
    operator_id: int | None
    password_hash: str | None
    retry_after_s: int | None  # set when the throttle refuses this attempt


def begin_login(
    session: Session, email: str, client: str, now: datetime, settings: CentralSettings
) -> LoginCandidate:
    try:
        address = normalize_email(email)
    except AccountError:
        address = email.strip().lower()[:MAX_EMAIL_LENGTH]
    key = throttle_key(address, client)
    window = timedelta(minutes=settings.ops_login_window_minutes)
    failures = repo.failures_since(session, key, now - window)
    if len(failures) >= settings.ops_login_max_failures:
        # Open again when enough failures have aged out of the window.
        reopens = failures[len(failures) - settings.ops_login_max_failures] + window
        retry = max(1, math.ceil((reopens - now).total_seconds()))
        return LoginCandidate(address, key, None, None, retry)
    account = repo.operator_by_email(session, address)
    if account is None or account.disabled_at is not None:
        return LoginCandidate(address, key, account.id if account else None, None, None)
    return LoginCandidate(address, key, account.id, account.password_hash, None)


def fail_login(
    session: Session, candidate: LoginCandidate, now: datetime, settings: CentralSettings
) -> None:
    window = timedelta(minutes=settings.ops_login_window_minutes)
    repo.record_failure(session, candidate.key, now, now - window)
    audit(
        session,
        now=now,
        operator_id=candidate.operator_id,
        action="login",
        outcome="invalid_credentials",
    )


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # goes into the cookie only; the database keeps its SHA-256
    signed_in: SignedIn
    expires_at: datetime


def session_id_of(token: str) -> str:
    # The token carries 256 random bits: a fast hash is enough, there is nothing to guess.
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(keys: ServiceKeys, token: str) -> str:
    """Derived from the session's token, so it needs no storage and changes with each session."""
    digest = hmac.new(keys.derive("ops-csrf"), token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def finish_login(
    session: Session,
    candidate: LoginCandidate,
    now: datetime,
    settings: CentralSettings,
    new_hash: str | None,
) -> NewSession:
    """Open a session for an operator whose password was just verified."""
    if candidate.operator_id is None:
        raise ValueError("finish_login takes a candidate with an account, its password verified")
    account = repo.get_operator(session, candidate.operator_id)
    if account is None or account.disabled_at is not None:
        raise AccountError("the account was disabled meanwhile")
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(hours=settings.ops_session_max_hours)
    row = OperatorSession(
        id=session_id_of(token),
        operator_id=account.id,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
    )
    repo.add(session, row)
    repo.set_login(session, account.id, now, new_hash)
    repo.clear_failures(session, candidate.key)
    audit(session, now=now, operator_id=account.id, action="login", outcome="ok")
    return NewSession(
        token=token,
        signed_in=SignedIn(account.id, account.email, _check_role(account.role), row.id),
        expires_at=expires_at,
    )


def resolve_session(
    session: Session, token: str, now: datetime, settings: CentralSettings
) -> SignedIn | None:
    """The operator behind a cookie's token, or None if it is unknown, ended, idle or disabled."""
    session_id = session_id_of(token)
    found = repo.session_with_operator(session, session_id)
    if found is None:
        return None
    row, account = found
    idle = timedelta(hours=settings.ops_session_idle_hours)
    if (
        row.revoked_at is not None
        or row.expires_at <= now
        or row.last_seen_at + idle <= now
        or account.disabled_at is not None
        or account.role not in ROLES
    ):
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        repo.touch_session(session, session_id, now)
    return SignedIn(account.id, account.email, _check_role(account.role), session_id)


def end_session(session: Session, signed_in: SignedIn, now: datetime) -> None:
    if repo.revoke_session(session, signed_in.session_id, now):
        audit(session, now=now, operator_id=signed_in.operator_id, action="logout", outcome="ok")


# Team: invitations, password resets, roles ----------------------------------------------------
# An invited operator has no password (and cannot sign in) until they set one through a one-time
# link; a password reset removes the old password at once and issues such a link. Only the
# link's SHA-256 is stored: the token is shown once to whoever issued it, and emailed.

LinkPurpose = Literal["invite", "reset"]
OperatorState = Literal["active", "invited", "reset_pending", "disabled"]


class AccountRefused(AccountError):
    """An account request refused for a reason with a machine-readable `code`: operator_exists,
    unknown_operator, invalid_email, invalid_role, last_admin, not_yourself, operator_disabled,
    link_unknown, link_used, link_expired, link_revoked."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class LinkValidity:
    invite: timedelta
    reset: timedelta

    @classmethod
    def from_settings(cls, settings: CentralSettings) -> LinkValidity:
        return cls(
            invite=timedelta(hours=settings.ops_invite_link_hours),
            reset=timedelta(hours=settings.ops_reset_link_hours),
        )


@dataclass(frozen=True, slots=True)
class IssuedLink:
    operator_id: int
    email: str
    role: str
    purpose: LinkPurpose
    token: str = field(repr=False)  # shown once; the database keeps its SHA-256
    expires_at: datetime

    def url(self, public_url: str) -> str:
        # In the fragment, which browsers never send: no server or proxy log sees the token.
        return f"{public_url.rstrip('/')}/ops/account#{self.token}"


def operator_state(account: OperatorAccount) -> OperatorState:
    if account.disabled_at is not None:
        return "disabled"
    if account.password_hash is None:
        return "invited" if account.last_login_at is None else "reset_pending"
    return "active"


def operator_id_by_email(session: Session, email: str) -> int:
    account = repo.operator_by_email(session, _address(email))
    if account is None:
        raise AccountRefused("unknown_operator", f"no operator {email}")
    return account.id


def invite_operator(
    session: Session,
    email: str,
    role: str,
    *,
    created_by: int | None,
    now: datetime,
    validity: LinkValidity,
) -> IssuedLink:
    """A new operator without a password, and the link with which they set one."""
    address = _address(email)
    try:
        checked_role = _check_role(role)
    except AccountError as exc:
        raise AccountRefused("invalid_role", str(exc)) from exc
    exists = AccountRefused("operator_exists", f"an operator {address} exists already")
    if repo.operator_by_email(session, address) is not None:
        raise exists
    account = OperatorAccount(email=address, password_hash=None, role=checked_role, created_at=now)
    try:
        with session.begin_nested():  # two admins inviting the same address at once
            repo.add(session, account)
    except IntegrityError as exc:
        raise exists from exc
    return _issue_link(session, account, "invite", created_by, now, validity.invite)


def issue_password_reset(
    session: Session,
    operator_id: int,
    *,
    created_by: int | None,
    now: datetime,
    validity: LinkValidity,
) -> IssuedLink:
    """Remove the operator's password, end their sessions and issue a link to set a new one.
    For an operator who never had a password, a fresh invitation instead."""
    account = _operator_for_update(session, operator_id)
    if account.disabled_at is not None:
        raise AccountRefused("operator_disabled", "enable the operator before resetting it")
    never_signed_in = account.password_hash is None and account.last_login_at is None
    account.password_hash = None
    repo.revoke_sessions_of(session, account.id, now)
    if never_signed_in:
        return _issue_link(session, account, "invite", created_by, now, validity.invite)
    return _issue_link(session, account, "reset", created_by, now, validity.reset)


def change_operator(
    session: Session,
    operator_id: int,
    *,
    acting_id: int | None,
    role: str | None,
    disabled: bool | None,
    now: datetime,
) -> dict[str, Any]:
    """Change an operator's role and/or enable or disable them; returns what changed.

    Disabling ends their sessions and revokes their unused links at once. Never leaves the
    network without an active admin (`last_admin`), and an admin does not disable or demote
    themselves (`not_yourself`)."""
    # Every active admin is locked, in one order, before anything is decided: two admins
    # disabling each other at once take turns, and the second sees the first's change.
    admins = _active_admins_for_update(session)
    account = _operator_for_update(session, operator_id)
    try:
        new_role = account.role if role is None else _check_role(role)
    except AccountError as exc:
        raise AccountRefused("invalid_role", str(exc)) from exc
    disabling = disabled is True and account.disabled_at is None
    if disabling or (account.role == "admin" and new_role != "admin"):
        if admins == [account.id]:
            raise AccountRefused("last_admin", "the network needs at least one active admin")
        if account.id == acting_id:
            raise AccountRefused("not_yourself", "another admin must disable or demote you")
    changes: dict[str, Any] = {"email": account.email}
    if new_role != account.role:
        changes["role"] = [account.role, new_role]
        account.role = new_role
    if disabling:
        account.disabled_at = now
        changes["disabled"] = True
        changes["sessions_ended"] = repo.revoke_sessions_of(session, account.id, now)
        _revoke_open_links(session, account.id, now)
    elif disabled is False and account.disabled_at is not None:
        account.disabled_at = None
        changes["disabled"] = False
    session.flush()
    return changes


def _address(email: str) -> str:
    try:
        return normalize_email(email)
    except AccountError as exc:
        raise AccountRefused("invalid_email", str(exc)) from exc


def _operator_for_update(session: Session, operator_id: int) -> OperatorAccount:
    account = session.scalars(
        select(OperatorAccount)
        .where(OperatorAccount.id == operator_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if account is None:
        raise AccountRefused("unknown_operator", f"no operator {operator_id}")
    return account


def _active_admins_for_update(session: Session) -> list[int]:
    """Admins who can sign in: enabled, with a password."""
    return list(
        session.scalars(
            select(OperatorAccount.id)
            .where(
                OperatorAccount.role == "admin",
                OperatorAccount.disabled_at.is_(None),
                OperatorAccount.password_hash.isnot(None),
            )
            .order_by(OperatorAccount.id)
            .with_for_update()
        ).all()
    )


def _revoke_open_links(session: Session, operator_id: int, now: datetime) -> None:
    session.execute(
        update(OperatorLink)
        .where(
            OperatorLink.operator_id == operator_id,
            OperatorLink.used_at.is_(None),
            OperatorLink.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )


def _issue_link(
    session: Session,
    account: OperatorAccount,
    purpose: LinkPurpose,
    created_by: int | None,
    now: datetime,
    valid_for: timedelta,
) -> IssuedLink:
    _revoke_open_links(session, account.id, now)  # one live link per operator
    token = secrets.token_urlsafe(32)
    expires_at = now + valid_for
    repo.add(
        session,
        OperatorLink(
            token_hash=session_id_of(token),  # 256 random bits: a fast hash is enough
            purpose=purpose,
            operator_id=account.id,
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
        ),
    )
    session.flush()
    return IssuedLink(account.id, account.email, account.role, purpose, token, expires_at)
