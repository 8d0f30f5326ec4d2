"""Node health: heartbeats keep a node online; one that falls silent goes offline with an alert.

A heartbeat may also say how the node's computer is doing (`NodeHealth`): kept in `nodes.health`
beside the doors and boards, and turned into bank alerts (`power_lost`, `battery_low`,
`overheating` per sensor, `disk_low`), each resolved by a later heartbeat that shows it back to
normal. The conditions alerted on are kept in the same JSON (`alerting`), so a heartbeat that
changes nothing costs no query beyond the one that records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from central.models import Node
from central.nodes import repository as repo
from central.nodes import sync_repository as sync_repo
from central.nodes import updates
from locker_wire.schemas import Heartbeat, HeartbeatResult, NodeHealth

if TYPE_CHECKING:
    from central.config import CentralSettings

HEARTBEAT_INTERVAL = timedelta(seconds=30)
MISSED_HEARTBEATS = 3
HEALTH_ALERT_TYPES: tuple[str, ...] = ("power_lost", "battery_low", "overheating", "disk_low")
# The key in `nodes.health` of the conditions alerted on, as "type:subject" strings.
ALERTING = "alerting"
MB = 1_000_000

Condition = tuple[str, str]  # (alert type, subject)


@dataclass(frozen=True)
class HealthLimits:
    """When a node's computer is in trouble (the `health_*` settings)."""

    cpu_temp_max_c: float = 80.0
    enclosure_temp_max_c: float = 55.0
    temp_hysteresis_c: float = 5.0
    disk_free_min_mb: int = 500
    disk_free_min_pct: float = 5.0

    @classmethod
    def from_settings(cls, settings: CentralSettings) -> HealthLimits:
        return cls(
            cpu_temp_max_c=settings.health_cpu_temp_max_c,
            enclosure_temp_max_c=settings.health_enclosure_temp_max_c,
            temp_hysteresis_c=settings.health_temp_hysteresis_c,
            disk_free_min_mb=settings.health_disk_free_min_mb,
            disk_free_min_pct=settings.health_disk_free_min_pct,
        )


DEFAULT_LIMITS = HealthLimits()


def assess(
    report: NodeHealth, limits: HealthLimits
) -> tuple[dict[Condition, dict[str, Any]], set[Condition]]:
    """What the report shows: the conditions in trouble (with the alert detail) and those shown
    back to normal. A condition in neither is unknown (no reading, or a temperature between its
    maximum and the hysteresis below it) and stays as it was."""
    bad: dict[Condition, dict[str, Any]] = {}
    good: set[Condition] = set()
    if report.power == "battery":
        bad[("power_lost", "power")] = {"power": "battery"}
    elif report.power == "mains":
        good.add(("power_lost", "power"))
    if report.battery_low is True:
        bad[("battery_low", "battery")] = {"battery_low": True, "power": report.power}
    elif report.battery_low is False:
        good.add(("battery_low", "battery"))
    for sensor, reading, maximum in (
        ("cpu", report.cpu_temp_c, limits.cpu_temp_max_c),
        ("enclosure", report.enclosure_temp_c, limits.enclosure_temp_max_c),
    ):
        if reading is None:
            continue
        if reading > maximum:
            bad[("overheating", sensor)] = {"sensor": sensor, "temp_c": reading, "max_c": maximum}
        elif reading <= maximum - limits.temp_hysteresis_c:
            good.add(("overheating", sensor))
    free, total = report.disk_free_bytes, report.disk_total_bytes
    if free is not None:
        pct = None if not total else round(free * 100 / total, 1)
        if free < limits.disk_free_min_mb * MB or (
            pct is not None and pct < limits.disk_free_min_pct
        ):
            bad[("disk_low", "disk")] = {
                "free_bytes": free,
                "total_bytes": total,
                "free_pct": pct,
                "min_mb": limits.disk_free_min_mb,
                "min_pct": limits.disk_free_min_pct,
            }
        else:
            good.add(("disk_low", "disk"))
    return bad, good


def _alerting_of(stored: Any) -> set[Condition] | None:
    """The conditions alerted on as stored with the node's last health; None: not known."""
    if not isinstance(stored, dict) or not isinstance(stored.get(ALERTING), list):
        return None
    kinds = (entry.partition(":") for entry in stored[ALERTING] if isinstance(entry, str))
    return {(kind, subject) for kind, _, subject in kinds}


def _update_health_alerts(
    session: Session,
    node: Node,
    report: NodeHealth,
    before: set[Condition] | None,
    now: datetime,
    limits: HealthLimits,
) -> set[Condition]:
    """Raise what went wrong and resolve what came right since `before` (the conditions alerted
    on, None when not known: then every reading counts); the conditions alerted on now."""
    bad, good = assess(report, limits)
    known = before if before is not None else set()
    raised = [key for key in sorted(bad) if before is None or key not in before]
    resolved = sorted(good if before is None else good & before)
    if raised:
        repo.raise_bank_alerts(
            session,
            node.bank_id,
            [
                {
                    "type": kind,
                    "subject": subject,
                    "detail": {"node_id": node.id, **bad[(kind, subject)]},
                    "created_at": now,
                }
                for kind, subject in raised
            ],
        )
    repo.resolve_subject_alerts(session, node.bank_id, resolved, now)
    return (known | set(bad)) - good


def record_heartbeat(
    session: Session,
    node: Node,
    body: Heartbeat,
    now: datetime,
    limits: HealthLimits = DEFAULT_LIMITS,
) -> HeartbeatResult:
    health: dict[str, Any] = {
        "doors": body.doors,
        "boards": body.boards,
        "outbox_depth": body.outbox_depth,
    }
    # What the node row said before this heartbeat.
    was_offline = not node.online
    alerting = _alerting_of(node.health)
    # Each write below is atomic and idempotent, and comes before the one that records it
    # (the alerts before the conditions alerted on, `bank_offline` resolved before the node is
    # online), so that when only some of them are done, the next heartbeat does the rest and
    # nothing twice: it may run without a transaction (`NodeWork.run(autocommit=True)`).
    if body.health is not None:
        health.update(body.health.model_dump(mode="json"))
        alerting = _update_health_alerts(session, node, body.health, alerting, now, limits)
    if alerting is not None:
        health[ALERTING] = sorted(f"{kind}:{subject}" for kind, subject in alerting)
    if was_offline:
        repo.resolve_alerts(session, node.bank_id, "bank_offline", now)
    beat = sync_repo.record_heartbeat(session, node, now, health, body.version)
    # The wanted version came with the heartbeat's own statement; a node that reports an
    # update's progress has it kept (and the version read again there).
    wanted = (
        updates.record_update(session, node, body, now)
        if body.update is not None
        else None
        if beat.rollout_id is None or beat.rollout_version is None
        else updates.Wanted(beat.rollout_id, beat.rollout_version)
    )
    return HeartbeatResult(
        server_time=int(now.timestamp()),
        online=True,
        wanted_version=None if wanted is None else wanted.version,
        wanted_rollout=None if wanted is None else wanted.rollout_id,
        feed_news=beat.feed_news,
    )


def mark_silent_nodes_offline(session: Session, now: datetime) -> int:
    """Nodes that missed three heartbeats go offline, each with a `bank_offline` alert."""
    seen_before = now - HEARTBEAT_INTERVAL * MISSED_HEARTBEATS
    silent = repo.mark_silent_offline(session, seen_before)
    repo.insert_alerts(
        session,
        [
            {
                "bank_id": node.bank_id,
                "type": "bank_offline",
                "detail": {"node_id": node.id, "last_seen_at": node.last_seen_at.isoformat()},
                "created_at": now,
            }
            for node in silent
        ],
    )
    return len(silent)
