"""`GET /api/status` tells the kiosk of central's bank settings and of maintenance."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.locker_node.bank_settings import send_settings
from tests.locker_node.kiosk.rig import Rig

HOURS = {"mon": [["08:00", "20:00"]], "sat": [["10:00", "14:00"]]}


def test_before_central_sends_settings_there_are_none_and_no_maintenance(rig: Rig) -> None:
    status = rig.client.get("/api/status").json()

    assert status["settings"] is None
    assert status["maintenance"] is None


def test_the_settings_in_force_are_shown_with_their_version(rig: Rig) -> None:
    send_settings(
        rig.node.flows,
        7,
        pickup_hours=96,
        allow_walk_up=True,
        allow_upsize=False,
        max_extensions=2,
        opening_hours=HOURS,
        timezone="America/New_York",
        compartments={"B02": "new hinge"},
    )

    settings = rig.client.get("/api/status").json()["settings"]

    assert settings == {
        "version": 7,
        "hold_hours": 48,
        "pickup_hours": 96,
        "allow_walk_up": True,
        "allow_upsize": False,
        "max_extensions": 2,
        "opening_hours": HOURS,
        "timezone": "America/New_York",
        "compartments_in_maintenance": [
            {"label": "B02", "reason": "new hinge", "until": None},
        ],
    }


def test_maintenance_is_shown_with_its_end_and_the_nearest_banks_first(rig: Rig) -> None:
    until = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)
    send_settings(rig.node.flows, 3, maintenance="door repairs", until=until)

    status = rig.client.get("/api/status").json()

    maintenance = status["maintenance"]
    assert maintenance["reason"] == "door repairs"
    assert datetime.fromisoformat(maintenance["until"]) == until
    assert maintenance["nearby"] == [
        {"bank_id": "TEST-2", "name": "Station", "address": "1 Station Rd", "distance_km": 0.8},
        {
            "bank_id": "TEST-3",
            "name": "Market Street",
            "address": "3 Market St",
            "distance_km": 2.5,
        },
    ]
    assert status["settings"]["version"] == 3


def test_maintenance_ends_on_the_kiosk_when_central_ends_it(rig: Rig) -> None:
    send_settings(rig.node.flows, 3, maintenance="door repairs")
    send_settings(rig.node.flows, 4)

    status = rig.client.get("/api/status").json()

    assert status["maintenance"] is None
    assert status["settings"]["version"] == 4


def test_the_door_watch_still_works_beside_the_settings(rig: Rig) -> None:
    send_settings(rig.node.flows, 1, maintenance="door repairs")

    status = rig.client.get("/api/status", params={"door": "A01"}).json()

    assert status["door"] == {"compartment": "A01", "state": "closed"}
    assert status["maintenance"]["reason"] == "door repairs"
