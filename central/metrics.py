"""Prometheus `/metrics` for central: request latency by route, network gauges from the database.

Requests are measured by a pure ASGI middleware (no `BaseHTTPMiddleware`, no per-request task):
one histogram observation labelled by method, route template (`/v1/reservations/{reservation_id}`,
never the concrete path) and status; its `_count` series is the request count.

The gauges (capacity and compartments per size class, open alerts by type, nodes online and
offline, webhook and analytics outbox depth) are read from the database when scraped, so every
worker answers the same and none keeps state for them.

Several web workers: the request histograms are per process. When `PROMETHEUS_MULTIPROC_DIR` is
set before the workers start (see `prepare_multiprocess_dir`), prometheus_client keeps them in
files there and any worker's `/metrics` sums all of them; without it, each worker reports its own
requests only, which is exact for one worker.

Exposure: when `LOCKER_METRICS_TOKEN` is set, `/metrics` requires `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from central.analytics.repository import network_gauges
from central.config import CentralSettings
from central.errors import ApiError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """Make `<data_dir>/prometheus` empty and point prometheus_client at it.

    Call in the supervising process before any web worker starts (and before prometheus_client
    is imported there): the workers inherit the variable and write their request metrics there.
    """
    path = data_dir / "prometheus"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


class RequestMetrics:
    """Pure ASGI middleware: one histogram observation per HTTP request."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self._histogram = histogram
        # Label lookups cost more than the observation; the children are few (routes x codes).
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes becomes a 500 outside this middleware

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], template, status)
            child = self._children.get(key)
            if child is None:
                child = self._histogram.labels(key[0], template, str(status))
                self._children[key] = child
            child.observe(time.perf_counter() - started)


class NetworkCollector(Collector):
    """Network-wide gauges read from the database when scraped."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._sessions() as session:
            gauges = network_gauges(session)
        capacity = GaugeMetricFamily(
            "locker_capacity_units",
            "Reservable units per size class, summed over all banks.",
            labels=["size", "kind"],
        )
        for size, total, available in gauges.capacity:
            capacity.add_metric([size, "total"], total)
            capacity.add_metric([size, "available"], available)
            capacity.add_metric([size, "held"], total - available)
        yield capacity
        compartments = GaugeMetricFamily(
            "locker_compartments",
            "Compartments per size class and state, summed over all banks.",
            labels=["size", "state"],
        )
        for size, state, count in gauges.compartments:
            compartments.add_metric([size, state], count)
        yield compartments
        alerts = GaugeMetricFamily("locker_open_alerts", "Unresolved alerts.", labels=["type"])
        for kind, count in gauges.open_alerts:
            alerts.add_metric([kind], count)
        yield alerts
        nodes = GaugeMetricFamily("locker_nodes", "Enrolled nodes.", labels=["state"])
        by_state = dict(gauges.nodes)
        nodes.add_metric(["online"], by_state.get(True, 0))
        nodes.add_metric(["offline"], by_state.get(False, 0))
        yield nodes
        yield GaugeMetricFamily(
            "locker_webhook_outbox_depth",
            "Webhook deliveries waiting to be sent.",
            value=gauges.webhook_depth,
        )
        yield GaugeMetricFamily(
            "locker_analytics_outbox_depth",
            "Analytics events waiting to be sent to Mixpanel.",
            value=gauges.analytics_depth,
        )


def _scrape_registry(request_registry: CollectorRegistry | None, network: Collector) -> Any:
    registry = CollectorRegistry(auto_describe=False)
    if request_registry is None:
        # prometheus_client's multiprocess module has no annotations; it registers itself.
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(request_registry))
    registry.register(network)
    return registry


class _Forward(Collector):
    """Exposes another registry's metrics as part of this one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Any]:
        return self._registry.collect()


def install_metrics(app: FastAPI, settings: CentralSettings) -> None:
    """The request middleware and `GET /metrics` (outside the carrier API's OpenAPI)."""
    shared = multiprocess_dir() is not None
    # In multiprocess mode the values live in files and are read back by MultiProcessCollector;
    # registering the histogram as well would expose this worker's share twice.
    request_registry = None if shared else CollectorRegistry(auto_describe=False)
    histogram = Histogram(
        "locker_http_request_duration_seconds",
        "HTTP requests by method, route template and status.",
        ["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        registry=request_registry,
    )
    app.add_middleware(RequestMetrics, histogram=histogram)
    registry = _scrape_registry(request_registry, NetworkCollector(app.state.sessions))
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise ApiError(
                    401,
                    "unauthorized",
                    "metrics need `Authorization: Bearer <metrics token>`",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        limiter: CapacityLimiter = request.app.state.db_limiter
        body = await anyio.to_thread.run_sync(generate_latest, registry, limiter=limiter)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
