"""A bank's policy edited by an admin (dashboard and CLI): validated, audited, and carried to
the bank's node by its feed; the extension count enforced for carriers and operators."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from central.cli import app as cli
from central.config import CentralSettings
from tests.central.banks.settings_support import (
    WEEKDAYS_8_TO_20,
    as_viewer,
    audit_details,
    audit_rows,
    deposit_event,
    feed_bank,
    reserve,
    send,
    set_up,
)
from tests.central.conftest import TEST_SECRET, World
from tests.central.ops.support import fast
from tests.clock import FakeClock

POLICY = "/ops/api/banks/NYC-1/policy"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


def test_a_policy_edit_is_kept_audited_and_reaches_the_node(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    first = feed_bank(s.node)
    assert first["version"] == 1
    assert first["policy"]["hold_hours"] == 72 and first["allow_walk_up"] is False
    assert feed_bank(s.node, 1) is None

    edited = s.admin.call(
        "PUT",
        POLICY,
        {
            "hold_hours": 24,
            "allow_walk_up": True,
            "max_extensions": 2,
            "opening_hours": {"fri": [["08:00", "20:00"]], **WEEKDAYS_8_TO_20},
        },
    )

    assert edited.status_code == 200, edited.text
    out = edited.json()
    assert out["settings_version"] == 2
    assert out["policy"] | {"opening_hours": None} == {
        "hold_hours": 24,
        "pickup_hours": 72,
        "reminder_hours": 24,
        "max_extension_hours": 72,
        "max_extensions": 2,
        "allow_walk_up": True,
        "allow_upsize": False,
        "timezone": "America/New_York",
        "opening_hours": None,
    }
    # Canonical: days in week order.
    assert list(out["policy"]["opening_hours"]) == ["mon", "tue", "wed", "thu", "fri"]
    bank = feed_bank(s.node, 1)
    assert bank["version"] == 2
    assert bank["policy"]["hold_hours"] == 24
    assert bank["allow_walk_up"] is True and bank["max_extensions"] == 2
    assert bank["opening_hours"] == out["policy"]["opening_hours"]
    assert bank["timezone"] == "America/New_York"
    [detail] = audit_details(sessions, "bank_policy")
    assert detail is not None
    assert detail["changed"]["hold_hours"] == [72, 24]
    assert detail["changed"]["allow_walk_up"] == [False, True]
    # The same again changes nothing and moves no version; null means always open / no limit.
    again = s.admin.call("PUT", POLICY, {"hold_hours": 24}).json()
    assert again["settings_version"] == 2
    cleared = s.admin.call("PUT", POLICY, {"opening_hours": None, "max_extensions": None}).json()
    assert cleared["policy"]["opening_hours"] is None
    assert cleared["policy"]["max_extensions"] is None
    assert cleared["settings_version"] == 3


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "nothing_to_change"),
        ({"hold_hours": None}, 422, "validation_error"),
        ({"hold_hours": 0}, 422, "validation_error"),
        ({"pickup_hours": 24 * 15}, 422, "validation_error"),
        ({"colour": "red"}, 422, "validation_error"),
        ({"reminder_hours": 72}, 422, "invalid_policy"),
        ({"pickup_hours": 12}, 422, "invalid_policy"),
        ({"opening_hours": {"monday": [["08:00", "20:00"]]}}, 422, "invalid_opening_hours"),
        ({"opening_hours": {"mon": [["20:00", "08:00"]]}}, 422, "invalid_opening_hours"),
        ({"opening_hours": {"mon": [["08:00", "12:00"], ["11:00", "14:00"]]}}, 422, None),
        ({"opening_hours": {"mon": [["8am", "20:00"]]}}, 422, "invalid_opening_hours"),
        ({"opening_hours": {}}, 422, "invalid_opening_hours"),
    ],
)
def test_a_policy_that_cannot_hold_is_refused(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    body: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    response = s.admin.call("PUT", POLICY, body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == (code or "invalid_opening_hours")
    assert s.admin.call("GET", "/ops/api/banks/NYC-1/settings").json()["settings_version"] == 1


def test_only_an_admin_edits_the_policy(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    set_up(app, client, world, sessions, clock)
    viewer = as_viewer(app)
    assert viewer.call("PUT", POLICY, {"hold_hours": 1}).status_code == 403
    assert viewer.call("GET", "/ops/api/banks/NYC-1/settings").json()["policy"]["hold_hours"] == 72
    assert audit_rows(sessions)[-1] == (2, "bank_policy", "forbidden", "NYC-1")
    assert viewer.call("GET", "/ops/api/banks/NOPE/settings").json()["error"] == "unknown_bank"


def test_the_extension_count_is_enforced_for_carriers_and_operators(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    s = set_up(app, client, world, sessions, clock)
    s.admin.call("PUT", POLICY, {"max_extensions": 1})
    rid = reserve(client, world, "ACME-X1").json()["id"]

    def carrier_extends() -> Any:
        return client.post(
            f"/v1/reservations/{rid}/extend", json={"hours": 1}, headers=world.auth("acme")
        )

    assert carrier_extends().status_code == 200
    second = carrier_extends()
    assert second.status_code == 409
    assert second.json()["error"] == "too_many_extensions"
    assert second.json()["max_extensions"] == 1
    # The pickup deadline is another deadline, with a count of its own.
    send(s.node, deposit_event(s.node, rid, clock(), "A01"))
    operator = s.admin.call(
        "POST", f"/ops/api/reservations/{rid}/extend", {"hours": 2, "reason": "on holiday"}
    )
    assert operator.status_code == 200, operator.text
    again = s.admin.call(
        "POST", f"/ops/api/reservations/{rid}/extend", {"hours": 2, "reason": "on holiday"}
    )
    assert again.status_code == 409
    assert again.json()["error"] == "too_many_extensions"
    assert audit_rows(sessions)[-1] == (1, "extend_deadline", "too_many_extensions", rid)


def test_the_cli_changes_the_policy_and_prints_it(
    app: FastAPI,
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    settings: CentralSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCKER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LOCKER_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    hours = '{"sat": [["10:00", "14:00"]]}'

    changed = runner.invoke(
        cli,
        [
            "bank", "policy", "NYC-1", "--hold-hours", "48", "--walk-ups", "--upsize",
            "--max-extensions", "3", "--opening-hours", hours,
        ],
    )  # fmt: skip

    assert changed.exit_code == 0, changed.output
    assert '"hold_hours": 48' in changed.output
    assert '"allow_walk_up": true' in changed.output
    assert '"sat"' in changed.output
    cleared = runner.invoke(
        cli, ["bank", "policy", "NYC-1", "--opening-hours", "none", "--max-extensions", "none"]
    )
    assert cleared.exit_code == 0, cleared.output
    assert '"opening_hours": null' in cleared.output
    for bad in (["--hold-hours", "0"], ["--opening-hours", "{"], ["--opening-hours", '{"x": []}']):
        refused = runner.invoke(cli, ["bank", "policy", "NYC-1", *bad])
        assert refused.exit_code == 1, refused.output
    assert runner.invoke(cli, ["bank", "policy", "NYC-1"]).exit_code == 1
    assert [row[1:3] for row in audit_rows(sessions)] == [
        ("bank_policy", "ok"),
        ("bank_policy", "ok"),
        ("bank_policy", "invalid_opening_hours"),
        ("bank_policy", "nothing_to_change"),
    ]
    assert all(d and d["via"] == "cli" for d in audit_details(sessions, "bank_policy"))
