"""Fleet health in the dashboard: each bank's node health and the fleet's version spread.

`GET /ops/api/fleet` (any operator; read from the standby, a few seconds behind at most: figures
to read, not to act on within seconds) and the page `GET /ops/fleet`, whose script sorts and
filters the rows in the browser. Node updates (`_fleet_updates.html`, central.ops.updates) sit on
the same page.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from packaging.version import InvalidVersion, Version
from sqlalchemy.orm import Session

from central.context import Ctx
from central.nodes import repository as node_repo
from central.nodes import updates
from central.nodes.health import HEALTH_ALERT_TYPES, HealthLimits
from central.ops.auth import Operator, OperatorRoute, current_operator, run_lagging_read
from central.ops.pages import _page

# The JSON API (every call needs a signed-in operator) and the HTML pages.
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
pages = APIRouter(prefix="/ops", include_in_schema=False)
OperatorDep = Annotated[Operator, Depends(current_operator)]

# What the page shows of a node's health report (central.nodes.health keeps it in nodes.health).
HEALTH_FIELDS = (
    "uptime_s",
    "host_uptime_s",
    "disk_free_bytes",
    "disk_total_bytes",
    "cpu_temp_c",
    "enclosure_temp_c",
    "power",
    "battery_low",
)


def version_key(version: str) -> tuple[int, Version | str]:
    """Orders versions oldest to newest by PEP 440; one that is not PEP 440 comes before all."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _wanted_by_bank(session: Session, bank_ids: list[str]) -> dict[str, str]:
    """The node version an active rollout wants at each bank (central.nodes.updates)."""
    rollouts = updates.active_rollouts(session)  # newest first: the first covering a bank wins
    wanted: dict[str, str] = {}
    for bank_id in bank_ids:
        rollout = next((r for r, banks in rollouts if not banks or bank_id in banks), None)
        if rollout is not None:
            wanted[bank_id] = rollout.version
    return wanted


def _health_of(stored: Any) -> dict[str, Any]:
    health = stored if isinstance(stored, dict) else {}
    shown = {name: health.get(name) for name in HEALTH_FIELDS}
    if shown["power"] is None:
        shown["power"] = "unknown"
    free, total = shown["disk_free_bytes"], shown["disk_total_bytes"]
    shown["disk_free_pct"] = (
        round(free * 100 / total, 1)
        if isinstance(free, int) and isinstance(total, int) and total > 0
        else None
    )
    return shown


def fleet_view(session: Session, now: datetime, limits: HealthLimits) -> dict[str, Any]:
    """Every bank's health row, the count of nodes per version (newest first) and totals."""
    rows = node_repo.fleet_rows(session)
    alerts: dict[str, list[dict[str, Any]]] = {}
    for bank_id, alert_id, kind, subject, created_at in node_repo.open_alerts_of_types(
        session, HEALTH_ALERT_TYPES
    ):
        alerts.setdefault(bank_id, []).append(
            {"id": alert_id, "type": kind, "subject": subject, "created_at": created_at.isoformat()}
        )
    wanted = _wanted_by_bank(session, [row.bank_id for row in rows])
    spread = Counter(row.version for row in rows if row.node_id is not None and row.version)
    versions = sorted(spread, key=version_key, reverse=True)
    newest = next((v for v in versions if version_key(v)[0]), versions[0] if versions else None)
    banks = []
    for row in rows:
        enrolled = row.node_id is not None
        behind_newest = bool(
            enrolled and row.version and newest and version_key(row.version) < version_key(newest)
        )
        bank_wanted = wanted.get(row.bank_id)
        banks.append(
            {
                "bank_id": row.bank_id,
                "bank_name": row.bank_name,
                "timezone": row.timezone,
                "node_id": row.node_id,
                "online": bool(row.online) if enrolled else False,
                "version": row.version,
                "wanted_version": bank_wanted,
                "behind_newest": behind_newest,
                "behind_wanted": bool(enrolled and bank_wanted and row.version != bank_wanted),
                "last_seen_at": row.last_seen_at.isoformat() if row.last_seen_at else None,
                **_health_of(row.health if enrolled else None),
                "alerts": alerts.get(row.bank_id, []),
            }
        )
    return {
        "generated_at": now.isoformat(),
        "newest_version": newest,
        "versions": [
            {
                "version": version,
                "nodes": spread[version],
                "newest": version == newest,
                "wanted_by": sorted(b for b, v in wanted.items() if v == version),
            }
            for version in versions
        ],
        "limits": {
            "cpu_temp_max_c": limits.cpu_temp_max_c,
            "enclosure_temp_max_c": limits.enclosure_temp_max_c,
            "disk_free_min_mb": limits.disk_free_min_mb,
            "disk_free_min_pct": limits.disk_free_min_pct,
        },
        "totals": {
            "banks": len(banks),
            "nodes": sum(1 for b in banks if b["node_id"]),
            "online": sum(1 for b in banks if b["online"]),
            "on_battery": sum(1 for b in banks if b["power"] == "battery"),
            "with_alerts": sum(1 for b in banks if b["alerts"]),
            "behind_newest": sum(1 for b in banks if b["behind_newest"]),
            "behind_wanted": sum(1 for b in banks if b["behind_wanted"]),
        },
        "banks": banks,
    }


@router.get("/fleet")
async def get_fleet(request: Request, operator: OperatorDep) -> JSONResponse:
    limits = HealthLimits.from_settings(request.app.state.settings)

    def work(ctx: Ctx) -> dict[str, Any]:
        return fleet_view(ctx.session, ctx.now, limits)

    # Already JSON-shaped: skipping FastAPI's encoder matters for thousands of banks.
    return JSONResponse(await run_lagging_read(request, work))


@pages.get("/fleet", response_class=HTMLResponse)
async def fleet_page(request: Request) -> Response:
    return await _page(request, "fleet.html", "/ops/fleet")
