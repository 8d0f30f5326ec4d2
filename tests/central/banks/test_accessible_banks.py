"""Accessible compartments at central: defined with the bank, counted per class, kept right as
compartments leave and return to service and as the node reports its doors (both databases)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from central.banks.service import BankError, NewBank, add_bank, parse_accessible_labels
from central.cli import app as cli
from central.models import BankCapacity, Compartment, Reservation, SizeClass
from tests.central.conftest import TEST_SECRET, World, engine_for
from tests.central.nodes.support import LAYOUT, NodeClient, enroll
from tests.clock import FakeClock


def add_accessible_bank(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    *,
    bank_id: str = "ADA-1",
    compartments: dict[str, int] | None = None,
    accessible: str = "A01,A03",
    lat: float = 40.7506,
    lon: float = -73.9935,
) -> None:
    counts = compartments or {"S": 2, "M": 2, "L": 1}
    with sessions.begin() as session:
        add_bank(
            session,
            NewBank(
                bank_id=bank_id,
                name=f"Bank {bank_id}",
                address=f"{bank_id} Street",
                lat=lat,
                lon=lon,
                compartments={SizeClass(s): n for s, n in counts.items()},
                accessible=parse_accessible_labels(accessible),
            ),
            clock(),
        )


def counts_of(
    sessions: sessionmaker[Session], bank_id: str
) -> dict[str, tuple[int, int, int, int]]:
    """Per class: (total, available, accessible_total, accessible_available)."""
    with sessions() as session:
        rows = session.scalars(select(BankCapacity).where(BankCapacity.bank_id == bank_id))
        return {
            r.size: (r.total, r.available, r.accessible_total, r.accessible_available) for r in rows
        }


def accessible_labels(sessions: sessionmaker[Session], bank_id: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Compartment.label)
                .where(Compartment.bank_id == bank_id, Compartment.accessible.is_(True))
                .order_by(Compartment.label)
            )
        )


# Defining them ----------------------------------------------------------------------------------


def test_labels_parse_in_any_case_and_nothing_means_none() -> None:
    assert parse_accessible_labels(" a01, B12 ") == frozenset({"A01", "B12"})
    assert parse_accessible_labels("") == frozenset()
    assert parse_accessible_labels("  ") == frozenset()


@pytest.mark.parametrize(
    ("spec", "message"),
    [("A01,A01", "given twice"), ("A01,,A02", "bad compartment label"), ("door 1", "bad")],
)
def test_bad_label_lists_are_refused(spec: str, message: str) -> None:
    with pytest.raises(BankError, match=message):
        parse_accessible_labels(spec)


def test_a_bank_keeps_its_accessible_compartments_and_counts_them_per_class(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, accessible="A01,A03,A04")
    assert accessible_labels(sessions, "ADA-1") == ["A01", "A03", "A04"]
    assert counts_of(sessions, "ADA-1") == {
        "S": (2, 2, 1, 1),
        "M": (2, 2, 2, 2),
        "L": (1, 1, 0, 0),
        "XL": (0, 0, 0, 0),
    }


def test_an_accessible_label_the_bank_does_not_have_is_refused(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    with pytest.raises(BankError, match="not in this bank: A06, B01"):
        add_accessible_bank(sessions, clock, accessible="A01,B01,A06")
    with sessions() as session:
        assert session.scalars(select(Compartment)).first() is None


def test_the_cli_takes_accessible_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    monkeypatch.setenv("LOCKER_DATABASE_URL", url)
    monkeypatch.setenv("LOCKER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    base = ["bank", "add", "B1", "--name", "n", "--address", "a", "--lat", "1", "--lon", "2"]
    added = runner.invoke(cli, [*base, "--compartments", "S:2,M:1", "--accessible", "a02,A03"])
    assert added.exit_code == 0, added.output
    refused = runner.invoke(
        cli, [*base[:2], "B2", *base[3:], "--compartments", "S:1", "--accessible", "A09"]
    )
    assert refused.exit_code == 1
    assert "not in this bank: A09" in refused.output
    sessions = engine_for(url)
    assert accessible_labels(sessions, "B1") == ["A02", "A03"]
    assert counts_of(sessions, "B1") == {
        "S": (2, 2, 1, 1),
        "M": (1, 1, 1, 1),
        "L": (0, 0, 0, 0),
        "XL": (0, 0, 0, 0),
    }
    sessions.kw["bind"].dispose()


def test_the_bank_api_shows_free_accessible_units_per_class(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock)
    response = client.get("/v1/banks/ADA-1", headers=world.auth())
    assert response.status_code == 200, response.text
    capacity = response.json()["capacity"]
    assert {s: (c["accessible_total"], c["accessible_free"]) for s, c in capacity.items()} == {
        "S": (1, 1),
        "M": (1, 1),
        "L": (0, 0),
    }
    taken = client.post(
        "/v1/reservations",
        json={
            "tracking_number": "ACME-ADA-1",
            "bank_id": "ADA-1",
            "size": "M",
            "recipient": {"accessible": True},
        },
        headers=world.auth("acme"),
    )
    assert taken.status_code == 201, taken.text
    after = client.get("/v1/banks/ADA-1", headers=world.auth()).json()["capacity"]["M"]
    assert (after["free"], after["accessible_total"], after["accessible_free"]) == (1, 1, 0)
    # Every other bank reads as before, with nothing accessible.
    listed = client.get("/v1/banks", headers=world.auth()).json()["items"]
    plain = next(b for b in listed if b["id"] == "NYC-1")
    assert all(c["accessible_free"] == 0 for c in plain["capacity"].values())


# Out of service and back ------------------------------------------------------------------------


def node_event(kind: str, label: str, clock: FakeClock) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": kind,
        "occurred_at": clock().isoformat(),
        "data": {"compartment": label},
    }


def send(node: NodeClient, *events: dict[str, Any]) -> None:
    response = node.post("/v1/node/events", {"events": list(events)})
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"applied"}


def test_an_accessible_compartment_out_of_service_takes_an_accessible_unit_away(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, accessible="A03")
    node = enroll(client, sessions, clock, bank_id="ADA-1", compartments=[])
    assert counts_of(sessions, "ADA-1")["M"] == (2, 2, 1, 1)

    send(node, node_event("compartment.out_of_service", "A03", clock))
    assert counts_of(sessions, "ADA-1")["M"] == (1, 1, 0, 0)
    send(node, node_event("compartment.out_of_service", "A04", clock))  # not accessible
    assert counts_of(sessions, "ADA-1")["M"] == (0, 0, 0, 0)
    send(node, node_event("compartment.in_service", "A03", clock))
    assert counts_of(sessions, "ADA-1")["M"] == (1, 1, 1, 1)
    send(node, node_event("compartment.in_service", "A04", clock))
    assert counts_of(sessions, "ADA-1")["M"] == (2, 2, 1, 1)


# The node's report at enrollment ----------------------------------------------------------------


def test_enrollment_takes_the_nodes_accessible_doors_and_answers_with_them(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, accessible="A01")
    # An accessible M unit held by a reservation (a plain one that took the last M unit).
    for number in ("ACME-M1", "ACME-M2"):
        response = client.post(
            "/v1/reservations",
            json={"tracking_number": number, "bank_id": "ADA-1", "size": "M"},
            headers=world.auth("acme"),
        )
        assert response.status_code == 201, response.text
    layout: list[dict[str, Any]] = [dict(c) for c in LAYOUT]
    layout[3]["accessible"] = True  # A04, an M door
    layout[4]["accessible"] = True  # A05, the L door
    node = enroll(client, sessions, clock, bank_id="ADA-1", compartments=layout)
    answered = {c["label"]: c["accessible"] for c in node.enrollment["compartments"]}
    assert answered == {"A01": False, "A02": False, "A03": False, "A04": True, "A05": True}
    assert accessible_labels(sessions, "ADA-1") == ["A04", "A05"]
    # No M unit was accessible when both were reserved: both hold plain units. A04 is now the
    # class's accessible unit, not held as one; with the class full, none is free all the same.
    assert counts_of(sessions, "ADA-1") == {
        "S": (2, 2, 0, 0),
        "M": (2, 0, 1, 1),
        "L": (1, 1, 1, 1),
        "XL": (0, 0, 0, 0),
    }


def test_enrollment_counts_accessible_units_held_against_the_new_layout(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, accessible="A03")
    held = client.post(
        "/v1/reservations",
        json={
            "tracking_number": "ACME-ADA-2",
            "bank_id": "ADA-1",
            "size": "M",
            "recipient": {"accessible": True},
        },
        headers=world.auth("acme"),
    )
    assert held.status_code == 201, held.text
    assert counts_of(sessions, "ADA-1")["M"] == (2, 1, 1, 0)
    # The node says both M doors are accessible: one is held, one is free.
    layout: list[dict[str, Any]] = [
        dict(c) | ({"accessible": True} if c["size"] == "M" else {}) for c in LAYOUT
    ]
    enroll(client, sessions, clock, bank_id="ADA-1", compartments=layout)
    assert counts_of(sessions, "ADA-1")["M"] == (2, 1, 2, 1)
    # It says none is: the hold still counts against the class, nothing accessible is free.
    enroll(client, sessions, clock, bank_id="ADA-1", compartments=LAYOUT)
    assert accessible_labels(sessions, "ADA-1") == []
    assert counts_of(sessions, "ADA-1")["M"] == (2, 1, 0, -1)
    with sessions() as session:
        reservation = session.scalars(select(Reservation)).one()
        assert (reservation.accessible, reservation.accessible_unit) == (True, True)


def test_a_node_that_reports_no_compartments_leaves_the_flags_alone(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    add_accessible_bank(sessions, clock, accessible="A01,A05")
    node = enroll(client, sessions, clock, bank_id="ADA-1", compartments=[])
    assert accessible_labels(sessions, "ADA-1") == ["A01", "A05"]
    answered = [c["label"] for c in node.enrollment["compartments"] if c["accessible"]]
    assert answered == ["A01", "A05"]
    # A report naming some doors changes only those it names.
    enroll(client, sessions, clock, bank_id="ADA-1", compartments=[{"label": "A01", "size": "S"}])
    assert accessible_labels(sessions, "ADA-1") == ["A05"]
