"""Guarded opens: "open all" (or several doors) waits for a second admin's approval within ten
minutes; only then is one signed command issued; every step and refusal is audited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.context import Ctx
from central.errors import ApiError
from central.models import (
    Alert,
    Compartment,
    Node,
    NodeCommand,
    OpenRequest,
    OperatorAccount,
    OperatorAuditEntry,
)
from central.nodes.commands import ack_command, describe_command, signing_key
from central.ops import open_requests
from central.ops.auth import Operator
from central.scheduler import INTERVALS, Jobs
from locker_wire import signing
from locker_wire.commands import OpenCompartments, parse_command
from locker_wire.schemas import CommandAck
from tests.central.conftest import World
from tests.central.ops.support import (
    ADMIN,
    VIEWER,
    enroll_node,
    fast,
    make_operator,
    sessions_of,
    sign_in,
)
from tests.clock import FakeClock
from tests.locker_node.support import wait_until

SECOND = "second@ops.test"
THIRD = "third@ops.test"
REASON = "flood warning: empty the bank before the water comes"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    # A budget of one single open: mass opens must neither use it nor be refused by it.
    return fast(settings).model_copy(update={"remote_open_budget": 1})


@dataclass
class Admins:
    """Signed-in clients: two admins (and a third for races), a viewer; each with its CSRF."""

    app: FastAPI
    first: TestClient
    second: TestClient
    viewer: TestClient
    ids: dict[str, int]
    node_id: str
    csrf: dict[int, str]

    def post(self, client: TestClient, path: str, body: Any = None) -> Any:
        return client.post(
            f"/ops/api{path}", json=body if body is not None else {}, headers=self.headers(client)
        )

    def headers(self, client: TestClient) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf[id(client)]}

    def ask(self, body: dict[str, Any] | None = None, bank_id: str = "NYC-1") -> Any:
        return self.post(
            self.first, f"/banks/{bank_id}/open-requests", body or {"all": True, "reason": REASON}
        )

    def asked(self, body: dict[str, Any] | None = None, bank_id: str = "NYC-1") -> str:
        answer = self.ask(body, bank_id)
        assert answer.status_code == 201, answer.text
        request_id: str = answer.json()["id"]
        return request_id


@pytest.fixture
def admins(app: FastAPI, clock: FakeClock, world: World) -> Iterator[Admins]:
    ids = {
        email: make_operator(app, clock, email, role)
        for email, role in (
            (ADMIN, "admin"),
            (SECOND, "admin"),
            (THIRD, "admin"),
            (VIEWER, "viewer"),
        )
    }
    node_id = enroll_node(app, clock, "NYC-1")
    enroll_node(app, clock, "NYC-2")
    with TestClient(app) as first, TestClient(app) as second, TestClient(app) as viewer:
        csrf = {
            id(first): sign_in(first, ADMIN),
            id(second): sign_in(second, SECOND),
            id(viewer): sign_in(viewer, VIEWER),
        }
        yield Admins(app, first, second, viewer, ids, node_id, csrf)


def mass_opens(app: FastAPI) -> list[NodeCommand]:
    with sessions_of(app)() as session:
        return list(
            session.scalars(select(NodeCommand).where(NodeCommand.type == "open_compartments"))
        )


def request_row(app: FastAPI, request_id: str) -> OpenRequest:
    with sessions_of(app)() as session:
        row = session.get(OpenRequest, request_id)
        assert row is not None
        return row


def alerts(app: FastAPI, alert_type: str) -> list[Alert]:
    with sessions_of(app)() as session:
        return list(session.scalars(select(Alert).where(Alert.type == alert_type)))


def audit(app: FastAPI, action: str) -> list[tuple[int | None, str, str | None, Any]]:
    with sessions_of(app)() as session:
        rows = session.execute(
            select(
                OperatorAuditEntry.operator_id,
                OperatorAuditEntry.outcome,
                OperatorAuditEntry.target_id,
                OperatorAuditEntry.detail,
            )
            .where(OperatorAuditEntry.action == action)
            .order_by(OperatorAuditEntry.id)
        ).all()
        return [(row[0], row[1], row[2], row[3]) for row in rows]


def waiting_for_a_lock(sessions: sessionmaker[Session]) -> bool:
    with sessions() as watcher:
        return bool(
            watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
                )
            )
        )


def bank_labels(app: FastAPI, bank_id: str) -> list[str]:
    with sessions_of(app)() as session:
        return sorted(
            session.scalars(select(Compartment.label).where(Compartment.bank_id == bank_id))
        )


# Asking -------------------------------------------------------------------------------------------


def test_a_request_waits_for_a_second_admin_and_opens_nothing(
    admins: Admins, app: FastAPI, clock: FakeClock
) -> None:
    answer = admins.ask()

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["id"].startswith("opr_")
    assert (body["status"], body["all"], body["labels"], body["requested_by"]) == (
        "pending",
        True,
        None,
        ADMIN,
    )
    assert datetime.fromisoformat(body["expires_at"]) == clock() + timedelta(minutes=10)
    assert body["command_id"] is None
    assert mass_opens(app) == []
    [alert] = alerts(app, "mass_open_requested")
    assert (alert.bank_id, alert.subject, alert.resolved_at) == ("NYC-1", body["id"], None)
    assert alert.detail is not None and alert.detail["requested_by"] == ADMIN
    assert audit(app, "request_mass_open") == [
        (admins.ids[ADMIN], "ok", "NYC-1", {"request_id": body["id"], "doors": "all"})
    ]
    listed = admins.viewer.get("/ops/api/open-requests", params={"status": "pending"})
    assert [r["id"] for r in listed.json()["requests"]] == [body["id"]]


@pytest.mark.parametrize(
    ("bank_id", "body", "status", "code"),
    [
        ("NYC-1", {"labels": ["A01"], "reason": REASON}, 422, "use_single_open"),
        ("NYC-1", {"labels": ["A01", "A01"], "reason": REASON}, 422, "use_single_open"),
        ("NYC-1", {"labels": ["A01", "Z99"], "reason": REASON}, 404, "unknown_compartment"),
        ("NYC-1", {"labels": ["A01", "A02"], "all": True, "reason": REASON}, 422, "labels_or_all"),
        ("NYC-1", {"reason": REASON}, 422, "labels_or_all"),
        ("NYC-1", {"all": True}, 422, "validation_error"),
        ("NYC-1", {"all": True, "reason": "   "}, 422, "validation_error"),
        ("NOPE-1", {"all": True, "reason": REASON}, 404, "unknown_bank"),
        ("BOS-1", {"all": True, "reason": REASON}, 409, "no_node"),
    ],
)
def test_bad_requests_are_refused_with_a_code(
    admins: Admins, app: FastAPI, bank_id: str, body: dict[str, Any], status: int, code: str
) -> None:
    answer = admins.ask(body, bank_id)

    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert mass_opens(app) == []
    with sessions_of(app)() as session:
        assert session.scalar(select(func.count()).select_from(OpenRequest)) == 0


def test_one_request_waits_per_bank(admins: Admins) -> None:
    first = admins.asked()

    again = admins.post(
        admins.second, "/banks/NYC-1/open-requests", {"labels": ["A01", "A02"], "reason": REASON}
    )

    assert (again.status_code, again.json()["error"]) == (409, "request_pending")
    assert again.json()["request_id"] == first
    assert admins.asked(bank_id="NYC-2") != first  # another bank is another matter


# Approving ----------------------------------------------------------------------------------------


def test_the_requester_cannot_approve_their_own_request(admins: Admins, app: FastAPI) -> None:
    request_id = admins.asked()

    refused = admins.post(admins.first, f"/open-requests/{request_id}/approve")

    assert (refused.status_code, refused.json()["error"]) == (403, "second_admin_required")
    assert request_row(app, request_id).status == "pending"
    assert mass_opens(app) == []
    assert [(who, outcome) for who, outcome, _, _ in audit(app, "approve_open_request")] == [
        (admins.ids[ADMIN], "second_admin_required")
    ]


def test_a_second_admin_approves_and_one_signed_command_opens_the_doors(
    admins: Admins, app: FastAPI, clock: FakeClock
) -> None:
    request_id = admins.asked({"labels": ["A02", "A01", "A02"], "reason": REASON})
    clock.advance(minutes=9, seconds=59)

    answer = admins.post(
        admins.second, f"/open-requests/{request_id}/approve", {"reason": "checked with A"}
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["decided_by"], body["door_count"]) == ("approved", SECOND, 2)
    assert body["command_status"] == "pending"
    [command] = mass_opens(app)
    assert command.id == body["command_id"]
    signed = describe_command(command)
    public = signing.load_public_key(signing.public_key_text(signing_key(app.state.keys)))
    signing.verify_command(
        public, signed.signed_fields(), signed.signature, int(clock().timestamp()), admins.node_id
    )
    payload = parse_command(signed)
    assert payload == OpenCompartments(
        labels=["A02", "A01"],
        approval_id=request_id,
        requested_by=ADMIN,
        approved_by=SECOND,
        reason=REASON,
    )
    [requested] = alerts(app, "mass_open_requested")
    assert (requested.resolved_at, requested.resolved_by) == (clock(), admins.ids[SECOND])
    [approved] = alerts(app, "mass_open_approved")
    assert approved.resolved_at is None and approved.detail is not None
    assert approved.detail["door_count"] == 2
    [(who, outcome, target, detail)] = audit(app, "approve_open_request")
    assert (who, outcome, target) == (admins.ids[SECOND], "ok", request_id)
    assert detail["door_count"] == 2 and detail["command_id"] == command.id
    assert detail["requested_by"] == ADMIN

    again = admins.post(admins.second, f"/open-requests/{request_id}/approve")
    assert (again.status_code, again.json()["error"]) == (409, "not_pending")
    assert len(mass_opens(app)) == 1

    # The node answers; the informational alert resolves on the next read (or sweep).
    with sessions_of(app).begin() as session:
        node = session.get(Node, admins.node_id)
        assert node is not None
        ack = CommandAck(outcome="ok", detail='{"opened":["A02","A01"],"failed":{}}')
        ack_command(session, node, command.id, ack, clock())
    listed = admins.viewer.get(f"/ops/api/open-requests/{request_id}").json()
    assert listed["command_status"] == "acknowledged"
    [approved] = alerts(app, "mass_open_approved")
    assert approved.resolved_at == clock()
    assert approved.detail is not None and approved.detail["command_status"] == "acknowledged"


def test_open_all_takes_every_compartment_of_the_bank_at_approval_time(
    admins: Admins, app: FastAPI
) -> None:
    request_id = admins.asked()

    answer = admins.post(admins.second, f"/open-requests/{request_id}/approve")

    assert answer.status_code == 200, answer.text
    [command] = mass_opens(app)
    assert sorted(command.payload["labels"]) == bank_labels(app, "NYC-1")
    assert answer.json()["door_count"] == len(bank_labels(app, "NYC-1"))


def test_a_mass_open_neither_uses_nor_is_refused_by_the_single_open_budget(
    admins: Admins, app: FastAPI
) -> None:
    single = admins.post(admins.first, "/banks/NYC-1/compartments/A01/open", {"reason": REASON})
    assert single.status_code == 202  # the budget of one is used up now
    request_id = admins.asked()

    assert admins.post(admins.second, f"/open-requests/{request_id}/approve").status_code == 200

    assert len(mass_opens(app)) == 1
    over = admins.post(admins.first, "/banks/NYC-2/compartments/A01/open", {"reason": REASON})
    assert over.json()["error"] == "remote_open_budget_exhausted"


def test_a_request_whose_requester_lost_admin_rights_cannot_be_approved(
    admins: Admins, app: FastAPI, clock: FakeClock
) -> None:
    request_id = admins.asked()
    with sessions_of(app).begin() as session:
        account = session.get(OperatorAccount, admins.ids[ADMIN])
        assert account is not None
        account.disabled_at = clock()

    answer = admins.post(admins.second, f"/open-requests/{request_id}/approve")

    assert (answer.status_code, answer.json()["error"]) == (409, "requester_not_admin")
    assert mass_opens(app) == [] and request_row(app, request_id).status == "pending"


def test_after_ten_minutes_a_request_expires_and_cannot_be_approved(
    admins: Admins, app: FastAPI, clock: FakeClock
) -> None:
    request_id = admins.asked()
    clock.advance(minutes=10)

    late = admins.post(admins.second, f"/open-requests/{request_id}/approve")

    assert (late.status_code, late.json()["error"]) == (410, "approval_expired")
    assert request_row(app, request_id).status == "expired"
    assert mass_opens(app) == []
    [alert] = alerts(app, "mass_open_requested")
    assert (alert.resolved_at, alert.resolved_by) == (clock(), None)
    assert [outcome for _, outcome, _, _ in audit(app, "approve_open_request")] == [
        "approval_expired"
    ]
    assert admins.asked() != request_id  # the bank may be asked for again


def test_the_sweep_expires_requests_nobody_decided(
    admins: Admins, app: FastAPI, clock: FakeClock
) -> None:
    request_id = admins.asked()
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    jobs = Jobs(app.state.sessions, app.state.keys, clock, http, app.state.settings)
    try:
        assert "settle_open_requests" in jobs.all() and INTERVALS["settle_open_requests"] == 30
        clock.advance(minutes=9)
        assert jobs.settle_open_requests() == 0
        clock.advance(minutes=1)
        assert jobs.settle_open_requests() == 1
    finally:
        jobs.close()
        http.close()
    assert request_row(app, request_id).status == "expired"
    assert admins.viewer.get(f"/ops/api/open-requests/{request_id}").json()["status"] == "expired"


# Refusing and cancelling --------------------------------------------------------------------------


def test_another_admin_refuses_and_nothing_opens(admins: Admins, app: FastAPI) -> None:
    request_id = admins.asked()
    own = admins.post(admins.first, f"/open-requests/{request_id}/refuse")
    assert (own.status_code, own.json()["error"]) == (403, "second_admin_required")

    answer = admins.post(
        admins.second, f"/open-requests/{request_id}/refuse", {"reason": "no flood after all"}
    )

    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["decision_reason"]) == (
        "refused",
        "no flood after all",
    )
    assert mass_opens(app) == []
    [alert] = alerts(app, "mass_open_requested")
    assert alert.resolved_by == admins.ids[SECOND]
    late = admins.post(admins.second, f"/open-requests/{request_id}/approve")
    assert (late.status_code, late.json()["error"]) == (409, "not_pending")
    assert [(who, outcome) for who, outcome, _, _ in audit(app, "refuse_open_request")] == [
        (admins.ids[ADMIN], "second_admin_required"),
        (admins.ids[SECOND], "ok"),
    ]


def test_only_the_requester_cancels(admins: Admins, app: FastAPI) -> None:
    request_id = admins.asked()
    other = admins.post(admins.second, f"/open-requests/{request_id}/cancel")
    assert (other.status_code, other.json()["error"]) == (403, "not_requester")

    answer = admins.post(admins.first, f"/open-requests/{request_id}/cancel")

    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert mass_opens(app) == []
    assert [outcome for _, outcome, _, _ in audit(app, "cancel_open_request")] == [
        "not_requester",
        "ok",
    ]
    unknown = admins.post(admins.first, "/open-requests/opr_nothing/cancel")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_open_request")


def test_a_viewer_reads_but_cannot_ask_or_decide(admins: Admins, app: FastAPI) -> None:
    asked = admins.post(
        admins.viewer, "/banks/NYC-1/open-requests", {"all": True, "reason": REASON}
    )
    assert (asked.status_code, asked.json()["error"]) == (403, "forbidden")
    request_id = admins.asked()

    for act in ("approve", "refuse", "cancel"):
        answer = admins.post(admins.viewer, f"/open-requests/{request_id}/{act}")
        assert (answer.status_code, answer.json()["error"]) == (403, "forbidden")

    assert request_row(app, request_id).status == "pending"
    assert [outcome for _, outcome, _, _ in audit(app, "request_mass_open")] == ["forbidden", "ok"]
    listed = admins.viewer.get("/ops/api/open-requests")
    assert listed.status_code == 200 and len(listed.json()["requests"]) == 1
    no_csrf = admins.second.post(f"/ops/api/open-requests/{request_id}/approve", json={})
    assert (no_csrf.status_code, no_csrf.json()["error"]) == (403, "csrf_failed")
    assert mass_opens(app) == []


def test_the_pages_show_the_rule_and_load_their_scripts(admins: Admins) -> None:
    page = admins.viewer.get("/ops/approvals")
    assert page.status_code == 200
    assert "approvals.js" in page.text and "second admin" in page.text
    assert 'id="decision-dialog"' not in page.text  # a viewer gets no buttons
    bank = admins.first.get("/ops/banks/NYC-1")
    assert 'id="mass-open-form"' in bank.text and "mass_open.js" in bank.text
    viewer_bank = admins.viewer.get("/ops/banks/NYC-1")
    assert 'id="mass-open-form"' not in viewer_bank.text and 'id="mass-open"' in viewer_bank.text


# Racing -------------------------------------------------------------------------------------------


def test_two_admins_approving_at_once_issue_one_command(
    admins: Admins, app: FastAPI, clock: FakeClock, database_url: str
) -> None:
    """On PostgreSQL the first approval holds the request's row; the second waits for it, then
    finds the request approved. (SQLite takes one writer at a time anyway.)"""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers")
    request_id = admins.asked()
    sessions = sessions_of(app)
    second = Operator(admins.ids[SECOND], SECOND, "admin")
    third = Operator(admins.ids[THIRD], THIRD, "admin")
    first_holds = threading.Event()
    outcome: dict[str, Any] = {}

    def approve_later() -> None:
        first_holds.wait(timeout=30)
        try:
            with sessions() as session, session.begin():
                ctx = Ctx(session=session, keys=app.state.keys, now=clock())
                outcome["third"] = open_requests.approve(ctx, third, request_id, None)
        except ApiError as exc:
            outcome["third"] = exc.code

    racer = threading.Thread(target=approve_later)
    racer.start()
    with sessions() as session, session.begin():
        ctx = Ctx(session=session, keys=app.state.keys, now=clock())
        outcome["second"] = open_requests.approve(ctx, second, request_id, None)
        first_holds.set()
        # Commit only once the other approval is waiting on this one's row lock.
        wait_until(lambda: waiting_for_a_lock(sessions), what="the second approval to wait")
    racer.join(timeout=30)

    assert outcome["third"] == "not_pending"
    assert len(mass_opens(app)) == 1
    assert request_row(app, request_id).decided_by == admins.ids[SECOND]
