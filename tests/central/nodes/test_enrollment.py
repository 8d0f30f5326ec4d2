"""Enrolling a node with a one-time token, and what central answers it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from central.cli import app as cli
from central.models import Alert, EnrollmentToken, Node
from central.nodes.commands import signing_key
from central.nodes.seals import sealing_key
from locker_wire import signing
from locker_wire.sealing import sealing_public_key_text
from tests.central.conftest import TEST_SECRET, World, engine_for
from tests.central.nodes.support import LAYOUT, enroll, issue_token
from tests.clock import FakeClock


def enroll_body(token: str, **extra: object) -> dict[str, object]:
    key = signing.generate_private_key()
    return {"token": token, "public_key": signing.public_key_text(key), **extra}


def test_a_token_enrolls_the_bank_node_once(
    client: TestClient,
    world: World,
    app: FastAPI,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    token = issue_token(sessions, clock)
    assert len(token) >= 26 and token.startswith("enr_")
    first = client.post("/v1/node/enroll", json=enroll_body(token, compartments=LAYOUT))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["bank_id"] == "NYC-1" and body["node_id"].startswith("node_")
    assert body["layout_matches"] is True
    assert [(c["label"], c["size"]) for c in body["compartments"]] == [
        (c["label"], c["size"]) for c in LAYOUT
    ]
    assert body["compartments"][0]["length_mm"] > 0
    assert body["policy"] == {
        "hold_hours": 72,
        "pickup_hours": 72,
        "reminder_hours": 24,
        "max_extension_hours": 72,
        "allow_upsize": False,
    }
    keys = app.state.keys
    assert body["central_signing_public_key"] == signing.public_key_text(signing_key(keys))
    assert body["central_sealing_public_key"] == sealing_public_key_text(sealing_key(keys))

    again = client.post("/v1/node/enroll", json=enroll_body(token))
    assert again.status_code == 401
    assert again.json()["error"] == "token_used"
    with sessions() as session:
        stored = session.scalars(select(EnrollmentToken)).one()
        assert token not in stored.token_hash  # only the hash is kept
        assert session.scalars(select(Node)).one().id == body["node_id"]


def test_an_expired_token_fails(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    token = issue_token(sessions, clock)
    clock.advance(hours=24)
    response = client.post("/v1/node/enroll", json=enroll_body(token))
    assert (response.status_code, response.json()["error"]) == (401, "token_expired")


def test_an_unknown_token_fails(client: TestClient, world: World) -> None:
    response = client.post("/v1/node/enroll", json=enroll_body("enr_" + "x" * 43))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")


def test_a_token_for_another_bank_fails_and_stays_usable(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    token = issue_token(sessions, clock, "NYC-1")
    wrong = client.post("/v1/node/enroll", json=enroll_body(token, bank_id="BOS-1"))
    assert (wrong.status_code, wrong.json()["error"]) == (403, "wrong_bank")
    right = client.post("/v1/node/enroll", json=enroll_body(token, bank_id="NYC-1"))
    assert right.status_code == 200, right.text


def test_a_bad_public_key_fails_without_spending_the_token(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    token = issue_token(sessions, clock)
    bad = client.post("/v1/node/enroll", json={"token": token, "public_key": "*" * 43})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_public_key")
    assert client.post("/v1/node/enroll", json=enroll_body(token)).status_code == 200


def test_malformed_enrollment_bodies_are_4xx(client: TestClient, world: World) -> None:
    broken = client.post(
        "/v1/node/enroll", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert (broken.status_code, broken.json()["error"]) == (400, "invalid_json")
    missing = client.post("/v1/node/enroll", json={"token": "enr_" + "x" * 43})
    assert (missing.status_code, missing.json()["error"]) == (422, "validation_error")


def test_re_enrolling_revokes_the_old_node(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    old = enroll(client, sessions, clock)
    assert old.post("/v1/node/heartbeat", {"outbox_depth": 0, "version": "1"}).status_code == 200
    new = enroll(client, sessions, clock)
    refused = old.post("/v1/node/heartbeat", {"outbox_depth": 0, "version": "1"})
    assert (refused.status_code, refused.json()["error"]) == (401, "unknown_node")
    assert new.post("/v1/node/heartbeat", {"outbox_depth": 0, "version": "1"}).status_code == 200
    with sessions() as session:
        nodes = {n.id: n for n in session.scalars(select(Node))}
        assert nodes[old.node_id].revoked_at is not None
        assert nodes[new.node_id].revoked_at is None


def test_a_layout_mismatch_is_an_alert_but_still_enrolls(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    reported = [*LAYOUT[:3], {"label": "A04", "size": "L"}, {"label": "Z99", "size": "S"}]
    node = enroll(client, sessions, clock, compartments=reported)
    assert node.enrollment["layout_matches"] is False
    assert len(node.enrollment["compartments"]) == 5  # central's layout, not the node's
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
    assert (alert.bank_id, alert.type) == ("NYC-1", "layout_mismatch")
    assert alert.detail is not None
    assert alert.detail["missing_on_node"] == ["A05"]
    assert alert.detail["unknown_to_central"] == ["Z99"]
    assert alert.detail["size_differs"] == {"A04": {"central": "M", "node": "L"}}
    assert alert.resolved_at is None


def test_bank_enroll_prints_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    monkeypatch.setenv("LOCKER_DATABASE_URL", url)
    monkeypatch.setenv("LOCKER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    unknown = runner.invoke(cli, ["bank", "enroll", "NOPE"])
    assert unknown.exit_code == 1 and "NOPE" in unknown.output
    added = runner.invoke(
        cli,
        ["bank", "add", "B1", "--name", "B", "--address", "A", "--lat", "1", "--lon", "1",
         "--compartments", "S:1"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    first = runner.invoke(cli, ["bank", "enroll", "B1"])
    second = runner.invoke(cli, ["bank", "enroll", "B1"])
    assert first.exit_code == 0, first.output
    token = first.output.strip()
    assert token.startswith("enr_") and token != second.output.strip()
    sessions = engine_for(url)
    with sessions() as session:
        hashes = session.scalars(select(EnrollmentToken.token_hash)).all()
        assert len(hashes) == 2 and all(token not in h for h in hashes)
    sessions.kw["bind"].dispose()
