"""Chart series: occupancy over time (from samples), dwell times, hourly throughput, door faults."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from central.ops.insight import repository as repo
from central.ops.insight.service import iso

# The node events behind door faults, and the names the fault chart shows them under. Events,
# not alerts: an alert stands for a condition (and may be refreshed while open), the chart counts
# every occurrence.
FAULT_SERIES = {
    "door.left_open": "door_left_open",
    "door.fault": "door_jammed",
    "door.forced_open": "forced_open",
}


def occupancy(session: Session, now: datetime, bank_id: str | None, hours: int) -> dict[str, Any]:
    """One point per sample (every five minutes), summed over classes, and over banks if none."""
    rows = repo.occupancy_series(session, now - timedelta(hours=hours), bank_id)
    return {
        "series": [
            {"at": iso(at), "occupied": int(occ), "reserved": int(res), "total": int(total)}
            for at, occ, res, total in rows
        ]
    }


def dwell(session: Session, now: datetime, bank_id: str | None, days: int) -> dict[str, Any]:
    """Picked-up parcels of the last `days`, by hours between deposit and pickup."""
    counts = repo.dwell_histogram(session, now - timedelta(days=days), bank_id)
    return {
        "buckets": [
            {"label": label, "lower_hours": lower, "upper_hours": upper, "count": counts.get(i, 0)}
            for i, (label, lower, upper) in enumerate(repo.DWELL_BUCKETS)
        ]
    }


def _hour_floor(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def throughput(session: Session, now: datetime, bank_id: str | None, hours: int) -> dict[str, Any]:
    """Deposits and pickups per UTC hour, the last `hours` hours including the current one."""
    last = _hour_floor(now)
    first = last - timedelta(hours=hours - 1)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {"deposited": 0, "picked_up": 0})
    for hour, kind, count in repo.throughput(session, first, bank_id):
        counts[int(hour)][kind] += int(count)
    series = []
    for i in range(hours):
        at = first + timedelta(hours=i)
        row = counts.get(int(at.timestamp()) // 3600, {"deposited": 0, "picked_up": 0})
        series.append(
            {"hour": at.isoformat(), "deposits": row["deposited"], "pickups": row["picked_up"]}
        )
    return {"series": series}


def faults(session: Session, now: datetime, bank_id: str | None, days: int) -> dict[str, Any]:
    """Door faults the nodes reported, per UTC day, the last `days` days including today."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    per_day: dict[str, dict[str, int]] = {
        (first + timedelta(days=i)).isoformat(): {
            "door_left_open": 0,
            "door_jammed": 0,
            "forced_open": 0,
        }
        for i in range(days)
    }
    for kind, occurred_at in repo.node_events_since(session, since, list(FAULT_SERIES), bank_id):
        day = per_day.get(occurred_at.astimezone(UTC).date().isoformat())
        if day is not None:
            day[FAULT_SERIES[kind]] += 1
    return {"series": [{"day": day, **counts} for day, counts in per_day.items()]}
