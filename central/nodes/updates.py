"""Node updates on central's side: the wanted node version per bank, and each node's progress
as its heartbeats report it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from central.models import Node
from locker_wire.schemas import Heartbeat


def record_update(session: Session, node: Node, body: Heartbeat, now: datetime) -> str | None:
    """Keep the node's update report; the version the node should run (None: what it runs)."""
    return None
