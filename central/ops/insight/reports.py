"""The daily report per bank: utilisation, throughput, turnover, dwell percentiles, failures.

For one calendar date in each bank's own time zone, [local midnight, next local midnight):

- `utilisation_pct`: occupied compartment-hours / compartment-hours, from the parcels' own
  deposit and close times (exact, needs no samples): each parcel's stay in the locker clipped
  to the day (a parcel still inside counts up to now), over the bank's compartments times the
  day's hours (23 or 25 on a DST change). For today, both stop at now.
- `deposits`, `pickups`, `returns`: transitions recorded by central that day.
- `turnover_per_compartment`: deposits / compartments.
- `dwell_hours`: p50/p90/p99 (nearest rank) of deposit-to-pickup time of the parcels picked up
  that day; null when none were.
- `failures`: node events of that day that central applied, by type: door faults (jams),
  doors left open, forced opens, compartments taken out of service, and the kiosk's failed codes
  and lockouts (`kiosk.code_failed`, `kiosk.locked_out`; zero where nodes do not report them).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from central.errors import NotFound
from central.ops.insight import repository as repo

FAILURE_EVENTS = {
    "door.fault": "door_faults",
    "door.left_open": "doors_left_open",
    "door.forced_open": "forced_opens",
    "compartment.out_of_service": "out_of_service",
    "kiosk.code_failed": "code_failures",
    "kiosk.locked_out": "lockouts",
}
_TRANSITIONS = {"deposited": "deposits", "picked_up": "pickups", "returned": "returns"}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values: the smallest value with p% at or below it."""
    if not values:
        return None
    rank = max(1, math.ceil(p / 100 * len(values)))
    return round(values[rank - 1], 2)


def _window(day: date, zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def daily(session: Session, now: datetime, day: date, bank_id: str | None) -> dict[str, Any]:
    banks = repo.report_banks(session, bank_id)
    if bank_id is not None and not banks:
        raise NotFound(f"bank {bank_id}", code="unknown_bank")
    by_zone: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for bid, zone, compartments in banks:
        by_zone[zone].append((bid, int(compartments)))
    out: dict[str, dict[str, Any]] = {}
    for zone, members in by_zone.items():
        start, end = _window(day, zone)
        out.update(_zone_report(session, now, zone, bank_id, start, end, members))
    return {"date": day.isoformat(), "banks": [out[bid] for bid, _, _ in banks]}


def _zone_report(
    session: Session,
    now: datetime,
    zone: str,
    bank_id: str | None,
    start: datetime,
    end: datetime,
    members: list[tuple[str, int]],
) -> dict[str, dict[str, Any]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_TRANSITIONS.values(), 0))
    for bid, kind, count in repo.transitions_in(session, zone, bank_id, start, end):
        counts[bid][_TRANSITIONS[kind]] = int(count)
    until = max(start, min(end, now))
    occupied_hours: dict[str, float] = defaultdict(float)
    dwell: dict[str, list[float]] = defaultdict(list)
    for bid, deposited_at, closed_at, status in repo.stays_overlapping(
        session, zone, bank_id, start, end
    ):
        stay_end = closed_at if closed_at is not None else now
        overlap = (min(stay_end, until) - max(deposited_at, start)).total_seconds()
        if overlap > 0:
            occupied_hours[bid] += overlap / 3600
        if status == "picked_up" and closed_at is not None and start <= closed_at < end:
            dwell[bid].append((closed_at - deposited_at).total_seconds() / 3600)
    failures: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(FAILURE_EVENTS.values(), 0)
    )
    for bid, kind, count in repo.node_event_counts(
        session, zone, bank_id, start, end, list(FAILURE_EVENTS)
    ):
        failures[bid][FAILURE_EVENTS[kind]] = int(count)
    hours = (until - start).total_seconds() / 3600
    result = {}
    for bid, compartments in members:
        values = sorted(dwell.get(bid, []))
        moves = counts[bid]
        result[bid] = {
            "bank_id": bid,
            "timezone": zone,
            "compartments": compartments,
            "utilisation_pct": round(100 * occupied_hours[bid] / (compartments * hours), 1)
            if compartments and hours > 0
            else 0.0,
            **moves,
            "turnover_per_compartment": round(moves["deposits"] / compartments, 3)
            if compartments
            else 0.0,
            "dwell_hours": {
                "p50": percentile(values, 50),
                "p90": percentile(values, 90),
                "p99": percentile(values, 99),
            },
            "failures": failures[bid],
        }
    return result


CSV_COLUMNS = (
    "date", "bank_id", "timezone", "compartments", "utilisation_pct", "deposits", "pickups",
    "returns", "turnover_per_compartment", "dwell_p50_hours", "dwell_p90_hours",
    "dwell_p99_hours", *FAILURE_EVENTS.values(),
)  # fmt: skip


def to_csv(report: dict[str, Any]) -> str:
    """One row per bank; empty cells where a figure does not exist (no pickups, no dwell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for bank in report["banks"]:
        dwell = bank["dwell_hours"]
        writer.writerow(
            [
                report["date"],
                bank["bank_id"],
                bank["timezone"],
                bank["compartments"],
                bank["utilisation_pct"],
                bank["deposits"],
                bank["pickups"],
                bank["returns"],
                bank["turnover_per_compartment"],
                *("" if dwell[p] is None else dwell[p] for p in ("p50", "p90", "p99")),
                *(bank["failures"][key] for key in FAILURE_EVENTS.values()),
            ]
        )
    return buffer.getvalue()
