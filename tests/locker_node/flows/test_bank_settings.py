"""Central's bank settings on the node: its policy over the configuration's, kept across restarts;
a bank in maintenance takes nothing in but gives every parcel out; compartments in maintenance."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from locker_node.flows.bank_settings import IN_MAINTENANCE
from locker_node.store.database import transaction
from locker_node.store.schema import audit_log
from tests.clock import FakeClock
from tests.locker_node.bank_settings import send_settings
from tests.locker_node.dropoffs import CODE as DROPOFF_CODE
from tests.locker_node.dropoffs import QR as DROPOFF_QR
from tests.locker_node.dropoffs import add_dropoff
from tests.locker_node.kiosk.rig import Rig

MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 16:00 in Madrid
# Closed on Wednesdays and at weekends.
HOURS = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "thu", "fri")}


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    rig = make_rig(clock=FakeClock(MONDAY))
    rig.add_courier()
    return rig


def deposit(rig: Rig, tracking: str, **body: Any) -> Any:
    return rig.client.post(
        "/api/courier/deposit", json={"tracking_number": tracking, **body}, headers=rig.login()
    )


def deposited(rig: Rig, tracking: str, *, size: str = "S") -> dict[str, Any]:
    rig.add_reservation(tracking, size=size)
    return rig.deposit(tracking, rig.login())


def audit_actions(rig: Rig) -> list[tuple[str, str | None]]:
    with transaction(rig.engine) as conn:
        rows = conn.execute(select(audit_log.c.action, audit_log.c.compartment)).all()
    return [(row.action, row.compartment) for row in rows if row.action != "door_open"]


# The policy -----------------------------------------------------------------------------------


def test_centrals_policy_replaces_the_configurations_and_outlives_a_restart(rig: Rig) -> None:
    flows = rig.node.flows
    assert flows.settings_version() is None
    assert (flows.policy.pickup_hold, flows.policy.allow_walk_up) == (timedelta(hours=72), False)

    send_settings(flows, 4, pickup_hours=48, allow_walk_up=True, allow_upsize=False)

    assert flows.settings_version() == 4
    policy = flows.policy
    assert (policy.pickup_hold, policy.allow_walk_up, policy.allow_upsize) == (
        timedelta(hours=48),
        True,
        False,
    )
    assert policy.bank_id == "TEST-1" and policy.code_digits == 10  # the node's own stay
    confirmed = deposited(rig, "1Z0001")
    assert datetime.fromisoformat(confirmed["pickup_deadline"]) == MONDAY + timedelta(hours=48)

    rig.restart()
    policy = rig.node.flows.policy
    assert rig.node.flows.settings_version() == 4
    assert (policy.pickup_hold, policy.allow_walk_up, policy.allow_upsize) == (
        timedelta(hours=48),
        True,
        False,
    )


def test_walk_ups_follow_centrals_setting(rig: Rig) -> None:
    refused = deposit(rig, "1ZWALK1", size="S")
    assert (refused.status_code, refused.json()["error"]) == (404, "no_reservation")

    send_settings(rig.node.flows, 1, allow_walk_up=True)

    assert deposit(rig, "1ZWALK1", size="S").status_code == 200


def test_no_upsizing_when_central_says_so(rig: Rig) -> None:
    send_settings(rig.node.flows, 1, allow_upsize=False)
    for number in range(4):  # every small door
        deposited(rig, f"1ZS{number}")
    rig.add_reservation("1ZS9")

    refused = deposit(rig, "1ZS9")

    assert (refused.status_code, refused.json()["error"]) == (409, "no_capacity")


def test_a_deadline_that_would_fall_while_closed_moves_to_the_end_of_the_next_opening(
    rig: Rig,
) -> None:
    send_settings(rig.node.flows, 1, pickup_hours=48, opening_hours=HOURS, timezone="Europe/Madrid")

    confirmed = deposited(rig, "1Z0001")

    # Monday 16:00 + 48 h is a Wednesday, closed: the deadline is Thursday's closing time.
    thursday_close = datetime(2026, 3, 5, 19, 0, tzinfo=UTC)  # 20:00 in Madrid
    assert datetime.fromisoformat(confirmed["pickup_deadline"]) == thursday_close
    [event] = rig.events("parcel.deposited")
    assert datetime.fromisoformat(event.data["pickup_deadline"]) == thursday_close


def test_damaged_opening_hours_and_zone_are_ignored_but_maintenance_still_holds(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    send_settings(
        rig.node.flows,
        1,
        opening_hours={"mon": [["20:00", "08:00"]]},
        timezone="Mars/Olympus",
        maintenance="flooded",
    )

    policy = rig.node.flows.policy
    assert (policy.opening_hours, policy.timezone) == (None, "UTC")
    assert "opening hours ignored" in caplog.text and "Mars/Olympus" in caplog.text
    rig.add_reservation("1Z0001")
    assert deposit(rig, "1Z0001").json()["error"] == IN_MAINTENANCE


# Maintenance ----------------------------------------------------------------------------------


def test_a_bank_in_maintenance_refuses_deposits_and_walk_ups_and_says_where_to_go(
    rig: Rig,
) -> None:
    rig.add_reservation("1Z0001")
    until = MONDAY + timedelta(hours=6)
    send_settings(rig.node.flows, 2, maintenance="door repairs", until=until, allow_walk_up=True)
    before = rig.snapshot()

    refused = deposit(rig, "1Z0001")
    walk_up = deposit(rig, "1ZWALK1", size="S")

    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == IN_MAINTENANCE
    assert body["reason"] == "door repairs"
    assert datetime.fromisoformat(body["until"]) == until
    assert [n["bank_id"] for n in body["nearby"]] == ["TEST-3", "TEST-2"]
    assert (walk_up.status_code, walk_up.json()["error"]) == (409, IN_MAINTENANCE)
    after = rig.snapshot()
    # Nothing was bound or reserved; only the courier's session moved on.
    for table in ("reservations", "deposits", "compartments", "door_operations"):
        assert after[table] == before[table], table


def test_a_bank_in_maintenance_refuses_drop_offs_by_code_and_qr(rig: Rig) -> None:
    add_dropoff(rig.node.flows, "1ZDROP1")
    send_settings(rig.node.flows, 1, maintenance="painting")

    by_code = rig.client.post("/api/dropoff", json={"code": DROPOFF_CODE})
    by_qr = rig.client.post("/api/dropoff/qr", json={"token": DROPOFF_QR})

    assert (by_code.status_code, by_code.json()["error"]) == (409, IN_MAINTENANCE)
    assert (by_qr.status_code, by_qr.json()["error"]) == (409, IN_MAINTENANCE)
    assert rig.node.flows.keypad_status().locked is False  # no strike for a refused code


def test_pickups_returns_and_collections_keep_working_in_maintenance(rig: Rig) -> None:
    confirmed = deposited(rig, "1Z0001")
    expired = deposited(rig, "1Z0002")
    code = rig.secrets_for(confirmed["parcel_id"])["pickup_code"]
    send_settings(rig.node.flows, 1, maintenance="door repairs")

    opened = rig.pickup(code)

    assert opened.status_code == 200, opened.text
    assert opened.json()["compartment"] == confirmed["compartment"]
    rig.close_door(confirmed["compartment"])
    # A parcel past its deadline still goes back with the courier.
    rig.clock.advance(hours=73)
    rig.node.flows.expire_due()
    rig.add_courier()
    headers = rig.login()
    taken = rig.client.post(f"/api/courier/returns/{expired['parcel_id']}/open", headers=headers)
    assert taken.status_code == 200, taken.text


def test_leaving_maintenance_takes_parcels_again_and_both_are_audited(rig: Rig) -> None:
    rig.add_reservation("1Z0001")
    send_settings(rig.node.flows, 1, maintenance="door repairs")
    assert deposit(rig, "1Z0001").status_code == 409

    send_settings(rig.node.flows, 2)

    assert deposit(rig, "1Z0001").status_code == 200
    actions = [action for action, _ in audit_actions(rig)]
    assert actions.count("maintenance_started") == 1
    assert actions.count("maintenance_ended") == 1
    assert actions.count("bank_settings") == 2


def test_maintenance_holds_across_a_restart(rig: Rig) -> None:
    rig.add_reservation("1Z0001")
    send_settings(rig.node.flows, 1, maintenance="door repairs")

    rig.restart()
    rig.add_courier()

    assert deposit(rig, "1Z0001").json()["error"] == IN_MAINTENANCE


# Compartments in maintenance --------------------------------------------------------------------


def test_a_compartment_in_maintenance_is_not_offered_and_comes_back_when_released(
    rig: Rig,
) -> None:
    small = {"A01": "hinge", "A02": "hinge", "A03": "lock"}
    send_settings(rig.node.flows, 1, allow_upsize=False, compartments=small)

    first = deposited(rig, "1Z0001")
    rig.add_reservation("1Z0002")
    full = deposit(rig, "1Z0002")

    assert first["compartment"] == "A04"
    assert (full.status_code, full.json()["error"]) == (409, "no_capacity")
    assert rig.compartment("A01").in_service  # not out of service: only not offered

    send_settings(rig.node.flows, 2, allow_upsize=False, compartments={"A02": "hinge"})

    again = deposit(rig, "1Z0002")
    assert again.status_code == 200 and again.json()["compartment"] in ("A01", "A03")
    assert ("compartment_maintenance_ended", "A01") in audit_actions(rig)


def test_a_compartment_the_node_took_out_of_service_stays_out_after_maintenance(
    rig: Rig,
) -> None:
    rig.node.doors.mark_out_of_service("A01", "door did not open (Jam); inspect")
    send_settings(rig.node.flows, 1, compartments={"A01": "hinge"})
    send_settings(rig.node.flows, 2)

    assert not rig.compartment("A01").in_service
    assert deposited(rig, "1Z0001")["compartment"] != "A01"


def test_a_parcel_in_a_compartment_put_in_maintenance_is_still_picked_up(rig: Rig) -> None:
    confirmed = deposited(rig, "1Z0001")
    code = rig.secrets_for(confirmed["parcel_id"])["pickup_code"]
    send_settings(rig.node.flows, 1, compartments={confirmed["compartment"]: "hinge"})

    opened = rig.pickup(code)

    assert opened.status_code == 200, opened.text
    assert rig.door_is_open(confirmed["compartment"])
