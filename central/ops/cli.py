"""`locker-central operator ...`: dashboard accounts from the command line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from central.clock import utcnow
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker
from central.ops.accounts import (
    MIN_PASSWORD_LENGTH,
    AccountError,
    AccountRefused,
    IssuedLink,
    LinkValidity,
    Passwords,
    add_operator,
    audit,
    check_password,
    disable_operator,
    invite_operator,
    issue_password_reset,
    list_operators,
    operator_id_by_email,
    operator_state,
)

PASSWORD_ENV = "LOCKER_OPERATOR_PASSWORD"  # noqa: S105  (the variable's name, not a password)
operator_app = typer.Typer(no_args_is_help=True, help="Operators of the dashboard at /ops.")


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@contextmanager
def _sessions(settings: CentralSettings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


def _password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    password: str = typer.prompt(
        f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
        hide_input=True,
        confirmation_prompt=True,
    )
    return password


@operator_app.command("add")
def operator_add(
    email: str,
    role: Annotated[str, typer.Option(help="admin (can act) or viewer (can only look)")],
) -> None:
    """Add an operator; the password comes from LOCKER_OPERATOR_PASSWORD, else a prompt."""
    password = _password()
    try:
        check_password(password)
    except AccountError as exc:
        raise _fail(str(exc)) from exc
    settings = CentralSettings()
    with _sessions(settings) as sessions, sessions.begin() as session:
        try:
            account = add_operator(
                session, Passwords.from_settings(settings), email, role, password, utcnow()
            )
        except AccountError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"operator {account.email} ({account.role}) added")


@operator_app.command("disable")
def operator_disable(email: str) -> None:
    """Disable an operator: signing in is refused and open sessions end."""
    settings = CentralSettings()
    with _sessions(settings) as sessions, sessions.begin() as session:
        try:
            account = disable_operator(session, email, utcnow())
        except AccountError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"operator {account.email} disabled")


@operator_app.command("list")
def operator_list() -> None:
    """Every operator: email, role, and whether enabled."""
    settings = CentralSettings()
    with _sessions(settings) as sessions, sessions() as session:
        for account in list_operators(session):
            state = operator_state(account)
            last = account.last_login_at.isoformat() if account.last_login_at else "never"
            typer.echo(f"{account.email}\t{account.role}\t{state}\tlast sign-in {last}")


def _print_link(link: IssuedLink, settings: CentralSettings) -> None:
    what = "invitation" if link.purpose == "invite" else "password reset"
    until = link.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(f"one-time {what} link for {link.email} ({link.role}), valid until {until}:")
    typer.echo(link.url(settings.public_url))


def _audit_link(session: Session, link: IssuedLink, action: str) -> None:
    audit(
        session,
        now=utcnow(),
        operator_id=None,
        action=action,
        outcome="ok",
        target_type="operator",
        target_id=link.email[:128],
        detail={"operator_id": link.operator_id, "purpose": link.purpose, "via": "cli"},
    )


@operator_app.command("invite")
def operator_invite(
    email: str,
    role: Annotated[str, typer.Option(help="admin (can act) or viewer (can only look)")],
) -> None:
    """Invite an operator: prints a one-time link with which they choose their password."""
    settings = CentralSettings()
    with _sessions(settings) as sessions, sessions.begin() as session:
        try:
            link = invite_operator(
                session,
                email,
                role,
                created_by=None,
                now=utcnow(),
                validity=LinkValidity.from_settings(settings),
            )
        except AccountRefused as exc:
            raise _fail(str(exc)) from exc
        _audit_link(session, link, "invite_operator")
    _print_link(link, settings)


@operator_app.command("reset-password")
def operator_reset_password(email: str) -> None:
    """Remove an operator's password, end their sessions, and print a one-time link to choose a
    new one."""
    settings = CentralSettings()
    with _sessions(settings) as sessions, sessions.begin() as session:
        try:
            link = issue_password_reset(
                session,
                operator_id_by_email(session, email),
                created_by=None,
                now=utcnow(),
                validity=LinkValidity.from_settings(settings),
            )
        except AccountRefused as exc:
            raise _fail(str(exc)) from exc
        _audit_link(session, link, "reset_operator_password")
    _print_link(link, settings)
