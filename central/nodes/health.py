"""Node health: heartbeats keep a node online; one that falls silent goes offline with an alert."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from central.models import Node
from central.nodes import repository as repo
from central.nodes import updates
from locker_wire.schemas import Heartbeat, HeartbeatResult

HEARTBEAT_INTERVAL = timedelta(seconds=30)
MISSED_HEARTBEATS = 3


def record_heartbeat(
    session: Session, node: Node, body: Heartbeat, now: datetime
) -> HeartbeatResult:
    health = {"doors": body.doors, "boards": body.boards, "outbox_depth": body.outbox_depth}
    was_offline = not node.online  # read first: the update below refreshes the loaded row
    repo.record_heartbeat(session, node.id, now, health, body.version)
    if was_offline:
        repo.resolve_alerts(session, node.bank_id, "bank_offline", now)
    wanted = updates.record_update(session, node, body, now)
    return HeartbeatResult(server_time=int(now.timestamp()), online=True, wanted_version=wanted)


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
