"""Alerts: listing, raising, acknowledging and resolving, and the new alert sources."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.config import CentralSettings
from central.context import Ctx
from central.models import (
    Actor,
    Alert,
    OperatorAccount,
    OperatorAuditEntry,
    ReservationStatus,
)
from central.nodes.health import mark_silent_nodes_offline
from central.ops import alerts as ops_alerts
from central.reservations import repository as reservations_repository
from central.reservations.transitions import transition
from central.scheduler import Jobs
from central.webhooks.tasks import WebhookDispatcher
from tests.central.conftest import World
from tests.central.ops.support import (
    ADMIN,
    VIEWER,
    enroll_node,
    fast,
    make_operator,
    reserve,
    sessions_of,
    sign_in,
)
from tests.clock import FakeClock


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


@pytest.fixture
def admin_csrf(client: TestClient, app: FastAPI, clock: FakeClock, world: World) -> str:
    make_operator(app, clock, ADMIN, "admin")
    make_operator(app, clock, VIEWER, "viewer")
    return sign_in(client, ADMIN)


def _post(client: TestClient, csrf: str, path: str, body: Any = None) -> Any:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf})


def _manual(
    client: TestClient, csrf: str, bank_id: str = "NYC-1", note: str = "door 3 sticks"
) -> Any:
    return _post(
        client,
        csrf,
        "/ops/api/alerts",
        {"bank_id": bank_id, "type": "manual", "detail": {"note": note}},
    )


def _audit(app: FastAPI) -> list[tuple[str | None, str, str, str | None]]:
    with sessions_of(app)() as session:
        rows = session.execute(
            select(
                OperatorAccount.email,
                OperatorAuditEntry.action,
                OperatorAuditEntry.outcome,
                OperatorAuditEntry.reason,
            )
            .outerjoin(OperatorAccount, OperatorAccount.id == OperatorAuditEntry.operator_id)
            .where(OperatorAuditEntry.action != "login")
            .order_by(OperatorAuditEntry.id)
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_raise_acknowledge_and_resolve_a_manual_alert(
    client: TestClient, app: FastAPI, clock: FakeClock, admin_csrf: str
) -> None:
    raised = _manual(client, admin_csrf)
    assert raised.status_code == 201, raised.text
    alert = raised.json()
    assert alert["bank_id"] == "NYC-1" and alert["bank_name"] == "Bank NYC-1"
    assert alert["type"] == "manual" and alert["detail"]["note"] == "door 3 sticks"
    assert alert["acknowledged_at"] is None and alert["resolved_at"] is None

    clock.advance(minutes=5)
    acked = _post(
        client, admin_csrf, f"/ops/api/alerts/{alert['id']}/acknowledge", {"reason": "on it"}
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == ADMIN
    assert acked.json()["acknowledged_at"] is not None
    # Acknowledging again changes nothing.
    clock.advance(minutes=1)
    again = _post(client, admin_csrf, f"/ops/api/alerts/{alert['id']}/acknowledge")
    assert again.json()["acknowledged_at"] == acked.json()["acknowledged_at"]

    listed = client.get("/ops/api/alerts?status=acknowledged").json()["alerts"]
    assert [a["id"] for a in listed] == [alert["id"]]

    resolved = _post(
        client, admin_csrf, f"/ops/api/alerts/{alert['id']}/resolve", {"reason": "fixed"}
    )
    assert resolved.status_code == 200
    assert resolved.json()["resolved_by"] == ADMIN and resolved.json()["note"] == "fixed"
    assert client.get("/ops/api/alerts").json()["alerts"] == []  # open is the default
    assert [a["id"] for a in client.get("/ops/api/alerts?status=resolved").json()["alerts"]] == [
        alert["id"]
    ]
    late = _post(client, admin_csrf, f"/ops/api/alerts/{alert['id']}/acknowledge")
    assert late.status_code == 409 and late.json()["error"] == "alert_resolved"

    assert _audit(app) == [
        (ADMIN, "raise_alert", "ok", "door 3 sticks"),
        (ADMIN, "acknowledge_alert", "ok", "on it"),
        (ADMIN, "acknowledge_alert", "ok", None),
        (ADMIN, "resolve_alert", "ok", "fixed"),
        (ADMIN, "acknowledge_alert", "alert_resolved", None),
    ]


def test_alert_list_filters_and_order(
    client: TestClient, app: FastAPI, clock: FakeClock, admin_csrf: str
) -> None:
    first = _manual(client, admin_csrf, "NYC-1").json()
    clock.advance(minutes=1)
    second = _manual(client, admin_csrf, "BOS-1").json()
    clock.advance(minutes=1)
    node_id = enroll_node(app, clock, "NYC-2")
    clock.advance(minutes=5)
    with sessions_of(app).begin() as session:
        assert mark_silent_nodes_offline(session, clock()) == 1

    every = client.get("/ops/api/alerts?status=all").json()["alerts"]
    assert [a["type"] for a in every] == ["bank_offline", "manual", "manual"]  # newest first
    assert every[0]["bank_id"] == "NYC-2" and every[0]["detail"]["node_id"] == node_id
    assert [a["id"] for a in client.get("/ops/api/alerts?bank_id=BOS-1").json()["alerts"]] == [
        second["id"]
    ]
    manual = client.get("/ops/api/alerts?type=manual").json()["alerts"]
    assert [a["id"] for a in manual] == [second["id"], first["id"]]
    assert client.get("/ops/api/alerts?status=bogus").status_code == 422


def test_viewer_can_look_but_not_touch(
    client: TestClient, app: FastAPI, clock: FakeClock, admin_csrf: str
) -> None:
    alert_id = _manual(client, admin_csrf).json()["id"]
    client.cookies.clear()
    csrf = sign_in(client, VIEWER)

    assert client.get("/ops/api/alerts").status_code == 200
    for path, body in (
        ("/ops/api/alerts", {"bank_id": "NYC-1", "type": "manual", "detail": {"note": "x"}}),
        (f"/ops/api/alerts/{alert_id}/acknowledge", {"reason": "no"}),
        (f"/ops/api/alerts/{alert_id}/resolve", None),
    ):
        response = _post(client, csrf, path, body)
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden"
    refused = [row for row in _audit(app) if row[0] == VIEWER]
    assert [(action, outcome) for _, action, outcome, _ in refused] == [
        ("raise_alert", "forbidden"),
        ("acknowledge_alert", "forbidden"),
        ("resolve_alert", "forbidden"),
    ]
    with sessions_of(app)() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.acknowledged_at is None and alert.resolved_at is None


def test_bad_alert_requests(client: TestClient, admin_csrf: str) -> None:
    unknown_bank = _manual(client, admin_csrf, "NOWHERE")
    assert unknown_bank.status_code == 404 and unknown_bank.json()["error"] == "unknown_bank"
    not_manual = _post(
        client,
        admin_csrf,
        "/ops/api/alerts",
        {"bank_id": "NYC-1", "type": "bank_offline", "detail": {"note": "x"}},
    )
    assert not_manual.status_code == 422
    missing = _post(client, admin_csrf, "/ops/api/alerts/999999/resolve")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_alert"
    no_csrf = client.post("/ops/api/alerts/1/resolve")
    assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf_failed"


# Sources ------------------------------------------------------------------------------------------


@pytest.fixture
def jobs(app: FastAPI, clock: FakeClock) -> Iterator[Jobs]:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    jobs = Jobs(app.state.sessions, app.state.keys, clock, http, app.state.settings)
    yield jobs
    jobs.close()
    http.close()


def _open_alerts(app: FastAPI, alert_type: str) -> list[Alert]:
    with sessions_of(app)() as session:
        return list(
            session.scalars(
                select(Alert)
                .where(Alert.type == alert_type, Alert.resolved_at.is_(None))
                .order_by(Alert.id)
            )
        )


def test_parcels_past_deadline_raise_one_alert_per_bank_until_returned(
    app: FastAPI, clock: FakeClock, world: World, jobs: Jobs
) -> None:
    first = reserve(app, clock, "ACME-PD1", deposit_into="A01")
    second = reserve(app, clock, "ACME-PD2", deposit_into="A02")
    clock.advance(hours=1)
    third = reserve(app, clock, "ACME-PD3", size="M", deposit_into="A03")
    other_bank = reserve(app, clock, "ACME-PD4", bank_id="BOS-1", deposit_into="A01")

    clock.advance(hours=71, seconds=1)  # past the first two deadlines only
    assert jobs.expire_pickups() == 2
    (alert,) = _open_alerts(app, "parcel_past_deadline")
    assert alert.bank_id == "NYC-1" and alert.detail is not None
    assert alert.detail["count"] == 2
    assert {p["reservation_id"] for p in alert.detail["parcels"]} == {first, second}
    assert {p["compartment"] for p in alert.detail["parcels"]} == {"A01", "A02"}

    clock.advance(hours=1)
    assert jobs.expire_pickups() == 2  # the third parcel, and BOS-1's
    alerts = _open_alerts(app, "parcel_past_deadline")
    assert [a.bank_id for a in alerts] == ["NYC-1", "BOS-1"]  # still one for NYC-1
    assert alerts[0].id == alert.id and alerts[0].detail is not None
    assert alerts[0].detail["count"] == 3
    listed = [p["reservation_id"] for p in alerts[0].detail["parcels"]]
    assert set(listed[:2]) == {first, second} and listed[2:] == [third]
    assert alerts[1].detail is not None and alerts[1].detail["count"] == 1
    assert alerts[1].detail["parcels"][0]["reservation_id"] == other_bank

    # The courier takes NYC-1's parcels back: its alert resolves, BOS-1's stays.
    with sessions_of(app).begin() as session:
        ctx = Ctx(session=session, keys=app.state.keys, now=clock())
        for rid in (first, second, third):
            reservation = reservations_repository.get(session, rid)
            assert reservation is not None
            transition(ctx, reservation, ReservationStatus.RETURNED, actor=Actor.COURIER)
    clock.advance(minutes=1)
    assert jobs.expire_pickups() == 0
    assert [a.bank_id for a in _open_alerts(app, "parcel_past_deadline")] == ["BOS-1"]


class FlakyReceiver:
    """A carrier's webhook endpoint that answers 500 until told to recover."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return httpx.Response(200 if self.up else 500)


def test_a_failing_webhook_endpoint_raises_one_alert_and_recovery_resolves_it(
    client: TestClient, app: FastAPI, clock: FakeClock, world: World
) -> None:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://hooks.carrier.test/in?token=s3cret", "secret": "whsec-0123456789abc"},
        headers=world.auth("acme"),
    )
    assert hook.status_code == 201, hook.text
    endpoint_id = hook.json()["id"]
    reserve(app, clock, "ACME-WH1")
    receiver = FlakyReceiver()
    http = httpx.Client(transport=httpx.MockTransport(receiver))
    dispatcher = WebhookDispatcher(
        app.state.sessions,
        app.state.keys,
        http,
        clock,
        on_round=ops_alerts.record_webhook_results,  # as the scheduler wires it
    )

    def round_() -> None:
        assert dispatcher.run_once() == 1
        clock.advance(hours=2)  # past any backoff (at most an hour, plus jitter)

    for _ in range(4):
        round_()
    assert _open_alerts(app, "webhook_failing") == []
    round_()
    (alert,) = _open_alerts(app, "webhook_failing")
    assert alert.bank_id is None and alert.subject == endpoint_id
    assert alert.detail is not None
    assert alert.detail["host"] == "hooks.carrier.test" and alert.detail["carrier"] == "acme"
    assert "s3cret" not in str(alert.detail)
    assert alert.detail["last_error"] == "HTTP 500"
    for _ in range(3):
        round_()
    assert [a.id for a in _open_alerts(app, "webhook_failing")] == [alert.id]

    receiver.up = True
    round_()
    assert _open_alerts(app, "webhook_failing") == []
    with sessions_of(app)() as session:
        stored = session.get(Alert, alert.id)
        assert stored is not None and stored.resolved_at is not None and stored.resolved_by is None
    http.close()
    assert receiver.calls == 9


def test_network_wide_alerts_list_without_a_bank(
    client: TestClient, app: FastAPI, clock: FakeClock, admin_csrf: str
) -> None:
    from central.ops.alerts import raise_alert

    with sessions_of(app).begin() as session:
        raise_alert(
            session,
            bank_id=None,
            alert_type="webhook_failing",
            subject="wh_1",
            detail={"endpoint_id": "wh_1"},
            now=clock(),
        )
        _, created = raise_alert(
            session,
            bank_id=None,
            alert_type="webhook_failing",
            subject="wh_1",
            detail={"endpoint_id": "wh_1", "again": True},
            now=clock(),
        )
        assert created is False
    (listed,) = client.get("/ops/api/alerts").json()["alerts"]
    assert listed["bank_id"] is None and listed["bank_name"] is None
    assert listed["detail"] == {"endpoint_id": "wh_1", "again": True}
