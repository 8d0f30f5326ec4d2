"""Remote actions: admin only, a reason each, audited, and sent to the node as signed commands."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.config import CentralSettings
from central.models import (
    Node,
    NodeCommand,
    OperatorAccount,
    OperatorAuditEntry,
    Reservation,
    ReservationEvent,
)
from central.nodes.commands import ack_command, describe_command, signing_key
from locker_wire import signing
from locker_wire.schemas import CommandAck
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

REASON = "recipient locked out, verified by phone"


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)


@pytest.fixture
def node_id(app: FastAPI, clock: FakeClock, world: World) -> str:
    make_operator(app, clock, ADMIN, "admin")
    make_operator(app, clock, VIEWER, "viewer")
    return enroll_node(app, clock, "NYC-1")


@pytest.fixture
def csrf(client: TestClient, node_id: str) -> str:
    return sign_in(client, ADMIN)


def _post(client: TestClient, csrf: str, path: str, body: Any) -> Any:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf})


def _verified(app: FastAPI, command_id: str, node_id: str, now: datetime) -> NodeCommand:
    """The stored command, after checking its signature as the node does."""
    with sessions_of(app)() as session:
        row = session.get(NodeCommand, command_id)
        assert row is not None
        command = describe_command(row)
    public = signing.load_public_key(signing.public_key_text(signing_key(app.state.keys)))
    signing.verify_command(
        public, command.signed_fields(), command.signature, int(now.timestamp()), node_id
    )
    with pytest.raises(signing.CommandSignatureInvalid):
        forged = command.signed_fields() | {"payload": {**command.payload, "compartment": "B01"}}
        signing.verify_command(public, forged, command.signature, int(now.timestamp()), node_id)
    return row


def _audit(app: FastAPI) -> list[tuple[str | None, str, str, str | None, str | None]]:
    with sessions_of(app)() as session:
        rows = session.execute(
            select(
                OperatorAccount.email,
                OperatorAuditEntry.action,
                OperatorAuditEntry.outcome,
                OperatorAuditEntry.target_id,
                OperatorAuditEntry.reason,
            )
            .outerjoin(OperatorAccount, OperatorAccount.id == OperatorAuditEntry.operator_id)
            .where(OperatorAuditEntry.action != "login")
            .order_by(OperatorAuditEntry.id)
        ).all()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def _command_count(app: FastAPI) -> int:
    with sessions_of(app)() as session:
        return session.scalar(select(func.count()).select_from(NodeCommand)) or 0


@pytest.mark.parametrize(
    ("action", "command_type"),
    [
        ("open", "open_compartment"),
        ("disable", "disable_compartment"),
        ("enable", "enable_compartment"),
    ],
)
def test_compartment_actions_become_signed_commands(
    client: TestClient,
    app: FastAPI,
    clock: FakeClock,
    node_id: str,
    csrf: str,
    action: str,
    command_type: str,
) -> None:
    response = _post(
        client, csrf, f"/ops/api/banks/NYC-1/compartments/A02/{action}", {"reason": REASON}
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    row = _verified(app, body["command_id"], node_id, clock())
    assert (row.type, row.bank_id, row.node_id) == (command_type, "NYC-1", node_id)
    assert row.payload == {"compartment": "A02", "reason": REASON}
    assert _audit(app) == [(ADMIN, command_type, "ok", "NYC-1/A02", REASON)]
    with sessions_of(app)() as session:
        detail = session.scalars(select(OperatorAuditEntry.detail)).all()[-1]
    assert detail == {"command_id": body["command_id"], "bank_id": "NYC-1"}

    status = client.get(f"/ops/api/commands/{body['command_id']}")
    assert status.status_code == 200
    assert status.json() | {"issued_at": None} == {
        "id": body["command_id"],
        "type": command_type,
        "bank_id": "NYC-1",
        "status": "pending",
        "issued_at": None,
        "acknowledged_at": None,
        "result": None,
    }


def test_command_status_follows_the_nodes_acknowledgement(
    client: TestClient, app: FastAPI, clock: FakeClock, node_id: str, csrf: str
) -> None:
    command_id = _post(
        client, csrf, "/ops/api/banks/NYC-1/compartments/A01/open", {"reason": REASON}
    ).json()["command_id"]
    clock.advance(seconds=20)
    with sessions_of(app).begin() as session:
        node = session.get(Node, node_id)
        assert node is not None
        ack_command(session, node, command_id, CommandAck(outcome="ok"), clock())

    status = client.get(f"/ops/api/commands/{command_id}").json()
    assert status["status"] == "acknowledged"
    assert status["result"] == {"outcome": "ok", "detail": None}
    assert status["acknowledged_at"] is not None
    assert client.get("/ops/api/commands/nope").status_code == 404


def test_refusals_are_audited_and_issue_nothing(
    client: TestClient, app: FastAPI, node_id: str, csrf: str
) -> None:
    no_node = _post(client, csrf, "/ops/api/banks/NYC-2/compartments/A01/open", {"reason": REASON})
    unknown_label = _post(
        client, csrf, "/ops/api/banks/NYC-1/compartments/Z99/open", {"reason": REASON}
    )
    unknown_bank = _post(
        client, csrf, "/ops/api/banks/NOWHERE/compartments/A01/open", {"reason": REASON}
    )

    assert no_node.status_code == 409 and no_node.json()["error"] == "no_node"
    assert unknown_label.status_code == 404
    assert unknown_label.json()["error"] == "unknown_compartment"
    assert unknown_bank.status_code == 404 and unknown_bank.json()["error"] == "unknown_bank"
    assert _command_count(app) == 0
    assert [(a, o, t) for _, a, o, t, _ in _audit(app)] == [
        ("open_compartment", "no_node", "NYC-2/A01"),
        ("open_compartment", "unknown_compartment", "NYC-1/Z99"),
        ("open_compartment", "unknown_bank", "NOWHERE/A01"),
    ]


@pytest.mark.parametrize("reason", [None, "", "x" * 501])
def test_a_reason_of_one_to_500_characters_is_required(
    client: TestClient, app: FastAPI, csrf: str, reason: str | None
) -> None:
    body = {} if reason is None else {"reason": reason}
    response = _post(client, csrf, "/ops/api/banks/NYC-1/compartments/A01/open", body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert _command_count(app) == 0


def _action_paths(reservation_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/ops/api/banks/NYC-1/compartments/A01/open", {"reason": REASON}),
        ("/ops/api/banks/NYC-1/compartments/A01/disable", {"reason": REASON}),
        ("/ops/api/banks/NYC-1/compartments/A01/enable", {"reason": REASON}),
        (f"/ops/api/reservations/{reservation_id}/extend", {"hours": 24, "reason": REASON}),
        (f"/ops/api/reservations/{reservation_id}/reissue-code", {"reason": REASON}),
    ]


def test_a_viewer_is_refused_every_action(
    client: TestClient, app: FastAPI, clock: FakeClock, node_id: str
) -> None:
    rid = reserve(app, clock, "ACME-V1", deposit_into="A01")
    csrf = sign_in(client, VIEWER)

    for path, body in _action_paths(rid):
        response = _post(client, csrf, path, body)
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden"
    assert _command_count(app) == 0
    audited = _audit(app)
    assert [(who, outcome) for who, _, outcome, _, _ in audited] == [(VIEWER, "forbidden")] * 5
    assert [action for _, action, _, _, _ in audited] == [
        "open_compartment",
        "disable_compartment",
        "enable_compartment",
        "extend_deadline",
        "reissue_code",
    ]
    with sessions_of(app)() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.pickup_deadline == clock() + timedelta(hours=72)


def test_actions_need_a_session_and_the_csrf_token(
    client: TestClient, app: FastAPI, clock: FakeClock, node_id: str
) -> None:
    rid = reserve(app, clock, "ACME-C1", deposit_into="A01")
    for path, body in _action_paths(rid):
        assert client.post(path, json=body).status_code == 401
    sign_in(client, ADMIN)
    for path, body in _action_paths(rid):
        response = client.post(path, json=body, headers={"X-CSRF-Token": "forged"})
        assert response.status_code == 403
        assert response.json()["error"] == "csrf_failed"
    assert _command_count(app) == 0


def test_extend_moves_centrals_deadline_with_history_and_tells_the_node(
    client: TestClient, app: FastAPI, clock: FakeClock, world: World, node_id: str, csrf: str
) -> None:
    rid = reserve(app, clock, "ACME-X1", deposit_into="A01")
    deadline = clock() + timedelta(hours=72)
    clock.advance(hours=1)

    response = _post(
        client, csrf, f"/ops/api/reservations/{rid}/extend", {"hours": 24, "reason": REASON}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reservation"]["status"] == "deposited"
    moved = datetime.fromisoformat(body["reservation"]["pickup_deadline"])
    assert moved == deadline + timedelta(hours=24)
    row = _verified(app, body["command_id"], node_id, clock())
    assert row.type == "extend_deadline"
    # `until` for nodes that follow central's deadline, `hours` for those that predate it.
    assert row.payload == {"reservation_id": rid, "hours": 24, "until": moved.isoformat()}
    # The carrier sees the extension in the history, by the operator; not the internal reason.
    seen = client.get(f"/v1/reservations/{rid}", headers=world.auth("acme")).json()
    assert seen["pickup_deadline"] == body["reservation"]["pickup_deadline"]
    last = seen["history"][-1]
    assert (last["type"], last["actor"]) == ("extended", "operator")
    assert REASON not in str(seen)
    with sessions_of(app)() as session:
        event = session.scalars(
            select(ReservationEvent).where(ReservationEvent.type == "extended")
        ).one()
        assert event.actor_id == ADMIN
    assert _audit(app) == [(ADMIN, "extend_deadline", "ok", rid, REASON)]


def test_extend_beyond_the_banks_policy_is_refused_and_audited(
    client: TestClient, app: FastAPI, clock: FakeClock, node_id: str, csrf: str
) -> None:
    rid = reserve(app, clock, "ACME-X2", deposit_into="A01")
    assert (
        _post(
            client, csrf, f"/ops/api/reservations/{rid}/extend", {"hours": 48, "reason": REASON}
        ).status_code
        == 200
    )

    refused = _post(
        client, csrf, f"/ops/api/reservations/{rid}/extend", {"hours": 25, "reason": REASON}
    )

    assert refused.status_code == 409 and refused.json()["error"] == "extension_limit"
    assert _command_count(app) == 1  # only the first extension's
    with sessions_of(app)() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.pickup_deadline == clock() + timedelta(hours=72 + 48)
    assert [o for _, _, o, _, _ in _audit(app)] == ["ok", "extension_limit"]
    too_many = _post(
        client, csrf, f"/ops/api/reservations/{rid}/extend", {"hours": 169, "reason": REASON}
    )
    assert too_many.status_code == 422
    missing = _post(
        client, csrf, "/ops/api/reservations/rsv_nope/extend", {"hours": 1, "reason": REASON}
    )
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_reservation"


def test_extending_a_hold_before_deposit_sends_no_command(
    client: TestClient, app: FastAPI, clock: FakeClock, node_id: str, csrf: str
) -> None:
    rid = reserve(app, clock, "ACME-X3")
    response = _post(
        client, csrf, f"/ops/api/reservations/{rid}/extend", {"hours": 12, "reason": REASON}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["command_id"] is None and body["reservation"]["status"] == "reserved"
    until = datetime.fromisoformat(body["reservation"]["reserved_until"])
    assert until == clock() + timedelta(hours=72 + 12)
    assert _command_count(app) == 0


def test_reissue_code_invalidates_it_on_the_node(
    client: TestClient, app: FastAPI, clock: FakeClock, node_id: str, csrf: str
) -> None:
    deposited = reserve(app, clock, "ACME-R1", deposit_into="A01")
    waiting = reserve(app, clock, "ACME-R2")

    response = _post(
        client, csrf, f"/ops/api/reservations/{deposited}/reissue-code", {"reason": REASON}
    )
    refused = _post(
        client, csrf, f"/ops/api/reservations/{waiting}/reissue-code", {"reason": REASON}
    )

    assert response.status_code == 202, response.text
    row = _verified(app, response.json()["command_id"], node_id, clock())
    assert row.type == "invalidate_code"
    assert row.payload["reservation_id"] == deposited
    assert refused.status_code == 409 and refused.json()["error"] == "not_deposited"
    assert [(a, o, t) for _, a, o, t, _ in _audit(app)] == [
        ("reissue_code", "ok", deposited),
        ("reissue_code", "not_deposited", waiting),
    ]


def test_a_deposited_parcel_at_a_bank_without_node_cannot_be_extended(
    client: TestClient, app: FastAPI, clock: FakeClock, node_id: str, csrf: str
) -> None:
    rid = reserve(app, clock, "ACME-N1", bank_id="NYC-2", deposit_into="A01")
    response = _post(
        client, csrf, f"/ops/api/reservations/{rid}/extend", {"hours": 1, "reason": REASON}
    )
    assert response.status_code == 409 and response.json()["error"] == "no_node"
    with sessions_of(app)() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.pickup_deadline == clock() + timedelta(hours=72)
