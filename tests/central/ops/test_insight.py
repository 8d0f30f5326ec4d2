"""Dashboard insight: overview and bank figures equal a direct count, search, charts, sampling."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralSettings
from central.context import Ctx
from central.models import OccupancySample
from central.ops.auth import Operator, current_operator
from central.ops.insight.tasks import RETENTION, sample_occupancy
from central.reservations.transitions import expire_holds, expire_pickups
from central.scheduler import INTERVALS, Jobs
from tests.central.conftest import World, make_bank
from tests.central.nodes.support import NodeClient, app_sessions, enroll
from tests.central.nodes.test_events import deposit, event, send
from tests.central.ops.support import VIEWER, fast, make_operator, sign_in
from tests.clock import FakeClock

USPS_NUMBER = "9400111206206406260787"  # valid for USPS, and any number is valid for acme


@pytest.fixture
def settings(settings: CentralSettings) -> CentralSettings:
    return fast(settings)  # cheap password hashing: sign-in is not what these tests measure


def sign_in_viewer(app: FastAPI) -> None:
    """Every /ops/api request runs as a viewer (the session machinery has its own tests)."""
    app.dependency_overrides[current_operator] = lambda: Operator(1, "ops@example.com", "viewer")


def reserve(
    client: TestClient,
    world: World,
    number: str,
    *,
    bank_id: str = "NYC-1",
    size: str = "S",
    carrier: str = "acme",
    **extra: Any,
) -> str:
    body = {"tracking_number": number, "bank_id": bank_id, "size": size, **extra}
    response = client.post("/v1/reservations", json=body, headers=world.auth(carrier))
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def run_job(app: FastAPI, clock: FakeClock, job: Any) -> int:
    sessions = app_sessions(app)
    with sessions() as session, session.begin():
        count: int = job(Ctx(session=session, keys=app.state.keys, now=clock()))
        return count


@dataclass
class Scenario:
    node: NodeClient
    ids: dict[str, str]


def build_scenario(client: TestClient, app: FastAPI, world: World, clock: FakeClock) -> Scenario:
    """NYC-1 (S:2 A01-A02, M:2 A03-A04, L:1 A05) with a node, reservations in every state.

    Each state is reached the way it is in production: carrier API calls, node events, jobs.
    """
    node = enroll(client, app_sessions(app), clock)
    ids: dict[str, str] = {}
    # Deposited, then expired at the pickup deadline: the parcel stays in A04 until returned.
    ids["expired_in_locker"] = reserve(client, world, "ACME-X1", size="M")
    ids["returned"] = reserve(client, world, "ACME-X2", size="L")
    send(
        node,
        deposit(node, ids["expired_in_locker"], clock(), "A04"),
        deposit(node, ids["returned"], clock(), "A05"),
    )
    clock.advance(hours=73)
    assert run_job(app, clock, expire_pickups) == 2
    send(node, event("parcel.returned", {"reservation_id": ids["returned"]}, clock()))
    # A hold the courier never came for.
    ids["expired_hold"] = reserve(client, world, "ACME-H1", size="S", hold_hours=1)
    clock.advance(hours=2)
    assert run_job(app, clock, expire_holds) == 1
    ids["cancelled"] = reserve(client, world, "ACME-C1", size="S")
    response = client.delete(f"/v1/reservations/{ids['cancelled']}", headers=world.auth("acme"))
    assert response.status_code == 200, response.text
    ids["reserved"] = reserve(
        client, world, USPS_NUMBER, size="S", recipient={"name": "Ada Lovelace", "email": "a@x.io"}
    )
    ids["deposited"] = reserve(client, world, "ACME-D1", size="S")
    ids["picked_up"] = reserve(client, world, "ACME-P1", size="M")
    send(
        node,
        deposit(node, ids["deposited"], clock(), "A01"),
        deposit(node, ids["picked_up"], clock(), "A03"),
    )
    clock.advance(hours=5)
    send(
        node,
        event("parcel.picked_up", {"reservation_id": ids["picked_up"]}, clock()),
        event("door.forced_open", {"compartment": "A02"}, clock()),
        event("compartment.out_of_service", {"compartment": "A05"}, clock()),
    )
    response = node.post(
        "/v1/node/heartbeat",
        {"doors": {"A01": "closed", "A03": "open"}, "outbox_depth": 0, "version": "1.0.0"},
    )
    assert response.status_code == 200, response.text
    # NYC-2 has no node (offline) and one hold; BOS-1 is empty.
    ids["other_bank"] = reserve(client, world, "ACME-N1", bank_id="NYC-2", size="M")
    return Scenario(node, ids)


def direct_counts(sessions: sessionmaker[Session]) -> dict[str, dict[str, dict[str, int]]]:
    """The figures straight from the tables, in plain SQL, independent of the insight code."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(
            lambda: {"total": 0, "free": 0, "reserved": 0, "occupied": 0, "out_of_service": 0}
        )
    )
    queries = {
        "total": "SELECT bank_id, size, COUNT(*) FROM compartments GROUP BY bank_id, size",
        "out_of_service": "SELECT bank_id, size, COUNT(*) FROM compartments "
        "WHERE state = 'out_of_service' GROUP BY bank_id, size",
        "occupied": "SELECT bank_id, size, COUNT(*) FROM reservations "
        "WHERE status IN ('deposited', 'expired') AND compartment_label IS NOT NULL "
        "GROUP BY bank_id, size",
        "reserved": "SELECT bank_id, size, COUNT(*) FROM reservations "
        "WHERE status = 'reserved' GROUP BY bank_id, size",
        "free": "SELECT bank_id, size, available FROM bank_capacity",
    }
    with sessions() as session:
        for key, sql in queries.items():
            for bank_id, size, count in session.execute(text(sql)):
                out[bank_id][size][key] = int(count)
    return out


def shown_classes(direct: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {
        size: row
        for size, row in direct.items()
        if row["total"] or row["reserved"] or row["occupied"]
    }


def banks_of(overview: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["id"]: b for region in overview["regions"] for b in region["banks"]}


def test_overview_figures_equal_a_direct_count(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    build_scenario(client, app, world, clock)
    sign_in_viewer(app)
    response = client.get("/ops/api/overview")
    assert response.status_code == 200, response.text
    body = response.json()
    direct = direct_counts(app_sessions(app))
    banks = banks_of(body)
    assert set(banks) == {"NYC-1", "NYC-2", "BOS-1"}
    for bank_id, bank in banks.items():
        assert bank["classes"] == shown_classes(direct[bank_id]), bank_id
    # The same, spelt out, so a shared mistake in both counts cannot pass unnoticed.
    assert banks["NYC-1"]["classes"] == {
        "S": {"total": 2, "free": 0, "reserved": 1, "occupied": 1, "out_of_service": 0},
        "M": {"total": 2, "free": 1, "reserved": 0, "occupied": 1, "out_of_service": 0},
        # Out of service: not allocatable, so not free either.
        "L": {"total": 1, "free": 0, "reserved": 0, "occupied": 0, "out_of_service": 1},
    }
    # What free means: allocation's count, which leaves out-of-service compartments out.
    for bank in banks.values():
        for row in bank["classes"].values():
            held = row["reserved"] + row["occupied"] + row["out_of_service"]
            assert row["free"] == max(0, row["total"] - held)
    assert banks["NYC-1"]["occupancy_pct"] == 40.0
    assert banks["NYC-1"]["online"] is True and banks["NYC-1"]["last_seen_at"] is not None
    assert banks["NYC-2"]["online"] is False and banks["NYC-2"]["last_seen_at"] is None
    assert banks["NYC-1"]["open_alerts"] == 2  # forced open, out of service
    with app_sessions(app)() as session:
        open_alerts = session.scalar(text("SELECT COUNT(*) FROM alerts WHERE resolved_at IS NULL"))
        compartments = session.scalar(text("SELECT COUNT(*) FROM compartments"))
    totals = body["totals"]
    assert totals["open_alerts"] == open_alerts
    assert totals["compartments"] == compartments == 15
    for key in ("free", "reserved", "occupied", "out_of_service"):
        assert totals[key] == sum(
            row[key] for bank in direct.values() for row in shown_classes(bank).values()
        ), key
    assert totals | {"occupancy_pct": 0} == {
        "banks": 3,
        "online": 1,
        "offline": 2,
        "compartments": 15,
        "free": 10,
        "reserved": 2,
        "occupied": 2,
        "out_of_service": 1,
        "open_alerts": 2,
        "occupancy_pct": 0,
    }
    assert totals["occupancy_pct"] == round(100 * 2 / 15, 1)
    assert [r["name"] for r in body["regions"]] == ["America/New_York"]
    assert body["generated_at"] == clock().isoformat()


def test_overview_filters_and_sorts(
    client: TestClient,
    app: FastAPI,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    build_scenario(client, app, world, clock)
    with sessions.begin() as session:
        make_bank(session, bank_id="LON-1", now=clock(), timezone="Europe/London")
    sign_in_viewer(app)

    def ids(**params: str) -> list[str]:
        response = client.get("/ops/api/overview", params=params)
        assert response.status_code == 200, response.text
        return [b["id"] for r in response.json()["regions"] for b in r["banks"]]

    assert ids() == ["BOS-1", "NYC-1", "NYC-2", "LON-1"]  # regions by name, banks by name
    assert ids(status="online") == ["NYC-1"]
    assert ids(status="offline") == ["BOS-1", "NYC-2", "LON-1"]
    assert ids(q="nyc") == ["NYC-1", "NYC-2"]
    assert ids(q="LON-1 street") == ["LON-1"]  # the address matches too
    assert ids(q="nowhere") == []
    assert ids(sort="occupancy", order="desc")[0] == "NYC-1"
    assert ids(sort="alerts", order="desc")[0] == "NYC-1"
    assert ids(sort="name", order="desc") == ["NYC-2", "NYC-1", "BOS-1", "LON-1"]
    response = client.get("/ops/api/overview", params={"status": "online"})
    assert response.json()["totals"]["banks"] == 1
    assert response.json()["totals"]["offline"] == 0
    bad = client.get("/ops/api/overview", params={"sort": "size"})
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"


def test_overview_is_a_constant_number_of_queries(
    client: TestClient,
    app: FastAPI,
    world: World,
    clock: FakeClock,
    sessions: sessionmaker[Session],
) -> None:
    sign_in_viewer(app)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    def queries() -> int:
        statements.clear()
        sa_event.listen(app.state.engine, "before_cursor_execute", count)
        try:
            assert client.get("/ops/api/overview").status_code == 200
        finally:
            sa_event.remove(app.state.engine, "before_cursor_execute", count)
        return len([s for s in statements if s.lstrip().upper().startswith("SELECT")])

    few = queries()
    with sessions.begin() as session:
        for i in range(20):
            make_bank(session, bank_id=f"X-{i:02d}", now=clock())
    assert queries() == few <= 6


def test_bank_page_grid_equals_a_direct_count(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    scenario = build_scenario(client, app, world, clock)
    sign_in_viewer(app)
    response = client.get("/ops/api/banks/NYC-1")
    assert response.status_code == 200, response.text
    body = response.json()
    grid = {c["label"]: c for c in body["compartments"]}
    with app_sessions(app)() as session:
        occupied = set(
            session.scalars(
                text(
                    "SELECT compartment_label FROM reservations WHERE bank_id = 'NYC-1' "
                    "AND status IN ('deposited', 'expired') AND compartment_label IS NOT NULL"
                )
            )
        )
        out_of_service = set(
            session.scalars(
                text(
                    "SELECT label FROM compartments "
                    "WHERE bank_id = 'NYC-1' AND state = 'out_of_service'"
                )
            )
        )
    assert {label for label, c in grid.items() if c["state"] == "occupied"} == occupied
    assert {label for label, c in grid.items() if c["state"] == "out_of_service"} == out_of_service
    assert {label: c["state"] for label, c in grid.items()} == {
        "A01": "occupied",
        "A02": "free",
        "A03": "free",
        "A04": "occupied",
        "A05": "out_of_service",
    }
    assert {label: c["door"] for label, c in grid.items()} == {
        "A01": "closed",
        "A02": "unknown",
        "A03": "open",
        "A04": "unknown",
        "A05": "unknown",
    }
    parcel = grid["A01"]["parcel"]
    assert parcel["reservation_id"] == scenario.ids["deposited"]
    assert parcel["tracking_number"] == "ACME-D1" and parcel["carrier"] == "acme"
    assert parcel["status"] == "deposited" and parcel["dwell_hours"] == 5.0
    assert grid["A04"]["parcel"]["status"] == "expired"
    assert grid["A04"]["parcel"]["dwell_hours"] == 80.0
    assert grid["A02"]["parcel"] is None
    assert body["reserved_unbound"] == {"S": 1, "M": 0, "L": 0}
    assert (
        body["bank"]["classes"]
        == banks_of(client.get("/ops/api/overview").json())["NYC-1"]["classes"]
    )
    assert sorted(a["type"] for a in body["alerts"]) == [
        "compartment_out_of_service",
        "door_forced_open",
    ]
    alert = body["alerts"][0]
    assert alert["bank_name"] == "Bank NYC-1" and alert["resolved_at"] is None
    timeline = body["timeline"]
    assert [t["at"] for t in timeline] == sorted((t["at"] for t in timeline), reverse=True)
    kinds = {t["kind"] for t in timeline}
    assert kinds == {"parcel", "node", "alert"}
    picked = [t for t in timeline if t["kind"] == "parcel" and t["type"] == "picked_up"]
    assert picked[0]["reservation_id"] == scenario.ids["picked_up"]
    assert "sealed_pickup_code" not in json.dumps(timeline)


def test_bank_page_unknown_bank_is_404(client: TestClient, app: FastAPI, world: World) -> None:
    sign_in_viewer(app)
    response = client.get("/ops/api/banks/NOPE-1")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_bank"


def test_doors_are_unknown_while_the_node_is_offline(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    build_scenario(client, app, world, clock)
    sign_in_viewer(app)
    with app_sessions(app).begin() as session:
        session.execute(text("UPDATE nodes SET online = false"))
    body = client.get("/ops/api/banks/NYC-1").json()
    assert body["bank"]["online"] is False
    assert {c["door"] for c in body["compartments"]} == {"unknown"}


def test_parcel_search_gives_history_without_recipient_data(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    scenario = build_scenario(client, app, world, clock)
    # The same number at another carrier is another parcel; both are found.
    other = reserve(client, world, USPS_NUMBER, carrier="usps", size="M", bank_id="BOS-1")
    sign_in_viewer(app)
    response = client.get("/ops/api/parcels", params={"tracking_number": USPS_NUMBER})
    assert response.status_code == 200, response.text
    parcels = response.json()["parcels"]
    assert [p["reservation_id"] for p in parcels] == [scenario.ids["reserved"], other]
    assert parcels[0]["carrier"] == "acme" and parcels[1]["carrier"] == "usps"
    assert "Ada" not in response.text and "a@x.io" not in response.text
    assert "recipient" not in parcels[0]

    picked = client.get("/ops/api/parcels", params={"tracking_number": "ACME-P1"}).json()
    (parcel,) = picked["parcels"]
    assert parcel["status"] == "picked_up" and parcel["compartment"] == "A03"
    assert [(h["status"], h["actor"]) for h in parcel["history"]] == [
        ("reserved", "carrier"),
        ("deposited", "courier"),
        ("picked_up", "recipient"),
    ]
    expired = client.get("/ops/api/parcels", params={"tracking_number": "ACME-X1"}).json()
    history = expired["parcels"][0]["history"]
    assert history[-1]["status"] == "expired" and history[-1]["actor"] == "system"
    assert history[-1]["reason"] == "not picked up before pickup_deadline"

    assert client.get("/ops/api/parcels", params={"tracking_number": "NONE"}).json() == {
        "parcels": []
    }
    missing = client.get("/ops/api/parcels")
    assert missing.status_code == 422


def test_occupancy_sampling_one_row_per_bank_and_class(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    build_scenario(client, app, world, clock)
    sessions = app_sessions(app)
    with sessions.begin() as session:
        assert sample_occupancy(session, clock()) == 9  # three banks of S, M, L
    direct = direct_counts(sessions)
    with sessions() as session:
        rows = session.scalars(select(OccupancySample)).all()
    for row in rows:
        expected = direct[row.bank_id][row.size]
        assert row.taken_at == clock()
        assert {
            "total": row.total,
            "free": row.free,
            "reserved": row.reserved,
            "occupied": row.occupied,
            "out_of_service": row.out_of_service,
        } == expected, (row.bank_id, row.size)


def test_samples_past_retention_are_purged(
    app: FastAPI, world: World, clock: FakeClock, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        sample_occupancy(session, clock() - RETENTION - timedelta(minutes=5))
        sample_occupancy(session, clock() - RETENTION + timedelta(minutes=5))
        sample_occupancy(session, clock())
    with sessions() as session:
        times = session.scalars(
            select(OccupancySample.taken_at).distinct().order_by(OccupancySample.taken_at)
        ).all()
    assert times == [clock() - RETENTION + timedelta(minutes=5), clock()]


def test_sampling_is_a_scheduled_job(app: FastAPI, clock: FakeClock, world: World) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings: CentralSettings = app.state.settings
    jobs = Jobs(app.state.sessions, app.state.keys, clock, http, settings)
    try:
        assert INTERVALS["sample_occupancy"] == 300
        assert jobs.all()["sample_occupancy"]() == 9
    finally:
        jobs.close()
        http.close()


def test_occupancy_chart_from_samples(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    build_scenario(client, app, world, clock)
    sessions = app_sessions(app)
    first = clock() - timedelta(minutes=10)
    with sessions.begin() as session:
        sample_occupancy(session, clock() - timedelta(hours=30))  # outside the 24 h window
        sample_occupancy(session, first)
        sample_occupancy(session, clock())
    sign_in_viewer(app)
    network = client.get("/ops/api/charts/occupancy").json()["series"]
    assert network == [
        {"at": first.isoformat(), "occupied": 2, "reserved": 2, "total": 15},
        {"at": clock().isoformat(), "occupied": 2, "reserved": 2, "total": 15},
    ]
    one = client.get("/ops/api/charts/occupancy", params={"bank_id": "NYC-2", "hours": 48})
    assert [p["reserved"] for p in one.json()["series"]] == [1, 1, 1]
    assert [p["total"] for p in one.json()["series"]] == [5, 5, 5]


def test_dwell_throughput_and_fault_charts(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    scenario = build_scenario(client, app, world, clock)
    sign_in_viewer(app)
    dwell = client.get("/ops/api/charts/dwell").json()["buckets"]
    assert [b["label"] for b in dwell][:3] == ["< 1 h", "1-6 h", "6-12 h"]
    assert {b["label"]: b["count"] for b in dwell if b["count"]} == {"1-6 h": 1}  # 5 h
    assert dwell[-1]["upper_hours"] is None
    empty = client.get("/ops/api/charts/dwell", params={"bank_id": "NYC-2"}).json()
    assert sum(b["count"] for b in empty["buckets"]) == 0

    series = client.get("/ops/api/charts/throughput", params={"hours": 10}).json()["series"]
    assert len(series) == 10
    assert series[-1]["hour"] == clock().replace(minute=0, second=0).isoformat()
    # Two deposits five hours ago, one pickup now; the earlier ones are outside the window.
    assert sum(p["deposits"] for p in series) == 2 and series[-6]["deposits"] == 2
    assert sum(p["pickups"] for p in series) == 1 and series[-1]["pickups"] == 1
    wide = client.get("/ops/api/charts/throughput", params={"hours": 100}).json()["series"]
    assert sum(p["deposits"] for p in wide) == 4

    # Every occurrence counts, also a repeat while its alert is still open.
    send(
        scenario.node,
        event("door.left_open", {"compartment": "A03"}, clock()),
        event("door.left_open", {"compartment": "A03"}, clock()),
        event("door.fault", {"compartment": "A02"}, clock() - timedelta(days=1)),
    )
    faults = client.get("/ops/api/charts/faults", params={"days": 7}).json()["series"]
    assert len(faults) == 7 and faults[-1]["day"] == clock().date().isoformat()
    assert faults[-1] == {
        "day": clock().date().isoformat(),
        "door_left_open": 2,
        "door_jammed": 0,
        "forced_open": 1,
    }
    assert faults[-2]["door_jammed"] == 1
    other = client.get("/ops/api/charts/faults", params={"bank_id": "BOS-1"}).json()["series"]
    assert sum(d["forced_open"] for d in other) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/ops/api/overview",
        "/ops/api/banks/NYC-1",
        "/ops/api/parcels?tracking_number=X",
        "/ops/api/charts/occupancy",
        "/ops/api/charts/dwell",
        "/ops/api/charts/throughput",
        "/ops/api/charts/faults",
        "/ops/api/reports/daily",
        "/ops/api/reports/daily.csv",
    ],
)
def test_insight_needs_a_signed_in_operator(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json()["error"] == "not_signed_in"
    make_operator(app, clock, VIEWER, "viewer")
    sign_in(client, VIEWER)
    assert client.get(path).status_code == 200


def test_ops_api_is_not_in_the_carrier_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ops")]
