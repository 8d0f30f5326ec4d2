"""The paging API: one's own subscriptions (any role), webhook targets (admins), the outbox;
every change audited; a target's URL never shown again, nor audited."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.config import CentralSettings
from central.models import OperatorAuditEntry, PageOutbox, PageSubscription, PageTarget
from central.paging.tasks import run_paging
from tests.central.conftest import World
from tests.central.ops.support import ADMIN, VIEWER, fast, make_operator, sign_in
from tests.central.paging.support import (
    HOOK_URL,
    FakeMailer,
    Receiver,
    dispatcher,
    raise_alert,
)
from tests.clock import FakeClock

API = "/ops/api/paging"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


@pytest.fixture
def accounts(app: FastAPI, clock: FakeClock, world: World) -> dict[str, int]:
    return {
        ADMIN: make_operator(app, clock, ADMIN, "admin"),
        VIEWER: make_operator(app, clock, VIEWER, "viewer"),
    }


def _call(client: TestClient, csrf: str, method: str, path: str, body: Any = None) -> Any:
    return client.request(method, f"{API}{path}", json=body, headers={"X-CSRF-Token": csrf})


def _audit(app: FastAPI) -> list[tuple[str, str, str | None, dict[str, Any] | None]]:
    with app.state.sessions() as session:
        rows = session.scalars(
            select(OperatorAuditEntry)
            .where(OperatorAuditEntry.action.like("paging%"))
            .order_by(OperatorAuditEntry.id)
        )
        return [(r.action, r.outcome, r.target_id, r.detail) for r in rows]


def test_an_operator_manages_their_own_subscriptions(
    client: TestClient, app: FastAPI, accounts: dict[str, int]
) -> None:
    csrf = sign_in(client, VIEWER)
    options = client.get(f"{API}/options").json()
    assert {"type": "bank_offline", "label": "Bank offline"} in options["alert_kinds"]
    assert [b["id"] for b in options["banks"]] == ["BOS-1", "NYC-1", "NYC-2"]
    assert options["email_configured"] is False

    made = _call(
        client,
        csrf,
        "POST",
        "/subscriptions",
        {"alert_types": ["door_fault", "bank_offline"], "bank_ids": ["NYC-1"], "email": True},
    )
    assert made.status_code == 201, made.text
    sub = made.json()
    assert sub["alert_types"] == ["bank_offline", "door_fault"]
    assert (sub["operator"], sub["on_resolve"], sub["target_id"]) == (VIEWER, True, None)

    changed = _call(
        client,
        csrf,
        "PUT",
        f"/subscriptions/{sub['id']}",
        {"alert_types": None, "bank_ids": None, "email": True, "on_resolve": False},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["alert_types"], changed.json()["bank_ids"]) == (None, None)
    assert [s["id"] for s in client.get(f"{API}/subscriptions").json()["subscriptions"]] == [
        sub["id"]
    ]
    assert _call(client, csrf, "DELETE", f"/subscriptions/{sub['id']}").status_code == 204
    assert client.get(f"{API}/subscriptions").json()["subscriptions"] == []
    assert [(a, o, t) for a, o, t, _ in _audit(app)] == [
        ("paging_subscribe", "ok", "new"),
        ("paging_subscription_change", "ok", str(sub["id"])),
        ("paging_unsubscribe", "ok", str(sub["id"])),
    ]
    assert _audit(app)[0][3] == {
        "subscription_id": sub["id"],
        "alert_types": ["bank_offline", "door_fault"],
        "bank_ids": ["NYC-1"],
        "email": True,
        "target": None,
        "on_resolve": True,
    }


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"alert_types": ["door_fault"]}, 422, "no_channel"),
        ({"email": True, "alert_types": []}, 422, "no_alert_types"),
        ({"email": True, "alert_types": ["door_fualt"]}, 422, "unknown_alert_type"),
        ({"email": True, "alert_types": ["Door Fault"]}, 422, "validation_error"),
        ({"email": True, "bank_ids": []}, 422, "no_banks"),
        ({"email": True, "bank_ids": ["NYC-1", "XYZ-9"]}, 422, "unknown_bank"),
        ({"target_id": 999}, 422, "unknown_target"),
        ({"email": True, "channel": "sms"}, 422, "validation_error"),
    ],
)
def test_a_bad_subscription_is_refused_with_a_code_and_audited(
    client: TestClient,
    app: FastAPI,
    accounts: dict[str, int],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    csrf = sign_in(client, VIEWER)
    answer = _call(client, csrf, "POST", "/subscriptions", body)
    assert (answer.status_code, answer.json()["error"]) == (status, code)
    if code != "validation_error":
        assert [(a, o) for a, o, _, _ in _audit(app)] == [("paging_subscribe", code)]


def test_nobody_touches_anothers_subscriptions_and_admins_see_them_all(
    client: TestClient, app: FastAPI, accounts: dict[str, int]
) -> None:
    viewer_csrf = sign_in(client, VIEWER)
    mine = _call(client, viewer_csrf, "POST", "/subscriptions", {"email": True}).json()
    assert client.get(f"{API}/subscriptions?all=true").status_code == 403
    assert client.get(f"{API}/outbox").status_code == 403
    admin_csrf = sign_in(client, ADMIN)
    for method in ("PUT", "DELETE"):
        answer = _call(client, admin_csrf, method, f"/subscriptions/{mine['id']}", {"email": True})
        assert (answer.status_code, answer.json()["error"]) == (404, "unknown_subscription")
    everyone = client.get(f"{API}/subscriptions?all=true").json()["subscriptions"]
    assert [(s["operator"], s["id"]) for s in everyone] == [(VIEWER, mine["id"])]
    assert client.get(f"{API}/subscriptions").json()["subscriptions"] == []


def test_admins_manage_targets_whose_url_is_never_shown_again(
    client: TestClient, app: FastAPI, accounts: dict[str, int]
) -> None:
    viewer_csrf = sign_in(client, VIEWER)
    refused = _call(client, viewer_csrf, "POST", "/targets", {"name": "chat", "url": HOOK_URL})
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")

    csrf = sign_in(client, ADMIN)
    made = _call(client, csrf, "POST", "/targets", {"name": "chat", "url": HOOK_URL})
    assert made.status_code == 201, made.text
    target = made.json()
    assert (target["host"], target["enabled"]) == ("https://hooks.example.com", True)
    again = _call(client, csrf, "POST", "/targets", {"name": "chat", "url": HOOK_URL})
    assert (again.status_code, again.json()["error"]) == (409, "target_exists")
    for bad in (
        "ftp://hooks.example.com/x",
        "https://",
        "javascript:alert(1)",
        "https://u:p@h.test/",
    ):
        answer = _call(client, csrf, "POST", "/targets", {"name": "bad", "url": bad})
        assert (answer.status_code, answer.json()["error"]) == (422, "invalid_url"), bad
    local = _call(
        client, csrf, "POST", "/targets", {"name": "lan", "url": "http://10.0.0.7:8065/hooks/abc"}
    )
    assert local.status_code == 201 and local.json()["host"] == "http://10.0.0.7:8065"

    off = _call(client, csrf, "PATCH", f"/targets/{target['id']}", {"enabled": False})
    assert off.json()["enabled"] is False
    viewer_csrf = sign_in(client, VIEWER)
    assert [t["name"] for t in client.get(f"{API}/targets").json()["targets"]] == ["lan"]
    chosen = _call(client, viewer_csrf, "POST", "/subscriptions", {"target_id": target["id"]})
    assert chosen.json()["error"] == "target_disabled"

    csrf = sign_in(client, ADMIN)
    shown = json.dumps(client.get(f"{API}/targets").json()) + json.dumps(_audit(app))
    assert "secretTOKEN" not in shown and "/services/" not in shown
    with app.state.sessions() as session:
        sealed = session.scalars(select(PageTarget.url_sealed)).all()
    assert all("secretTOKEN" not in s and app.state.keys.decrypt(s) for s in sealed)


def test_a_test_page_says_whether_the_target_took_it(
    client: TestClient, app: FastAPI, accounts: dict[str, int]
) -> None:
    receiver = Receiver()
    app.state.paging_http = httpx.Client(transport=httpx.MockTransport(receiver))
    csrf = sign_in(client, ADMIN)
    target = _call(client, csrf, "POST", "/targets", {"name": "chat", "url": HOOK_URL}).json()
    sent = _call(client, csrf, "POST", f"/targets/{target['id']}/test")
    assert sent.json() == {"delivered": True, "detail": "chat took the test page"}
    assert receiver.urls == [HOOK_URL]
    assert receiver.bodies[0]["text"].startswith("*Test page*")
    receiver.fail_with = [500]
    failed = _call(client, csrf, "POST", f"/targets/{target['id']}/test")
    assert failed.status_code == 200
    assert failed.json()["delivered"] is False
    assert failed.json()["detail"].startswith("https://hooks.example.com answered HTTP 500")
    assert "secretTOKEN" not in failed.text
    missing = _call(client, csrf, "POST", "/targets/999/test")
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_target")
    assert [(a, o) for a, o, _, _ in _audit(app)][1:] == [
        ("paging_target_test", "ok"),
        ("paging_target_test", "not_delivered"),
        ("paging_target_test", "unknown_target"),
    ]
    app.state.paging_http.close()


def test_deleting_a_target_cancels_its_pages_and_keeps_email_subscriptions(
    client: TestClient, app: FastAPI, clock: FakeClock, accounts: dict[str, int]
) -> None:
    csrf = sign_in(client, ADMIN)
    target = _call(client, csrf, "POST", "/targets", {"name": "chat", "url": HOOK_URL}).json()
    both = _call(
        client, csrf, "POST", "/subscriptions", {"email": True, "target_id": target["id"]}
    ).json()
    _call(client, csrf, "POST", "/subscriptions", {"target_id": target["id"]})
    with app.state.sessions.begin() as session:
        raise_alert(session, clock())
    receiver = Receiver(down=True)
    paging, http = dispatcher(app.state.sessions, app.state.keys, clock, receiver, FakeMailer())
    run_paging(paging)
    http.close()

    assert _call(client, csrf, "DELETE", f"/targets/{target['id']}").status_code == 204
    with app.state.sessions() as session:
        subs = session.scalars(select(PageSubscription)).all()
        assert [(s.id, s.email, s.target_id) for s in subs] == [(both["id"], True, None)]
        pages = {p.channel: p.status for p in session.scalars(select(PageOutbox))}
    assert pages == {"email": "sent", "webhook": "cancelled"}
    outbox = client.get(f"{API}/outbox").json()["pages"]
    assert {(p["channel"], p["status"]) for p in outbox} == {
        ("email", "sent"),
        ("webhook", "cancelled"),
    }
    webhook = next(p for p in outbox if p["channel"] == "webhook")
    assert webhook["destination"] == "chat (https://hooks.example.com)"
    assert webhook["last_error"] == "webhook target deleted"
    assert client.get(f"{API}/outbox?status=sent").json()["pages"][0]["channel"] == "email"
    assert client.get(f"{API}/outbox?status=bogus").status_code == 422
    assert _audit(app)[-1][:2] == ("paging_target_delete", "ok")
    assert _audit(app)[-1][3] == {
        "name": "chat",
        "host": "https://hooks.example.com",
        "cancelled_pages": 1,
    }


def test_the_paging_page_renders_for_every_role(
    client: TestClient, app: FastAPI, accounts: dict[str, int]
) -> None:
    assert client.get("/ops/paging", follow_redirects=False).status_code == 303
    sign_in(client, VIEWER)
    page = client.get("/ops/paging")
    assert page.status_code == 200
    assert 'data-kind="power_lost"' in page.text and "Webhook targets" not in page.text
    assert "script-src" not in page.text and "paging.js" in page.text
    sign_in(client, ADMIN)
    assert "Webhook targets" in client.get("/ops/paging").text


def test_state_changes_need_the_csrf_header(client: TestClient, accounts: dict[str, int]) -> None:
    sign_in(client, VIEWER)
    answer = client.post(f"{API}/subscriptions", json={"email": True})
    assert (answer.status_code, answer.json()["error"]) == (403, "csrf_failed")
