"""The daily report per bank: figures for one local day, as JSON and as a CSV download."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient

from central.models import NodeEventRecord
from central.ops.insight.reports import _window, percentile
from tests.central.conftest import World
from tests.central.nodes.support import app_sessions, enroll
from tests.central.nodes.test_events import deposit, event, send
from tests.central.ops.test_insight import reserve, sign_in_viewer
from tests.clock import FakeClock

# 2026-03-02 in New York is [05:00 UTC, next day 05:00 UTC).
DAY = "2026-03-02"


def record_kiosk_event(app: FastAPI, node_id: str, kind: str, at: datetime) -> None:
    """A kiosk event as central keeps it once nodes report it (applied, bank-scoped)."""
    with app_sessions(app).begin() as session:
        session.add(
            NodeEventRecord(
                id=str(uuid.uuid4()),
                node_id=node_id,
                bank_id="NYC-1",
                type=kind,
                occurred_at=at,
                received_at=at,
                status="applied",
                data={},
            )
        )


def build_day(client: TestClient, app: FastAPI, world: World, clock: FakeClock) -> None:
    """NYC-1 (5 compartments) on 2026-03-02 local: two deposits at 10:00, one pickup at 12:00."""
    clock.set(datetime(2026, 3, 2, 4, 0, tzinfo=UTC))  # 23:00 the day before, locally
    node = enroll(client, app_sessions(app), clock)
    early = reserve(client, world, "ACME-E1", size="L")
    send(node, deposit(node, early, clock(), "A05"))  # in since the day before
    clock.set(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    short = reserve(client, world, "ACME-S1", size="S")
    long = reserve(client, world, "ACME-L1", size="M")
    send(node, deposit(node, short, clock(), "A01"), deposit(node, long, clock(), "A03"))
    clock.set(datetime(2026, 3, 2, 17, 0, tzinfo=UTC))
    send(
        node,
        event("parcel.picked_up", {"reservation_id": short}, clock()),
        event("door.fault", {"compartment": "A02"}, clock()),
        event("door.left_open", {"compartment": "A03"}, clock()),
    )
    record_kiosk_event(app, node.node_id, "kiosk.code_failed", clock())
    record_kiosk_event(app, node.node_id, "kiosk.code_failed", clock())
    record_kiosk_event(app, node.node_id, "kiosk.locked_out", clock())
    # The next local day: counted on 2026-03-03, not in this report.
    clock.set(datetime(2026, 3, 3, 6, 0, tzinfo=UTC))
    send(node, event("parcel.picked_up", {"reservation_id": early}, clock()))
    clock.set(datetime(2026, 3, 3, 12, 0, tzinfo=UTC))


def test_daily_report_json(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    build_day(client, app, world, clock)
    sign_in_viewer(app)
    response = client.get("/ops/api/reports/daily", params={"bank_id": "NYC-1", "date": DAY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["date"] == DAY
    (bank,) = body["banks"]
    # Occupied hours within the day: A05 all 24 h, A01 2 h, A03 14 h (until local midnight).
    assert bank["utilisation_pct"] == round(100 * (24 + 2 + 14) / (5 * 24), 1)
    assert (bank["deposits"], bank["pickups"], bank["returns"]) == (2, 1, 0)
    assert bank["turnover_per_compartment"] == 0.4
    assert bank["dwell_hours"] == {"p50": 2.0, "p90": 2.0, "p99": 2.0}
    assert bank["failures"] == {
        "door_faults": 1,
        "doors_left_open": 1,
        "forced_opens": 0,
        "out_of_service": 0,
        "code_failures": 2,
        "lockouts": 1,
    }
    next_day = client.get(
        "/ops/api/reports/daily", params={"bank_id": "NYC-1", "date": "2026-03-03"}
    )
    (after,) = next_day.json()["banks"]
    assert (after["deposits"], after["pickups"]) == (0, 1)
    assert after["dwell_hours"]["p50"] == 26.0  # 04:00 on the 2nd to 06:00 on the 3rd (UTC)
    assert after["failures"]["code_failures"] == 0


def test_daily_report_for_every_bank_and_today(
    client: TestClient, app: FastAPI, world: World, clock: FakeClock
) -> None:
    build_day(client, app, world, clock)
    sign_in_viewer(app)
    everyone = client.get("/ops/api/reports/daily", params={"date": DAY}).json()
    assert [b["bank_id"] for b in everyone["banks"]] == ["BOS-1", "NYC-1", "NYC-2"]
    quiet = everyone["banks"][0]
    assert quiet["deposits"] == 0 and quiet["utilisation_pct"] == 0.0
    assert quiet["dwell_hours"] == {"p50": None, "p90": None, "p99": None}
    # Today (local 2026-03-03, 07:00 so far): utilisation over the elapsed part only.
    today = client.get("/ops/api/reports/daily", params={"bank_id": "NYC-1", "date": "2026-03-03"})
    (bank,) = today.json()["banks"]
    # A03 the whole 7 h, A05 until 06:00 UTC (1 h of the local day).
    assert bank["utilisation_pct"] == round(100 * (7 + 1) / (5 * 7), 1)
    # Without a date: yesterday in UTC.
    default = client.get("/ops/api/reports/daily", params={"bank_id": "NYC-1"}).json()
    assert default["date"] == DAY


def test_daily_report_csv(client: TestClient, app: FastAPI, world: World, clock: FakeClock) -> None:
    build_day(client, app, world, clock)
    sign_in_viewer(app)
    response = client.get("/ops/api/reports/daily.csv", params={"date": DAY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="daily-report-{DAY}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["bank_id"] for r in rows] == ["BOS-1", "NYC-1", "NYC-2"]
    nyc = rows[1]
    json_bank = client.get(
        "/ops/api/reports/daily", params={"bank_id": "NYC-1", "date": DAY}
    ).json()["banks"][0]
    assert nyc["date"] == DAY
    assert float(nyc["utilisation_pct"]) == json_bank["utilisation_pct"]
    assert (nyc["deposits"], nyc["pickups"], nyc["returns"]) == ("2", "1", "0")
    assert float(nyc["dwell_p90_hours"]) == 2.0
    assert (nyc["door_faults"], nyc["code_failures"], nyc["lockouts"]) == ("1", "2", "1")
    assert rows[0]["dwell_p50_hours"] == ""
    one = client.get("/ops/api/reports/daily.csv", params={"date": DAY, "bank_id": "NYC-1"})
    assert 'filename="daily-report-2026-03-02-NYC-1.csv"' in one.headers["content-disposition"]
    assert len(list(csv.DictReader(io.StringIO(one.text)))) == 1


def test_daily_report_errors(client: TestClient, app: FastAPI, world: World) -> None:
    sign_in_viewer(app)
    unknown = client.get("/ops/api/reports/daily", params={"bank_id": "NOPE", "date": DAY})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_bank"
    bad = client.get("/ops/api/reports/daily.csv", params={"date": "2026-02-30"})
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"


def test_local_day_follows_daylight_saving() -> None:
    start, end = _window(date(2026, 3, 8), "America/New_York")  # clocks go forward
    assert (end - start) == timedelta(hours=23)
    assert start == datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    start, end = _window(date(2026, 11, 1), "America/New_York")  # and back
    assert (end - start) == timedelta(hours=25)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (
        50.0,
        90.0,
        99.0,
    )
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
    assert percentile([1.0, 10.0], 50) == 1.0
