"""Operator sign-in: argon2id passwords, the session cookie, CSRF, throttling, expiry, audit."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from central.config import CentralSettings
from central.models import OperatorAccount, OperatorAuditEntry, OperatorSession
from central.ops.accounts import Passwords
from tests.central.ops.support import (
    ADMIN,
    PASSWORD,
    VIEWER,
    fast,
    make_operator,
    session_hash,
    sessions_of,
    sign_in,
)
from tests.clock import FakeClock


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


@pytest.fixture
def admin(app: FastAPI, clock: FakeClock) -> int:
    return make_operator(app, clock, ADMIN, "admin")


def _cookie(response: object) -> SimpleCookie:
    header = response.headers["set-cookie"]  # type: ignore[attr-defined]
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(header)
    return cookie


def test_sign_in_sets_a_strict_http_only_cookie_and_returns_the_csrf_token(
    client: TestClient, app: FastAPI, admin: int
) -> None:
    response = client.post(
        "/ops/api/session", json={"email": "Admin@Ops.Test", "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["operator"] == {"email": ADMIN, "role": "admin"}
    morsel = _cookie(response)["locker_ops"]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/ops"
    assert not morsel["secure"]  # public_url is http in tests
    assert len(morsel.value) >= 43
    again = client.get("/ops/api/session")
    assert again.status_code == 200
    assert again.json() == body
    # Only the token's hash is stored, and the password only as argon2id.
    with sessions_of(app)() as session:
        ids = session.scalars(select(OperatorSession.id)).all()
        hashes = session.scalars(select(OperatorAccount.password_hash)).all()
    assert ids == [session_hash(client)]
    assert morsel.value not in ids
    assert hashes[0].startswith("$argon2id$")
    assert PASSWORD not in hashes[0]


def test_cookie_is_secure_when_central_is_served_over_https(
    settings: CentralSettings, clock: FakeClock
) -> None:
    from central.app import create_app

    app = create_app(settings.model_copy(update={"public_url": "https://ops.example"}), clock=clock)
    try:
        make_operator(app, clock, ADMIN, "admin")
        with TestClient(app, base_url="https://testserver") as client:
            response = client.post("/ops/api/session", json={"email": ADMIN, "password": PASSWORD})
        assert response.status_code == 200
        assert _cookie(response)["locker_ops"]["secure"] is True
    finally:
        app.state.engine.dispose()


@pytest.mark.parametrize(
    ("email", "password"),
    [(ADMIN, "wrong password, long enough"), ("nobody@ops.test", PASSWORD), (ADMIN, "")],
)
def test_wrong_credentials_are_refused_alike(
    client: TestClient, admin: int, email: str, password: str
) -> None:
    response = client.post("/ops/api/session", json={"email": email, "password": password})

    expected = 422 if not password else 401
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.json()["error"] == "invalid_credentials"
        assert "locker_ops" not in response.headers.get("set-cookie", "")


def test_a_disabled_operator_cannot_sign_in_and_loses_open_sessions(
    client: TestClient, app: FastAPI, clock: FakeClock, admin: int
) -> None:
    from central.ops.accounts import disable_operator

    sign_in(client, ADMIN)
    with sessions_of(app).begin() as session:
        disable_operator(session, ADMIN, clock())

    assert client.get("/ops/api/session").status_code == 401
    refused = client.post("/ops/api/session", json={"email": ADMIN, "password": PASSWORD})
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_credentials"


def test_unknown_email_costs_a_hash_check_too(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, hash_: str | bytes, password: str | bytes) -> bool:
        calls.append(str(hash_))
        return original(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    assert passwords.verify(None, PASSWORD) is False
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")


def test_repeated_failures_are_throttled_per_email_and_client(
    client: TestClient, clock: FakeClock, admin: int, app: FastAPI
) -> None:
    make_operator(app, clock, VIEWER, "viewer")
    for _ in range(5):
        wrong = client.post(
            "/ops/api/session", json={"email": ADMIN, "password": "not the password!"}
        )
        assert wrong.status_code == 401

    # Even the right password waits now, for this email from this client.
    blocked = client.post("/ops/api/session", json={"email": ADMIN, "password": PASSWORD})
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "too_many_attempts"
    assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
    # Another account from the same client is not affected.
    assert (
        client.post("/ops/api/session", json={"email": VIEWER, "password": PASSWORD}).status_code
        == 200
    )

    clock.advance(minutes=15, seconds=1)
    assert (
        client.post("/ops/api/session", json={"email": ADMIN, "password": PASSWORD}).status_code
        == 200
    )
    with sessions_of(app)() as session:
        outcomes = session.scalars(
            select(OperatorAuditEntry.outcome)
            .where(OperatorAuditEntry.action == "login")
            .order_by(OperatorAuditEntry.id)
        ).all()
    assert outcomes == ["invalid_credentials"] * 5 + ["too_many_attempts", "ok", "ok"]


def test_a_success_clears_the_failures(client: TestClient, admin: int) -> None:
    for _ in range(4):
        client.post("/ops/api/session", json={"email": ADMIN, "password": "not the password!"})
    sign_in(client, ADMIN)
    for _ in range(4):
        response = client.post(
            "/ops/api/session", json={"email": ADMIN, "password": "not the password!"}
        )
        assert response.status_code == 401


def test_not_signed_in_is_401(client: TestClient) -> None:
    for path in ("/ops/api/session", "/ops/api/alerts", "/ops/api/audit"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.json()["error"] == "not_signed_in"
    client.cookies.set("locker_ops", "made-up-token", path="/ops")
    assert client.get("/ops/api/session").status_code == 401


def test_sessions_end_after_twelve_idle_hours(
    client: TestClient, clock: FakeClock, admin: int
) -> None:
    sign_in(client, ADMIN)
    for _ in range(3):  # active use keeps it alive past twelve hours in all
        clock.advance(hours=11)
        assert client.get("/ops/api/session").status_code == 200

    clock.advance(hours=12)
    response = client.get("/ops/api/session")
    assert response.status_code == 401
    assert response.json()["error"] == "not_signed_in"


def test_sessions_end_at_their_maximum_age_however_active(
    client: TestClient, clock: FakeClock, admin: int, settings: CentralSettings
) -> None:
    sign_in(client, ADMIN)
    hours = 0.0
    while hours + 11 < settings.ops_session_max_hours:
        clock.advance(hours=11)
        hours += 11
        assert client.get("/ops/api/session").status_code == 200
    clock.advance(hours=settings.ops_session_max_hours - hours)
    assert client.get("/ops/api/session").status_code == 401


def test_logout_needs_the_csrf_token_and_ends_the_session(client: TestClient, admin: int) -> None:
    csrf = sign_in(client, ADMIN)
    token = client.cookies["locker_ops"]

    refused = client.delete("/ops/api/session")
    assert refused.status_code == 403
    assert refused.json()["error"] == "csrf_failed"
    wrong = client.delete("/ops/api/session", headers={"X-CSRF-Token": csrf[:-2] + "xx"})
    assert wrong.status_code == 403

    response = client.delete("/ops/api/session", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert (
        'locker_ops=""' in response.headers["set-cookie"]
        or "Max-Age=0" in response.headers["set-cookie"]
    )
    # The old cookie is dead even if someone kept it.
    client.cookies.set("locker_ops", token, path="/ops")
    assert client.get("/ops/api/session").status_code == 401


def test_csrf_token_differs_per_session(client: TestClient, app: FastAPI, admin: int) -> None:
    first = sign_in(client, ADMIN)
    with TestClient(app) as other:
        second = sign_in(other, ADMIN)
        # One session's token does not pass for another session.
        refused = other.post(
            "/ops/api/alerts",
            json={"bank_id": "NYC-1", "type": "manual", "detail": {"note": "x"}},
            headers={"X-CSRF-Token": first},
        )
    assert first != second
    assert refused.status_code == 403
    assert refused.json()["error"] == "csrf_failed"


def test_audit_log_lists_sign_ins_for_any_operator(
    client: TestClient, app: FastAPI, clock: FakeClock, admin: int
) -> None:
    make_operator(app, clock, VIEWER, "viewer")
    client.post("/ops/api/session", json={"email": ADMIN, "password": "not the password!"})
    sign_in(client, VIEWER)

    response = client.get("/ops/api/audit?limit=10")

    assert response.status_code == 200
    entries = response.json()["entries"]
    assert [(e["operator"], e["action"], e["outcome"]) for e in entries] == [
        (VIEWER, "login", "ok"),
        (ADMIN, "login", "invalid_credentials"),
    ]


def test_audit_log_is_append_only_in_the_database(
    app: FastAPI, client: TestClient, admin: int
) -> None:
    sign_in(client, ADMIN)
    engine = app.state.engine
    for statement in ("UPDATE operator_audit SET outcome = 'forged'", "DELETE FROM operator_audit"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with sessions_of(app)() as session:
        assert session.scalars(select(OperatorAuditEntry.outcome)).all() == ["ok"]


def test_password_is_rehashed_when_the_cost_changes(
    client: TestClient, app: FastAPI, admin: int
) -> None:
    with sessions_of(app)() as session:
        before = session.scalars(select(OperatorAccount.password_hash)).one()
    app.state.ops_passwords = Passwords(time_cost=2, memory_kib=128, parallelism=1)

    sign_in(client, ADMIN)

    with sessions_of(app)() as session:
        after = session.scalars(select(OperatorAccount.password_hash)).one()
    assert after != before and "m=128,t=2" in after
    client.cookies.clear()
    sign_in(client, ADMIN)
