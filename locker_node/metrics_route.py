"""`GET /metrics`, with the Prometheus side of it (`locker_node.metrics`) loaded at the first
scrape: a node that nobody scrapes never loads prometheus_client."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from fastapi import FastAPI, Response
from sqlalchemy import Engine

from locker_node.domain.doors import DoorController

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def install_metrics(app: FastAPI, engine: Engine, doors: DoorController, bank_id: str) -> None:
    """`GET /metrics` in Prometheus text format (a plain function: it runs in a worker thread)."""
    lock = threading.Lock()
    made: list[CollectorRegistry] = []

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from locker_node import metrics as prometheus

        with lock:
            if not made:
                made.append(prometheus.build_registry(engine, doors, bank_id))
        return prometheus.exposition(made[0])
