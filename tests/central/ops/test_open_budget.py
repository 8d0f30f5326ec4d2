"""The fleet's budget of remote opens: beyond it every open is refused, audited and alerted,
until the oldest open of the window ages out."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.config import CentralSettings
from central.models import Alert, NodeCommand, OperatorAuditEntry
from tests.central.conftest import World
from tests.central.ops.support import ADMIN, enroll_node, fast, make_operator, sessions_of, sign_in
from tests.clock import FakeClock

REASON = "recipient locked out, verified by phone"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings).model_copy(
        update={"remote_open_budget": 2, "remote_open_window_minutes": 10.0}
    )


@pytest.fixture
def csrf(client: TestClient, app: FastAPI, clock: FakeClock, world: World) -> str:
    make_operator(app, clock, ADMIN, "admin")
    enroll_node(app, clock, "NYC-1")
    enroll_node(app, clock, "NYC-2")
    return sign_in(client, ADMIN)


def open_door(client: TestClient, csrf: str, bank_id: str, label: str) -> Any:
    return client.post(
        f"/ops/api/banks/{bank_id}/compartments/{label}/open",
        json={"reason": REASON},
        headers={"X-CSRF-Token": csrf},
    )


def opens_issued(app: FastAPI) -> int:
    with sessions_of(app)() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(NodeCommand)
                .where(NodeCommand.type == "open_compartment")
            )
            or 0
        )


def test_opens_beyond_the_fleets_budget_are_refused_alerted_and_audited(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str
) -> None:
    assert open_door(client, csrf, "NYC-1", "A01").status_code == 202
    clock.advance(minutes=4)
    assert open_door(client, csrf, "NYC-2", "A01").status_code == 202  # another bank counts too

    refused = open_door(client, csrf, "NYC-1", "A02")

    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert (body["error"], body["budget"]) == ("remote_open_budget_exhausted", 2)
    assert body["retry_after_s"] == 6 * 60  # when the first open leaves the 10-minute window
    assert refused.headers["Retry-After"] == str(6 * 60)
    assert opens_issued(app) == 2
    with sessions_of(app)() as session:
        [alert] = session.scalars(
            select(Alert).where(Alert.type == "remote_open_budget_exhausted")
        ).all()
        assert (alert.bank_id, alert.resolved_at) == (None, None)
        assert alert.detail == {"operator": ADMIN, "bank_id": "NYC-1", "compartment": "A02"}
        outcomes = session.scalars(
            select(OperatorAuditEntry.outcome).where(
                OperatorAuditEntry.action == "open_compartment"
            )
        ).all()
        assert sorted(outcomes) == ["ok", "ok", "remote_open_budget_exhausted"]


def test_the_budget_frees_up_as_opens_age_out_of_the_window(
    client: TestClient, app: FastAPI, clock: FakeClock, csrf: str
) -> None:
    for label in ("A01", "A02"):
        assert open_door(client, csrf, "NYC-1", label).status_code == 202
    assert open_door(client, csrf, "NYC-1", "A03").status_code == 429
    clock.advance(minutes=10, seconds=1)

    assert open_door(client, csrf, "NYC-1", "A03").status_code == 202
    assert open_door(client, csrf, "NYC-1", "A01").status_code == 202
    assert opens_issued(app) == 4


def test_disabling_and_enabling_doors_do_not_count(client: TestClient, csrf: str) -> None:
    for action in ("disable", "enable", "disable", "enable"):
        answer = client.post(
            f"/ops/api/banks/NYC-1/compartments/A01/{action}",
            json={"reason": REASON},
            headers={"X-CSRF-Token": csrf},
        )
        assert answer.status_code == 202, answer.text
    assert open_door(client, csrf, "NYC-1", "A01").status_code == 202
