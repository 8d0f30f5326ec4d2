"""Occupancy sampling: every five minutes one INSERT ... SELECT, and samples past retention go."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from central.ops.insight import repository as repo

SAMPLE_INTERVAL = timedelta(minutes=5)
RETENTION = timedelta(days=90)


def sample_occupancy(session: Session, now: datetime) -> int:
    """Record every bank's figures per class as of now (as central.ops.insight.service defines
    them) and drop samples older than RETENTION. Returns the number of rows recorded."""
    recorded = repo.insert_occupancy_sample(session, now)
    repo.purge_occupancy_samples(session, now - RETENTION)
    return recorded
