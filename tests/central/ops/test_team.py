"""Operator accounts from the dashboard: invitations, one-time links, roles, disabling, resets,
the guards that keep an admin, the audit, CSRF and roles; and the CLI's invite and reset."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from central.cli import app as cli_app
from central.config import CentralSettings
from central.models import OperatorAccount, OperatorAuditEntry, OperatorLink
from central.ops.accounts import AccountRefused, Passwords, change_operator
from tests.central.conftest import TEST_SECRET, engine_for
from tests.central.ops.support import (
    ADMIN,
    PASSWORD,
    VIEWER,
    fast,
    make_operator,
    sessions_of,
    sign_in,
)
from tests.clock import FakeClock
from tests.locker_node.support import wait_until
from tests.mail import SmtpTestServer

NEW = "new.operator@ops.test"
NEW_PASSWORD = "a brand new passphrase"
OTHER_ADMIN = "second.admin@ops.test"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


@pytest.fixture
def admin(app: FastAPI, clock: FakeClock) -> int:
    return make_operator(app, clock, ADMIN, "admin")


@pytest.fixture
def csrf(client: TestClient, admin: int) -> str:
    return sign_in(client, ADMIN)


@pytest.fixture
def other(app: FastAPI) -> Iterator[TestClient]:
    """A second browser: another operator's cookies."""
    with TestClient(app) as second:
        yield second


def h(csrf: str) -> dict[str, str]:
    return {"X-CSRF-Token": csrf}


def token_of(link: str) -> str:
    """The token of a link: in its fragment, which no browser sends to a server."""
    parts = urlsplit(link)
    assert parts.path == "/ops/account" and not parts.query, link
    return parts.fragment


def invite(client: TestClient, csrf: str, email: str = NEW, role: str = "viewer") -> Any:
    response = client.post(
        "/ops/api/operators", json={"email": email, "role": role}, headers=h(csrf)
    )
    assert response.status_code == 201, response.text
    return response.json()


def set_password(client: TestClient, token: str, password: str = NEW_PASSWORD) -> Any:
    return client.post("/ops/api/account/password", json={"token": token, "password": password})


def open_link(client: TestClient, token: str) -> Any:
    return client.post("/ops/api/account/link", json={"token": token})


def members(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/ops/api/operators")
    assert response.status_code == 200, response.text
    return {o["email"]: o for o in response.json()["operators"]}


def operator_id(app: FastAPI, email: str) -> int:
    with sessions_of(app)() as session:
        account = session.scalars(
            select(OperatorAccount).where(OperatorAccount.email == email)
        ).one()
        return account.id


def audit(app: FastAPI, action: str) -> list[tuple[str, str | None, dict[str, Any] | None]]:
    with sessions_of(app)() as session:
        rows = session.scalars(
            select(OperatorAuditEntry)
            .where(OperatorAuditEntry.action == action)
            .order_by(OperatorAuditEntry.id)
        ).all()
        return [(row.outcome, row.target_id, row.detail) for row in rows]


def can_sign_in(app: FastAPI, email: str, password: str) -> bool:
    with TestClient(app) as fresh:
        response = fresh.post("/ops/api/session", json={"email": email, "password": password})
        return response.status_code == 200


# Invitations --------------------------------------------------------------------------------------


def test_an_invitation_answers_a_one_time_link_of_which_only_the_hash_is_kept(
    client: TestClient, app: FastAPI, csrf: str, clock: FakeClock
) -> None:
    out = invite(client, csrf, "New.Operator@Ops.Test", "viewer")

    assert out["email"] == NEW and out["purpose"] == "invite"
    assert out["link"].startswith("http://127.0.0.1:8000/ops/account#")
    assert out["emailed"] is False and out["email_error"] is None  # no SMTP configured
    token = token_of(out["link"])
    assert len(token) >= 43
    with sessions_of(app)() as session:
        link = session.scalars(select(OperatorLink)).one()
        account = session.get(OperatorAccount, link.operator_id)
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert link.expires_at == clock() + timedelta(hours=72)
    assert link.created_by is not None and link.used_at is None
    assert account is not None and account.password_hash is None
    listed = members(client)[NEW]
    assert listed["state"] == "invited" and listed["role"] == "viewer"
    assert listed["link_expires_at"] is not None
    # Audited, without the token.
    ((outcome, target, detail),) = audit(app, "invite_operator")
    assert (outcome, target) == ("ok", NEW)
    assert detail is not None and token not in str(detail)
    # No password yet: no way in.
    assert not can_sign_in(app, NEW, "")
    assert not can_sign_in(app, NEW, NEW_PASSWORD)


def test_the_invited_operator_sets_a_password_through_the_link_and_signs_in(
    client: TestClient, app: FastAPI, csrf: str, other: TestClient
) -> None:
    token = token_of(invite(client, csrf)["link"])

    page = other.get("/ops/account")  # what a browser asks for: the fragment stays behind
    assert page.status_code == 200
    assert 'id="account-form"' in page.text and "account.js" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    opened = open_link(other, token)
    assert opened.status_code == 200, opened.text
    assert opened.json() == {"email": NEW, "purpose": "invite"}
    done = set_password(other, token)
    assert done.status_code == 200, done.text
    assert done.json() == {"email": NEW, "purpose": "invite"}

    sign_in(other, NEW, NEW_PASSWORD)
    assert other.get("/ops/api/session").json()["operator"] == {"email": NEW, "role": "viewer"}
    assert members(client)[NEW]["state"] == "active"
    assert members(client)[NEW]["link_expires_at"] is None
    assert audit(app, "set_password") == [("ok", NEW, {"purpose": "invite"})]
    # Once only.
    again = set_password(other, token, "yet another long passphrase")
    assert again.status_code == 410 and again.json()["error"] == "link_used"
    used = open_link(other, token)
    assert used.status_code == 410 and used.json()["error"] == "link_used"
    assert can_sign_in(app, NEW, NEW_PASSWORD)


def test_an_invitation_is_emailed_when_smtp_is_configured(
    settings: CentralSettings, clock: FakeClock
) -> None:
    from central.app import create_app

    with SmtpTestServer() as smtp:
        app = create_app(
            settings.model_copy(
                update={"smtp_url": SecretStr(smtp.url), "public_url": "https://ops.test"}
            ),
            clock=clock,
        )
        try:
            make_operator(app, clock, ADMIN, "admin")
            with TestClient(app, base_url="https://testserver") as client:
                out = invite(client, sign_in(client, ADMIN))
                smtp.wait_for()
        finally:
            app.state.engine.dispose()

    assert out["emailed"] is True and out["email_error"] is None
    assert out["link"].startswith("https://ops.test/ops/account#")
    ((mail,),) = [smtp.received]
    assert mail.rcpt_tos == (NEW,)
    body = mail.message.get_content()
    assert out["link"] in body
    assert "viewer" in body and ADMIN in body
    assert mail.message["Subject"] == "Your operator account for the locker network"


def test_an_invitation_still_answers_the_link_when_the_mail_server_is_down(
    settings: CentralSettings, clock: FakeClock
) -> None:
    from central.app import create_app

    smtp = SmtpTestServer()  # never started: nothing listens on its port
    app = create_app(settings.model_copy(update={"smtp_url": SecretStr(smtp.url)}), clock=clock)
    try:
        make_operator(app, clock, ADMIN, "admin")
        with TestClient(app) as client:
            out = invite(client, sign_in(client, ADMIN))
    finally:
        app.state.engine.dispose()

    assert out["emailed"] is False
    assert "unreachable" in out["email_error"]
    assert token_of(out["link"]) not in out["email_error"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "ADMIN@ops.test", "role": "viewer"}, 409, "operator_exists"),
        ({"email": "not an address", "role": "viewer"}, 422, "invalid_email"),
        ({"email": "x@ops.test", "role": "owner"}, 422, "validation_error"),
        ({"email": "x@ops.test", "role": "viewer", "password": "x"}, 422, "validation_error"),
    ],
)
def test_bad_invitations_are_refused_with_a_code(
    client: TestClient, app: FastAPI, csrf: str, body: dict[str, str], status: int, code: str
) -> None:
    response = client.post("/ops/api/operators", json=body, headers=h(csrf))

    assert response.status_code == status, response.text
    if code != "validation_error":
        assert response.json()["error"] == code
        assert audit(app, "invite_operator") == [
            (code, body["email"].lower(), {"status": status, "detail": response.json()["detail"]})
        ]


# Roles and disabling ------------------------------------------------------------------------------


def test_a_new_role_applies_to_the_operators_open_session(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str, other: TestClient
) -> None:
    viewer = make_operator(app, clock, VIEWER, "viewer")
    sign_in(other, VIEWER)
    assert other.get("/ops/api/operators").status_code == 403

    response = client.patch(f"/ops/api/operators/{viewer}", json={"role": "admin"}, headers=h(csrf))

    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin" and response.json()["state"] == "active"
    assert other.get("/ops/api/operators").status_code == 200
    assert audit(app, "change_operator_role") == [
        ("ok", VIEWER, {"email": VIEWER, "role": ["viewer", "admin"]})
    ]


def test_disabling_ends_the_operators_sessions_at_once_and_enabling_lets_them_back(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str, other: TestClient
) -> None:
    viewer = make_operator(app, clock, VIEWER, "viewer")
    sign_in(other, VIEWER)

    off = client.patch(f"/ops/api/operators/{viewer}", json={"disabled": True}, headers=h(csrf))

    assert off.status_code == 200, off.text
    assert off.json()["state"] == "disabled"
    assert other.get("/ops/api/session").status_code == 401
    assert not can_sign_in(app, VIEWER, PASSWORD)
    assert audit(app, "disable_operator") == [
        ("ok", VIEWER, {"email": VIEWER, "disabled": True, "sessions_ended": 1})
    ]
    on = client.patch(f"/ops/api/operators/{viewer}", json={"disabled": False}, headers=h(csrf))
    assert on.status_code == 200 and on.json()["state"] == "active"
    assert can_sign_in(app, VIEWER, PASSWORD)


def test_the_last_active_admin_is_neither_disabled_nor_demoted(
    client: TestClient, app: FastAPI, admin: int, csrf: str
) -> None:
    for body in ({"disabled": True}, {"role": "viewer"}):
        response = client.patch(f"/ops/api/operators/{admin}", json=body, headers=h(csrf))
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "last_admin"
    assert [outcome for outcome, _, _ in audit(app, "disable_operator")] == ["last_admin"]
    assert [outcome for outcome, _, _ in audit(app, "change_operator_role")] == ["last_admin"]
    assert members(client)[ADMIN]["role"] == "admin"


def test_an_admin_does_not_disable_or_demote_themselves(
    client: TestClient, app: FastAPI, clock: FakeClock, admin: int, csrf: str
) -> None:
    second = make_operator(app, clock, OTHER_ADMIN, "admin")
    for body in ({"disabled": True}, {"role": "viewer"}):
        response = client.patch(f"/ops/api/operators/{admin}", json=body, headers=h(csrf))
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "not_yourself"

    # Another admin they may disable; then they are the last one.
    assert (
        client.patch(
            f"/ops/api/operators/{second}", json={"disabled": True}, headers=h(csrf)
        ).status_code
        == 200
    )
    refused = client.patch(f"/ops/api/operators/{admin}", json={"role": "viewer"}, headers=h(csrf))
    assert refused.json()["error"] == "last_admin"


def test_an_admin_without_a_password_yet_does_not_count_as_active(
    client: TestClient, app: FastAPI, admin: int, csrf: str
) -> None:
    invited = invite(client, csrf, OTHER_ADMIN, "admin")["operator_id"]

    # The invited admin may be demoted; the one who can sign in may not be disabled.
    refused = client.patch(f"/ops/api/operators/{admin}", json={"disabled": True}, headers=h(csrf))
    assert refused.json()["error"] == "last_admin"
    demoted = client.patch(
        f"/ops/api/operators/{invited}", json={"role": "viewer"}, headers=h(csrf)
    )
    assert demoted.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/ops/api/operators/999", {"disabled": True}, 404, "unknown_operator"),
        ("/ops/api/operators/0", {"disabled": True}, 422, "validation_error"),
        ("/ops/api/operators/1", {}, 422, "validation_error"),
        ("/ops/api/operators/1", {"role": "root"}, 422, "validation_error"),
    ],
)
def test_bad_changes_are_refused(
    client: TestClient, csrf: str, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    response = client.patch(path, json=body, headers=h(csrf))

    assert response.status_code == status, response.text
    assert response.json()["error"] == code


# Password resets ----------------------------------------------------------------------------------


def test_a_reset_ends_sessions_voids_the_old_password_and_answers_a_link(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str, other: TestClient
) -> None:
    viewer = make_operator(app, clock, VIEWER, "viewer")
    sign_in(other, VIEWER)

    response = client.post(f"/ops/api/operators/{viewer}/password-reset", headers=h(csrf))

    assert response.status_code == 200, response.text
    out = response.json()
    assert out["purpose"] == "reset" and out["email"] == VIEWER
    assert out["expires_at"].startswith((clock() + timedelta(hours=1)).isoformat()[:19])
    assert other.get("/ops/api/session").status_code == 401
    assert not can_sign_in(app, VIEWER, PASSWORD)
    assert members(client)[VIEWER]["state"] == "reset_pending"
    assert set_password(other, token_of(out["link"])).json() == {
        "email": VIEWER,
        "purpose": "reset",
    }
    assert can_sign_in(app, VIEWER, NEW_PASSWORD)
    ((outcome, target, detail),) = audit(app, "reset_operator_password")
    assert (outcome, target) == ("ok", VIEWER)
    assert detail is not None and detail["purpose"] == "reset"


def test_a_new_link_for_an_invited_operator_replaces_the_old_invitation(
    client: TestClient, csrf: str, other: TestClient
) -> None:
    first = invite(client, csrf)
    response = client.post(
        f"/ops/api/operators/{first['operator_id']}/password-reset", headers=h(csrf)
    )
    second = response.json()

    assert second["purpose"] == "invite"  # 72 hours again, not a reset's hour
    old = set_password(other, token_of(first["link"]))
    assert old.status_code == 410 and old.json()["error"] == "link_revoked"
    assert set_password(other, token_of(second["link"])).status_code == 200


def test_disabling_withdraws_a_pending_link_and_a_disabled_operator_gets_no_reset(
    client: TestClient, csrf: str, other: TestClient
) -> None:
    out = invite(client, csrf)
    target = out["operator_id"]
    client.patch(f"/ops/api/operators/{target}", json={"disabled": True}, headers=h(csrf))

    refused = set_password(other, token_of(out["link"]))
    assert refused.status_code == 410 and refused.json()["error"] == "link_revoked"
    reset = client.post(f"/ops/api/operators/{target}/password-reset", headers=h(csrf))
    assert reset.status_code == 409 and reset.json()["error"] == "operator_disabled"


# Links ------------------------------------------------------------------------------------------


def test_an_expired_link_is_refused(
    client: TestClient, csrf: str, other: TestClient, clock: FakeClock
) -> None:
    token = token_of(invite(client, csrf)["link"])
    clock.advance(hours=72)

    refused = set_password(other, token)

    assert refused.status_code == 410 and refused.json()["error"] == "link_expired"
    opened = open_link(other, token)
    assert opened.status_code == 410 and opened.json()["error"] == "link_expired"


def test_unknown_links_are_refused_then_throttled(
    client: TestClient, app: FastAPI, csrf: str, other: TestClient
) -> None:
    token = token_of(invite(client, csrf)["link"])
    for _ in range(5):
        unknown = set_password(other, "x" * 43)
        assert unknown.status_code == 404 and unknown.json()["error"] == "link_unknown"

    throttled = set_password(other, token)

    assert throttled.status_code == 429 and throttled.json()["error"] == "too_many_attempts"
    assert int(throttled.headers["retry-after"]) > 0
    assert [outcome for outcome, _, _ in audit(app, "set_password")] == ["link_unknown"] * 5


# Opening a link: the page behind it asks whose it is ---------------------------------------------


def test_opening_a_link_names_whose_it_is_and_uses_up_nothing(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str, other: TestClient
) -> None:
    invited = token_of(invite(client, csrf)["link"])
    viewer = make_operator(app, clock, VIEWER, "viewer")
    reset = client.post(f"/ops/api/operators/{viewer}/password-reset", headers=h(csrf)).json()

    # More often than the throttle allows failures: a valid link is none.
    for _ in range(7):
        opened = open_link(other, invited)
        assert opened.status_code == 200, opened.text
        assert opened.json() == {"email": NEW, "purpose": "invite"}
    assert open_link(other, token_of(reset["link"])).json() == {"email": VIEWER, "purpose": "reset"}

    assert set_password(other, invited).status_code == 200  # still usable: opening is no use
    assert audit(app, "open_account_link") == []


def spoil(case: str, client: TestClient, csrf: str, clock: FakeClock, out: Any) -> str:
    """The token of a link made unusable in the way `case` says."""
    token = token_of(out["link"])
    if case == "unknown":
        return "x" * 43
    if case == "used":
        with TestClient(client.app) as someone:
            assert set_password(someone, token).status_code == 200
    elif case == "expired":
        clock.advance(hours=72)
    elif case == "revoked":
        path = f"/ops/api/operators/{out['operator_id']}/password-reset"
        assert client.post(path, headers=h(csrf)).status_code == 200
    return token


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("unknown", 404, "link_unknown"),
        ("used", 410, "link_used"),
        ("expired", 410, "link_expired"),
        ("revoked", 410, "link_revoked"),
    ],
)
def test_opening_an_unusable_link_says_why_and_is_audited_without_the_token(
    client: TestClient,
    app: FastAPI,
    clock: FakeClock,
    csrf: str,
    other: TestClient,
    case: str,
    status: int,
    code: str,
) -> None:
    token = spoil(case, client, csrf, clock, invite(client, csrf))

    refused = open_link(other, token)

    assert refused.status_code == status, refused.text
    assert refused.json()["error"] == code
    assert token not in refused.text
    assert audit(app, "open_account_link") == [(code, None, None)]


def test_bad_links_opened_or_used_share_one_throttle_which_lifts_after_its_window(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str, other: TestClient
) -> None:
    token = token_of(invite(client, csrf)["link"])
    for _ in range(3):
        assert open_link(other, "x" * 43).status_code == 404
    for _ in range(2):
        assert set_password(other, "y" * 43).status_code == 404

    throttled = open_link(other, token)

    assert throttled.status_code == 429 and throttled.json()["error"] == "too_many_attempts"
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    assert set_password(other, token).status_code == 429
    assert len(audit(app, "open_account_link")) == 3  # a throttled call counts nothing more
    clock.advance(minutes=15)
    assert open_link(other, token).json() == {"email": NEW, "purpose": "invite"}


def test_a_mangled_token_is_refused_without_being_echoed(
    client: TestClient, csrf: str, other: TestClient
) -> None:
    long = "z" * 500
    for body in ({"token": long}, {"token": ""}, {}, {"token": "a", "email": NEW}):
        refused = other.post("/ops/api/account/link", json=body)
        assert refused.status_code == 422 and refused.json()["error"] == "validation_error"
        assert long not in refused.text


def test_the_link_is_a_fragment_and_no_token_reaches_an_address_or_a_log(
    client: TestClient,
    app: FastAPI,
    csrf: str,
    other: TestClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, SQL and its parameters included
    token = token_of(invite(client, csrf)["link"])

    assert other.get("/ops/account").status_code == 200
    assert open_link(other, token).status_code == 200
    assert set_password(other, token).status_code == 200
    assert open_link(other, token).status_code == 410

    # The test client logs every address it asks for: none holds the token.
    requested = [r.getMessage() for r in caplog.records if "HTTP Request" in r.getMessage()]
    assert len(requested) == 5
    assert [r.getMessage() for r in caplog.records if token in r.getMessage()] == []
    with sessions_of(app)() as session:
        entries = session.scalars(select(OperatorAuditEntry)).all()
    assert entries and all(token not in repr(vars(entry)) for entry in entries)
    # The old address, with the token in its path, is gone (it was never released).
    assert other.get(f"/ops/account/{token}").status_code == 404


def test_every_answer_hashes_the_password_known_link_or_not(
    client: TestClient, app: FastAPI, csrf: str, other: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same work whatever the link: its answer does not tell by its time."""
    token = token_of(invite(client, csrf)["link"])
    hashed: list[str] = []
    real = Passwords.hash
    monkeypatch.setattr(Passwords, "hash", lambda self, pw: hashed.append(pw) or real(self, pw))

    set_password(other, "y" * 43, "unknown link, long password")
    set_password(other, token)
    set_password(other, token, "used link, long password")

    assert hashed == ["unknown link, long password", NEW_PASSWORD, "used link, long password"]


def test_a_short_password_is_refused_and_leaves_the_link_usable(
    client: TestClient, csrf: str, other: TestClient
) -> None:
    token = token_of(invite(client, csrf)["link"])

    short = set_password(other, token, "too short")

    assert short.status_code == 422 and short.json()["error"] == "weak_password"
    assert set_password(other, token).status_code == 200


def test_setting_a_password_needs_no_session_nor_csrf(
    client: TestClient, csrf: str, app: FastAPI
) -> None:
    token = token_of(invite(client, csrf)["link"])
    with TestClient(app) as anonymous:
        assert set_password(anonymous, token).status_code == 200


# Who may do what --------------------------------------------------------------------------------


def test_viewers_are_refused_and_the_refusal_audited(
    app: FastAPI, clock: FakeClock, admin: int, other: TestClient
) -> None:
    make_operator(app, clock, VIEWER, "viewer")
    csrf = sign_in(other, VIEWER)

    assert other.get("/ops/api/operators").status_code == 403
    refused = other.post(
        "/ops/api/operators", json={"email": NEW, "role": "admin"}, headers=h(csrf)
    )
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    patch = other.patch(f"/ops/api/operators/{admin}", json={"disabled": True}, headers=h(csrf))
    assert patch.status_code == 403
    reset = other.post(f"/ops/api/operators/{admin}/password-reset", headers=h(csrf))
    assert reset.status_code == 403
    assert [o for o, _, _ in audit(app, "invite_operator")] == ["forbidden"]
    assert [o for o, _, _ in audit(app, "disable_operator")] == ["forbidden"]
    assert [o for o, _, _ in audit(app, "reset_operator_password")] == ["forbidden"]
    with sessions_of(app)() as session:
        assert session.scalars(select(OperatorAccount.email)).all() == [ADMIN, VIEWER]


def test_changes_need_the_csrf_header_and_a_session(
    client: TestClient, app: FastAPI, admin: int, csrf: str
) -> None:
    calls = [
        ("POST", "/ops/api/operators", {"email": NEW, "role": "viewer"}),
        ("PATCH", f"/ops/api/operators/{admin}", {"role": "viewer"}),
        ("POST", f"/ops/api/operators/{admin}/password-reset", None),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers={"X-CSRF-Token": "forged"})
        assert response.status_code == 403 and response.json()["error"] == "csrf_failed"
    with TestClient(app) as anonymous:
        assert anonymous.get("/ops/api/operators").status_code == 401
        for method, path, body in calls:
            assert anonymous.request(method, path, json=body).status_code == 401
    assert members(client).keys() == {ADMIN}


# Racing -------------------------------------------------------------------------------------------


def test_two_admins_disabling_each_other_at_once_leave_one_active(
    app: FastAPI, clock: FakeClock, admin: int, database_url: str
) -> None:
    """On PostgreSQL the first change holds every active admin's row; the second waits, then
    finds itself the last admin. (SQLite takes one writer at a time anyway.)"""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers")
    second = make_operator(app, clock, OTHER_ADMIN, "admin")
    sessions = sessions_of(app)
    first_holds = threading.Event()
    outcome: dict[str, str] = {}

    def disable_the_first_admin() -> None:
        first_holds.wait(timeout=30)
        try:
            with sessions.begin() as session:
                change_operator(
                    session, admin, acting_id=second, role=None, disabled=True, now=clock()
                )
            outcome["second"] = "ok"
        except AccountRefused as exc:
            outcome["second"] = exc.code

    racer = threading.Thread(target=disable_the_first_admin)
    racer.start()
    with sessions.begin() as session:
        change_operator(session, second, acting_id=admin, role=None, disabled=True, now=clock())
        first_holds.set()
        # Commit only once the other change is waiting on this one's row locks.
        wait_until(lambda: waiting_for_a_lock(sessions), what="the second change to wait")
    racer.join(timeout=30)

    assert outcome == {"second": "last_admin"}
    assert can_sign_in(app, ADMIN, PASSWORD)


def waiting_for_a_lock(sessions: sessionmaker[Session]) -> bool:
    with sessions() as watcher:
        return bool(
            watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
                )
            )
        )


# Pages --------------------------------------------------------------------------------------------


def test_the_team_page_is_for_admins_and_says_so_to_viewers(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str, other: TestClient
) -> None:
    make_operator(app, clock, VIEWER, "viewer")
    sign_in(other, VIEWER)

    page = client.get("/ops/team")
    assert page.status_code == 200
    assert 'id="invite-form"' in page.text and "team.js" in page.text
    viewer_page = other.get("/ops/team")
    assert viewer_page.status_code == 200
    assert "Admins only" in viewer_page.text and "invite-form" not in viewer_page.text
    with TestClient(app) as anonymous:
        redirect = anonymous.get("/ops/team", follow_redirects=False)
        assert redirect.status_code == 303
        assert redirect.headers["location"].startswith("/ops/login?next=/ops/team")


# Command line -------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    for name, value in {
        "LOCKER_DATABASE_URL": url,
        "LOCKER_DATA_DIR": str(tmp_path / "var"),
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_PUBLIC_URL": "https://ops.example",
        "LOCKER_OPS_ARGON2_TIME_COST": "1",
        "LOCKER_OPS_ARGON2_MEMORY_KIB": "64",
        "LOCKER_OPS_ARGON2_PARALLELISM": "1",
    }.items():
        monkeypatch.setenv(name, value)
    assert CliRunner().invoke(cli_app, ["db", "upgrade"]).exit_code == 0
    return url


def test_the_cli_invites_and_resets_with_printed_links(cli_env: str) -> None:
    runner = CliRunner()
    invited = runner.invoke(cli_app, ["operator", "invite", "Ada@Example.com", "--role", "admin"])
    assert invited.exit_code == 0, invited.output
    first = invited.output.strip().splitlines()[-1]
    assert first.startswith("https://ops.example/ops/account#")
    assert "invitation link for ada@example.com (admin)" in invited.output
    assert "invited" in runner.invoke(cli_app, ["operator", "list"]).output

    reset = runner.invoke(cli_app, ["operator", "reset-password", "ada@example.com"])
    assert reset.exit_code == 0, reset.output
    second = reset.output.strip().splitlines()[-1]
    again = runner.invoke(cli_app, ["operator", "invite", "ada@example.com", "--role", "viewer"])
    assert again.exit_code == 1 and "exists already" in again.output
    unknown = runner.invoke(cli_app, ["operator", "reset-password", "nobody@example.com"])
    assert unknown.exit_code == 1 and "no operator" in unknown.output

    sessions = engine_for(cli_env)
    with sessions() as session:
        links = session.scalars(select(OperatorLink).order_by(OperatorLink.id)).all()
        actions = session.scalars(select(OperatorAuditEntry.action)).all()
    sessions.kw["bind"].dispose()
    hashes = [hashlib.sha256(token_of(url).encode()).hexdigest() for url in (first, second)]
    assert [link.token_hash for link in links] == hashes
    assert links[0].revoked_at is not None and links[1].revoked_at is None
    assert links[1].purpose == "invite"  # never set a password: a new invitation
    assert actions == ["invite_operator", "reset_operator_password"]
