"""`GET /api/layout`: the bank's columns and doors for the door map, and nothing about parcels."""

from __future__ import annotations

from fastapi.testclient import TestClient

from locker_node.kiosk.endpoints import KioskUi, create_kiosk_app
from locker_node.kiosk.layout import bank_columns
from tests.locker_node.kiosk.rig import LAYOUT, Rig


def test_labels_become_columns_with_their_doors_from_the_top() -> None:
    columns = bank_columns(["B02", "A10", "A02", "AA01", "B01", "A01", "door-x"], {"B01": "XL"})

    assert [column.name for column in columns] == ["A", "B", "AA", ""]
    assert [door.label for door in columns[0].doors] == ["A01", "A02", "A10"]
    assert [(door.label, door.size, door.height) for door in columns[1].doors] == [
        ("B01", "XL", 4),
        ("B02", None, 1),
    ]
    assert [door.label for door in columns[3].doors] == ["door-x"]


def test_the_layout_lists_every_door_and_nothing_about_parcels(rig: Rig) -> None:
    rig.add_reservation("1Z0001")
    rig.deposit("1Z0001", rig.login())

    answer = rig.client.get("/api/layout")

    assert answer.status_code == 200
    body = answer.json()
    assert body["bank_id"] == rig.config.bank_id
    assert [column["name"] for column in body["columns"]] == ["A", "B", "C", "D"]
    labels = [door["label"] for column in body["columns"] for door in column["compartments"]]
    assert labels == [label for label, _, _ in LAYOUT]
    for column in body["columns"]:
        for door in column["compartments"]:
            assert set(door) == {"label", "size", "height", "accessible"}


def test_door_heights_follow_the_size_classes_the_kiosk_is_given(rig: Rig) -> None:
    sizes = {label: size for label, size, _ in LAYOUT}
    app = create_kiosk_app(
        rig.node.flows, KioskUi(bank_id=rig.config.bank_id, compartment_sizes=sizes)
    )

    body = TestClient(app).get("/api/layout").json()

    heights = {
        door["label"]: (door["size"], door["height"])
        for c in body["columns"]
        for door in c["compartments"]
    }
    assert heights["A01"] == ("S", 1)
    assert heights["B01"] == ("M", 2)
    assert heights["C02"] == ("L", 3)
    assert heights["D01"] == ("XL", 4)
