"""Dashboard insight: what the occupancy figures mean, and the overview, bank and search views.

Figures per bank and size class, all read from central's own tables:

- `total`: the bank's compartments of that class (rows of `compartments`, whatever their state).
- `out_of_service`: those whose `compartments.state` is `out_of_service` (a node reported it, or
  an operator disabled it).
- `occupied`: parcels in a compartment: reservations `deposited`, or `expired` with a bound
  compartment (the pickup deadline passed and the courier has not taken the parcel back yet).
- `reserved`: reservations `reserved` (capacity held, the courier has not deposited yet).
- `free`: what allocation can still give, `bank_capacity.available` (never below zero).

Occupied and reserved are counted in the reservation's class: that is the class whose capacity
the parcel holds (with upsizing a parcel of class S can sit in an M compartment; the bank page
shows the compartment it is really in). A compartment out of service is taken out of
allocatable capacity while it is out (`central.nodes`), so `free` equals `total - reserved -
occupied - out_of_service`, or zero when more parcels hold a class than it has working
compartments.

`occupancy_pct` is `occupied / total` (parcels physically in the bank); reservations count
towards it only once the parcel is in. Banks are grouped into regions by their time zone
(`banks.timezone`, e.g. `America/New_York`): every bank has one, it is exact, and it is the
unit the daily report works in; the front end also plots each bank by lat/lon. A bank is online
when its enrolled node is (heartbeats within the last three intervals); a bank without an
enrolled node is offline. A door's state is the one in the node's last heartbeat, `unknown`
while the node is offline or has not reported that door.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Literal, TypedDict

from sqlalchemy.orm import Session

from central.errors import NotFound
from central.models import NodeEventRecord, Reservation, SizeClass
from central.ops import alerts
from central.ops.insight import notices
from central.ops.insight import repository as repo

SortKey = Literal["name", "occupancy", "alerts"]
StatusFilter = Literal["online", "offline", "all"]
Order = Literal["asc", "desc"]
TIMELINE_LIMIT = 100
OPEN_ALERTS_LIMIT = 200
_SIZE_RANK = {size.value: size.rank for size in SizeClass}


class ClassFigures(TypedDict):
    total: int
    free: int
    reserved: int
    occupied: int
    out_of_service: int


class BankSummary(TypedDict):
    id: str
    name: str
    address: str
    lat: float
    lon: float
    timezone: str
    region: str
    status: str
    online: bool
    last_seen_at: str | None
    open_alerts: int
    occupancy_pct: float
    classes: dict[str, ClassFigures]
    maintenance: bool  # in maintenance (central.banks.settings): allocation skips it


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _empty() -> ClassFigures:
    return {"total": 0, "free": 0, "reserved": 0, "occupied": 0, "out_of_service": 0}


def summarise_banks(
    session: Session, bank_id: str | None = None
) -> tuple[list[BankSummary], dict[str, Any]]:
    """Every bank's summary (or one bank's) from six grouped queries, whatever the bank count.

    Also returns the node health per bank (filled only when one bank is asked for).
    """
    classes: dict[str, dict[str, ClassFigures]] = defaultdict(dict)

    def figures(bank: str, size: str) -> ClassFigures:
        of_bank = classes[bank]
        row = of_bank.get(size)
        if row is None:
            row = of_bank[size] = _empty()
        return row

    for bank, size, _total, available in repo.capacity(session, bank_id):
        figures(bank, size)["free"] = max(0, int(available))
    for bank, size, total, out_of_service in repo.compartment_counts(session, bank_id):
        row = figures(bank, size)
        row["total"] = int(total)
        row["out_of_service"] = int(out_of_service or 0)
    for bank, size, reserved, occupied in repo.holding_counts(session, bank_id):
        row = figures(bank, size)
        row["reserved"] = int(reserved or 0)
        row["occupied"] = int(occupied or 0)
    node_of = {row[0]: row for row in repo.nodes(session, bank_id)}
    open_alerts = {bank: int(n) for bank, n in repo.open_alert_counts(session, bank_id)}
    summaries: list[BankSummary] = []
    health: dict[str, Any] = {}
    for bank, name, address, lat, lon, timezone, status, maintenance_since in repo.banks(
        session, bank_id
    ):
        node = node_of.get(bank)
        shown = {
            size: row
            for size, row in sorted(
                classes.get(bank, {}).items(), key=lambda item: _SIZE_RANK.get(item[0], 99)
            )
            if row["total"] or row["reserved"] or row["occupied"]
        }
        total = sum(row["total"] for row in shown.values())
        occupied = sum(row["occupied"] for row in shown.values())
        summaries.append(
            {
                "id": bank,
                "name": name,
                "address": address,
                "lat": lat,
                "lon": lon,
                "timezone": timezone,
                "region": timezone,
                "status": status,
                "online": bool(node[1]) if node is not None else False,
                "last_seen_at": iso(node[2]) if node is not None else None,
                "open_alerts": open_alerts.get(bank, 0),
                "occupancy_pct": percent(occupied, total),
                "classes": shown,
                "maintenance": maintenance_since is not None,
            }
        )
        if node is not None:
            health[bank] = node[3]
    return summaries, health


_SORTS = {
    "name": lambda b: (b["name"].casefold(), b["id"]),
    "occupancy": lambda b: (b["occupancy_pct"], b["id"]),
    "alerts": lambda b: (b["open_alerts"], b["id"]),
}


def overview(
    session: Session,
    now: datetime,
    *,
    q: str | None = None,
    status: StatusFilter = "all",
    sort: SortKey = "name",
    order: Order = "asc",
) -> dict[str, Any]:
    """The network: banks grouped by region (time zone), filtered and sorted, with totals.

    `q` matches bank id, name or address (case-insensitive substring); totals cover the banks
    shown. Regions are in name order; banks within a region in the requested order.
    """
    summaries, _ = summarise_banks(session)
    needle = (q or "").strip().casefold()
    shown = [
        b
        for b in summaries
        if (status == "all" or b["online"] == (status == "online"))
        and (
            not needle
            or needle in b["id"].casefold()
            or needle in b["name"].casefold()
            or needle in b["address"].casefold()
        )
    ]
    shown.sort(key=_SORTS[sort], reverse=order == "desc")
    regions: dict[str, list[BankSummary]] = defaultdict(list)
    for bank in shown:
        regions[bank["region"]].append(bank)
    totals = _empty()
    for bank in shown:
        for row in bank["classes"].values():
            totals["total"] += row["total"]
            totals["free"] += row["free"]
            totals["reserved"] += row["reserved"]
            totals["occupied"] += row["occupied"]
            totals["out_of_service"] += row["out_of_service"]
    online = sum(1 for b in shown if b["online"])
    return {
        "generated_at": now.isoformat(),
        "totals": {
            "banks": len(shown),
            "online": online,
            "offline": len(shown) - online,
            "compartments": totals["total"],
            "free": totals["free"],
            "reserved": totals["reserved"],
            "occupied": totals["occupied"],
            "out_of_service": totals["out_of_service"],
            "open_alerts": sum(b["open_alerts"] for b in shown),
            "occupancy_pct": percent(totals["occupied"], totals["total"]),
        },
        "regions": [{"name": name, "banks": regions[name]} for name in sorted(regions)],
    }


def _door(health: Any, online: bool, label: str) -> str:
    if not online or not isinstance(health, dict):
        return "unknown"
    doors = health.get("doors")
    value = doors.get(label) if isinstance(doors, dict) else None
    return value if value in ("open", "closed") else "unknown"


def _hours(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() / 3600, 1)


def _parcel(
    reservation: Reservation, now: datetime, notice_counts: dict[str, int]
) -> dict[str, Any]:
    deposited = reservation.deposited_at
    return {
        "reservation_id": reservation.id,
        "tracking_number": reservation.tracking_number,
        "carrier": reservation.carrier_id,
        "status": reservation.status,
        "deposited_at": iso(deposited),
        "dwell_hours": _hours(deposited, now) if deposited is not None else None,
        "pickup_deadline": iso(reservation.pickup_deadline),
        "notice_counts": notice_counts,
    }


def _timeline(session: Session, bank_id: str) -> list[dict[str, Any]]:
    """The newest TIMELINE_LIMIT facts about a bank: parcel transitions, node events, alerts."""
    entries: list[tuple[datetime, dict[str, Any]]] = []
    for event in repo.recent_reservation_events(session, bank_id, TIMELINE_LIMIT):
        entries.append(
            (
                event.at,
                {
                    "at": iso(event.at),
                    "kind": "parcel",
                    "type": event.type,
                    "detail": {
                        "from": event.from_status,
                        "to": event.to_status,
                        "actor": event.actor,
                        "reason": event.reason,
                    },
                    "reservation_id": event.reservation_id,
                },
            )
        )
    for record in repo.recent_node_events(session, bank_id, TIMELINE_LIMIT):
        entries.append((record.occurred_at, _node_event_entry(record)))
    for alert in repo.recent_alerts(session, bank_id, TIMELINE_LIMIT):
        entries.append(
            (
                alert.created_at,
                {
                    "at": iso(alert.created_at),
                    "kind": "alert",
                    "type": alert.type,
                    "detail": {"id": alert.id, **(alert.detail or {})},
                },
            )
        )
    entries.sort(key=lambda item: item[0], reverse=True)
    return [entry for _, entry in entries[:TIMELINE_LIMIT]]


def _node_event_entry(record: NodeEventRecord) -> dict[str, Any]:
    # Sealed values stay out of the page: they are opaque, and nobody needs them there.
    data = {k: v for k, v in record.data.items() if not k.startswith("sealed_")}
    entry: dict[str, Any] = {
        "at": iso(record.occurred_at),
        "kind": "node",
        "type": record.type,
        "detail": {**data, "status": record.status, "error": record.error},
    }
    reservation_id = record.data.get("reservation_id")
    if isinstance(reservation_id, str):
        entry["reservation_id"] = reservation_id
    return entry


def bank_detail(session: Session, now: datetime, bank_id: str) -> dict[str, Any]:
    summaries, health = summarise_banks(session, bank_id)
    if not summaries:
        raise NotFound(f"bank {bank_id}", code="unknown_bank")
    bank = summaries[0]
    parcels: dict[str, Reservation] = {}
    for reservation in repo.parcels_in_bank(session, bank_id):
        label = reservation.compartment_label
        if label is None:  # `parcels_in_bank` reads only parcels in a compartment
            raise ValueError(f"parcel {reservation.id} is in no compartment")
        parcels.setdefault(label, reservation)
    # The notices of every parcel shown, counted per status in one grouped query.
    counts = notices.counts_by_reservation(session, [p.id for p in parcels.values()])
    compartments = []
    for label, size, state in repo.compartments_of(session, bank_id):
        parcel = parcels.get(label)
        if state == "out_of_service":
            shown = "out_of_service"
        elif parcel is not None:
            shown = "occupied"
        elif state == "reserved":
            shown = "reserved"
        else:
            shown = "free"
        compartments.append(
            {
                "label": label,
                "size": size,
                "state": shown,
                "door": _door(health.get(bank_id), bank["online"], label),
                "parcel": _parcel(parcel, now, counts[parcel.id]) if parcel is not None else None,
            }
        )
    return {
        "bank": bank,
        "compartments": compartments,
        "reserved_unbound": {size: row["reserved"] for size, row in bank["classes"].items()},
        "timeline": _timeline(session, bank_id),
        # The alerts API's own shape, so the page shows them as the alerts page does.
        "alerts": alerts.list_alerts(
            session, status="open", bank_id=bank_id, alert_type=None, limit=OPEN_ALERTS_LIMIT
        ).model_dump(mode="json")["alerts"],
    }


def search_parcels(session: Session, tracking_number: str) -> dict[str, Any]:
    """Every reservation with exactly this tracking number, any carrier, with its history and
    its recipient notices (one query for all of them).

    Recipient data is never part of the answer: notices show only their masked destination.
    """
    rows = repo.reservations_by_tracking(session, tracking_number)
    notices_of = notices.notices_by_reservation(session, [r.id for r in rows])
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in repo.histories(session, [r.id for r in rows]):
        history[event.reservation_id].append(
            {
                "at": iso(event.at),
                "status": event.to_status or event.type,
                "type": event.type,
                "actor": event.actor,
                "reason": event.reason,
            }
        )
    return {
        "parcels": [
            {
                "reservation_id": r.id,
                "carrier": r.carrier_id,
                "tracking_number": r.tracking_number,
                "bank_id": r.bank_id,
                "size": r.size,
                "compartment": r.compartment_label,
                "status": r.status,
                "created_at": iso(r.created_at),
                "reserved_until": iso(r.reserved_until),
                "deposited_at": iso(r.deposited_at),
                "pickup_deadline": iso(r.pickup_deadline),
                "closed_at": iso(r.closed_at),
                "history": history.get(r.id, []),
                "notice_counts": notices.count(notices_of.get(r.id, [])),
                "notices": notices_of.get(r.id, []),
            }
            for r in rows
        ]
    }
