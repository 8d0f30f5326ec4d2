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
    Passwords,
    add_operator,
    check_password,
    disable_operator,
    list_operators,
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
            state = "disabled" if account.disabled_at else "active"
            last = account.last_login_at.isoformat() if account.last_login_at else "never"
            typer.echo(f"{account.email}\t{account.role}\t{state}\tlast sign-in {last}")
