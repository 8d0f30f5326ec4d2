"""Kiosk usage events for central's analytics: wrong codes, lockouts, courier sessions."""

from __future__ import annotations

import json

from locker_wire.schemas import CodeFailedData, CourierSessionData, LockedOutData
from tests.locker_node.kiosk.rig import COURIER_CODE, Rig
from tests.locker_node.kiosk.test_pickup import deposited, wrong_code


def test_wrong_pickup_codes_and_the_lockout_are_reported_without_the_code(rig: Rig) -> None:
    parcel_id, _, code = deposited(rig)
    wrong = wrong_code(code)

    for _ in range(5):
        assert rig.pickup(wrong).status_code == 401
    assert rig.pickup(wrong).status_code == 429  # locked: refused before any check, no event

    failed = rig.events("kiosk.code_failed")
    assert [CodeFailedData.model_validate(e.data) for e in failed] == [
        CodeFailedData(kind="pickup", attempts_left=left) for left in (4, 3, 2, 1, 0)
    ]
    [locked] = rig.events("kiosk.locked_out")
    assert LockedOutData.model_validate(locked.data) == LockedOutData(
        kind="pickup", retry_after_s=30
    )
    for event in [*failed, locked]:
        body = json.loads(event.payload)
        assert body["bank_id"] == "TEST-1" and body["occurred_at"] == rig.clock().isoformat()
        assert wrong not in event.payload and code not in event.payload
        assert parcel_id not in event.payload


def test_wrong_courier_codes_are_reported_too(rig: Rig) -> None:
    answer = rig.client.post("/api/courier/login", json={"carrier": "ups", "pin": "99999999"})
    assert answer.status_code == 401

    [failed] = rig.events("kiosk.code_failed")
    assert CodeFailedData.model_validate(failed.data).kind == "courier_login"
    assert "99999999" not in failed.payload and COURIER_CODE not in failed.payload


def test_a_courier_session_is_reported_when_the_courier_logs_out(rig: Rig) -> None:
    started = rig.clock()
    headers = rig.login()
    for tracking in ("1Z0001", "1Z0002"):
        rig.add_reservation(tracking)
        rig.deposit(tracking, headers)
    rig.clock.advance(minutes=3, seconds=20)

    assert rig.client.post("/api/courier/logout", headers=headers).status_code in (200, 204)

    [event] = rig.events("kiosk.session")
    session = CourierSessionData.model_validate(event.data)
    assert session == CourierSessionData(
        carrier_id="ups", started_at=started, duration_s=200, deposits=2, ended_by="logout"
    )
    token = headers["Authorization"].removeprefix("Bearer ")
    assert token not in event.payload and COURIER_CODE not in event.payload


def test_an_idle_session_is_reported_once_by_housekeeping(rig: Rig) -> None:
    headers = rig.login()
    rig.clock.advance(seconds=40)
    rig.client.get("/api/courier/returns", headers=headers)  # activity: the session lives on
    rig.clock.advance(minutes=30)

    rig.node.flows.housekeeping()
    rig.node.flows.housekeeping()

    [event] = rig.events("kiosk.session")
    session = CourierSessionData.model_validate(event.data)
    assert (session.ended_by, session.deposits, session.duration_s) == ("idle", 0, 40)
    assert rig.client.get("/api/courier/returns", headers=headers).status_code == 401
