"""Operator accounts in the dashboard: invite, change role, disable, reset password. Admin only,
audited; an invited operator sets a password through a one-time link.

The link is the only secret: the database keeps its SHA-256, the admin who made it sees it once,
and it goes by email to the operator when `LOCKER_SMTP_URL` is set. Its token rides in the URL's
fragment (`/ops/account#<token>`), which browsers never send: no access log, proxy log or
Referer holds it. The page's script reads it and posts it to the calls below, which need no
session and are throttled per client like sign-in; the one that sets the password hashes it
before it looks at the link, so that every answer takes as long.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request, status
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from central.config import CentralSettings
from central.context import Ctx
from central.db import rowcount
from central.errors import ApiError, Unprocessable
from central.models import OperatorAccount, OperatorLink
from central.notices.errors import SendError
from central.notices.smtp import SmtpConfig, SmtpMailer
from central.ops import accounts
from central.ops import repository as repo
from central.ops.accounts import (
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    AccountError,
    AccountRefused,
    IssuedLink,
    LinkPurpose,
    LinkValidity,
    OperatorState,
    Role,
)
from central.ops.auth import (
    Operator,
    OperatorRoute,
    client_address,
    current_operator,
    hashing_limiter,
    passwords_of,
    require_admin,
    run_unit,
    settings_of,
)
from central.ops.endpoints import _audited
from central.ops.pages import _page, _render

log = logging.getLogger(__name__)

# The JSON API (every call needs a signed-in operator) and the HTML pages.
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
pages = APIRouter(prefix="/ops", include_in_schema=False)

OperatorDep = Annotated[Operator, Depends(current_operator)]
AdminDep = Annotated[Operator, Depends(require_admin)]
OperatorId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# Tokens are 43 URL-safe characters; anything far longer is not one of ours.
MAX_TOKEN_LENGTH = 128
LINK_THROTTLE = "#account-link"  # the throttle's key: per client, shared by every link
EMAIL_TIMEOUT_S = 10.0

# What each refusal of central.ops.accounts answers over HTTP.
_STATUS = {
    "unknown_operator": 404,
    "invalid_email": 422,
    "invalid_role": 422,
    "operator_exists": 409,
    "last_admin": 409,
    "not_yourself": 409,
    "operator_disabled": 409,
    "link_unknown": 404,
    "link_used": 410,
    "link_expired": 410,
    "link_revoked": 410,
}


# Bodies -------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class InviteIn(_In):
    email: str = Field(min_length=1, max_length=MAX_EMAIL_LENGTH)
    role: Role


class OperatorChange(_In):
    role: Role | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> OperatorChange:
        if self.role is None and self.disabled is None:
            raise ValueError("give the new role, or disabled true or false")
        return self


class LinkIn(_In):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)


class PasswordIn(BaseModel):
    # Not stripped: a password's spaces are part of it.
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class TeamMemberOut(BaseModel):
    id: int
    email: str
    role: Role
    state: OperatorState
    created_at: datetime
    last_login_at: datetime | None
    disabled_at: datetime | None
    link_expires_at: datetime | None  # an unused invitation or reset link runs out then


class TeamOut(BaseModel):
    operators: list[TeamMemberOut]
    you: int  # the caller's id: an admin does not act on themselves


class LinkOut(BaseModel):
    operator_id: int
    email: str
    purpose: LinkPurpose
    link: str  # shown once: only its hash is kept
    expires_at: datetime
    emailed: bool
    email_error: str | None  # why the email did not go, when email is configured


@dataclass(frozen=True, slots=True)
class LinkHolder:
    """The operator a valid link is for."""

    operator_id: int
    email: str
    purpose: LinkPurpose


class LinkHolderOut(BaseModel):
    """Whose link it is: what the page behind it shows, and what setting the password answers."""

    email: str
    purpose: LinkPurpose


# Refusals -----------------------------------------------------------------------------------------


def refusal(exc: AccountRefused) -> ApiError:
    return ApiError(_STATUS.get(exc.code, 409), exc.code, str(exc))


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except AccountRefused as exc:
        raise refusal(exc) from exc


def _too_many(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        "too_many_attempts",
        "too many unusable links; try again later",
        headers={"Retry-After": str(retry_after_s)},
        retry_after_s=retry_after_s,
    )


# Links: checking, using, throttling ---------------------------------------------------------------


def check_link(session: Session, token: str, now: datetime) -> LinkHolder:
    """The operator a link is for, or AccountRefused: unknown, used, revoked or expired."""
    row = session.execute(
        select(OperatorLink, OperatorAccount)
        .join(OperatorAccount, OperatorAccount.id == OperatorLink.operator_id)
        .where(OperatorLink.token_hash == accounts.session_id_of(token))
    ).first()
    if row is None:
        raise AccountRefused("link_unknown", "this link is not known")
    link, account = row
    if link.used_at is not None:
        raise AccountRefused("link_used", "this link was used already")
    if link.revoked_at is not None or account.disabled_at is not None:
        raise AccountRefused("link_revoked", "this link was replaced or withdrawn")
    if link.expires_at <= now:
        raise AccountRefused("link_expired", "this link has expired")
    purpose: LinkPurpose = "invite" if link.purpose == "invite" else "reset"
    return LinkHolder(account.id, account.email, purpose)


def redeem_link(session: Session, token: str, password_hash: str, now: datetime) -> LinkHolder:
    """Set the password of the link's operator and use the link up."""
    holder = check_link(session, token, now)
    claimed = session.execute(
        update(OperatorLink)
        .where(
            OperatorLink.token_hash == accounts.session_id_of(token),
            OperatorLink.used_at.is_(None),
            OperatorLink.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    if rowcount(claimed) != 1:  # used by a request that came at the same time
        raise AccountRefused("link_used", "this link was used already")
    session.execute(
        update(OperatorAccount)
        .where(OperatorAccount.id == holder.operator_id)
        .values(password_hash=password_hash)
    )
    return holder


def link_retry_after(
    session: Session, client: str, now: datetime, settings: CentralSettings
) -> int | None:
    """Seconds until this client may try a link again after too many bad ones, else None."""
    window = timedelta(minutes=settings.ops_login_window_minutes)
    key = accounts.throttle_key(LINK_THROTTLE, client)
    failures = repo.failures_since(session, key, now - window)
    if len(failures) < settings.ops_login_max_failures:
        return None
    reopens = failures[len(failures) - settings.ops_login_max_failures] + window
    return max(1, math.ceil((reopens - now).total_seconds()))


def _count_failure(
    ctx: Ctx, exc: AccountRefused, action: str, client: str, settings: CentralSettings
) -> AccountRefused:
    """A refused link counts against the client's throttle, and is audited (never the token)."""
    window = timedelta(minutes=settings.ops_login_window_minutes)
    key = accounts.throttle_key(LINK_THROTTLE, client)
    repo.record_failure(ctx.session, key, ctx.now, ctx.now - window)
    accounts.audit(ctx.session, now=ctx.now, operator_id=None, action=action, outcome=exc.code)
    return exc


def _open_link(
    ctx: Ctx, token: str, client: str, settings: CentralSettings
) -> LinkHolder | AccountRefused:
    """Whose link it is, or why it cannot be used; only a refusal counts against the client."""
    try:
        return check_link(ctx.session, token, ctx.now)
    except AccountRefused as exc:
        return _count_failure(ctx, exc, "open_account_link", client, settings)


def _set_password(
    ctx: Ctx, token: str, password_hash: str, client: str, settings: CentralSettings
) -> LinkHolder | AccountRefused:
    """Use the link, or count the failure against the client; audited either way."""
    try:
        holder = redeem_link(ctx.session, token, password_hash, ctx.now)
    except AccountRefused as exc:
        return _count_failure(ctx, exc, "set_password", client, settings)
    accounts.audit(
        ctx.session,
        now=ctx.now,
        operator_id=holder.operator_id,
        action="set_password",
        outcome="ok",
        target_type="operator",
        target_id=holder.email[:128],
        detail={"purpose": holder.purpose},
    )
    return holder


# The team list ------------------------------------------------------------------------------------


def _open_link_expiries(session: Session, now: datetime) -> dict[int, datetime]:
    rows = session.execute(
        select(OperatorLink.operator_id, func.max(OperatorLink.expires_at))
        .where(
            OperatorLink.used_at.is_(None),
            OperatorLink.revoked_at.is_(None),
            OperatorLink.expires_at > now,
        )
        .group_by(OperatorLink.operator_id)
    )
    return {row[0]: row[1] for row in rows}


def _member(account: OperatorAccount, link_expires_at: datetime | None) -> TeamMemberOut:
    return TeamMemberOut(
        id=account.id,
        email=account.email,
        role="admin" if account.role == "admin" else "viewer",
        state=accounts.operator_state(account),
        created_at=account.created_at,
        last_login_at=account.last_login_at,
        disabled_at=account.disabled_at,
        link_expires_at=link_expires_at,
    )


def _members(ctx: Ctx) -> list[TeamMemberOut]:
    expiries = _open_link_expiries(ctx.session, ctx.now)
    return [
        _member(account, expiries.get(account.id))
        for account in accounts.list_operators(ctx.session)
    ]


# Email --------------------------------------------------------------------------------------------


def link_email(link: IssuedLink, url: str, *, sender: str, issued_by: str | None) -> EmailMessage:
    """A short plain-text email whose one secret is the link."""
    until = link.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    who = issued_by or "An administrator"
    if link.purpose == "invite":
        subject = "Your operator account for the locker network"
        opening = (
            f"{who} invited you to the locker network's operations dashboard as {link.role}.\n"
            "Choose your password here to activate your account:"
        )
    else:
        subject = "Choose a new password for the locker network dashboard"
        opening = (
            f"{who} reset the password of your operator account ({link.email}).\n"
            "Choose a new one here:"
        )
    message = EmailMessage()
    message["From"] = sender
    message["To"] = link.email
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # A domain of our own: without one, make_msgid asks the resolver for this host's name.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(
        f"Hello,\n\n{opening}\n\n{url}\n\n"
        f"The link works once, until {until}. If you did not expect this email, ignore it.\n"
    )
    return message


def send_link_email(settings: CentralSettings, message: EmailMessage) -> str | None:
    """Send it now; None when it went, else why not (never the link). The link is not kept, so
    there is no outbox to retry from: the admin who made it has it, and can pass it on."""
    if settings.smtp_url is None:
        return None
    try:
        config = SmtpConfig.from_url(settings.smtp_url.get_secret_value())
    except ValueError as exc:
        return f"LOCKER_SMTP_URL: {exc}"
    try:
        with SmtpMailer(config, timeout_s=EMAIL_TIMEOUT_S) as mailer:
            mailer.send(message)
    except SendError as exc:
        log.warning("could not email an account link: %s", exc.detail)
        return exc.detail
    return None


async def _link_out(request: Request, operator: Operator, link: IssuedLink) -> LinkOut:
    settings = settings_of(request)
    url = link.url(settings.public_url)
    message = link_email(url=url, link=link, sender=settings.notify_from, issued_by=operator.email)
    error = await anyio.to_thread.run_sync(send_link_email, settings, message)
    return LinkOut(
        operator_id=link.operator_id,
        email=link.email,
        purpose=link.purpose,
        link=url,
        expires_at=link.expires_at,
        emailed=settings.smtp_url is not None and error is None,
        email_error=error,
    )


def _link_detail(link: IssuedLink) -> dict[str, Any]:
    return {
        "operator_id": link.operator_id,
        "role": link.role,
        "purpose": link.purpose,
        "expires_at": link.expires_at.isoformat(),
    }


async def _target(request: Request, operator_id: int) -> str:
    """How the audit names an operator: by email, by id when there is none with that id."""

    def read(ctx: Ctx) -> str:
        account = repo.get_operator(ctx.session, operator_id)
        return account.email[:128] if account is not None else str(operator_id)

    return await run_unit(request, read)


# API ----------------------------------------------------------------------------------------------


@router.get("/operators")
async def list_team(request: Request, operator: AdminDep) -> TeamOut:
    return await run_unit(request, lambda ctx: TeamOut(operators=_members(ctx), you=operator.id))


@router.post("/operators", status_code=status.HTTP_201_CREATED)
async def invite_operator(request: Request, operator: OperatorDep, body: InviteIn) -> LinkOut:
    """Add an operator without a password; the answer holds the link that sets it (once)."""
    validity = LinkValidity.from_settings(settings_of(request))

    def work(ctx: Ctx) -> tuple[IssuedLink, dict[str, Any]]:
        with _refusals():
            link = accounts.invite_operator(
                ctx.session,
                body.email,
                body.role,
                created_by=operator.id,
                now=ctx.now,
                validity=validity,
            )
        return link, _link_detail(link)

    link = await _audited(
        request,
        operator,
        action="invite_operator",
        target_type="operator",
        target_id=body.email.lower()[:128],
        reason=None,
        work=work,
    )
    return await _link_out(request, operator, link)


def _change_action(body: OperatorChange) -> str:
    if body.role is not None and body.disabled is not None:
        return "change_operator"
    if body.role is not None:
        return "change_operator_role"
    return "disable_operator" if body.disabled else "enable_operator"


@router.patch("/operators/{operator_id}")
async def change_operator(
    request: Request, operator: OperatorDep, operator_id: OperatorId, body: OperatorChange
) -> TeamMemberOut:
    """Change the role, or disable (which ends their sessions at once) or enable."""

    def work(ctx: Ctx) -> tuple[TeamMemberOut, dict[str, Any]]:
        with _refusals():
            changes = accounts.change_operator(
                ctx.session,
                operator_id,
                acting_id=operator.id,
                role=body.role,
                disabled=body.disabled,
                now=ctx.now,
            )
        account = repo.get_operator(ctx.session, operator_id)
        if account is None:  # cannot be: it was just changed, in this transaction
            raise AccountError(f"operator {operator_id} went away")
        return _member(account, None), changes

    return await _audited(
        request,
        operator,
        action=_change_action(body),
        target_type="operator",
        target_id=await _target(request, operator_id),
        reason=None,
        work=work,
    )


@router.post("/operators/{operator_id}/password-reset")
async def reset_password(
    request: Request, operator: OperatorDep, operator_id: OperatorId
) -> LinkOut:
    """Remove the operator's password, end their sessions, and answer with a link to set a new
    one (a new invitation for an operator who never set one)."""
    validity = LinkValidity.from_settings(settings_of(request))

    def work(ctx: Ctx) -> tuple[IssuedLink, dict[str, Any]]:
        with _refusals():
            link = accounts.issue_password_reset(
                ctx.session, operator_id, created_by=operator.id, now=ctx.now, validity=validity
            )
        return link, _link_detail(link)

    link = await _audited(
        request,
        operator,
        action="reset_operator_password",
        target_type="operator",
        target_id=await _target(request, operator_id),
        reason=None,
        work=work,
    )
    return await _link_out(request, operator, link)


async def _refuse_if_throttled(request: Request, client: str) -> None:
    settings = settings_of(request)
    retry = await run_unit(
        request, lambda ctx: link_retry_after(ctx.session, client, ctx.now, settings)
    )
    if retry is not None:
        raise _too_many(retry)


@router.post("/account/link")
async def open_link(request: Request, body: LinkIn) -> LinkHolderOut:
    """Whose one-time link this is, for the page behind it. No session: the link is the
    credential, so it comes in the body, never in an address."""
    settings = settings_of(request)
    client = client_address(request)
    await _refuse_if_throttled(request, client)
    outcome = await run_unit(request, lambda ctx: _open_link(ctx, body.token, client, settings))
    if isinstance(outcome, AccountRefused):
        raise refusal(outcome)
    return LinkHolderOut(email=outcome.email, purpose=outcome.purpose)


@router.post("/account/password")
async def set_password(request: Request, body: PasswordIn) -> LinkHolderOut:
    """Set a password through a one-time link. No session: the link is the credential."""
    try:
        accounts.check_password(body.password)
    except AccountError as exc:
        raise Unprocessable("weak_password", str(exc)) from exc
    settings = settings_of(request)
    client = client_address(request)
    await _refuse_if_throttled(request, client)
    limiter = hashing_limiter(request)
    passwords = await anyio.to_thread.run_sync(passwords_of, request, limiter=limiter)
    # Hashed before the link is looked up, whatever it turns out to be: a known, a used and an
    # unknown link take as long to answer.
    password_hash = await anyio.to_thread.run_sync(passwords.hash, body.password, limiter=limiter)
    outcome = await run_unit(
        request, lambda ctx: _set_password(ctx, body.token, password_hash, client, settings)
    )
    if isinstance(outcome, AccountRefused):
        raise refusal(outcome)
    return LinkHolderOut(email=outcome.email, purpose=outcome.purpose)


# Pages --------------------------------------------------------------------------------------------


@pages.get("/team", response_class=HTMLResponse)
async def team_page(request: Request) -> Response:
    return await _page(request, "team.html", "/ops/team", min_length=MIN_PASSWORD_LENGTH)


@pages.get("/account", response_class=HTMLResponse)
async def account_page(request: Request) -> Response:
    """The page behind an invitation or reset link; needs no session. The same shell for every
    link: the token is in the fragment, which reaches only the page's script."""
    response = _render(
        request,
        "account.html",
        None,
        active="",
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
    )
    # Fragments never go into a Referer; this keeps the page's own address out of them too.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
