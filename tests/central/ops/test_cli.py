"""`locker-central operator add|disable|list`, run as an operator would run it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from central.cli import app
from central.clock import utcnow
from central.models import OperatorAccount
from central.ops.accounts import AccountError, Passwords, ensure_operator
from tests.central.conftest import TEST_SECRET, engine_for
from tests.central.ops.support import PASSWORD

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    monkeypatch.setenv("LOCKER_DATABASE_URL", url)
    monkeypatch.setenv("LOCKER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LOCKER_OPS_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("LOCKER_OPS_ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("LOCKER_OPS_ARGON2_PARALLELISM", "1")
    monkeypatch.delenv("LOCKER_OPERATOR_PASSWORD", raising=False)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    return url


def _accounts(url: str) -> list[OperatorAccount]:
    sessions = engine_for(url)
    with sessions() as session:
        rows = list(session.scalars(select(OperatorAccount).order_by(OperatorAccount.id)))
    sessions.kw["bind"].dispose()
    return rows


def test_add_with_the_password_from_the_environment(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKER_OPERATOR_PASSWORD", PASSWORD)

    result = runner.invoke(app, ["operator", "add", "Ada@Example.COM", "--role", "admin"])

    assert result.exit_code == 0, result.output
    assert "ada@example.com (admin) added" in result.output
    (account,) = _accounts(env)
    assert account.email == "ada@example.com" and account.role == "admin"
    assert account.password_hash.startswith("$argon2id$")
    assert Passwords(time_cost=1, memory_kib=64, parallelism=1).verify(
        account.password_hash, PASSWORD
    )
    assert PASSWORD not in result.output


def test_add_prompts_twice_when_no_password_is_set(env: str) -> None:
    result = runner.invoke(
        app, ["operator", "add", "bob@example.com", "--role", "viewer"], input=f"{PASSWORD}\n" * 2
    )

    assert result.exit_code == 0, result.output
    assert result.output.count("Password") >= 1
    assert [a.role for a in _accounts(env)] == ["viewer"]


def test_prompted_passwords_must_match(env: str) -> None:
    result = runner.invoke(
        app,
        ["operator", "add", "bob@example.com", "--role", "viewer"],
        input=f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n",
    )
    # typer asks again after a mismatch; the second matching pair is used.
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output.lower() or "error" in result.output.lower()
    assert len(_accounts(env)) == 1


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["x@example.com", "--role", "admin"], "too short", "at least 12"),
        (["x@example.com", "--role", "root"], PASSWORD, "role must be one of"),
        (["not-an-email", "--role", "admin"], PASSWORD, "not an email"),
    ],
)
def test_add_refuses_bad_input(
    env: str, monkeypatch: pytest.MonkeyPatch, args: list[str], password: str, message: str
) -> None:
    monkeypatch.setenv("LOCKER_OPERATOR_PASSWORD", password)

    result = runner.invoke(app, ["operator", "add", *args])

    assert result.exit_code == 1
    assert message in result.output
    assert _accounts(env) == []


def test_add_twice_is_refused(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKER_OPERATOR_PASSWORD", PASSWORD)
    assert (
        runner.invoke(app, ["operator", "add", "a@example.com", "--role", "admin"]).exit_code == 0
    )

    again = runner.invoke(app, ["operator", "add", "A@example.com", "--role", "viewer"])

    assert again.exit_code == 1
    assert "exists already" in again.output


def test_disable_and_list(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKER_OPERATOR_PASSWORD", PASSWORD)
    runner.invoke(app, ["operator", "add", "a@example.com", "--role", "admin"])
    runner.invoke(app, ["operator", "add", "b@example.com", "--role", "viewer"])

    disabled = runner.invoke(app, ["operator", "disable", "b@example.com"])
    listed = runner.invoke(app, ["operator", "list"])
    unknown = runner.invoke(app, ["operator", "disable", "nobody@example.com"])

    assert disabled.exit_code == 0, disabled.output
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert lines[0].startswith("a@example.com\tadmin\tactive")
    assert lines[1].startswith("b@example.com\tviewer\tdisabled")
    assert unknown.exit_code == 1


def test_ensure_operator_creates_then_updates(env: str) -> None:
    passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    sessions = engine_for(env)
    with sessions.begin() as session:
        ensure_operator(
            session, "demo@example.com", "viewer", PASSWORD, now=utcnow(), passwords=passwords
        )
    with sessions.begin() as session:
        account = ensure_operator(
            session,
            "demo@example.com",
            "admin",
            "another long password",
            now=utcnow(),
            passwords=passwords,
        )
        assert account.role == "admin"
        assert passwords.verify(account.password_hash, "another long password")
    with sessions.begin() as session, pytest.raises(AccountError):
        ensure_operator(session, "demo@example.com", "admin", "short", now=utcnow())
    sessions.kw["bind"].dispose()
    assert len(_accounts(env)) == 1
