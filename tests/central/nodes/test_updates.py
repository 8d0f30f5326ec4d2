"""Node updates on central: rollouts through the operator API and the CLI, heartbeats' reports
kept when they change, and the `update_failed` alert raised and resolved."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from central.cli import app as central_cli
from central.config import CentralSettings
from central.models import Alert, NodeUpdateStatus, OperatorAuditEntry
from tests.central.conftest import World
from tests.central.nodes.support import NodeClient, enroll
from tests.central.ops.support import ADMIN, VIEWER, fast, make_operator, sign_in
from tests.clock import FakeClock


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


@pytest.fixture
def admin(client: TestClient, app: FastAPI, clock: FakeClock, world: World) -> dict[str, str]:
    make_operator(app, clock, ADMIN, "admin")
    return {"X-CSRF-Token": sign_in(client, ADMIN)}


def beat(node: NodeClient, *, running: str = "1.0.0", **update: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"doors": {}, "boards": {}, "outbox_depth": 0, "version": running}
    if update:
        body["update"] = {"running": running, **update}
    response = node.post("/v1/node/heartbeat", body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def alerts(sessions: sessionmaker[Session]) -> list[Alert]:
    with sessions() as session:
        return list(session.scalars(select(Alert).where(Alert.type == "update_failed")))


def test_a_rollout_for_listed_banks_reaches_only_their_nodes(
    client: TestClient, sessions: sessionmaker[Session], clock: FakeClock, admin: dict[str, str]
) -> None:
    nyc, bos = enroll(client, sessions, clock), enroll(client, sessions, clock, "BOS-1")
    assert beat(nyc)["wanted_version"] is None

    response = client.put(
        "/ops/api/updates", json={"version": "v1.1", "bank_ids": ["NYC-1"]}, headers=admin
    )

    assert response.status_code == 200, response.text
    (rollout,) = response.json()["rollouts"]
    assert (rollout["version"], rollout["all"], rollout["bank_ids"]) == ("1.1", False, ["NYC-1"])
    assert rollout["set_by"] == ADMIN
    result = beat(nyc)
    assert (result["wanted_version"], result["wanted_rollout"]) == ("1.1", rollout["id"])
    assert beat(bos)["wanted_version"] is None
    # A later rollout to every bank supersedes it; a later one for one bank overrides that.
    client.put("/ops/api/updates", json={"version": "1.2", "all": True}, headers=admin)
    client.put("/ops/api/updates", json={"version": "1.3", "bank_ids": ["BOS-1"]}, headers=admin)
    assert (beat(nyc)["wanted_version"], beat(bos)["wanted_version"]) == ("1.2", "1.3")
    by_bank = {row["bank_id"]: row for row in client.get("/ops/api/updates").json()["banks"]}
    assert (by_bank["NYC-1"]["wanted"], by_bank["BOS-1"]["wanted"]) == ("1.2", "1.3")

    stopped = client.delete("/ops/api/updates", headers=admin)

    assert stopped.json() == {"stopped": 2}
    assert (beat(nyc)["wanted_version"], beat(bos)["wanted_version"]) == (None, None)
    with sessions() as session:
        actions = [
            (entry.action, entry.target_id, entry.outcome)
            for entry in session.scalars(select(OperatorAuditEntry).order_by(OperatorAuditEntry.id))
            if entry.action.endswith(("node_version", "node_update"))
        ]
    assert actions == [
        ("set_node_version", "NYC-1", "ok"),
        ("set_node_version", "all", "ok"),
        ("set_node_version", "BOS-1", "ok"),
        ("stop_node_update", "all", "ok"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"version": "not a version", "all": True}, 422, "invalid_version"),
        ({"version": "1.0+local", "all": True}, 422, "invalid_version"),
        ({"version": "1.0", "bank_ids": ["NOPE-9"]}, 404, "unknown_bank"),
        ({"version": "1.0", "bank_ids": []}, 422, "no_banks"),
        ({"version": "1.0"}, 422, "validation_error"),
        ({"version": "1.0", "all": True, "bank_ids": ["NYC-1"]}, 422, "validation_error"),
    ],
)
def test_a_bad_rollout_is_refused_with_a_code_and_audited(
    client: TestClient,
    sessions: sessionmaker[Session],
    admin: dict[str, str],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    response = client.put("/ops/api/updates", json=body, headers=admin)

    assert (response.status_code, response.json()["error"]) == (status, code)
    assert client.get("/ops/api/updates").json()["rollouts"] == []


def test_a_viewer_sees_progress_but_cannot_set_a_version(
    client: TestClient, app: FastAPI, clock: FakeClock, world: World
) -> None:
    make_operator(app, clock, VIEWER, "viewer")
    csrf = sign_in(client, VIEWER)

    refused = client.put(
        "/ops/api/updates", json={"version": "2.0", "all": True}, headers={"X-CSRF-Token": csrf}
    )

    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert client.get("/ops/api/updates").status_code == 200


def test_reports_are_written_when_they_change_and_drive_the_alert(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    admin: dict[str, str],
    app: FastAPI,
) -> None:
    node = enroll(client, sessions, clock)
    client.put("/ops/api/updates", json={"version": "2.0", "all": True}, headers=admin)
    beat(node, state="installing", wanted="2.0")
    writes: list[str] = []
    engine = app.state.engine

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "node_update_status" in statement and not statement.lstrip().startswith("SELECT"):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        beat(node, state="installing", wanted="2.0")
        beat(node, state="installing", wanted="2.0")
        assert writes == []  # the same report again costs no write
        beat(node, state="rolled_back", wanted="2.0", previous="2.0", detail="exited with 1")
        assert len(writes) == 1
    finally:
        event.remove(engine, "before_cursor_execute", count)

    (alert,) = alerts(sessions)
    assert alert.bank_id == "NYC-1" and alert.subject == node.node_id
    assert alert.resolved_at is None
    assert alert.detail == {
        "node_id": node.node_id,
        "state": "rolled_back",
        "version": "2.0",
        "running": "1.0.0",
        "reason": "exited with 1",
    }
    progress = client.get("/ops/api/updates").json()["banks"]
    assert [(p["state"], p["running"], p["wanted"], p["detail"]) for p in progress] == [
        ("rolled_back", "1.0.0", "2.0", "exited with 1")
    ]
    # Reported again on every heartbeat: still one alert. Healthy on the wanted one resolves it.
    beat(node, state="rolled_back", wanted="2.0", previous="2.0", detail="exited with 1")
    assert len(alerts(sessions)) == 1
    beat(node, running="2.0", state="healthy", wanted="2.0", previous="1.0.0")
    (alert,) = alerts(sessions)
    assert alert.resolved_at == clock()
    with sessions() as session:
        stored = session.get(NodeUpdateStatus, node.node_id)
        assert stored is not None
        assert (stored.state, stored.running, stored.previous) == ("healthy", "2.0", "1.0.0")


def test_the_cli_sets_and_stops_a_rollout_audited(
    client: TestClient,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    world: World,
    settings: CentralSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCKER_DATABASE_URL", settings.database_url)
    assert settings.secret_key is not None
    monkeypatch.setenv("LOCKER_SECRET_KEY", settings.secret_key.get_secret_value())
    node = enroll(client, sessions, clock)
    runner = CliRunner()

    refused = runner.invoke(central_cli, ["node", "update", "--version", "1.5"])
    done = runner.invoke(central_cli, ["node", "update", "--version", "1.5", "--bank", "NYC-1"])

    assert refused.exit_code == 1
    assert done.exit_code == 0, done.output
    assert "version 1.5 wanted for NYC-1" in done.output
    assert beat(node)["wanted_version"] == "1.5"
    bad = runner.invoke(central_cli, ["node", "update", "--version", "x y", "--all"])
    assert bad.exit_code == 1 and "invalid_version" in bad.output
    stopped = runner.invoke(central_cli, ["node", "update", "--stop"])
    assert stopped.exit_code == 0 and "1 rollout(s) stopped" in stopped.output
    assert beat(node)["wanted_version"] is None
    with sessions() as session:
        audit = session.scalars(
            select(OperatorAuditEntry.action).where(OperatorAuditEntry.operator_id.is_(None))
        ).all()
    assert audit == ["set_node_version", "stop_node_update"]
